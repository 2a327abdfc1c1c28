"""Pictures of an interpretation, drawn with matplotlib (Agg) from the plain data of
interpret/page.py, returned as inline PNG data URIs. Draw only: no statistic is computed here.
Samples are drawn in the form the interpretation declares (image, signal, table,
segmentation)."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

from trainwise.report.plots import INK, MARK_COLOR, MUTED, PALETTE, _figure, _uri

COLUMNS = 8  # panels per row of a sample grid
GRID_DPI = 100  # sample grids are many small panels: sharp enough, and half the drawing time


def _grid_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=GRID_DPI, bbox_inches="tight", facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _grid(count: int, panel: float = 1.35) -> tuple[int, int, tuple[float, float]]:
    cols = min(COLUMNS, max(count, 1))
    rows = math.ceil(count / cols)
    return rows, cols, (panel * cols, panel * rows + 0.35)


def _image(value: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(H, W) for a gray image, (H, W, 3) scaled into [0, 1] for colour; the colour map."""
    if value.ndim == 3 and value.shape[0] in (3, 4):
        rgb = np.moveaxis(value[:3], 0, -1)
        low, high = rgb.min(), rgb.max()
        return (rgb - low) / (high - low + 1e-12), None
    return (value[0] if value.ndim == 3 else value), "gray"


def _panel(ax: Any, value: np.ndarray, form: str) -> None:
    """One sample in its form: an image, or a signal's lines (one per channel)."""
    if form == "image":
        picture, cmap = _image(value)
        ax.imshow(picture, cmap=cmap, interpolation="nearest")
    else:  # signal (C, L) or (L,); sequence (T, F): one line per channel / feature
        value = value.T if form == "sequence" else value
        lines = value.reshape(-1, value.shape[-1]) if value.ndim > 1 else value[None]
        for c, line in enumerate(lines):
            ax.plot(line, color=PALETTE[c % len(PALETTE)], linewidth=0.8)
        ax.grid(False)
    ax.set_xticks([]), ax.set_yticks([])


def samples(items: list[dict[str, Any]], form: str, caption: Any) -> str:
    """A grid of samples, each titled by caption(item)."""
    rows, cols, size = _grid(len(items))
    with _figure(size) as (fig, _):
        fig.clf()
        for i, item in enumerate(items):
            ax = fig.add_subplot(rows, cols, i + 1)
            _panel(ax, item["input"], form)
            ax.set_title(caption(item), fontsize=7, color=INK, fontweight="normal")
        fig.tight_layout(pad=0.3)
        return _grid_uri(fig)


def unit_rows(units: dict[Any, list[dict[str, Any]]], form: str, caption: Any) -> str:
    """One row per unit: the samples that activate it most, strongest first."""
    cols = max(len(items) for items in units.values())
    with _figure((1.35 * cols + 0.6, 1.35 * len(units) + 0.3)) as (fig, _):
        fig.clf()
        for r, (unit, items) in enumerate(units.items()):
            for c, item in enumerate(items):
                ax = fig.add_subplot(len(units), cols, r * cols + c + 1)
                _panel(ax, item["input"], form)
                ax.set_title(caption(item), fontsize=7, color=INK, fontweight="normal")
                if c == 0:
                    ax.set_ylabel(f"unit {unit}", fontsize=8, color=INK)
        fig.tight_layout(pad=0.3)
        return _grid_uri(fig)


def attributions(items: list[dict[str, Any]], form: str) -> str:
    """Each sample beside its attribution map: a heat map over an image; for signals and rows,
    the attribution under the input as a filled curve / bars."""
    rows, cols, size = _grid(len(items) * 2, panel=1.35)
    with _figure(size) as (fig, _):
        fig.clf()
        for i, item in enumerate(items):
            value, attribution = item["input"], np.abs(item["values"])
            left = fig.add_subplot(rows, cols, 2 * i + 1)
            right = fig.add_subplot(rows, cols, 2 * i + 2)
            if form == "image":
                picture, cmap = _image(value)
                left.imshow(picture, cmap=cmap, interpolation="nearest")
                heat = attribution.sum(axis=0) if attribution.ndim == 3 else attribution
                right.imshow(heat, cmap="inferno", interpolation="nearest")
            elif form == "sequence":  # (T, F): features as rows, time along x
                _panel(left, value, form)
                right.imshow(attribution.T, cmap="inferno", interpolation="nearest",
                             aspect="auto")  # fmt: skip
            else:
                flat_x, flat_a = value.reshape(-1), attribution.reshape(-1)
                left.plot(flat_x, color=PALETTE[0], linewidth=0.8)
                right.bar(np.arange(len(flat_a)), flat_a, color=MARK_COLOR, width=1.0)
            for ax in (left, right):
                ax.set_xticks([]), ax.set_yticks([])
                ax.grid(False)
            left.set_title(f"#{item['index']}", fontsize=7, fontweight="normal")
            right.set_title(f"attribution (class {item['target']})", fontsize=7,
                            fontweight="normal")  # fmt: skip
        fig.tight_layout(pad=0.3)
        return _grid_uri(fig)


def segmentation(items: list[dict[str, Any]], classes: int) -> str:
    """One row per sample: the image, the true mask, the predicted mask (one colour per class,
    the same in both; ignored pixels left blank), the error map."""
    size = (6.4, 1.6 * len(items) + 0.3)
    scale = {"cmap": "tab10" if classes <= 10 else "tab20", "vmin": 0, "vmax": max(classes - 1, 1)}
    with _figure(size) as (fig, _):
        fig.clf()
        for i, item in enumerate(items):
            truth, predicted = np.asarray(item["truth"]), np.asarray(item["prediction"])
            ignored = truth < 0  # IGNORE_INDEX pixels
            error = np.where(ignored, 0.0, (truth != predicted).astype(float))
            picture, cmap = _image(item["input"])
            panels = [
                (picture, {"cmap": cmap}, "image"),
                (np.ma.masked_where(ignored, truth), scale, "truth"),
                (predicted, scale, "prediction"),
                (error, {"cmap": "Reds", "vmin": 0, "vmax": 1}, "error"),
            ]
            for j, (values, style, title) in enumerate(panels):
                ax = fig.add_subplot(len(items), 4, 4 * i + j + 1)
                ax.imshow(values, interpolation="nearest", **style)
                ax.set_xticks([]), ax.set_yticks([])
                ax.grid(False)
                ax.set_title(f"#{item['index']} {title}" if j == 0 else title, fontsize=7,
                             fontweight="normal")  # fmt: skip
        fig.tight_layout(pad=0.3)
        return _grid_uri(fig)


def confusion(matrix: list[list[int]]) -> str:
    """Counts [actual][predicted], annotated when the matrix is small enough to read."""
    values = np.asarray(matrix)
    n = len(values)
    side = min(2.2 + 0.38 * n, 9.0)
    with _figure((side, side)) as (fig, ax):
        ax.imshow(values, cmap="Blues", interpolation="nearest")
        ax.grid(False)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        if n <= 20:
            ax.set_xticks(range(n)), ax.set_yticks(range(n))
            top = values.max() or 1
            for a in range(n):
                for p in range(n):
                    if values[a, p]:
                        ax.text(p, a, str(values[a, p]), ha="center", va="center", fontsize=7,
                                color="white" if values[a, p] > top / 2 else INK)  # fmt: skip
        return _uri(fig)


def reliability(bins: list[dict[str, Any]], ece: float) -> str:
    """The reliability diagram: accuracy per confidence bin against the diagonal, and how many
    samples fall in each bin."""
    with _figure((4.6, 4.2)) as (fig, _):
        fig.clf()
        top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
        width = bins[0]["upper"] - bins[0]["lower"] if bins else 0.1
        filled = [b for b in bins if b["count"]]
        top.bar([b["lower"] for b in filled], [b["accuracy"] for b in filled], width=width,
                align="edge", color=PALETTE[0], alpha=0.85, label="accuracy")  # fmt: skip
        top.plot([0, 1], [0, 1], color=MUTED, linestyle="--", linewidth=1, label="calibrated")
        top.set_ylabel("accuracy")
        top.set_title(f"reliability: ECE {ece:.4f}")
        top.legend(loc="upper left")
        bottom.bar([b["lower"] for b in bins], [b["count"] for b in bins], width=width,
                   align="edge", color=MUTED)  # fmt: skip
        bottom.set_xlabel("confidence")
        bottom.set_ylabel("samples")
        fig.tight_layout()
        return _uri(fig)


def residuals(points: list[list[float]]) -> str:
    """Predictions against targets (a bounded sample of them) and the residuals' histogram."""
    values = np.asarray(points, dtype=float).reshape(-1, 2)
    with _figure((8.0, 3.4)) as (fig, _):
        fig.clf()
        left, right = fig.subplots(1, 2)
        left.scatter(values[:, 0], values[:, 1], s=4, alpha=0.5, color=PALETTE[0])
        low, high = values.min(), values.max()
        left.plot([low, high], [low, high], color=MUTED, linestyle="--", linewidth=1)
        left.set_xlabel("target")
        left.set_ylabel("prediction")
        right.hist(values[:, 1] - values[:, 0], bins=40, color=PALETTE[1])
        right.set_xlabel("residual (prediction - target)")
        fig.tight_layout()
        return _uri(fig)


def histograms(hists: dict[str, dict[str, Any]], color: str) -> str:
    """Small multiples: one histogram per layer (edges and counts as recorded)."""
    names = list(hists)
    cols = min(4, max(len(names), 1))
    rows = math.ceil(len(names) / cols)
    with _figure((2.4 * cols, 1.7 * rows + 0.2)) as (fig, _):
        fig.clf()
        for i, name in enumerate(names):
            ax = fig.add_subplot(rows, cols, i + 1)
            edges, counts = hists[name]["edges"], hists[name]["counts"]
            if len(edges) == len(counts) + 1:
                ax.stairs(counts, edges, fill=True, color=color, alpha=0.8)
            ax.set_title(name, fontsize=8)
            ax.tick_params(labelsize=6)
        fig.tight_layout(pad=0.4)
        return _uri(fig)
