"""The HTML report: self-contained, every section drawn from the record's data, and each
section left out (not broken) when its data is missing."""

from __future__ import annotations

import re

import pytest

from trainwise.errors import SetupError
from trainwise.report.html import render_html, write_html_report
from trainwise.report.page import build_page
from trainwise.runs import RunRecord, start

SECTIONS = ("findings", "stages", "curves", "lr", "layers", "activations", "data", "setup")


def sections_of(html: str) -> set[str]:
    return set(re.findall(r'<section id="([a-z]+)">', html))


def test_full_record_has_every_section_and_needs_no_network(sample_run):
    html = (sample_run / "report.html").read_text()
    assert sections_of(html) == set(SECTIONS)
    # Self-contained: no script, no external stylesheet, image or font; images are inline.
    assert "<script" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) >= 8 and all(src.startswith("data:image/png;base64,") for src in images)
    assert "inputs-not-normalized" in html and "suggested lr" in html


def test_page_data_regroups_what_the_record_holds(sample_run):
    record = RunRecord.load(sample_run)
    page = build_page(record)
    loss = next(c for c in page["metric_curves"] if c["title"] == "loss")
    assert {s["label"] for s in loss["series"]} == {"train/loss", "val/loss"}
    train = next(s for s in loss["series"] if s["label"] == "train/loss")
    assert train["y"] == [r["train/loss"] for r in record.metrics if "train/loss" in r]
    grad = next(h for h in page["heatmaps"] if h["signal"] == "grad_norm")
    first = next(r for r in record.layers if r["signal"] == "grad_norm")
    assert grad["layers"] == list(first["values"])  # model order
    assert [row[0] for row in grad["values"]] == list(first["values"].values())
    assert (
        page["lr_find"]["marks"]["suggested lr"]
        == record.curves["lr_find"]["marks"]["suggested lr"]
    )
    assert page["data"]["class_counts"] and page["verdict"] == "ready to train"


def test_a_record_with_no_signals_still_renders(tmp_path):
    with start("lr_find", name="empty", root=tmp_path, tensorboard=False) as run:
        pass
    html = (run.path / "report.html").read_text()
    assert sections_of(html) == {"setup"}
    assert "<h1>empty</h1>" in html


def test_a_logged_table_is_drawn_as_it_is(tmp_path):
    with start("ablate", name="t", root=tmp_path, tensorboard=False) as run:
        run.log_table("ablation", ["tip", "with", "verdict"],
                      [["clipping", 0.9731, "helps"], ["label-smoothing", None, "skipped: <x>"]],
                      caption="val_accuracy, 3 seeds")  # fmt: skip
        with pytest.raises(SetupError, match="row 0 has 2 cells for 3 columns"):
            run.log_table("bad", ["a", "b", "c"], [[1, 2]])
    page = (run.path / "report.html").read_text()
    table = page[page.index("<h3>ablation</h3>"):]
    assert "<caption>val_accuracy, 3 seeds</caption>" in table
    assert "<td>clipping</td><td class='num'>0.9731</td><td>helps</td>" in table
    assert "skipped: &lt;x&gt;" in table and "<h3>bad</h3>" not in page


def test_check_stage_curves_and_lr_data_in_stage_metrics_are_drawn(tmp_path):
    # The shapes other stages hand over in StageResult.metrics (documented in report/page.py).
    report = {
        "verdict": "ready to train",
        "stages": [
            {"name": "overfit", "title": "Overfit one batch", "status": "pass", "seconds": 1.0,
             "summary": "", "notes": [], "metrics": {"losses": [2.3, 1.0, 0.2, 0.01]}},
            {"name": "lr_range", "title": "LR range test", "status": "pass", "seconds": 2.0,
             "summary": "", "notes": [],
             "metrics": {"lr": {"lrs": [1e-4, 1e-3, 1e-2], "losses": [2.3, 2.0, 9.0],
                                "suggestion": 1e-3}}},
        ],
    }  # fmt: skip
    record = _bare_record(tmp_path)
    record.__dict__["report"] = report  # what report.json would hold
    page = build_page(record)
    assert page["lr_find"]["x"] == [1e-4, 1e-3, 1e-2]
    assert page["lr_find"]["marks"] == {"suggested lr": 1e-3}
    assert page["stage_curves"][0]["series"][0]["y"] == [2.3, 1.0, 0.2, 0.01]
    html = render_html(page)
    assert {"stages", "curves", "lr"} <= sections_of(html)


def test_findings_evidence_series_become_a_plot(tmp_path):
    with start("watch", root=tmp_path, tensorboard=False) as run:
        run.log_findings([{"rule": "exploding-gradients", "severity": "warning",
                           "message": "gradient norm 40x its running median at step 12",
                           "where": 12, "fix": "clip at 2.1",
                           "evidence": {"grad_norm": [1.0, 1.1, 0.9, 40.0], "median": 1.0}}])  # fmt: skip
    html = write_html_report(run.path).read_text()
    card = html[html.index('<div class="finding warning">') :]
    assert 'class="spark"' in card[: card.index("fix:")] and "median" in card


def _bare_record(tmp_path):
    with start("check", name="bare", root=tmp_path, tensorboard=False) as run:
        pass
    return RunRecord.load(run.path)


def test_check_overfit_curve_has_its_steps_and_the_settings_their_inferred_task(tmp_path):
    # issue 13: 8 points on "step 0..7" for a 400-step run, a y-label "curve", a blank task
    from trainwise.stages.memorize import _curve

    losses = [2.3 * 0.99**i for i in range(400)]
    report = {
        "verdict": "ready to train",
        "stages": [
            {"name": "static", "title": "Static", "status": "pass", "seconds": 0.1,
             "summary": "", "notes": [], "metrics": {"task": "classification", "num_classes": 10}},
            {"name": "overfit_batch", "title": "Overfit one batch", "status": "pass",
             "seconds": 1.0, "summary": "", "notes": [], "metrics": {"loss_curve": _curve(losses)}},
        ],
    }  # fmt: skip
    record = _bare_record(tmp_path)
    record.__dict__["report"] = report
    page = build_page(record)
    (curve,) = page["stage_curves"]
    xs = curve["series"][0]["x"]
    assert xs[0] == 0 and xs[-1] == 399 and len(xs) == 50
    assert curve["xlabel"] == "step" and curve["ylabel"] == "training loss"
    assert page["config"]["task"] == "classification (inferred)"
    assert page["config"]["num_classes"] == "10 (inferred)"


def test_one_spike_does_not_flatten_a_loss_plot():
    from trainwise.report.plots import y_axis

    smooth = [2.0 - 0.01 * i for i in range(100)]
    assert y_axis(smooth) == ("linear", None)
    scale, top = y_axis([*smooth[:50], 17_500.0, *smooth[51:]])  # one spike among ~1..2
    assert scale == "linear" and 2.0 < top < 5.0  # the spike leaves the plot, marked
    assert y_axis([17_500.0 * 0.9**i for i in range(100)])[0] == "log"  # 4 decades: log axis
