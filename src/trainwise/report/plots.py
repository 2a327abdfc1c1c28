"""Pictures for the HTML report, drawn with matplotlib (Agg, no display) from plain data and
returned as inline `data:image/png;base64,...` URIs: the report needs no other file and no
network. These functions draw; they compute no statistic."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure  # not pyplot: no GUI backend, no global figure state
from matplotlib.ticker import NullFormatter

DPI = 144  # sharp on high-density screens; the page shows images at half their pixel size
INK, MUTED, GRID = "#1f2933", "#7b8794", "#e4e7eb"
PALETTE = ["#2563eb", "#f97316", "#16a34a", "#dc2626", "#9333ea", "#0891b2", "#ca8a04"]
MARK_COLOR = "#dc2626"

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.edgecolor": GRID,
    "axes.labelcolor": MUTED,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlecolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
}


@contextmanager
def _figure(size: tuple[float, float]) -> Any:
    """A figure and its axes drawn in the report's style; the user's rcParams are untouched."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=size)
        yield fig, fig.subplots()


def _uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _finite(values: Sequence[Any]) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def line_plot(curve: dict[str, Any], size: tuple[float, float] = (5.2, 2.9)) -> str:
    """curve: {"title", "series": [{"label", "x", "y"}], "xlabel", "ylabel", "xscale",
    "yscale", "marks": {label: x}}."""
    with _figure(size) as (fig, ax):
        series = curve["series"]
        for i, s in enumerate(series):
            ax.plot(s["x"], s["y"], color=PALETTE[i % len(PALETTE)], lw=1.4, label=s["label"],
                    marker="o" if len(s["x"]) <= 12 else None, ms=3)  # fmt: skip
        _scales(ax, curve, [v for s in series for v in s["y"]], [v for s in series for v in s["x"]])
        if curve.get("clip_top") is not None:
            ax.set_ylim(top=curve["clip_top"])
        for label, x in (curve.get("marks") or {}).items():
            ax.axvline(x, color=MARK_COLOR, ls="--", lw=1.1)
            ax.annotate(f"{label} {x:.3g}", (x, 1), xycoords=("data", "axes fraction"),
                        xytext=(4, -12), textcoords="offset points", color=MARK_COLOR, fontsize=8)  # fmt: skip
        ax.set_title(curve.get("title", ""), loc="left")
        ax.set_xlabel(curve.get("xlabel", ""))
        ax.set_ylabel(curve.get("ylabel", ""))
        if len(series) > 1:
            ax.legend(fontsize=8)
        return _uri(fig)


def _scales(ax: Any, curve: dict[str, Any], ys: list[Any], xs: list[Any]) -> None:
    # A log axis only where every value is positive: matplotlib would drop the rest silently.
    if curve.get("xscale") == "log" and all(v > 0 for v in _finite(xs)):
        ax.set_xscale("log")
    yscale = curve.get("yscale")
    if yscale == "auto":
        yscale, top = y_axis(ys)
        if top is not None:  # spikes leave the plot, marked, instead of flattening the rest
            ax.set_ylim(top=top)
            spikes = [(x, y) for s in curve["series"] for x, y in zip(s["x"], s["y"], strict=False)
                      if isinstance(y, (int, float)) and math.isfinite(y) and y > top]  # fmt: skip
            if spikes:
                ax.plot([x for x, _ in spikes], [top] * len(spikes), "^", color=MARK_COLOR,
                        ms=5, clip_on=False, label=f"{len(spikes)} off-scale")  # fmt: skip
    if yscale == "log" and all(v > 0 for v in _finite(ys)):
        ax.set_yscale("log")


def y_axis(ys: Sequence[Any]) -> tuple[str, float | None]:
    """("log" | "linear", top or None) for values that may hold spikes: a log axis when they are
    all positive and their 2nd to 98th percentiles span over 3 decades (a loss falling from
    17,500 to 0.5); else a linear axis cut above the 98th percentile when a few spikes would
    flatten the rest (one step at 17,500 in a loss around 1)."""
    values = sorted(_finite(ys))
    if len(values) < 3:
        return "linear", None
    p2, p98 = values[int(0.02 * (len(values) - 1))], values[int(0.98 * (len(values) - 1))]
    if values[0] > 0 and p98 / p2 > 1e3:  # the bulk spans decades, not just a spike
        return "log", None
    spread = p98 - p2
    if spread > 0 and values[-1] > p98 + 3 * spread:
        return "linear", p98 + 0.5 * spread
    return "linear", None


def sparkline(values: Sequence[float], xs: Sequence[float] | None = None) -> str:
    """A small line for a finding's evidence."""
    with _figure((3.2, 1.1)) as (fig, ax):
        ax.plot(xs if xs is not None else range(len(values)), values, color=PALETTE[0], lw=1.3)
        ax.grid(False)
        ax.tick_params(labelsize=7)
        for side in ("left", "bottom"):
            ax.spines[side].set_color(GRID)
        return _uri(fig)


def heatmap(
    signal: str, layers: list[str], steps: list[int], values: list[list[float | None]]
) -> str:
    """Layers (rows, in model order) by logged steps (columns). A log colour scale when every
    value is positive (gradient norms and update ratios span orders of magnitude)."""
    data = [[math.nan if v is None or not math.isfinite(v) else v for v in row] for row in values]
    flat = [v for row in data for v in row if not math.isnan(v)]
    positive = bool(flat) and min(flat) > 0
    norm = LogNorm(min(flat), max(flat)) if positive and max(flat) > min(flat) else Normalize()
    height = min(0.22 * len(layers) + 1.4, 8.0)
    with _figure((5.2, height)) as (fig, ax):
        mesh = ax.imshow(data, aspect="auto", interpolation="nearest", cmap="viridis", norm=norm)
        ax.set_yticks(range(len(layers)), [_short(n) for n in layers], fontsize=7)
        ticks = _tick_positions(len(steps))
        ax.set_xticks(ticks, [str(steps[i]) for i in ticks])
        ax.set_xlabel("step")
        ax.grid(False)
        ax.set_title(signal.replace("_", " ") + " per layer", loc="left")
        bar = fig.colorbar(mesh, ax=ax, pad=0.01, fraction=0.04)
        if positive and max(flat) / min(flat) >= 100:  # decades only: readable at a glance
            bar.ax.yaxis.set_minor_formatter(NullFormatter())
        return _uri(fig)


def histogram_over_time(
    name: str, steps: list[int], edges: list[list[float]], counts: list[list[int]]
) -> str:
    """Each logged step is a column; the column is the histogram at that step, drawn at its own
    bin edges, shaded by the share of values in each bin (darker = more)."""
    with _figure((3.6, 2.4)) as (fig, ax):
        widths = [b - a for a, b in zip(steps, steps[1:], strict=False)] or [1]
        for i, (step, e, c) in enumerate(zip(steps, edges, counts, strict=True)):
            width = widths[min(i, len(widths) - 1)]
            top = max(c) or 1
            # Shade on a log scale relative to the column's fullest bin: the values away from a
            # dominant bin (the zeros of a ReLU) must stay visible.
            shade = [[math.log1p(v) / math.log1p(top)] for v in c]
            ax.pcolormesh([step, step + width], e, shade, cmap="Blues", vmin=0, vmax=1,
                          shading="flat")  # fmt: skip
        ax.set_title(_short(name), loc="left", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(False)
        return _uri(fig)


def bar_chart(labels: list[str], counts: list[float], title: str, xlabel: str = "") -> str:
    with _figure((5.2, 2.6)) as (fig, ax):
        ax.bar(range(len(counts)), counts, color=PALETTE[0], width=0.7)
        ticks = _tick_positions(len(labels), 20)
        ax.set_xticks(ticks, [labels[i] for i in ticks])
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", visible=False)
        return _uri(fig)


def _tick_positions(n: int, most: int = 10) -> list[int]:
    stride = max(1, math.ceil(n / most))
    return list(range(0, n, stride))


def _short(name: str, most: int = 28) -> str:
    return name if len(name) <= most else "…" + name[-(most - 1) :]
