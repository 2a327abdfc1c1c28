"""The HTML report's content as plain data, gathered from a run record. No statistics are
computed here or in the renderer: values are only regrouped (series by metric name, a layer x
step matrix per signal) from what the record holds.

Shapes read (any of them may be absent; its section is then left out):
- report.json (a check): {"verdict", "findings", "stages": [{"name", "title", "status",
  "seconds", "summary", "metrics", "notes"}]}. In a stage's metrics:
    * "data": {"class_counts": {label: n}, "input_mean": [...], "input_std": [...], ...}
      -> the data summary;
    * {"lrs": [...], "losses": [...], "suggestion"|"suggested_lr": x} (at the top level of
      the metrics or one level down) -> the LR range test plot;
    * {"x": [...], "y": [...]} dicts, or lists of >= 3 numbers -> a curve per entry
      (e.g. an overfit stage's per-step losses).
- metrics.jsonl: scalars per step. What is drawn and in which panel comes from the signal
  declarations (trainwise.signals.METRICS): a key declared a curve is drawn in its declared
  panel ("train/X" and "val/X" share the panel "X"); a key declared Draw.NONE is not drawn.
- layers.jsonl: {"step", "signal", "values": {layer: v}} -> one heatmap per signal declared a
  heatmap (grad_norm, update_ratio, any Run.log_layers family), layers in first-seen order.
- histograms.jsonl: {"step", "name", "edges", "counts"} -> one histogram-over-time per name
  declared a histogram (activations/<module>, any Run.log_histogram name).
- curves.json: named curves; kind "lr_find" (or the name "lr_find") -> the LR plot.
- tables.json: named tables {"columns", "rows", "caption"} -> drawn as they are.
- findings.json: findings; an evidence value that is a list of >= 3 numbers, or an
  {"x", "y"} dict, is drawn next to the finding.
- data.json: the data summary of a watch or LR run.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from trainwise.runs.describe import flatten
from trainwise.runs.store import RunRecord
from trainwise.signals import HISTOGRAMS, METRICS, Draw, declared, layer_family

MIN_CURVE_POINTS = 3


def build_page(record: RunRecord) -> dict[str, Any]:
    meta = record.meta
    report = record.report or {}
    stages = report.get("stages") or []
    stage_curves, lr_curve, data = _from_stages(stages)
    for name, curve in (record.curves or {}).items():
        if curve.get("kind") == "lr_find" or name == "lr_find":
            lr_curve = {"title": "LR range test", **curve}
        else:
            stage_curves.append({"title": name, "series": [_series(name, curve)], **_axes(curve)})
    if lr_curve:
        lr_curve["clip_top"] = _divergence_clip(lr_curve["y"])
    git = meta.get("git") or {}
    summary = record.summary
    return {
        "id": record.id,
        "name": meta.get("name"),
        "kind": meta.get("kind"),
        "status": record.status,
        "error": meta.get("error"),
        "started": meta.get("started"),
        "ended": meta.get("ended"),
        "duration_s": _duration(meta.get("started"), meta.get("ended")),
        "command": " ".join(meta.get("command") or []),
        "git": git,
        "has_patch": bool(record.patch),
        "host": (meta.get("host") or {}).get("hostname"),
        "device": meta.get("device") or (meta.get("config") or {}).get("device"),
        "seed": meta.get("seed"),
        "versions": meta.get("versions") or {},
        "config": _settings(meta.get("config") or {}, stages),
        "verdict": report.get("verdict") or summary.get("verdict"),
        "counts": summary.get("findings") or {},
        "findings": _folded(record.findings),
        "stages": [
            {k: s.get(k) for k in ("name", "title", "status", "seconds", "summary", "notes")}
            for s in stages
        ],  # fmt: skip
        "metric_curves": _metric_curves(record.metrics),
        "stage_curves": stage_curves,
        "lr_find": lr_curve,
        "tables": [{"title": name, **table} for name, table in (record.tables or {}).items()],
        "heatmaps": _heatmaps(record.layers),
        "histograms": _histograms(record.histograms),
        "data": data or record.data,
        "best": summary.get("best") or {},
        "final": summary.get("final") or {},
    }


def _settings(config: dict[str, Any], stages: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's settings, flat; the task and class count a setup left to inference are taken
    from what the static stage inferred (blank cells said nothing)."""
    flat = flatten(config)
    static = next((s.get("metrics") or {} for s in stages if s.get("name") == "static"), {})
    for key in ("task", "num_classes"):
        if flat.get(key) in (None, "") and static.get(key) not in (None, ""):
            flat[key] = f"{static[key]} (inferred)"
    return flat


def _folded(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Root causes worst first, each with "consequences" (the findings it explains) and "why"
    (trainwise.causes; records written before causes existed are attributed here)."""
    from trainwise.causes import fold
    from trainwise.findings import Finding

    originals: dict[tuple[str, str, str], dict[str, Any]] = {}  # (rule, where, message) -> dict
    as_findings = []
    for d in found:
        try:
            f = Finding(
                rule=d["rule"], severity=d["severity"], message=d.get("message", ""),
                where=d.get("where"), evidence=d.get("evidence") or {}, fix=d.get("fix", ""),
                step=d.get("step"),
            )  # fmt: skip
        except (KeyError, ValueError, TypeError):
            continue  # a malformed entry (hand-edited file): shown nowhere rather than crash
        originals[(f.rule, str(f.where), f.message)] = d
        as_findings.append(f)
    groups = fold(as_findings)

    def page_of(f: Finding) -> dict[str, Any]:
        d = originals[(f.rule, str(f.where), f.message)]
        return _finding({**d, "caused_by": f.caused_by, "explains": list(f.explains)})

    return [
        {**page_of(g.root), "consequences": [page_of(c) for c in g.consequences], "why": g.why}
        for g in groups
    ]


def _finding(f: dict[str, Any]) -> dict[str, Any]:
    evidence = f.get("evidence") or {}
    plots, numbers = [], {}
    for key, value in evidence.items():
        curve = _as_curve(value)
        if curve is not None:
            plots.append(
                {"title": key, "series": [{"label": key, **curve}], "xlabel": "", "ylabel": key}
            )
        else:
            numbers[key] = value
    return {**f, "evidence": numbers, "plots": plots}


def _metric_curves(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """{"loss": {"train/loss": ([steps], [values]), "val/loss": ...}, "lr": {...}} -> plots.

    Each key is drawn as its declaration says: in the panel `Signal.panel(key)`, or not at all.
    """
    groups: dict[str, dict[str, tuple[list, list]]] = {}
    for row in rows:
        for key, value in row.items():
            if key in ("step", "t"):
                continue
            signal = declared(key, METRICS)
            if signal is None or signal.draw is not Draw.CURVE:
                continue
            base = signal.panel(key)
            xs, ys = groups.setdefault(base, {}).setdefault(key, ([], []))
            xs.append(row["step"])
            ys.append(value)
    plots = []
    for base, series in groups.items():
        plots.append(
            {
                "title": base,
                "series": [{"label": k, "x": xs, "y": ys} for k, (xs, ys) in series.items()],
                "xlabel": "step",
                "ylabel": base,
                "xscale": "linear",
                "yscale": "auto",  # spikes must not flatten the rest (a log axis or a cut)
            }
        )
    # Losses first: they are what a reader looks at first.
    plots.sort(key=lambda p: "loss" not in p["title"])
    return plots


def _heatmaps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per signal: layers (rows) x logged steps (columns); a missing value stays None."""
    by_signal: dict[str, dict[str, Any]] = {}
    for row in rows:
        signal = layer_family(row["signal"])
        if signal is None or signal.draw is not Draw.HEATMAP:
            continue  # declared bookkeeping (weight_norm, act_*): not drawn
        entry = by_signal.setdefault(row["signal"], {"steps": [], "cells": {}})
        entry["steps"].append(row["step"])
        for layer, value in row["values"].items():
            entry["cells"].setdefault(layer, {})[len(entry["steps"]) - 1] = value
    maps = []
    for signal, entry in by_signal.items():
        layers = list(entry["cells"])
        n = len(entry["steps"])
        values = [[entry["cells"][layer].get(i) for i in range(n)] for layer in layers]
        maps.append({"signal": signal, "layers": layers, "steps": entry["steps"], "values": values})
    return maps


def _histograms(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name: dict[str, dict[str, list]] = {}
    for row in rows:
        signal = declared(row["name"], HISTOGRAMS)
        if not row.get("counts") or signal is None or signal.draw is not Draw.HISTOGRAM:
            continue
        entry = by_name.setdefault(row["name"], {"steps": [], "edges": [], "counts": []})
        entry["steps"].append(row["step"])
        entry["edges"].append(row["edges"])
        entry["counts"].append(row["counts"])
    return [{"name": name, **entry} for name, entry in by_name.items()]


def _from_stages(stages: list[dict[str, Any]]) -> tuple[list, dict | None, dict | None]:
    curves, lr_curve, data = [], None, None
    for stage in stages:
        metrics = stage.get("metrics") or {}
        # The LR test's numbers at the top level of the metrics, or one level down.
        candidates = [metrics] + [v for v in metrics.values() if isinstance(v, dict)]
        for m in candidates:
            if isinstance(m.get("lrs"), list) and isinstance(m.get("losses"), list):
                suggestion = m.get("suggestion", m.get("suggested_lr"))
                lr_curve = {
                    "title": "LR range test",
                    "x": m["lrs"],
                    "y": m["losses"],
                    "xlabel": "learning rate",
                    "ylabel": "loss",
                    "xscale": "log",
                    "yscale": "linear",
                    "marks": {"suggested lr": suggestion} if _is_number(suggestion) else {},
                }
        if isinstance(metrics.get("data"), dict):
            data = metrics["data"]
        lr_keys = ("lrs", "losses") if isinstance(metrics.get("lrs"), list) else ()
        for key, value in metrics.items():
            if key in lr_keys or key == "data":
                continue
            curve = _as_curve(value)
            if curve is not None:
                ylabel = value.get("ylabel", key) if isinstance(value, dict) else key
                curves.append(
                    {
                        "title": f"{stage['name']}: {ylabel}",
                        "series": [{"label": ylabel, "x": curve["x"], "y": curve["y"]}],
                        "xlabel": value.get("xlabel", "step") if isinstance(value, dict) else "step",
                        "ylabel": ylabel,
                        "xscale": "linear",
                        "yscale": "auto",
                    }  # fmt: skip
                )
    return curves, lr_curve, data


def _as_curve(value: Any) -> dict[str, Any] | None:
    """A list of >= 3 numbers (x = index) or {"x": [...], "y": [...]}; else None."""
    if (
        isinstance(value, dict)
        and isinstance(value.get("x"), list)
        and isinstance(value.get("y"), list)
    ):
        if len(value["x"]) == len(value["y"]) >= MIN_CURVE_POINTS and all(
            map(_is_number, value["y"])
        ):
            return {"x": value["x"], "y": value["y"]}
        return None
    if isinstance(value, list) and len(value) >= MIN_CURVE_POINTS and all(map(_is_number, value)):
        return {"x": list(range(len(value))), "y": value}
    return None


def _divergence_clip(losses: list[Any]) -> float | None:
    """The y-axis top for an LR plot: where the loss blows up at the end of the sweep, show it
    leaving the plot instead of letting it flatten the part that matters."""
    finite = [v for v in losses if _is_number(v)]
    if not finite:
        return None
    top = 1.5 * max(finite[0], min(finite))
    return top if max(finite) > top else None


def _series(name: str, curve: dict[str, Any]) -> dict[str, Any]:
    return {"label": curve.get("ylabel", name), "x": curve["x"], "y": curve["y"]}


def _axes(curve: dict[str, Any]) -> dict[str, Any]:
    keys = ("xlabel", "ylabel", "xscale", "yscale", "marks")
    return {k: curve[k] for k in keys if k in curve}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _duration(started: str | None, ended: str | None) -> float | None:
    try:
        return (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds()
    except (TypeError, ValueError):
        return None
