"""The interpretation's self-contained HTML report (interpret.html): the page's plain data
(interpret/page.py) drawn into the report's template. Draw only; every section is left out
when its data are absent (a regression has residuals, not a confusion matrix)."""

from __future__ import annotations

import html
from pathlib import Path
from string import Template
from typing import Any

from trainwise.report import interpret_plots as plots
from trainwise.report.plots import PALETTE
from trainwise.runs.layout import atomic_write

TEMPLATE = Path(__file__).with_name("template.html")
REPORT_NAME = "interpret.html"
SHOWN_ROWS = 50  # rows of the label-issue and most-confused tables


def write_interpret_html(page: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / REPORT_NAME
    atomic_write(out, render(page))
    return out


def render(page: dict[str, Any]) -> str:
    sections = [
        ("top-losses", "Top losses", _top_losses(page)),
        ("attributions", "Attributions of the top losses", _attributions(page)),
        ("confusion", "Confusion matrix", _confusion(page)),
        ("most-confused", "Most confused pairs", _most_confused(page)),
        ("per-class", "Per-class precision, recall, F1", _per_class(page)),
        ("calibration", "Calibration", _calibration(page)),
        ("residuals", "Residuals", _residuals(page)),
        ("label-issues", "Label issues", _label_issues(page)),
        ("weights", "Weight distributions", _hists(page["weights"], PALETTE[0], "weights")),
        (
            "activations",
            "Activation distributions",
            _hists(page["activations"], PALETTE[2], "activations"),
        ),  # fmt: skip
        ("max-activating", "Max-activating inputs", _max_activating(page)),
        ("notes", "Notes", _notes(page)),
    ]
    shown = [(a, t, b) for a, t, b in sections if b]
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t, _ in shown)
    body = (
        _header(page)
        + f"<nav>{nav}</nav>"
        + "".join(f'<section id="{a}"><h2>{_e(t)}</h2>{b}</section>' for a, t, b in shown)
    )
    body += "<footer>trainwise interpret</footer>"
    title = f"trainwise interpretation: {page['source']}"
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(title=_e(title), body=body)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else _e(value)


def _img(uri: str, alt: str) -> str:
    return f'<figure><img src="{uri}" alt="{_e(alt)}"></figure>'


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="num">{_num(c)}</td>' for c in r) + "</tr>"
                   for r in rows)  # fmt: skip
    return f'<table class="small"><tr>{th}</tr>{body}</table>'


def _header(page: dict[str, Any]) -> str:
    facts = [("source", page["source"]), ("split", page["split"]), ("task", page["task"]),
             ("samples", page["samples"]), ("mean loss", _num(page["loss"])),
             ("drawn as", page["form"])]  # fmt: skip
    if page.get("calibration"):
        facts.append(("ECE", _num(page["calibration"]["ece"])))
    meta = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
    return ('<header class="top"><div class="kicker">trainwise interpret</div>'
            f'<h1>{_e(page["source"])}</h1><dl class="meta">{meta}</dl></header>')  # fmt: skip


def _caption(item: dict[str, Any]) -> str:
    prob = f" {item['prob']:.2f}" if isinstance(item.get("prob"), float) else ""
    return f"#{item['index']} y={_short(item['label'])} p={_short(item['pred'])}{prob}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _top_losses(page: dict[str, Any]) -> str:
    items, form = page["top"], page["form"]
    if not items:
        return ""
    lede = ('<p class="lede">The samples the model does worst on: label (y), prediction (p), '
            "the predicted class's probability, and the loss.</p>")  # fmt: skip
    table = _table(["index", "label", "prediction", "probability", "loss"],
                   [[i["index"], i["label"], i["pred"], i["prob"], i["loss"]] for i in items])  # fmt: skip
    drawable = all(i.get("input") is not None for i in items)
    if form == "segmentation" and all("truth" in i for i in items):
        return (
            lede
            + _img(plots.segmentation(items[:8], page["num_classes"] or 2), "top losses")
            + table
        )
    if form in ("image", "signal", "sequence") and drawable:
        return lede + _img(plots.samples(items, form, _caption), "top losses") + table
    if form in ("table", "tokens") and drawable:
        width = len(items[0]["input"].reshape(-1))
        head = ["index", "label", "pred", "loss", *(f"x{j}" for j in range(width))]
        rows = [[i["index"], i["label"], i["pred"], i["loss"], *i["input"].reshape(-1).tolist()]
                for i in items]  # fmt: skip
        return lede + '<div style="overflow-x:auto">' + _table(head, rows) + "</div>"
    return lede + table


def _attributions(page: dict[str, Any]) -> str:
    items = page["attributions"]
    if not items or any(i["input"] is None for i in items):
        return ""
    method = "saliency |∂output/∂input|" if page["attribution_method"] == "saliency" else (
        "integrated gradients")  # fmt: skip
    lede = (f'<p class="lede">Captum {_e(method)} for the predicted class: which input values '
            "drove the prediction of each top-loss sample.</p>")  # fmt: skip
    return lede + _img(plots.attributions(items, page["form"]), "attributions")


def _confusion(page: dict[str, Any]) -> str:
    if not page.get("confusion"):
        return ""
    unit = "pixels" if page["task"] == "segmentation" else "samples"
    return (f'<p class="lede">Counts of {unit}: rows the actual class, columns the predicted '
            "one (torchmetrics).</p>" + _img(plots.confusion(page["confusion"]), "confusion"))  # fmt: skip


def _most_confused(page: dict[str, Any]) -> str:
    pairs = page.get("most_confused") or []
    if not pairs:
        return ""
    return _table(["actual", "predicted", "count"],
                  [[p["actual"], p["predicted"], p["count"]] for p in pairs[:SHOWN_ROWS]])  # fmt: skip


def _per_class(page: dict[str, Any]) -> str:
    per_class = page.get("per_class") or {}
    if not per_class:
        return ""
    return _table(["class", "precision", "recall", "F1", "support"],
                  [[c, s["precision"], s["recall"], s["f1"], s["support"]]
                   for c, s in per_class.items()])  # fmt: skip


def _calibration(page: dict[str, Any]) -> str:
    calibration = page.get("calibration")
    if not calibration:
        return ""
    lede = ('<p class="lede">Can the probabilities be trusted? Each bar is the accuracy of the '
            "samples predicted with that confidence; a calibrated model sits on the diagonal. "
            "Expected calibration error (15 bins): "
            f"<b>{calibration['ece']:.4f}</b>.</p>")  # fmt: skip
    return lede + _img(plots.reliability(calibration["bins"], calibration["ece"]), "reliability")


def _residuals(page: dict[str, Any]) -> str:
    r = page.get("residuals")
    if not r:
        return ""
    lede = ('<p class="lede">A regression has no classes: residuals instead of a confusion '
            f"matrix. Over {r['count']} samples: mean {_num(r['mean'])} (the bias), MAE "
            f"{_num(r['mae'])}, RMSE {_num(r['rmse'])}, largest {_num(r['max_abs'])}; the plot "
            f"shows a uniform sample of {len(r['points'])} of them.</p>")  # fmt: skip
    return lede + (_img(plots.residuals(r["points"]), "residuals") if r["points"] else "")


def _label_issues(page: dict[str, Any]) -> str:
    issues = page.get("label_issues")
    if issues is None:
        return ""
    how = page.get("cross_validation") or {}
    lede = (f'<p class="lede">{len(issues)} training samples whose label is probably wrong: '
            f"confident learning on out-of-sample probabilities ({how.get('folds')}-fold "
            f"cross-validation, {how.get('epochs')} epochs each). Score: p(suggested) - "
            "p(given).</p>")  # fmt: skip
    rows = [[i["index"], i["given_label"], i["suggested_label"], i["score"]]
            for i in issues[:SHOWN_ROWS]]  # fmt: skip
    return lede + _table(["index", "given", "suggested", "score"], rows)


def _hists(hists: dict[str, Any], color: str, what: str) -> str:
    hists = {k: v for k, v in (hists or {}).items() if v.get("counts")}
    if not hists:
        return ""
    lede = ("<p class=\"lede\">Each weight layer's weights.</p>" if what == "weights" else
            "<p class=\"lede\">Each weight layer's outputs over the first 512 samples.</p>")  # fmt: skip
    return lede + _img(plots.histograms(hists, color), what)


def _max_activating(page: dict[str, Any]) -> str:
    found = page.get("max_activating")
    if not found or not found["units"]:
        return ""
    form = page["form"]
    parts = [f'<p class="lede">The inputs that most activate units of layer '
             f"<code>{_e(found['layer'])}</code> (a channel averaged over positions, or a "
             "feature); the strongest units shown.</p>"]  # fmt: skip
    units = found["units"]
    if form in ("image", "signal") and all(
        i["input"] is not None for v in units.values() for i in v
    ):
        return "".join(parts) + _img(plots.unit_rows(units, form, _value_caption), "units")
    for unit, items in units.items():
        parts.append(f"<h3>unit {_e(unit)}</h3>")
        parts.append(_table(["index", "value"], [[i["index"], i["value"]] for i in items]))
    return "".join(parts)


def _value_caption(item: dict[str, Any]) -> str:
    return f"#{item['index']} {item['value']:.3g}"


def _notes(page: dict[str, Any]) -> str:
    notes = page.get("notes") or []
    return "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>" if notes else ""
