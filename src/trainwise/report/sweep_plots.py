"""The sweep report's pictures, drawn with matplotlib from the sheet's plain data (sheet.json):
the optimization history, each trial's validation curve (pruned ones cut where they were cut,
marked x), the parameter importances and the parallel coordinates. Drawing only: every number
was computed before (the values by fit, the importances by optuna.importance)."""

from __future__ import annotations

import math
from typing import Any

from trainwise.report.plots import GRID, MUTED, PALETTE, _figure, _uri

PRUNED, FAILED = "#9aa5b1", "#dc2626"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def history(trials: list[dict[str, Any]]) -> str:
    """Each complete trial's value by trial number, the best so far as a step line; pruned
    trials at their last reported loss, as grey x."""
    with _figure((5.2, 2.9)) as (fig, ax):
        done = [t for t in trials if t["state"] == "complete" and _finite(t["value"])]
        cut = [t for t in trials if t["state"] == "pruned" and _finite(t.get("last"))]
        ax.scatter([t["number"] for t in done], [t["value"] for t in done], s=16,
                   color=PALETTE[0], label="complete", zorder=3)  # fmt: skip
        ax.scatter([t["number"] for t in cut], [t["last"] for t in cut], s=18, marker="x",
                   color=PRUNED, label="pruned (last loss)", zorder=2)  # fmt: skip
        xs, best, running = [], [], math.inf
        for t in sorted(done, key=lambda t: t["number"]):
            running = min(running, t["value"])
            xs.append(t["number"])
            best.append(running)
        if xs:
            ax.step(xs, best, where="post", color=PALETTE[1], lw=1.4, label="best so far")
        ax.set_title("Optimization history", loc="left")
        ax.set_xlabel("trial")
        ax.set_ylabel("validation loss")
        ax.legend(fontsize=8)
        return _uri(fig)


def curves(trials: list[dict[str, Any]], best: int | None) -> str:
    """Every trial's reported validation loss by step: complete trials in colour (the best
    thick), pruned ones grey and ending in an x where the pruner cut them."""
    with _figure((5.2, 3.2)) as (fig, ax):
        for t in trials:
            points = [(s, v) for s, v in t.get("curve") or [] if _finite(v)]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            if t["state"] == "pruned":
                ax.plot(xs, ys, color=PRUNED, lw=0.9, alpha=0.8)
                ax.plot(xs[-1], ys[-1], marker="x", color=FAILED, ms=5)
            elif t["state"] == "complete":
                thick = t["number"] == best
                ax.plot(xs, ys, color=PALETTE[1] if thick else PALETTE[0], lw=2.2 if thick else 1,
                        alpha=1 if thick else 0.6, zorder=4 if thick else 3,
                        label=f"best: trial {t['number']}" if thick else None)  # fmt: skip
            else:
                ax.plot(xs, ys, color=MUTED, lw=0.8, ls=":")
        ax.plot([], [], color=PRUNED, marker="x", mec=FAILED, label="pruned (x: cut here)")
        ax.set_yscale("log") if _spread(trials) > 30 else None
        ax.set_title("Validation loss per trial", loc="left")
        ax.set_xlabel("step")
        ax.set_ylabel("validation loss")
        ax.legend(fontsize=8)
        return _uri(fig)


def _spread(trials: list[dict[str, Any]]) -> float:
    values = [v for t in trials for _, v in t.get("curve") or [] if _finite(v) and v > 0]
    return max(values) / min(values) if values else 1.0


def importances(found: dict[str, float]) -> str:
    names = sorted(found, key=found.get)
    with _figure((5.2, 0.5 + 0.35 * max(2, len(names)))) as (fig, ax):
        ax.barh(range(len(names)), [found[n] for n in names], color=PALETTE[0], height=0.6)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("importance (share of the loss's variance, optuna.importance)")
        ax.set_title("Parameter importances", loc="left")
        ax.grid(axis="y", visible=False)
        return _uri(fig)


def parallel(trials: list[dict[str, Any]], space: dict[str, str]) -> str:
    """One vertical axis per parameter (log axes on a log scale, choices as their index) and
    the loss last; a line per complete trial, darker = lower loss; pruned trials grey dashed
    up to the loss axis."""
    from matplotlib import colormaps

    names = list(space)
    done = [t for t in trials if t["state"] in ("complete", "pruned") and t.get("params")]
    with _figure((5.2 + 0.4 * max(0, len(names) - 3), 3.0)) as (fig, ax):
        axes = names + ["val loss"]
        columns = {n: [_position(t["params"].get(n), space[n]) for t in done] for n in names}
        columns["val loss"] = [t["value"] if t["state"] == "complete" else None for t in done]
        scaled = {n: _unit(vs) for n, vs in columns.items()}
        losses = [v for v in columns["val loss"] if _finite(v)]
        lo, hi = (min(losses), max(losses)) if losses else (0, 1)
        cmap = colormaps["viridis_r"]
        for i, t in enumerate(done):  # i: the trial's row in every column
            ys = [scaled[n][i] for n in axes]
            if t["state"] == "pruned":
                ax.plot(range(len(names)), ys[:-1], color=PRUNED, lw=0.7, ls="--", alpha=0.7)
                continue
            shade = (t["value"] - lo) / (hi - lo) if hi > lo else 0.0
            ax.plot(range(len(axes)), ys, color=cmap(1 - shade), lw=1.1, alpha=0.85)
        for x in range(len(axes)):
            ax.axvline(x, color=GRID, lw=1)
        ax.set_xticks(range(len(axes)), [f"{n}\n{_range(columns[n], space.get(n))}" for n in axes],
                      fontsize=7)  # fmt: skip
        ax.set_yticks([])
        ax.set_title("Parallel coordinates (darker = lower loss; grey dashed = pruned)",
                     loc="left")  # fmt: skip
        ax.grid(False)
        return _uri(fig)


def _position(value: Any, form: str) -> float | None:
    """Where a parameter value sits on its axis: log10 for log, the index for a choice."""
    kind = form.split(":", 1)[0]
    if kind == "choice":
        choices = form.split(":", 1)[1].split(",")
        return float(choices.index(str(value))) if str(value) in choices else None
    if not _finite(value):
        return None
    return math.log10(value) if kind == "log" and value > 0 else float(value)


def _unit(values: list[Any]) -> list[float | None]:
    finite = [v for v in values if _finite(v)]
    if not finite:
        return [None] * len(values)
    lo, hi = min(finite), max(finite)
    return [((v - lo) / (hi - lo) if hi > lo else 0.5) if _finite(v) else None for v in values]


def _range(values: list[Any], form: str | None) -> str:
    if form is not None and form.startswith("choice:"):
        return form.split(":", 1)[1][:18]
    finite = [v for v in values if _finite(v)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    if form is not None and form.startswith("log:"):
        return f"1e{lo:.1f}..1e{hi:.1f}"
    return f"{lo:.3g}..{hi:.3g}"
