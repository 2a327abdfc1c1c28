"""The run record's writer: one folder per command (check, watch, lr_find, ...), written as
the run goes. Its layout is declared in layout.py; store.py reads it back.

Every command records the same way: `recording(kind, ...)` opens a `Run` (or yields None when
recording is off or the folder cannot be written: the command itself goes on), and the block's
end sets the record's status.

Crash safety: the .jsonl files are appended and flushed line by line, so a crash keeps every
line up to it; files that are rewritten (run.json, findings.json, curves.json, report.json) are
written to a temporary file and renamed over the old one, so a reader never sees half a file.
run.json says "status": "running" from the first moment; a process killed before it finishes
leaves it so, and the reader shows such a record as "killed" once its process is gone.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainwise.errors import SetupError
from trainwise.runs.describe import describe_optimizer, host, plain, versions
from trainwise.runs.gitinfo import git_state
from trainwise.runs.layout import (
    ARTIFACTS,
    CURVES,
    DATA,
    DIFF_PATCH,
    FINDINGS,
    FORMAT,
    HISTOGRAMS,
    LAYERS,
    METRICS,
    REPORT_HTML,
    REPORT_JSON,
    RUN_JSON,
    TABLES,
    atomic_write,
    runs_root,
)
from trainwise.runs.summary import MetricSummary

log = logging.getLogger("trainwise")

HEARTBEAT_S = 10.0  # run.json is refreshed (summary so far) at most this often while logging
HISTOGRAM_BINS = 30


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@contextmanager
def recording(kind: str, enabled: bool = True, **options: Any) -> Iterator[Run | None]:
    """The one way a command records itself: yields the open Run, or None when `enabled` is
    false or the record cannot be opened (an unwritable runs folder warns once and the command
    goes on without one). The record's status follows the block's end (see Run.__exit__).

    options: those of `start` (name, config, optimizer, seed, device, root, mlflow, ...).
    """
    if not enabled:
        yield None
        return
    try:
        run = start(kind, **options)
    except Exception as exc:  # noqa: BLE001 - the record must never stop the command itself
        log.warning("trainwise: no run record for %s (%s); it goes on without one", kind, exc)
        yield None
        return
    with run:
        yield run


def start(
    kind: str,
    name: str | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    optimizer: Any = None,
    seed: int | None = None,
    device: str | None = None,
    root: str | os.PathLike | None = None,
    tensorboard: bool = True,
    html: bool = True,
    mlflow: str | None = None,
    code_dir: str | os.PathLike = ".",
) -> Run:
    """Open a new run record and return it; use it as a context manager so it is closed with
    the right status ("finished", "failed" on an exception, "interrupted" on Ctrl-C).

    kind:        "check", "watch" or "lr_find" (any short word is accepted)
    name:        the run's name, part of its folder name (default: the kind)
    config:      the settings to record and compare between runs (hyperparameters, model...)
    optimizer:   a torch optimizer: its class and every param group's settings go to config
    root:        the runs folder (default $TRAINWISE_RUNS_DIR, else ./trainwise-runs)
    tensorboard: also write TensorBoard event files into the run folder
    html:        write report.html when the run ends (`trainwise report RUN` builds it later)
    mlflow:      a tracking URI (e.g. "sqlite:///mlflow.db"): copy the record there at the end
    code_dir:    a folder inside the git repository whose commit and diff to record
    """
    if not isinstance(kind, str) or not re.fullmatch(r"[A-Za-z][\w-]*", kind):
        raise SetupError(f"runs.start(kind={kind!r}): expected a word like 'watch' or 'lr_find'")
    config = dict(config or {})
    if optimizer is not None:
        config["optimizer"] = describe_optimizer(optimizer)
    return Run(
        _new_run_dir(runs_root(root), name or kind),
        kind=kind,
        name=name or kind,
        config=config,
        seed=seed,
        device=device,
        tensorboard=tensorboard,
        html=html,
        mlflow=mlflow,
        code_dir=Path(code_dir),
    )


def _new_run_dir(root: Path, name: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:60] or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):  # two runs in the same second get -2, -3, ...
        path = root / (f"{stamp}-{slug}" if n == 1 else f"{stamp}-{slug}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise SetupError(f"{root}: could not create a new run folder for {name!r}")


class Run:
    """A run record being written. Every log_* call appends to disk at once.

    Errors of trainwise's own (a full disk, a TensorBoard failure) are logged as warnings and
    never raised into the training loop; a value that is not a number raises SetupError.
    """

    def __init__(
        self,
        path: Path,
        *,
        kind: str,
        name: str,
        config: dict[str, Any],
        seed: int | None,
        device: str | None,
        tensorboard: bool,
        html: bool,
        mlflow: str | None,
        code_dir: Path,
    ) -> None:
        self.path = path
        self.html = html
        self.id = path.name
        self.mlflow = mlflow
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._last_beat = 0.0
        self._summary = MetricSummary()
        self._findings: list[dict[str, Any]] = []
        self._curves: dict[str, Any] = {}
        self._tables: dict[str, Any] = {}
        self._closed = False
        self._warned: set[str] = set()
        git, patch = git_state(code_dir, exclude=[path.parent])
        if patch:
            (path / DIFF_PATCH).write_text(patch, encoding="utf-8")
        self.meta: dict[str, Any] = {
            "format": FORMAT,
            "id": self.id,
            "name": name,
            "kind": kind,
            "command": list(sys.argv),
            "cwd": os.getcwd(),
            "started": now_iso(),
            "ended": None,
            "status": "running",
            "error": None,
            "pid": os.getpid(),
            "host": host(),
            "git": git.to_dict(),
            "config": plain(config),
            "seed": seed,
            "device": device,
            "versions": versions(),
            "summary": {},
        }
        self._write_meta()
        self._metrics = open(path / METRICS, "a", encoding="utf-8")
        self._layers = open(path / LAYERS, "a", encoding="utf-8")
        self._histograms = open(path / HISTOGRAMS, "a", encoding="utf-8")
        self.tensorboard = None
        if tensorboard:
            from trainwise.runs.tensorboard import TensorBoardSink

            self.tensorboard = TensorBoardSink.open(path)

    # -- logging ----------------------------------------------------------------------------

    def log_metrics(self, step: int, values: Mapping[str, Any]) -> None:
        """Scalars at a step: {"train/loss": 0.31, "val/acc": 0.9, "lr": 1e-3, "grad_norm": 2.1}.

        Name validation metrics "val/..." (or "val_...") so the table finds the best one, and
        the training loss "train/loss" (or "loss").
        """
        row = {k: _number(k, v) for k, v in values.items()}
        line = {"step": int(step), "t": round(time.monotonic() - self._t0, 4), **row}
        self._append(self._metrics, line)
        self._summary.update(int(step), row)
        if self.tensorboard:
            self.tensorboard.scalars(int(step), row)
        self._heartbeat()

    def log_layers(self, step: int, signal: str, values: Mapping[str, Any]) -> None:
        """One per-layer signal at a step: log_layers(step, "grad_norm", {"conv1.weight": 0.2}).

        Signals the report draws as layer-by-step heatmaps: "grad_norm", "update_ratio" (or any
        other name); the layer order of the first call is kept.
        """
        row = {str(k): _number(f"{signal}[{k}]", v) for k, v in values.items()}
        line = {"step": int(step), "t": round(time.monotonic() - self._t0, 4)}
        self._append(self._layers, {**line, "signal": signal, "values": row})
        if self.tensorboard:
            self.tensorboard.scalars(int(step), {f"{signal}/{k}": v for k, v in row.items()})

    def log_histogram(self, step: int, name: str, values: Any, bins: int = HISTOGRAM_BINS) -> None:
        """The distribution of a tensor at a (sampled) step, e.g. a layer's activations.

        The histogram is computed here, once, with one device-to-host copy; the tensor is not
        kept. The report draws each name's histograms over steps as one picture.
        """
        from trainwise.runs.summary import histogram

        try:
            hist = histogram(values, bins)
        except (TypeError, ValueError) as exc:
            raise SetupError(f"log_histogram({name!r}): {exc}") from exc
        self._append(self._histograms, {"step": int(step), "name": name, **hist})
        if self.tensorboard:
            self.tensorboard.histogram(int(step), name, hist)

    def log_curve(
        self,
        name: str,
        x: Iterable[float],
        y: Iterable[float],
        *,
        xlabel: str = "x",
        ylabel: str = "y",
        xscale: str = "linear",
        yscale: str = "linear",
        marks: Mapping[str, float] | None = None,
        kind: str = "curve",
    ) -> None:
        """A whole curve at once, e.g. the LR range test:
        log_curve("lr_find", lrs, losses, xlabel="learning rate", ylabel="loss", xscale="log",
        marks={"suggested lr": 3e-3}, kind="lr_find"). marks are x positions drawn as lines."""
        xs, ys = [_number(f"{name}.x", v) for v in x], [_number(f"{name}.y", v) for v in y]
        if len(xs) != len(ys):
            raise SetupError(f"log_curve({name!r}): x has {len(xs)} points, y has {len(ys)}")
        self._curves[name] = {
            "x": xs,
            "y": ys,
            "xlabel": xlabel,
            "ylabel": ylabel,
            "xscale": xscale,
            "yscale": yscale,
            "marks": {k: _number(k, v) for k, v in (marks or {}).items()},
            "kind": kind,
        }
        self._guarded("curves", lambda: atomic_write(self.path / CURVES, _dumps(self._curves)))
        if self.tensorboard:
            self.tensorboard.curve(name, xs, ys, ylabel)

    def log_table(
        self, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = ""
    ) -> None:
        """A whole table at once (an ablation's tips, a sweep's trials), drawn as is in the
        report: log_table("ablation", ["tip", "with", ...], [["clipping", 0.97, ...]])."""
        columns = [str(c) for c in columns]
        table = [list(plain(list(row))) for row in rows]
        for i, row in enumerate(table):
            if len(row) != len(columns):
                raise SetupError(
                    f"log_table({name!r}): row {i} has {len(row)} cells for {len(columns)} columns"
                )
        self._tables[name] = {"columns": columns, "rows": table, "caption": caption}
        self._guarded("tables", lambda: atomic_write(self.path / TABLES, _dumps(self._tables)))

    def log_findings(self, findings: Iterable[Any]) -> None:
        """Findings (trainwise.Finding or their to_dict()); the same (rule, where, message) is
        kept once, the latest version of it (e.g. with its cause attributed at the end).
        findings.json is rewritten atomically."""
        at = {(f["rule"], str(f["where"]), f["message"]): i for i, f in enumerate(self._findings)}
        for f in findings:
            d = f.to_dict() if hasattr(f, "to_dict") else dict(f)
            key = (d.get("rule"), str(d.get("where")), d.get("message"))
            if key in at:
                self._findings[at[key]] = plain(d)
            else:
                at[key] = len(self._findings)
                self._findings.append(plain(d))
        self._guarded(
            "findings", lambda: atomic_write(self.path / FINDINGS, _dumps(self._findings))
        )
        self._heartbeat(force=True)

    def log_report(self, report: Any) -> None:
        """A check's Report: stages, verdict and findings."""
        data = report.to_dict()
        self._guarded("report", lambda: atomic_write(self.path / REPORT_JSON, _dumps(data)))
        self.meta["summary"]["verdict"] = data.get("verdict")
        self.log_findings(report.findings)

    def log_data(self, summary: Mapping[str, Any]) -> None:
        """A summary of the data the run used, for the report's data section:
        {"class_counts": {label: n}, "input_mean": [per channel], "input_std": [...],
         "input_shape": [...], "samples": n}. Written to data.json (atomic)."""
        data = plain(dict(summary))
        self._guarded("data", lambda: atomic_write(self.path / DATA, _dumps(data)))

    def log_config(self, **settings: Any) -> None:
        """Add settings to the recorded config (e.g. after the optimizer is built)."""
        self.meta["config"].update(plain(settings))
        self._heartbeat(force=True)

    def attach(self, name: str, content: str | bytes | os.PathLike) -> Path:
        """Keep a file with the record: text, bytes, or a path to copy. Returns its new path."""
        folder = self.path / ARTIFACTS
        folder.mkdir(exist_ok=True)
        target = folder / Path(name).name
        if isinstance(content, str):
            target.write_text(content, encoding="utf-8")
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            shutil.copyfile(content, target)
        return target

    # -- closing ----------------------------------------------------------------------------

    def finish(self, status: str = "finished", error: str | None = None) -> None:
        """Close the record: final status, summary, TensorBoard hparams and findings text,
        report.html, and the MLflow copy when asked. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for f in (self._metrics, self._layers, self._histograms):
            f.close()
        self.meta.update(status=status, error=error, ended=now_iso())
        self._write_meta()
        if self.tensorboard:
            self.tensorboard.finish(self.meta, self._findings)
        if self.html:
            from trainwise.report.html import write_html_report

            self._guarded(REPORT_HTML, lambda: write_html_report(self.path))
        if self.mlflow:
            from trainwise.runs.mlflow import export_run

            self._guarded("mlflow", lambda: export_run(self.path, self.mlflow))

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finish("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("interrupted", "KeyboardInterrupt")
        else:
            self.finish("failed", f"{exc_type.__name__}: {exc}")

    # -- internals --------------------------------------------------------------------------

    def _summary_dict(self) -> dict[str, Any]:
        counts = {s: 0 for s in ("error", "warning", "info")}
        for f in self._findings:
            counts[f.get("severity", "info")] = counts.get(f.get("severity", "info"), 0) + 1
        return {**self.meta["summary"], **self._summary.to_dict(), "findings": counts}

    def _write_meta(self) -> None:
        self.meta["summary"] = self._summary_dict()
        self._guarded("run.json", lambda: atomic_write(self.path / RUN_JSON, _dumps(self.meta)))
        self._last_beat = time.monotonic()

    def _heartbeat(self, force: bool = False) -> None:
        if force or time.monotonic() - self._last_beat > HEARTBEAT_S:
            self._write_meta()

    def _append(self, f: Any, line: dict[str, Any]) -> None:
        if self._closed:
            raise SetupError(f"run {self.id} is finished; log before finish() / inside `with`")

        def write() -> None:
            with self._lock:
                f.write(json.dumps(line) + "\n")
                f.flush()  # a crash keeps every line written so far

        self._guarded(os.path.basename(f.name), write)

    def _guarded(self, what: str, action: Any) -> None:
        """Run a write; on an OS error, warn once and go on: the user's training comes first."""
        try:
            action()
        except (OSError, ValueError) as exc:
            if what not in self._warned:
                self._warned.add(what)
                log.warning("trainwise: could not write %s of run %s: %s", what, self.id, exc)


def _number(name: str, value: Any) -> float | int:
    """A plain Python number from an int, float, 0-d tensor or numpy scalar (NaN/Inf kept)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    try:
        if hasattr(value, "numel") and value.numel() != 1:
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise SetupError(
            f"run metric {name!r} is {type(value).__name__} {str(value)[:40]!r}; expected a "
            "number (int, float, 0-d tensor)"
        ) from None


def _dumps(data: Any) -> str:
    # NaN/Inf are kept as JSON's common extension (Python's json reads them back).
    return json.dumps(data, indent=1)
