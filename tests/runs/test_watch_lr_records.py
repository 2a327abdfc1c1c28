"""watch and lr_find leave run records (issue 7): read back with the runs reader, report.html
built from them, recording off on request, and a failing record never stops the training."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import trainwise as tw
from trainwise.report.page import build_page
from trainwise.runs import RunRecord, list_runs
from trainwise.runs.record import Run
from trainwise.stages.lr_range import LRRangeStage
from trainwise.stages.static import StaticStage


def _data(n=128, features=12, classes=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def _model():
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))


def _train(watch, model, opt, steps, x, y, zero_grad=True):
    for i in range(steps):
        xb, yb = x[i % 4 * 32 : (i % 4 + 1) * 32], y[i % 4 * 32 : (i % 4 + 1) * 32]
        loss = nn.functional.cross_entropy(model(xb), yb)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
        watch.log(loss=loss, acc=0.5)
        if i % 10 == 9:
            with torch.no_grad():
                model.eval()
                watch.log_val(loss=nn.functional.cross_entropy(model(x), y))
                model.train()


def test_a_watched_loop_leaves_a_record_with_metrics_layers_histograms_and_findings(tmp_path):
    torch.manual_seed(0)
    x, y = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with tw.watch(model, opt, every=5, log_dir=tmp_path, name="mlp-sgd", verbose=False) as watch:
        # never zeroing the grads: missing-zero-grad fires, so the record has a finding
        _train(watch, model, opt, 30, x, y, zero_grad=False)
    record = RunRecord.load(watch.record_path)
    assert watch.record_path.parent == tmp_path
    assert record.meta["kind"] == "watch" and record.status == "finished"
    assert record.meta["config"]["watch"] == {"preset": "standard", "every": 5}
    assert record.meta["config"]["optimizer"]["class"] == "SGD"

    metrics = record.metrics
    train = [m for m in metrics if "train/loss" in m]
    assert [m["step"] for m in train] == list(range(30))
    assert all({"lr", "train/acc"} <= m.keys() for m in train)
    # gradient norms on the measured steps: the first MEASURED_START (20), then every 5th
    assert [m["step"] for m in train if "grad_norm" in m] == [*range(21), 25]
    assert train[3]["train/loss"] == pytest.approx(watch.signals.get("train/loss").values[3])
    val = [m for m in metrics if "val/loss" in m]
    assert [m["step"] for m in val] == [10, 20, 30]
    assert record.summary["best"]["val/loss"]["value"] == min(m["val/loss"] for m in val)

    layers = record.layers
    sampled = [0, 5, 10, 15, 20, 25]  # the watch's schedule (every=5), not every step
    for signal in ("grad_norm", "update_ratio"):
        rows = [r for r in layers if r["signal"] == signal]
        assert [r["step"] for r in rows] == sampled
        assert set(rows[0]["values"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert layers[0]["values"]["2.weight"] == pytest.approx(
        watch.signals.get("grad_norm/2.weight").values[0]
    )
    hists = record.histograms
    assert {h["name"] for h in hists} == {"activations/0", "activations/1", "activations/2"}
    assert sorted({h["step"] for h in hists}) == sampled
    relu = next(h for h in hists if h["name"] == "activations/1")
    assert relu["min"] >= 0 and sum(relu["counts"]) == relu["num"] == 8 * 16  # 8 sampled rows

    rules = {f["rule"] for f in record.findings}
    assert "missing-zero-grad" in rules
    assert rules == {f.rule for f in watch.findings}

    page = build_page(record)
    assert page["metric_curves"] and page["heatmaps"] and page["histograms"] and page["findings"]
    assert {h["signal"] for h in page["heatmaps"]} == {"grad_norm", "update_ratio"}
    html = (watch.record_path / "report.html").read_text()
    assert "missing-zero-grad" in html and "<img" in html


def test_the_record_goes_to_TRAINWISE_RUNS_DIR_by_default_and_can_be_turned_off(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("TRAINWISE_RUNS_DIR", str(tmp_path / "runs"))
    x, y = _data()
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    watch = tw.watch(model, opt, record=False, verbose=False)
    _train(watch, model, opt, 3, x, y)
    watch.close()
    assert watch.record_path is None and not (tmp_path / "runs").exists()

    watch = tw.watch(model, opt, verbose=False)
    _train(watch, model, opt, 3, x, y)
    assert RunRecord.load(watch.record_path).meta["status"] == "running"
    watch.close()
    (only,) = list_runs(tmp_path / "runs")
    assert only.path == watch.record_path and only.status == "finished"


def test_a_failing_record_warns_once_and_the_training_goes_on(tmp_path, monkeypatch):
    def broken(self, step, values):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Run, "log_metrics", broken)
    x, y = _data()
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tw.watch(model, opt, log_dir=tmp_path, verbose=False) as watch:
            _train(watch, model, opt, 12, x, y)
    ours = [w for w in caught if "disk on fire" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning)
    assert len(watch.signals.get("train/loss")) == 12  # the watch itself kept measuring
    record = RunRecord.load(watch.record_path)
    assert record.status == "failed" and "disk on fire" in record.meta["error"]


def test_an_exception_in_the_with_block_marks_the_record_failed(tmp_path):
    x, y = _data()
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="user bug"):
        with tw.watch(model, opt, log_dir=tmp_path, verbose=False) as watch:
            _train(watch, model, opt, 2, x, y)
            raise ValueError("user bug")
    record = RunRecord.load(watch.record_path)
    assert record.status == "failed" and "user bug" in record.meta["error"]


def test_lr_find_leaves_a_record_with_the_curve_the_suggestion_and_findings(tmp_path):
    x, y = _data(256)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=8.0)  # far past divergence: lr-too-high
    loader = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    result = tw.lr_find(
        model, loader, nn.functional.cross_entropy, opt, num_iter=60, runs_dir=tmp_path
    )
    record = RunRecord.load(result.record_path)
    assert result.record_path.parent == tmp_path
    assert record.meta["kind"] == "lr_find" and record.status == "finished"
    assert record.meta["config"]["lr_find"] == {"start_lr": 1e-7, "end_lr": 10.0, "num_iter": 60}
    curve = record.curves["lr_find"]
    assert curve["x"] == pytest.approx(result.lrs.tolist())
    assert curve["y"] == pytest.approx(result.losses.tolist(), nan_ok=True)
    assert result.suggested_lr is not None
    assert curve["marks"]["suggested lr"] == pytest.approx(result.suggested_lr)
    assert record.summary["lr_find"]["suggested_lr"] == pytest.approx(result.suggested_lr)
    assert [m["step"] for m in record.metrics] == list(range(len(result.lrs)))
    assert [f["rule"] for f in record.findings] == ["lr-too-high"]
    page = build_page(record)
    assert page["lr_find"]["marks"]["suggested lr"] == pytest.approx(result.suggested_lr)
    assert "lr-too-high" in (result.record_path / "report.html").read_text()


def test_lr_find_records_nothing_when_off(tmp_path):
    x, y = _data()
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = [(x[:64], y[:64])]
    off = tw.lr_find(model, loader, nn.functional.cross_entropy, opt, num_iter=20,
                     runs_dir=tmp_path, record=False)  # fmt: skip
    assert off.record_path is None
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_a_checks_range_test_lives_in_the_checks_own_record(tmp_path):
    x, y = _data()
    setup = tw.Setup(
        model=_model,
        train=torch.utils.data.TensorDataset(x, y),
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
        name="with-lr-stage",
    )
    report = tw.check(setup, stages=[StaticStage(), LRRangeStage()], quick=True, runs_dir=tmp_path)
    runs = list_runs(tmp_path)
    assert [r.meta["kind"] for r in runs] == ["check"]  # no second record for the range test
    assert runs[0].path == report.record_path
    stages = {s["name"]: s for s in runs[0].report["stages"]}
    assert stages["lr-range"]["status"] != "skipped"
    assert stages["lr-range"]["metrics"]["suggested_lr"] > 0
