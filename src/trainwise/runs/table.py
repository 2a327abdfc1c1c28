"""The table of runs (the "spreadsheet of versions and results"), and its CSV/markdown export.

One row per run, oldest first. "changed" lists the settings that differ from the previous run
of the same kind, so the table reads as a log of experiments: what was tried, and what came of
it.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime
from typing import Any

from trainwise.runs.describe import flatten
from trainwise.runs.store import RunRecord
from trainwise.runs.summary import TRAIN_LOSS_KEYS, lower_is_better

COLUMNS = ("#", "run", "date", "kind", "commit", "changed", "result", "train loss", "found",
           "status")  # fmt: skip
MAX_CHANGES_SHOWN = 3


def table_rows(runs: list[RunRecord]) -> list[dict[str, Any]]:
    rows = []
    previous: dict[str, dict[str, Any]] = {}  # kind -> flat config of the last run of that kind
    for number, run in enumerate(runs, start=1):
        meta = run.meta
        kind = meta.get("kind", "?")
        config = flatten(meta.get("config") or {})
        changed = changed_settings(previous.get(kind), config)
        previous[kind] = config
        summary = run.summary
        best_key, best = primary_validation(summary)
        lr_find = summary.get("lr_find") or {}
        git = meta.get("git") or {}
        counts = summary.get("findings") or {}
        rows.append(
            {
                "number": number,
                "id": run.id,
                "name": meta.get("name"),
                "started": meta.get("started"),
                "kind": kind,
                "commit": (git.get("commit") or "")[:7],
                "dirty": bool(git.get("dirty")),
                "changed": changed,
                "best_val_metric": best_key,
                "best_val": best,
                # A range test's last loss is the diverged end of its sweep, not a training
                # loss: its result is the LR it suggests.
                "train_loss": None if kind == "lr_find" else train_loss(summary),
                "suggested_lr": lr_find.get("suggested_lr"),
                "errors": counts.get("error", 0),
                "warnings": counts.get("warning", 0),
                "infos": counts.get("info", 0),
                "verdict": summary.get("verdict"),
                "status": run.status,
            }
        )
    return rows


def changed_settings(
    before: dict[str, Any] | None, after: dict[str, Any]
) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for each setting that differs; [] for the first run of its kind."""
    if before is None:
        return []
    keys = list(dict.fromkeys([*before, *after]))
    return [(k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)]


def primary_validation(summary: dict[str, Any]) -> tuple[str | None, float | None]:
    """The validation metric a run is judged by: the first one that is not a loss (accuracy,
    F1...), else the validation loss; with its best value."""
    best = summary.get("best") or {}
    if not best:
        return None, None
    key = next((k for k in best if not lower_is_better(k)), next(iter(best)))
    return key, best[key]["value"]


def train_loss(summary: dict[str, Any]) -> float | None:
    final = summary.get("final") or {}
    return next((final[k] for k in TRAIN_LOSS_KEYS if k in final), None)


# -- display ---------------------------------------------------------------------------------


def display_row(row: dict[str, Any]) -> dict[str, str]:
    """The row as the terminal and markdown show it: short, human values."""
    return {
        "#": str(row["number"]),
        "run": _short_id(row["id"]),
        "date": _date(row["started"]),
        "kind": row["kind"],
        "commit": (row["commit"] or "-") + ("*" if row["dirty"] else ""),
        "changed": _changes(row["changed"]),
        "result": _result(row),
        "train loss": fmt(row["train_loss"]),
        "found": _found(row),
        "status": row["status"],
    }


def to_markdown(rows: list[dict[str, Any]]) -> str:
    shown = [display_row(r) for r in rows]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in shown:
        cells = [str(r[c]).replace("|", "\\|") for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("number", "id", "name", "started", "kind", "commit", "dirty", "changed",
              "best_val_metric", "best_val", "train_loss", "suggested_lr", "errors", "warnings",
              "infos", "verdict", "status")  # fmt: skip


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = {k: row[k] for k in CSV_FIELDS}
        flat["changed"] = "; ".join(f"{k}: {a} -> {b}" for k, a, b in row["changed"])
        writer.writerow(flat)
    return out.getvalue()


def _result(row: dict[str, Any]) -> str:
    """What the run came to: its best validation metric, or the LR a range test suggests."""
    if row["best_val_metric"]:
        return f"{row['best_val_metric']} {fmt(row['best_val'])}"
    if row["suggested_lr"] is not None:
        return f"lr {row['suggested_lr']:.2g} (suggested)"
    return ""


def _short_id(run_id: str) -> str:
    """20261122-112502-my-run -> my-run: the date has its own column."""
    parts = run_id.split("-", 2)
    stamped = len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit()
    return parts[2] if stamped else run_id


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def _date(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _changes(changed: list[tuple[str, Any, Any]]) -> str:
    if not changed:
        return ""
    shown = [f"{short_key(k)}={fmt(new)}" for k, _, new in changed[:MAX_CHANGES_SHOWN]]
    more = len(changed) - MAX_CHANGES_SHOWN
    return ", ".join(shown) + (f" +{more} more" if more > 0 else "")


def short_key(key: str) -> str:
    """optimizer.param_groups.0.lr -> lr; the readable last part of a flattened key."""
    parts = key.split(".")
    if len(parts) >= 3 and parts[-3] == "param_groups" and parts[-2] != "0":
        return f"{parts[-1]}[group {parts[-2]}]"
    return parts[-1]


def _found(row: dict[str, Any]) -> str:
    parts = [
        f"{row[k]} {label}" for k, label in (("errors", "err"), ("warnings", "warn")) if row[k]
    ]
    return ", ".join(parts) or "-"
