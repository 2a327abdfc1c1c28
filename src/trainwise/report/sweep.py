"""The HTML report of a sweep record: the best trial, the pictures (sweep_plots.py), and the
sheet with each pruned trial's reason. It reads the record's sheet.json (written by
trainwise.sweep.record) and draws; it computes nothing."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from string import Template
from typing import Any

from trainwise.report import sweep_plots
from trainwise.runs.layout import REPORT_HTML, atomic_write

TEMPLATE = Path(__file__).with_name("template.html")
SHEET_JSON = "sheet.json"


def write_sweep_report(run_dir: str | os.PathLike) -> Path:
    folder = Path(run_dir)
    sheet = json.loads((folder / SHEET_JSON).read_text(encoding="utf-8"))
    out = folder / REPORT_HTML
    atomic_write(out, render(sheet, folder.name))
    return out


def render(sheet: dict[str, Any], run_id: str) -> str:
    trials = sheet["trials"]
    figures = [sweep_plots.history(trials), sweep_plots.curves(trials, sheet["best"])]
    if sheet.get("importances"):
        figures.append(sweep_plots.importances(sheet["importances"]))
    if sheet.get("space") and any(t["state"] == "complete" for t in trials):
        figures.append(sweep_plots.parallel(trials, sheet["space"]))
    pictures = "".join(f'<figure><img src="{uri}" alt="sweep plot"></figure>' for uri in figures)
    body = (
        _header(sheet)
        + f'<section id="plots"><h2>Plots</h2><div class="grid">{pictures}</div></section>'
        + f'<section id="sheet"><h2>Trials</h2>{_sheet(trials, sheet["best"])}</section>'
        + f'<section id="settings"><h2>Settings</h2>{_settings(sheet)}</section>'
        + f"<footer>trainwise · {_e(run_id)} · `trainwise runs --sweep {_e(sheet['study'])}` "
        "prints the sheet</footer>"
    )
    title = f"trainwise sweep: {sheet['study']}"
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(title=_e(title), body=body)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else _e(value)


def _header(sheet: dict[str, Any]) -> str:
    trials = sheet["trials"]
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    best = next((t for t in trials if t["number"] == sheet["best"]), None)
    if best is not None:
        params = ", ".join(f"{k}={_num(v)}" for k, v in best["params"].items())
        line = (f'<span class="verdict ok">best: trial {best["number"]}, val loss '
                f'{_num(best["value"])}</span><span class="chip">{_e(params)}</span>')  # fmt: skip
    else:
        line = '<span class="verdict bad">no trial completed</span>'
    chips = "".join(f'<span class="chip">{n} {_e(s)}</span>' for s, n in sorted(counts.items()))
    return (
        '<header class="top"><div class="kicker">trainwise · sweep</div>'
        f"<h1>{_e(sheet['study'])}</h1><div class=\"verdict-row\">{line}{chips}</div>"
        f'<p class="note">storage {_e(sheet["storage"])}</p></header>'
    )


def _sheet(trials: list[dict[str, Any]], best: int | None) -> str:
    names = list(dict.fromkeys(k for t in trials for k in t["params"]))
    head = "".join(f"<th>{_e(h)}</th>" for h in
                   ["trial", "state", "val loss", "steps", *names, "why", "record"])  # fmt: skip
    rows = []
    for t in trials:
        value = t["value"] if t["value"] is not None else t.get("last")
        cells = [
            f"{t['number']}{' ★' if t['number'] == best else ''}", t["state"], _num(value),
            _e(t["steps"]), *(_num(t["params"].get(n)) for n in names), _e(t.get("why") or ""),
            _e(Path(t["record"]).name if t.get("record") else ""),
        ]  # fmt: skip
        cls = ' class="status fail"' if t["state"] == "pruned" else ""
        rows.append("<tr>" + "".join(f"<td{cls if i == 1 else ''}>{c}</td>"
                                     for i, c in enumerate(cells)) + "</tr>")  # fmt: skip
    note = ('<p class="lede">val loss: the best whole-validation-set loss of a complete trial; '
            "for a pruned one, the last validation loss it reported before the pruner cut it "
            "(why says where and against what).</p>")  # fmt: skip
    return note + f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _settings(sheet: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(json.dumps(v) if not isinstance(v, str) else v)}"
                   "</td></tr>" for k, v in (sheet.get("settings") or {}).items())  # fmt: skip
    return f'<table class="kv">{rows}</table>'
