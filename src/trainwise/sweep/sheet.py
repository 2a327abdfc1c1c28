"""The sheet of a sweep: one row per trial (number, state, params, value, steps, record, why),
as plain data for `trainwise runs --sweep NAME`, its CSV and markdown exports, and the
report; plus the parameter importances Optuna computes (optuna.importance, fANOVA by default).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from trainwise.sweep.result import TrialRow, best_row

COLUMNS = ("trial", "state", "value", "steps", "params", "record", "why")


def open_sheet(study: str, storage: str | None, root: str | None) -> tuple[list[TrialRow], str]:
    """(the trials of `study`, the storage they were read from). The storage: `storage`, else
    the one the latest sweep record of that study names, else the runs folder's SQLite file."""
    import optuna

    from trainwise.errors import SetupError
    from trainwise.runs.layout import runs_root
    from trainwise.runs.store import list_runs
    from trainwise.sweep.result import trial_rows
    from trainwise.sweep.storage import open_storage, resolve
    from trainwise.sweep.worker import quiet_optuna

    quiet_optuna()
    if storage is None:
        records = [r for r in list_runs(root) if r.meta.get("kind") == "sweep"
                   and ((r.meta.get("config") or {}).get("sweep") or {}).get("study") == study]
        if records:
            storage = records[-1].meta["config"]["sweep"]["storage"]
    spec = resolve(storage, runs_root(root))
    if spec.kind == "sqlite" and not Path(spec.url.split("///", 1)[-1]).is_file():
        raise SetupError(f"no sweep {study!r}: {spec.shown} does not exist (give --root, or "
                         "--storage URL for a sweep stored elsewhere)")
    try:
        found = optuna.load_study(study_name=study, storage=open_storage(spec, heartbeat=False))
    except KeyError:
        names = optuna.get_all_study_names(open_storage(spec, heartbeat=False))
        raise SetupError(f"no sweep {study!r} in {spec.shown}; its studies: "
                         f"{', '.join(names) or 'none'}") from None
    return trial_rows(found), spec.shown


def importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances (fraction of the value's variance each explains); {}
    with fewer than 2 complete trials or a single parameter value, where it is undefined."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]  # fmt: skip
    if len(complete) < 2:
        return {}
    try:
        found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}
    return {k: float(v) for k, v in found.items() if math.isfinite(v)}


def sheet_data(study_name: str, storage: str, rows: list[TrialRow], space: dict[str, str],
               settings: dict[str, Any], found: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    """Everything the report draws, as JSON-ready data (the sweep record's sheet.json)."""
    best = best_row(rows)
    return {
        "study": study_name,
        "storage": storage,
        "space": space,
        "settings": settings,
        "best": best.number if best else None,
        "importances": found,
        "trials": [{**r.to_dict(), "curve": [list(p) for p in r.curve], "last": r.last,
                    "unread": list(r.unread)} for r in rows],  # fmt: skip
    }


def display_rows(rows: list[TrialRow]) -> list[dict[str, str]]:
    best = best_row(rows)
    shown = []
    for r in rows:
        shown.append({
            "trial": str(r.number) + (" *" if best is not None and r is best else ""),
            "state": r.state,
            "value": _num(r.value if r.value is not None else r.last),
            "steps": "" if r.steps is None else str(r.steps),
            "params": params_text(r.params),
            "record": Path(r.record).name if r.record else "",
            "why": r.why or "",
        })  # fmt: skip
    return shown


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_num(v)}" for k, v in params.items())


def to_markdown(rows: list[TrialRow]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in display_rows(rows):
        lines.append("| " + " | ".join(r[c].replace("|", "\\|") for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[TrialRow]) -> str:
    """Every column in full, one column per parameter (for a spreadsheet)."""
    names = list(dict.fromkeys(k for r in rows for k in r.params))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial", "state", "value", "last_val_loss", "steps", *names, "record", "why"])
    for r in rows:
        writer.writerow([r.number, r.state, _raw(r.value), _raw(r.last), _raw(r.steps),
                         *(_raw(r.params.get(n)) for n in names), r.record or "", r.why or ""])  # fmt: skip
    return out.getvalue()


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _raw(value: Any) -> str:
    return "" if value is None else str(value)
