"""The LR range-test stage of `trainwise check`: lr-too-high / lr-too-low, and when it skips."""

import pytest
import torch

import trainwise as tw
from builders import mlp, setup
from helpers import assert_fires, assert_silent
from test_lr_find import _digits
from trainwise.stages.lr_range import LRRangeStage
from trainwise.stages.static import StaticStage


def _digits_setup(optimizer):
    x, y, xv, yv = _digits()
    return setup(lambda: mlp(64, 10, 64), x, y, val=(xv, yv), optimizer=optimizer)


def _lr_check(s):
    return tw.check(s, stages=[StaticStage(), LRRangeStage()], quick=True)


@pytest.mark.fires("lr-too-high")
def test_lr_too_high_fires_far_above_the_onset_of_divergence():
    report = _lr_check(_digits_setup(lambda p: torch.optim.AdamW(p, lr=1.0)))
    f = assert_fires(report, "lr-too-high", severity="warning")
    assert f.evidence["configured_lr"] == 1.0
    assert f.evidence["suggested_lr"] < 0.1
    assert "Lower the LR" in f.fix
    assert_silent(report, "lr-too-low")


@pytest.mark.fires("lr-too-low")
def test_lr_too_low_fires_far_below_the_suggestion():
    report = _lr_check(_digits_setup(lambda p: torch.optim.SGD(p, lr=1e-6, momentum=0.9)))
    f = assert_fires(report, "lr-too-low")
    assert f.evidence["ratio"] < 0.01
    assert "Raise the LR" in f.fix


@pytest.mark.silent("lr-too-high")
@pytest.mark.silent("lr-too-low")
def test_silent_at_a_usual_lr_and_shares_the_suggestion():
    report = _lr_check(_digits_setup(lambda p: torch.optim.AdamW(p, lr=1e-3)))
    assert_silent(report, "lr-too-high")
    assert_silent(report, "lr-too-low")
    stage = report.stages[-1]
    assert stage.name == "lr-range" and stage.status == "pass"
    assert 1e-4 < stage.metrics["suggested_lr"] < 1e-1
    low, high = stage.metrics["good_range"]
    assert low < stage.metrics["suggested_lr"] < high


def test_skips_with_the_reason_when_the_static_checks_found_errors():
    x, y, _, _ = _digits()
    report = _lr_check(setup(lambda: mlp(64, 10, 64), x, y + 1))  # labels 1..10 for 10 classes
    stage = report.stages[-1]
    assert stage.status == "skipped"
    assert "labels-out-of-range" in stage.summary


def test_stage_is_in_the_default_protocol():
    from trainwise.stages.protocol import default_stages

    assert any(isinstance(s, LRRangeStage) for s in default_stages(quick=True))


def _synthetic_sweep(configured_lr):
    """A clean range-test curve: flat up to 1e-4, falls until 0.1, climbs past 1 (60 steps)."""
    import numpy as np

    from trainwise.lr_find import LRFindResult, smooth_log_axis, suggest

    lrs = np.logspace(-7, 1, 60)  # (60,)
    x = np.log10(lrs)
    losses = 1.0 - 0.9 * np.clip((x + 4) / 3, 0, 1) + 2.0 * np.clip(x, 0, None)  # (60,)
    smoothed = smooth_log_axis(lrs, losses)
    return LRFindResult(lrs, losses, smoothed, suggest(lrs, losses, smoothed), configured_lr)


@pytest.mark.silent("lr-too-low")
def test_too_low_needs_a_flat_loss_at_the_configured_lr():
    from trainwise.rules.lr import descent_start, judge

    falling = _synthetic_sweep(1e-3)  # far under the suggestion, but the loss already falls
    assert falling.suggested_lr / 1e-3 > 100
    assert 5e-5 < descent_start(falling) < 3e-4
    assert judge(falling) == []
    flat = _synthetic_sweep(1e-6)  # two decades under where the loss starts to fall
    assert [f.rule for f in judge(flat)] == ["lr-too-low"]


class _MeasuredStep:
    """Stands in for the speed stage: shares a measured step time of 2 s."""

    name, title = "speed", "Speed profile"

    def run(self, run):
        from trainwise.stages.base import StageOutcome

        run.step_seconds = 2.0
        return StageOutcome(summary="2 s per step")


def test_quick_skips_the_sweep_on_a_slow_step():
    s = _digits_setup(lambda p: torch.optim.SGD(p, lr=1e-6, momentum=0.9))
    report = tw.check(s, stages=[StaticStage(), _MeasuredStep(), LRRangeStage()], quick=True)
    stage = report.stages[-1]
    assert stage.status == "skipped"
    assert "slow-step" in stage.summary and "120s" in stage.summary
    assert_silent(report, "lr-too-low")
