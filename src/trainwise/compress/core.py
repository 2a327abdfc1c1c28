"""`tw.compress`: a trained model's compressed variants, each measured on this machine against
the original: size on disk, weights stored, CPU latency (batch 1 and the setup's batch),
the validation metric and its change, and where the variant is saved.

    result = tw.compress(setup, checkpoint="best.pt", methods=["dynamic-int8", "prune:0.5"])
    result = tw.compress_run("3")                   # a fit run: its setup and best checkpoint
    model = tw.load_variant(setup, "RUN/compress/dynamic-int8.pt")

Each variant is saved as a state dict (`torch.save`), beside compress.json (the table and
each variant's method); `load_variant` builds the variant's structure from the setup's model
and loads it. A method that does not apply is listed as skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import trainwise.compress.measure as measure
import trainwise.compress.variants as variants
from trainwise.compress.methods import DEFAULT, parse, parse_all
from trainwise.compress.quantize import NotApplicable
from trainwise.errors import SetupError
from trainwise.spec import Setup

MANIFEST = "compress.json"
FOLDER = "compress"  # inside a fit run's folder
DEFAULT_FINETUNE_EPOCHS = 2
DEFAULT_DISTILL_EPOCHS = 10  # when the run's own length is unknown


@dataclass
class Row:
    """One line of the table: the original or a variant."""

    method: str
    size_bytes: int
    params: int
    nonzero_params: int
    latency_ms_b1: float
    latency_ms_batch: float
    latency_iqr_b1: list[float]
    latency_iqr_batch: list[float]
    metric_name: str
    metric: float | None
    delta: float | None
    path: str | None
    note: str = ""


@dataclass
class CompressResult:
    original: Row
    variants: list[Row]
    skipped: list[dict[str, str]]  # [{"method", "reason"}]
    batch_size: int
    threads: int
    folder: Path | None
    source: str
    lower_is_better: bool
    notes: list[str] = field(default_factory=list)
    report: Path | None = None  # compress.html

    def to_dict(self) -> dict[str, Any]:
        """The --json contract: original, variants (method, size_bytes, params, latency_ms_b1,
        latency_ms_batch, metric_name, metric, delta, path, ...), skipped, and how it was
        measured."""
        return {
            "source": self.source,
            "original": dataclasses.asdict(self.original),
            "variants": [dataclasses.asdict(v) for v in self.variants],
            "skipped": self.skipped,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "device": "cpu",
            "lower_is_better": self.lower_is_better,
            "notes": self.notes,
        }


def compress(setup: Setup, checkpoint: str | Path | None = None, methods: Any = DEFAULT, *,
             model: nn.Module | None = None, folder: str | Path | None = None, recipe: Any = None,
             finetune_epochs: int = DEFAULT_FINETUNE_EPOCHS,
             distill_epochs: int = DEFAULT_DISTILL_EPOCHS, seed: int = 0,
             source: str | None = None, progress: Any = None) -> CompressResult:  # fmt: skip
    """Compress the setup's model with `checkpoint`'s weights (or the trained `model`) by each
    method, measure every variant against it on the CPU and save them in `folder` (default:
    ./compress, or the run's compress/ folder). Validation is the setup's validation set, or
    fit's held-out 20% (seed `seed`) when it has none."""
    from trainwise.context import StaticContext
    from trainwise.train.data import with_validation

    chosen = parse_all(list(methods))
    setup, note = with_validation(setup, seed)
    notes = [note] if note else []
    original = _original(setup, checkpoint, model)
    cpu = dataclasses.replace(setup, device="cpu")
    ctx = StaticContext(cpu, seed=seed)
    task, num_classes = ctx.task, ctx.num_classes
    example = _first_val_input(cpu)
    plan = variants.Plan(setup, task, recipe, finetune_epochs, distill_epochs, seed)
    out = Path(folder) if folder is not None else Path(FOLDER)
    out.mkdir(parents=True, exist_ok=True)

    built: dict[str, tuple[nn.Module, str, Path]] = {}
    skipped = []
    done: dict[str, Any] = {}  # chains' shared first steps, built once
    for method in chosen:
        _say(progress, f"{method.spec}: building")
        try:
            variant, how = variants.build(method, original, plan, example, done)
        except NotApplicable as exc:
            skipped.append({"method": method.spec, "reason": str(exc)})
            continue
        path = out / f"{method.slug}.pt"
        torch.save(variant.state_dict(), path)
        built[method.spec] = (variant, how, path)

    _say(progress, "measuring latency")
    models = {"original": original, **{spec: v[0] for spec, v in built.items()}}
    b1 = measure.latencies(models, _first_samples(example, 1), cpu.call_model)
    bn = measure.latencies(models, example, cpu.call_model)  # the first validation batch
    _say(progress, "evaluating")
    name = measure.metric_of(task)

    def metric(model: nn.Module) -> float | None:
        return measure.evaluate(cpu, model, task, num_classes).get(name)

    base = metric(original)

    def row(spec: str, model: nn.Module, value: float | None, size: int, path: Path | None,
            how: str) -> Row:  # fmt: skip
        params, nonzero = measure.param_counts(model)
        delta = value - base if value is not None and base is not None else None
        return Row(spec, size, params, nonzero, b1[spec].median_ms, bn[spec].median_ms,
                   [b1[spec].q25_ms, b1[spec].q75_ms], [bn[spec].q25_ms, bn[spec].q75_ms],
                   name, value, delta, str(path) if path else None, how)  # fmt: skip

    # the original's size: its state dict as torch.save writes it, as each variant's is
    first = row("original", original, base, _saved_size(original), _path(checkpoint), "as trained")
    rows = [row(spec, v, metric(v), measure.size_bytes(p), p, how)
            for spec, (v, how, p) in built.items()]  # fmt: skip
    result = CompressResult(first, rows, skipped, _batch_size(example), torch.get_num_threads(),
                            out, source or setup.name, name in measure.LOWER_IS_BETTER,
                            notes)  # fmt: skip
    (out / MANIFEST).write_text(json.dumps(result.to_dict(), indent=1, default=str))
    _say(progress, "drawing the report")
    from trainwise.report.compress_html import write_compress_html

    result.report = write_compress_html(result.to_dict(), out)
    return result


def compress_run(ref: str, methods: Any = DEFAULT, *, root: str | None = None,
                 finetune_epochs: int = DEFAULT_FINETUNE_EPOCHS, distill_epochs: int | None = None,
                 folder: str | Path | None = None, progress: Any = None) -> CompressResult:  # fmt: skip
    """A fit run (number, id, name or folder): its setup file, its best checkpoint, its recipe
    and length; the variants go to the run's compress/ folder."""
    from trainwise.interpret.sources import of_run

    subject = of_run(ref, "val", root, command="compress")
    return compress(
        subject.setup, model=subject.model, methods=methods, folder=folder or subject.folder / FOLDER,
        recipe=subject.recipe, finetune_epochs=finetune_epochs,
        distill_epochs=distill_epochs or subject.epochs or DEFAULT_DISTILL_EPOCHS,
        source=subject.source, progress=progress, checkpoint=subject.folder / "checkpoints" / "best.pt",
    )  # fmt: skip


def load_variant(setup: Setup, path: str | Path, method: str | None = None) -> nn.Module:
    """The saved variant at `path` as a CPU module in eval mode: its structure built from the
    setup's model for its method (read from the compress.json beside it when not given)."""
    path = Path(path)
    if not path.is_file():
        raise SetupError(f"load_variant: {path}: no such file")
    spec = method or _method_of(path)
    cpu = dataclasses.replace(setup, device="cpu")
    model = variants.structure(parse(spec), cpu.build_model(), cpu, _first_val_input(cpu))
    # Quantized GRU/LSTM weights are packed in torch.ScriptObjects: allowed here, for files
    # compress wrote (a registered torch class's state, no arbitrary code).
    with torch.serialization.safe_globals([torch.ScriptObject]):
        state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SetupError(f"{path} does not match the setup's model as {spec} makes it ({exc})"
                         ) from exc  # fmt: skip
    return model.eval()


def _method_of(path: Path) -> str:
    manifest = path.parent / MANIFEST
    if not manifest.is_file():
        raise SetupError(f"load_variant: no {MANIFEST} beside {path}; give method=")
    for row in json.loads(manifest.read_text()).get("variants", []):
        if row.get("path") and Path(row["path"]).name == path.name:
            return row["method"]
    raise SetupError(f"load_variant: {path.name} is not listed in {manifest}; give method=")


def _original(setup: Setup, checkpoint: Any, model: nn.Module | None) -> nn.Module:
    from trainwise.interpret.sources import load_checkpoint

    if model is not None:
        return _cpu_copy(model)
    if checkpoint is None:
        raise SetupError("compress: give the trained weights: checkpoint= (a state dict) or "
                         "model=")  # fmt: skip
    built = setup.build_model().cpu()
    load_checkpoint(built, checkpoint)
    return built.eval()


def _cpu_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).cpu().eval()


def _first_val_input(setup: Setup) -> Any:
    from trainwise.train.loop import _on_device

    loader = setup.val_loader()
    if loader is None:
        raise SetupError("compress: the setup has no validation data to measure on")
    return _on_device(setup, next(iter(loader)), 0, "val")[0]


def _first_samples(x: Any, n: int) -> Any:
    """The first n samples of a batch input (tensors, tuples, lists, dicts of them)."""
    if isinstance(x, torch.Tensor):
        return x[:n]
    if isinstance(x, (tuple, list)):
        return type(x)(_first_samples(v, n) for v in x)
    if isinstance(x, dict):
        return {k: _first_samples(v, n) for k, v in x.items()}
    if dataclasses.is_dataclass(x):
        return dataclasses.replace(x, **{f.name: _first_samples(getattr(x, f.name), n)
                                         for f in dataclasses.fields(x)})  # fmt: skip
    return x


def _batch_size(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return len(x)
    values = x.values() if isinstance(x, dict) else x if isinstance(x, (tuple, list)) else []
    for v in values:
        return _batch_size(v)
    return 1


def _saved_size(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def _path(checkpoint: Any) -> Path | None:
    return Path(checkpoint) if checkpoint is not None else None


def _say(progress: Any, text: str) -> None:
    if progress is not None:
        progress(text)
