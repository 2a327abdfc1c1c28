"""The command line: parse, call the API, render. Exit codes: 0 clean, 1 error findings,
2 unusable input. Every command's CLI lives in this package (runs.py: the run records')."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import click
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from trainwise.cli.common import EXIT_FINDINGS, console, err_console, sample_option
from trainwise.cli.common import fail_unusable as _fail_unusable
from trainwise.errors import SetupError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trainwise")
def main() -> None:
    """trainwise: checks that a PyTorch training setup can learn, before and while it trains."""


@main.command()
@click.argument("target", metavar="FILE[.py][:FUNCTION]")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write the report as JSON here."
)
@click.option("--quick", is_flag=True, help="Shorter experiments: seconds instead of a minute.")
@click.option(
    "--sample", default=2000, show_default=True, help="Samples per dataset the data rules read."
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--record/--no-record",
    default=True,
    show_default=True,
    help="Keep a run record (run.json, findings, report.html) under the runs folder.",
)
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False),
    help="The runs folder (default: $TRAINWISE_RUNS_DIR, else ./trainwise-runs).",
)
@click.option("--mlflow", "mlflow_uri", help="Also log the record to this MLflow tracking URI.")
@click.option("--devices", default=1, show_default=True, type=click.IntRange(min=1),
              help="N >= 2: also train on N processes under DDP against one process.")  # fmt: skip
def check(
    target: str,
    json_path: str | None,
    quick: bool,
    sample: int,
    seed: int,
    record: bool,
    runs_dir: str | None,
    mlflow_uri: str | None,
    devices: int,
) -> None:
    """Examine the Setup returned by setup() in FILE (or FILE:FUNCTION)."""
    from trainwise.loader import setup_file

    try:  # a mistyped file name is reported at once, before torch is imported (seconds)
        setup_file(target)
    except SetupError as exc:
        _fail_unusable(exc)
    from trainwise.check import check as run_check
    from trainwise.loader import load_setup
    from trainwise.report.terminal import render_report

    try:
        setup = load_setup(target)
        report = run_check(
            setup,
            quick=quick,
            sample=sample,
            seed=seed,
            progress=True,
            record=record,
            runs_dir=runs_dir,
            mlflow=mlflow_uri,
            devices=devices,
            target=target,
        )
    except SetupError as exc:
        _fail_unusable(exc)
    render_report(report, console)
    if report.record_path is not None:
        console.print(
            f"[dim]run record: {escape(str(report.record_path))}  (`trainwise runs` lists your "
            "runs)"
        )
    if json_path:
        Path(json_path).write_text(report.to_json())
        console.print(f"JSON report written to {escape(json_path)}")
    sys.exit(report.exit_code)


@main.command()
def demo() -> None:
    """Check a healthy and a broken small CNN on scikit-learn's digits, side by side."""
    from trainwise.demo.run import run_demo

    run_demo(console)


@main.command()
@click.option("--category", type=click.Choice(["model", "data", "protocol", "in-flight"]))
def rules(category: str | None) -> None:
    """List every rule trainwise knows."""
    from trainwise.rules import CATALOGUE

    table = Table(title="trainwise rules", title_justify="left")
    for col in ("slug", "severity", "category", "summary"):
        table.add_column(col)
    for r in CATALOGUE.values():
        if category is None or r.category == category:
            table.add_row(*(escape(v) for v in (r.slug, r.severity, r.category, r.summary)))
    console.print(table)
    console.print("`trainwise explain SLUG` prints a rule's documentation.")


@main.command()
@click.argument("slug")
def explain(slug: str) -> None:
    """Print a rule's documentation: why it matters, the fix, an example, the source."""
    from trainwise.rules import CATALOGUE

    rule = CATALOGUE.get(slug)
    if rule is None:
        close = difflib.get_close_matches(slug, list(CATALOGUE), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        _fail_unusable(SetupError(f"no rule named {slug!r}.{hint} `trainwise rules` lists them."))
    doc = [f"# {rule.slug}", f"*{rule.severity}, {rule.category}*: {rule.summary}", ""]
    for title, text in rule.doc_sections().items():
        doc += [f"## {title}", *(_example(text) if title == "Example" else [text]), ""]
    console.print(Markdown("\n".join(doc)))


def _example(text: str) -> list[str]:
    """A rule's example, the mistake then the repair (`example=` holds both, a blank line
    apart), each labelled; one unlabelled block when it has no repair part."""
    bad, _, good = text.partition("\n\n")
    if not good.strip():
        return [f"```python\n{text}\n```"]
    return [
        "**The mistake:**", f"```python\n{bad}\n```",
        "**The repair:**", f"```python\n{good.strip(chr(10))}\n```",
    ]  # fmt: skip


@main.command("lr-find")
@click.argument("target", metavar="FILE[.py][:FUNCTION]")
@click.option(
    "--plot",
    "plot_path",
    default="lr-find.png",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where to draw the curve (.png or .svg).",
)
@click.option("--no-plot", is_flag=True, help="Do not draw the curve.")
@click.option("--num-iter", default=100, show_default=True, help="Steps of the sweep.")
@click.option("--start-lr", default=1e-7, show_default=True)
@click.option("--end-lr", default=10.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run the range test on this many seeds, suggest the median one's LR, report the spread.",
)
@click.option(
    "--trial-steps",
    type=click.IntRange(min=10),
    help="Length of your planned run (steps): then train that long at up to 8 LRs under the "
    "divergence onset and suggest the best (about 6 runs' time; scored on the setup's val).",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write the curve as JSON."
)
@click.option("--record/--no-record", default=True, show_default=True, help="Keep a run record.")
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False),
    help="Folder of run records (default $TRAINWISE_RUNS_DIR, else ./trainwise-runs).",
)
@click.option("--sample", callback=sample_option, help="Sweep on a stratified sample: 500 or 0.1.")
def lr_find_command(
    target: str,
    plot_path: str,
    no_plot: bool,
    num_iter: int,
    start_lr: float,
    end_lr: float,
    seed: int,
    seeds: int,
    trial_steps: int | None,
    json_path: str | None,
    record: bool,
    runs_dir: str | None,
    sample: float | int | None,
) -> None:
    """LR range test on the Setup in FILE: a suggested LR, its range, and the plot."""
    import json

    from trainwise.loader import setup_file

    # Argument errors are reported at once, before torch is imported (seconds).
    if not no_plot and Path(plot_path).suffix.lower() not in (".png", ".svg"):
        _fail_unusable(SetupError(f"--plot {plot_path}: expected a .png or .svg file name"))
    try:
        setup_file(target)
    except SetupError as exc:
        _fail_unusable(exc)
    from trainwise.loader import load_setup
    from trainwise.lr_find import lr_find
    from trainwise.lr_trials import trial_cell
    from trainwise.report.terminal import finding_panel

    try:
        setup = load_setup(target)
        doing = f"LR range test on {escape(setup.name)} ({num_iter} steps"
        doing += f", {seeds} seeds)" if seeds > 1 else ")"
        if trial_steps:
            doing += f", then trial runs of {trial_steps} steps"
        with err_console.status(doing) as status:
            done: list[str] = []

            def on_trial(lr: float, score: float) -> None:
                done.append(trial_cell(lr, score))
                status.update(f"{doing}; trial {len(done)} done ({escape(', '.join(done[-3:]))})")

            result = lr_find(
                setup,
                on_trial=on_trial,
                num_iter=num_iter,
                start_lr=start_lr,
                end_lr=end_lr,
                seed=seed,
                seeds=seeds,
                trial_steps=trial_steps,
                record=record,
                runs_dir=runs_dir,
                sample=sample,
            )
    except SetupError as exc:
        _fail_unusable(exc)
    console.print(f"[bold]LR range test[/] of {escape(setup.name)}")
    console.print(escape(result.summary()), highlight=False)
    if result.findings:  # blocked by the static checks, as `check` is: say which, and stop
        for finding in result.findings:
            console.print(finding_panel(finding))
        if result.record_path is not None:
            console.print(f"run record: {escape(str(result.record_path))}", highlight=False)
        sys.exit(EXIT_FINDINGS)
    if not no_plot:
        result.plot(plot_path)
        console.print(f"plot written to {escape(plot_path)}")
    if json_path:
        Path(json_path).write_text(json.dumps(result.to_dict()))
        console.print(f"JSON written to {escape(json_path)}")
    if result.record_path is not None:
        console.print(f"run record: {escape(str(result.record_path))}", highlight=False)


# Training: `trainwise fit` (cli/fit.py), `trainwise ablate` (cli/ablate.py).
from trainwise.cli.ablate import ablate_command  # noqa: E402
from trainwise.cli.fit import fit_command  # noqa: E402

main.add_command(fit_command)
main.add_command(ablate_command)

# Sweeps: `trainwise sweep` (cli/sweep.py).
from trainwise.cli.sweep import sweep_command  # noqa: E402

main.add_command(sweep_command)

# Interpretation: `trainwise interpret` (cli/interpret.py).
from trainwise.cli.compress import compress_command  # noqa: E402
from trainwise.cli.interpret import interpret_command  # noqa: E402

main.add_command(interpret_command)
main.add_command(compress_command)

# Run records: `trainwise runs [show|diff]` and `trainwise report RUN` (cli/runs.py).
from trainwise.cli.runs import report_command, runs_group  # noqa: E402

main.add_command(runs_group)
main.add_command(report_command)


if __name__ == "__main__":
    main()
