"""`trainwise compress RUN | FILE --checkpoint PATH [--method M ...] [--json OUT]`: the trained
model's compressed variants with their size, latency and metric, measured here. Exit 0 done,
2 unusable input; registered on the main group in cli/__init__.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from trainwise.cli.common import EXIT_CLEAN, console, err_console, fail_unusable
from trainwise.errors import SetupError

PERCENT = ("accuracy", "iou")  # metrics in [0, 1] shown in percent, their change in points


@click.command("compress", context_settings={"ignore_unknown_options": True})
@click.argument("target", metavar="RUN | FILE[.py][:FUNCTION]")
@click.option("--method", "methods", multiple=True,
              help="dynamic-int8, static-int8, prune:F, prune-channels:F, distill:W (W: 0.5, "
                   "half-width, quarter-width), or A+B; repeatable. Default: all five.")  # fmt: skip
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="A state dict for the setup file's model (fit's checkpoints/best.pt).")  # fmt: skip
@click.option("--finetune-epochs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Fine-tune after pruning.")  # fmt: skip
@click.option("--distill-epochs", type=click.IntRange(min=1),
              help="The student's training (default: the run's epochs, else 10).")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder of the variants (default: RUN/compress, else ./compress).")  # fmt: skip
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the result.")
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Folder of run records.")
def compress_command(target: str, methods: tuple[str, ...], checkpoint: str | None,
                     finetune_epochs: int, distill_epochs: int | None, out: str | None,
                     json_path: str | None, runs_dir: str | None) -> None:  # fmt: skip
    """Compress a fit RUN (number, id, name or folder: its setup file and best checkpoint), or
    the Setup in FILE with --checkpoint, and measure each variant against it."""
    from trainwise.compress.methods import DEFAULT, parse_all

    is_file = checkpoint is not None or target.endswith(".py") or ".py:" in target
    try:
        parse_all(list(methods or DEFAULT))  # an unknown method is reported before any work
        if is_file:
            from trainwise.loader import setup_file

            setup_file(target)
            if checkpoint is None:
                raise SetupError(f"compress {target}: give --checkpoint (the trained weights)")
    except SetupError as exc:
        fail_unusable(exc)
    from trainwise.compress.core import compress, compress_run

    status = err_console.status(f"compressing {escape(target)}")

    def progress(text: str) -> None:
        status.update(f"compressing {escape(target)}: {escape(text)}")

    try:
        with status:
            if is_file:
                from trainwise.loader import load_setup

                result = compress(load_setup(target), checkpoint, list(methods or DEFAULT),
                                  folder=out, finetune_epochs=finetune_epochs,
                                  distill_epochs=distill_epochs or 10, progress=progress,
                                  source=f"{target} with {checkpoint}")  # fmt: skip
            else:
                result = compress_run(target, list(methods or DEFAULT), root=runs_dir,
                                      finetune_epochs=finetune_epochs,
                                      distill_epochs=distill_epochs, progress=progress,
                                      folder=out)  # fmt: skip
    except SetupError as exc:
        fail_unusable(exc)
    data = result.to_dict()
    console.print(_table(data))
    for s in data["skipped"]:
        console.print(f"  skipped {escape(s['method'])}: {escape(s['reason'])}", highlight=False)
    for note in data["notes"]:
        console.print(f"  note: {escape(note)}", highlight=False)
    console.print(f"variants in {escape(str(result.folder))}; report: "
                  f"{escape(str(result.report))}", highlight=False)  # fmt: skip
    if json_path:
        Path(json_path).write_text(json.dumps(data, default=str))
        console.print(f"JSON written to {escape(json_path)}", highlight=False)
    sys.exit(EXIT_CLEAN)


def _table(data: dict) -> Table:
    original = data["original"]
    table = Table(title=f"compress {data['source']} (CPU, {data['threads']} thread(s); latency: "
                  "median of interleaved calls)", title_justify="left")  # fmt: skip
    for column in ("method", "size", "smaller", "weights", "ms b1",
                   f"ms b{data['batch_size']}", original["metric_name"], "change"):  # fmt: skip
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in [original, *data["variants"]]:
        table.add_row(
            row["method"], f"{row['size_bytes'] / 1e3:.1f} kB",
            f"{original['size_bytes'] / row['size_bytes']:.2f}x",
            f"{row['nonzero_params']}/{row['params']}" if row["nonzero_params"] != row["params"]
            else str(row["params"]),
            f"{row['latency_ms_b1']:.3f}", f"{row['latency_ms_batch']:.3f}",
            *_metric(row, original["metric_name"]),
        )  # fmt: skip
    return table


def _metric(row: dict, name: str) -> tuple[str, str]:
    """(metric, change): fractions (accuracy, IoU) as percent and points, others as they are."""
    value, delta = row["metric"], row["delta"]
    if value is None:
        return "-", "-"
    if name in PERCENT:
        return f"{100 * value:.2f}%", "-" if delta is None else f"{100 * delta:+.2f} pt"
    return f"{value:.4g}", "-" if delta is None else f"{delta:+.4g}"
