"""Copy a run record to MLflow: params (the flattened config), metrics with their steps,
tags (kind, status, git commit/branch/dirty), and the record's files as artifacts.

Needs the optional extra: `pip install "trainwise[mlflow]"` (the MLflow client, plus SQLAlchemy
and Alembic for a local `sqlite:///mlflow.db` store). Uses MlflowClient, not the fluent API,
so a run the user has open in MLflow is left alone.
"""

from __future__ import annotations

import os
from typing import Any

from trainwise.errors import SetupError
from trainwise.runs.describe import flatten
from trainwise.runs.layout import (
    CURVES,
    DIFF_PATCH,
    FINDINGS,
    METRICS,
    REPORT_HTML,
    REPORT_JSON,
    RUN_JSON,
)
from trainwise.runs.store import RunRecord

EXPERIMENT = "trainwise"
ARTIFACTS = (RUN_JSON, FINDINGS, REPORT_JSON, CURVES, DIFF_PATCH, REPORT_HTML, METRICS)
BATCH = 1000  # MLflow's limit of metrics per log_batch call
MAX_PARAM_CHARS = 6000  # MLflow's limit for a param value


def export_run(path: str | os.PathLike, tracking_uri: str, experiment: str = EXPERIMENT) -> str:
    """Log the record at `path` as a new MLflow run; returns the MLflow run id."""
    try:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise SetupError(
            'MLflow export needs the mlflow extra: pip install "trainwise[mlflow]"'
        ) from None
    record = RunRecord.load(path)
    meta = record.meta
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    git = meta.get("git") or {}
    tags = {
        "mlflow.runName": record.id,
        "trainwise.kind": meta.get("kind"),
        "trainwise.status": record.status,
        "mlflow.source.git.commit": git.get("commit"),
        "trainwise.git.branch": git.get("branch"),
        "trainwise.git.dirty": git.get("dirty"),
        "trainwise.verdict": (meta.get("summary") or {}).get("verdict"),
    }
    run = client.create_run(
        experiment_id, tags={k: str(v) for k, v in tags.items() if v is not None}
    )
    run_id = run.info.run_id
    params = [
        Param(k[:250], str(v)[:MAX_PARAM_CHARS])
        for k, v in flatten({**(meta.get("config") or {}), "seed": meta.get("seed")}).items()
    ]
    for i in range(0, len(params), 100):  # MLflow's limit of params per batch
        client.log_batch(run_id, params=params[i : i + 100])
    metrics = list(_metrics(record))
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])
    for name in ARTIFACTS:
        if (record.path / name).is_file():
            client.log_artifact(run_id, str(record.path / name))
    if (record.path / "artifacts").is_dir():
        client.log_artifacts(run_id, str(record.path / "artifacts"), "artifacts")
    status = "FINISHED" if record.status == "finished" else "FAILED"
    client.set_terminated(run_id, status=status)
    return run_id


def _metrics(record: RunRecord) -> Any:
    from mlflow.entities import Metric

    started = _epoch_ms(record.meta.get("started"))
    for row in record.metrics:
        at = started + int(1000 * row.get("t", 0.0))
        for key, value in row.items():
            if key not in ("step", "t"):
                yield Metric(_key(key), float(value), at, int(row["step"]))
    for row in record.layers:
        at = started + int(1000 * row.get("t", 0.0))
        for layer, value in row["values"].items():
            yield Metric(_key(f"{row['signal']}/{layer}"), float(value), at, int(row["step"]))


def _key(name: str) -> str:
    # MLflow names allow alphanumerics, _ - . space / only.
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)[:250]


def _epoch_ms(iso: str | None) -> int:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000) if iso else 0
    except ValueError:
        return 0


__all__ = ["export_run"]
