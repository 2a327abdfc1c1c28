"""compress.html: the compression table and its trade-off plot (size and latency against the
validation metric), drawn from compress.json's plain data. Draw only: every number is the
one compress measured."""

from __future__ import annotations

import html
from pathlib import Path
from string import Template
from typing import Any

from trainwise.report.plots import PALETTE, _figure, _uri
from trainwise.runs.layout import atomic_write

TEMPLATE = Path(__file__).with_name("template.html")
REPORT_NAME = "compress.html"


def write_compress_html(data: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / REPORT_NAME
    atomic_write(out, render(data))
    return out


def render(data: dict[str, Any]) -> str:
    rows = [data["original"], *data["variants"]]
    body = (
        '<header class="top"><div class="kicker">trainwise compress</div>'
        f"<h1>{_e(data['source'])}</h1></header>"
        f'<section id="trade-off"><h2>Size, latency and {_e(rows[0]["metric_name"])}</h2>'
        f'<img src="{trade_off(rows, data["batch_size"])}" alt="trade-off plot"></section>'
        f'<section id="table"><h2>Variants</h2>{_table(rows, data)}</section>'
    )
    if data["skipped"]:
        items = "".join(f"<li><b>{_e(s['method'])}</b>: {_e(s['reason'])}</li>"
                        for s in data["skipped"])  # fmt: skip
        body += f'<section id="skipped"><h2>Skipped</h2><ul>{items}</ul></section>'
    body += "<footer>trainwise compress</footer>"
    title = f"trainwise compress: {data['source']}"
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(title=_e(title), body=body)


MARKERS = "os^Dv<>Ph"  # with the palette's 7 colours: 63 variants told apart


def trade_off(rows: list[dict[str, Any]], batch_size: int) -> str:
    """Two panels sharing the metric axis: size on disk, and latency at the setup's batch size
    (both log scale); one point per variant (a colour and marker each, named in the legend),
    the original a black star with its metric as a dashed line."""
    from matplotlib.ticker import ScalarFormatter

    with _figure((9.0, 3.6)) as (fig, ax):
        fig.delaxes(ax)
        axes = fig.subplots(1, 2, sharey=True)
        panels = (("size_bytes", "size on disk (kB)", 1e-3),
                  ("latency_ms_batch", f"CPU latency at batch {batch_size} (ms)", 1.0))  # fmt: skip
        for panel, (key, label, scale) in zip(axes, panels, strict=True):
            for i, row in enumerate(rows):
                if row["metric"] is None:
                    continue
                style = {"color": "black", "marker": "*", "s": 90} if i == 0 else {
                    "color": PALETTE[(i - 1) % len(PALETTE)],
                    "marker": MARKERS[(i - 1) // len(PALETTE) % len(MARKERS)], "s": 30}  # fmt: skip
                panel.scatter([row[key] * scale], [row["metric"]], label=row["method"],
                              zorder=3, **style)  # fmt: skip
            if rows[0]["metric"] is not None:
                panel.axhline(rows[0]["metric"], color="black", linestyle="--", linewidth=0.7)
            panel.set_xscale("log")
            panel.xaxis.set_major_formatter(ScalarFormatter())
            panel.xaxis.set_minor_formatter(ScalarFormatter())
            panel.tick_params(axis="x", which="minor", labelsize=7)
            panel.set_xlabel(label)
        axes[0].set_ylabel(f"validation {rows[0]['metric_name']}")
        axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7)
        return _uri(fig)


def _table(rows: list[dict[str, Any]], data: dict[str, Any]) -> str:
    head = ("method", "size", "weights (nonzero)", "latency b1 (ms)",
            f"latency b{data['batch_size']} (ms)", rows[0]["metric_name"], "change", "saved as",
            "how")  # fmt: skip
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    lines = []
    for row in rows:
        values = (row["method"], f"{row['size_bytes'] / 1e3:.1f} kB",
                  f"{row['params']} ({row['nonzero_params']})", f"{row['latency_ms_b1']:.3f}",
                  f"{row['latency_ms_batch']:.3f}", _num(row["metric"]), _num(row["delta"]),
                  row["path"] or "", row["note"])  # fmt: skip
        lines.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in values) + "</tr>")
    note = (f"<p>CPU, {data['threads']} thread(s); latency: median of interleaved calls "
            "after warm-up (the JSON holds the interquartile range).</p>")  # fmt: skip
    return f"<table><tr>{cells}</tr>{''.join(lines)}</table>{note}"


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))
