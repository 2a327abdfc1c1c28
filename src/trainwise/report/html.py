"""The self-contained HTML report of a run record: one file with inline CSS and inline PNG
plots, readable offline and shareable. No script runs in the page.

`write_html_report(run_dir)` (called when a run finishes, and by `trainwise report RUN`)
gathers the page's plain data with report/page.py (the shapes it reads are documented there)
and draws it here. Every section is optional: one without data is left out, so the same page
serves a check, a watch and an LR range test.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from string import Template
from typing import Any

from trainwise.report import plots
from trainwise.report.page import build_page
from trainwise.runs.layout import REPORT_HTML, atomic_write
from trainwise.runs.store import RunRecord

TEMPLATE = Path(__file__).with_name("template.html")
KIND_TITLES = {"check": "check report", "watch": "training watch", "lr_find": "LR range test"}
MAX_CONFIG_ROWS = 200


def write_html_report(run_dir: str | os.PathLike) -> Path:
    """(Re)build run_dir/report.html from the record; returns its path."""
    record = RunRecord.load(run_dir)
    out = record.path / REPORT_HTML
    atomic_write(out, render_html(build_page(record)))
    return out


def render_html(page: dict[str, Any]) -> str:
    sections = [
        ("findings", "Findings", _findings(page)),
        ("stages", "Stages", _stages(page)),
        ("tables", "Tables", _tables(page)),
        ("curves", "Training curves", _curves(page)),
        ("lr", "Learning rate", _lr(page)),
        ("layers", "Per-layer signals", _heatmaps(page)),
        ("activations", "Activations over time", _histograms(page)),
        ("data", "Data", _data(page)),
        ("setup", "Settings and environment", _settings(page)),
    ]
    shown = [(anchor, title, body) for anchor, title, body in sections if body]
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t, _ in shown)
    body = (
        _header(page)
        + f"<nav>{nav}</nav>"
        + "".join(f'<section id="{a}"><h2>{_e(t)}</h2>{b}</section>' for a, t, b in shown)
    )
    body += f"<footer>trainwise · {_e(page['id'])} · rebuild with <code>trainwise report {_e(page['id'])}</code></footer>"
    title = f"trainwise {KIND_TITLES.get(page['kind'], page['kind'])}: {page['name']}"
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(title=_e(title), body=body)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e(value)


def _img(uri: str, alt: str, cls: str = "") -> str:
    return f'<img src="{uri}" alt="{_e(alt)}"' + (f' class="{cls}"' if cls else "") + ">"


# -- header ------------------------------------------------------------------------------------


def _header(page: dict[str, Any]) -> str:
    kind = KIND_TITLES.get(page["kind"], page["kind"] or "run")
    verdict = page["verdict"]
    if verdict:
        cls = "ok" if verdict == "ready to train" else "bad"
        badge = f'<span class="verdict {cls}">{_e(verdict.capitalize())}</span>'
    else:
        badge = f'<span class="verdict neutral">{_e(page["status"])}</span>'
    counts = page["counts"]
    chips = "".join(
        f'<span class="chip {s if counts.get(s) else ""}">{counts.get(s, 0)} {s}{"" if counts.get(s) == 1 else "s"}</span>'
        for s in ("error", "warning", "info")
    )
    git = page["git"]
    commit = (git.get("commit") or "")[:10] or "not in git"
    if git.get("branch"):
        commit += f" on {git['branch']}"
    if git.get("dirty"):
        commit += " + uncommitted changes" + (" (diff.patch)" if page["has_patch"] else "")
    versions = page["versions"]
    meta = [
        ("status", page["status"] + (f": {page['error']}" if page.get("error") else "")),
        ("started", (page["started"] or "")[:19].replace("T", " ") + " UTC"),
        ("duration", f"{page['duration_s']:.1f} s" if page["duration_s"] is not None else "—"),
        ("commit", commit),
        ("host", page["host"]),
        ("device", page["device"] or "—"),
        ("seed", page["seed"] if page["seed"] is not None else "—"),
        ("torch · python", f"{versions.get('torch', '?')} · {versions.get('python', '?')}"),
    ]
    grid = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in meta)
    return (
        f'<header class="top"><div class="kicker">trainwise · {_e(kind)}</div>'
        f"<h1>{_e(page['name'])}</h1>"
        f'<div class="verdict-row">{badge}{chips}</div><dl class="meta">{grid}</dl></header>'
    )


# -- sections ----------------------------------------------------------------------------------


def _findings(page: dict[str, Any]) -> str:
    if not page["findings"]:
        return (
            '<p class="empty">No findings: nothing trainwise checks for went wrong.</p>'
            if page["verdict"]
            else ""
        )
    cards = []
    for f in page["findings"]:
        consequences = f.get("consequences") or []
        folded = (
            f"<details><summary>+ {len(consequences)} consequence(s): {_e(f.get('why', ''))}"
            f"</summary>{''.join(_finding_card(c) for c in consequences)}</details>"
            if consequences
            else ""
        )
        cards.append(_finding_card(f, folded))
    return (
        '<p class="lede">Root causes, worst first; the findings each one explains are folded '
        "under it (fix the cause first). Each names what was measured, where, and what to "
        "change; <code>trainwise explain RULE</code> says why it matters.</p>" + "".join(cards)
    )


def _finding_card(f: dict[str, Any], folded: str = "") -> str:
    """One finding's card; `folded`: the HTML of the consequences shown inside it."""
    sev = f.get("severity", "info")
    where = f'<span class="where">at {_e(f["where"])}</span>' if f.get("where") is not None else ""
    evidence = ""
    if f["evidence"]:
        rows = "".join(
            f"<tr><td>{_e(k)}</td><td class='mono'>{_num(v)}</td></tr>"
            for k, v in f["evidence"].items()
        )
        evidence += f'<table class="small">{rows}</table>'
    for p in f["plots"]:
        s = p["series"][0]
        evidence += f"<figure>{_img(plots.sparkline(s['y'], s['x']), p['title'], 'spark')}<figcaption class='note'>{_e(p['title'])}</figcaption></figure>"
    fix = (
        f'<div class="fix mono"><b>fix:</b> {_e(f.get("fix"))}</div>'
        if f.get("fix") and not f.get("caused_by")
        else ""
    )
    return (
        f'<div class="finding {sev}"><div class="head"><span class="sev {sev}">{_e(sev)}</span>'
        f'<span class="rule mono">{_e(f.get("rule"))}</span>{where}</div>'
        f"<p>{_e(f.get('message'))}</p>"
        + (f'<div class="evidence">{evidence}</div>' if evidence else "")
        + fix
        + folded
        + "</div>"
    )


def _stages(page: dict[str, Any]) -> str:
    if not page["stages"]:
        return ""
    rows = "".join(
        f"<tr><td><b>{_e(s['name'])}</b><div class='note'>{_e(s['title'])}</div></td>"
        f"<td class='status {_e(s['status'])}'>{_e(s['status'])}</td>"
        f"<td class='num'>{(s['seconds'] or 0):.1f} s</td><td>{_e(s['summary'])}"
        + "".join(f"<div class='note'>{_e(n)}</div>" for n in s.get("notes") or [])
        + "</td></tr>"
        for s in page["stages"]
    )
    return (
        f"<table><tr><th>stage</th><th>status</th><th>time</th><th>summary</th></tr>{rows}</table>"
    )


def _tables(page: dict[str, Any]) -> str:
    parts = []
    for table in page.get("tables") or []:
        head = "".join(f"<th>{_e(c)}</th>" for c in table["columns"])
        rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in table["rows"])
        caption = f"<caption>{_e(table['caption'])}</caption>" if table.get("caption") else ""
        parts.append(f"<h3>{_e(table['title'])}</h3><table>{caption}<tr>{head}</tr>{rows}</table>")
    return "".join(parts)


def _cell(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"<td class='num'>{_num(value)}</td>"
    return f"<td>{_e(value)}</td>"


def _curves(page: dict[str, Any]) -> str:
    curves = page["metric_curves"] + page["stage_curves"]
    if not curves:
        return ""
    figures = "".join(f"<figure>{_img(plots.line_plot(c), c['title'])}</figure>" for c in curves)
    best = "".join(
        f"<tr><td>{_e(k)}</td><td class='num'>{_num(b['value'])}</td><td class='num'>{_e(b['step'])}</td></tr>"
        for k, b in page["best"].items()
    )
    table = (
        f"<table class='small'><tr><th>best</th><th>value</th><th>step</th></tr>{best}</table>"
        if best
        else ""
    )
    return f'<p class="lede">Per logged step; training and validation of the same metric share a plot.</p><div class="grid">{figures}</div>{table}'


def _lr(page: dict[str, Any]) -> str:
    curve = page["lr_find"]
    if not curve:
        return ""
    marks = curve.get("marks") or {}
    plot = {
        "series": [{"label": curve.get("ylabel", "loss"), "x": curve["x"], "y": curve["y"]}],
        **curve,
    }
    text = "".join(f"<p><b>{_e(k)}:</b> <code>{_num(v)}</code></p>" for k, v in marks.items())
    trials = (
        " With trial runs, the trial pick (the LR that trained best for the planned run's length)"
        " replaces it as the answer."
        if "trial pick" in marks
        else ""
    )
    return (
        '<p class="lede">Loss while the learning rate grows step by step. The suggestion sits half '
        "a decade below where the loss turns back up: not at the lowest loss, which is already "
        f"close to divergence.{trials}</p>"
        f'<div class="cols"><figure>{_img(plots.line_plot(plot, (6.0, 3.2)), "LR range test")}</figure><div>{text}</div></div>'
    )


def _heatmaps(page: dict[str, Any]) -> str:
    if not page["heatmaps"]:
        return ""
    figures = "".join(
        f"<figure>{_img(plots.heatmap(h['signal'], h['layers'], h['steps'], h['values']), h['signal'])}</figure>"
        for h in page["heatmaps"]
    )
    return (
        '<p class="lede">One row per layer, in model order; colour on a log scale. A healthy '
        "update/weight ratio sits near 1e-3; rows far darker than the rest point at vanishing "
        f'gradients.</p><div class="grid">{figures}</div>'
    )


def _histograms(page: dict[str, Any]) -> str:
    if not page["histograms"]:
        return ""
    figures = "".join(
        f"<figure>{_img(plots.histogram_over_time(h['name'], h['steps'], h['edges'], h['counts']), h['name'])}</figure>"
        for h in page["histograms"]
    )
    return (
        '<p class="lede">Each column is the distribution at one sampled step (darker: more '
        "values). A band collapsing onto 0 means dead units; one pinned at the ends, saturation.</p>"
        f'<div class="grid small">{figures}</div>'
    )


def _data(page: dict[str, Any]) -> str:
    data = page["data"]
    if not data:
        return ""
    parts = []
    counts = data.get("class_counts")
    if isinstance(counts, dict) and counts:
        labels = list(counts)
        parts.append(
            f"<figure>{_img(plots.bar_chart([str(k) for k in labels], [counts[k] for k in labels], 'samples per class', 'class'), 'class balance')}</figure>"
        )
    stats = [(k, v) for k, v in data.items() if k != "class_counts" and not isinstance(v, dict)]
    if stats:
        rows = "".join(
            f"<tr><td>{_e(k)}</td><td class='mono'>{_fmt_value(v)}</td></tr>" for k, v in stats
        )
        parts.append(f'<table class="kv">{rows}</table>')
    return f'<div class="cols">{"".join(parts)}</div>' if parts else ""


def _readable_config(config: dict[str, Any]) -> dict[str, Any]:
    """One row per optimizer param group ("lr=0.001, betas=[0.9, 0.999], ..."), leaving out
    switches that are off (foreach=None, fused=None, amsgrad=False...): run.json keeps all."""
    shown: dict[str, Any] = {}
    for key, value in config.items():
        head, sep, setting = key.rpartition(".")
        if sep and ".param_groups." in f".{head}":
            if value is None or value is False:
                continue
            row = shown.setdefault(head.replace(".param_groups.", " group "), [])
            row.append(f"{setting}={_text(value)}")
        else:
            shown[key] = value
    return {
        k: ", ".join(v) if isinstance(v, list) and k.count(" group ") else v
        for k, v in shown.items()
    }


def _fmt_value(value: Any) -> str:
    return _e(_text(value))


def _text(value: Any) -> str:
    if isinstance(value, list):
        shown = ", ".join(_text(v) for v in value[:16])
        return f"[{shown}{', …' if len(value) > 16 else ''}]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _settings(page: dict[str, Any]) -> str:
    config = list(_readable_config(page["config"]).items())[:MAX_CONFIG_ROWS]
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td class='mono'>{_fmt_value(v)}</td></tr>" for k, v in config
    )
    versions = "".join(
        f"<tr><td>{_e(k)}</td><td class='mono'>{_e(v)}</td></tr>"
        for k, v in page["versions"].items()
    )
    command = (
        f"<p class='note'>command: <code>{_e(page['command'])}</code></p>"
        if page["command"]
        else ""
    )
    return (
        f'<div class="cols"><div><table class="kv"><tr><th>setting</th><th>value</th></tr>{rows}</table></div>'
        f'<div><table class="kv"><tr><th>software</th><th>version</th></tr>{versions}</table>{command}</div></div>'
    )
