"""The run record's folder, declared once: where records go and what each file is called.

The writer (record.py), the reader (store.py), the report and the MLflow copy all name files
through these constants, so the layout has one source. This module imports nothing of trainwise:
the reader and the report depend on it without depending on the writer.

    <root>/<YYYYmmdd-HHMMSS>-<name>/
        run.json          what ran: kind, command, times, status, git, config, versions, host,
                          device, seed, summary (final and best metrics, finding counts)
        diff.patch        uncommitted changes incl. untracked source files (in a git repository)
        metrics.jsonl     one line per log_metrics call: {"step", "t", "<name>": value, ...}
        layers.jsonl      one line per log_layers call: {"step", "t", "signal", "values": {layer: v}}
        histograms.jsonl  one line per log_histogram call: {"step", "name", "edges", "counts", ...}
        data.json         a summary of the data: class counts, input statistics
        curves.json       named x/y curves (the LR range test): {name: {"x", "y", "xlabel", ...}}
        tables.json       named tables (an ablation): {name: {"columns", "rows", "caption"}}
        findings.json     [Finding.to_dict(), ...]
        report.json       a check's Report.to_dict() (stages, verdict), when one was logged
        artifacts/        files attached with run.attach()
        events.out.tfevents.*  TensorBoard (scalars, histograms, hparams, findings as text)
        report.html       the self-contained HTML report, written when the run ends
"""

from __future__ import annotations

import os
from pathlib import Path

FORMAT = "trainwise-run/1"
RUNS_DIR_ENV = "TRAINWISE_RUNS_DIR"
DEFAULT_ROOT = "trainwise-runs"

RUN_JSON = "run.json"
DIFF_PATCH = "diff.patch"
METRICS = "metrics.jsonl"
LAYERS = "layers.jsonl"
HISTOGRAMS = "histograms.jsonl"
DATA = "data.json"
CURVES = "curves.json"
TABLES = "tables.json"
FINDINGS = "findings.json"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
ARTIFACTS = "artifacts"


def runs_root(root: str | os.PathLike | None = None) -> Path:
    """Where records go: `root` if given, else $TRAINWISE_RUNS_DIR, else ./trainwise-runs."""
    return Path(root or os.environ.get(RUNS_DIR_ENV) or DEFAULT_ROOT)


def atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename it over `path` (atomic on
    POSIX and Windows): a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
