"""The loss-curve rules judge trends over windows of steps: the same run gives the same verdict
whether it is validated every step, every 10 or every 100 steps; thin evidence gives an info
note at most; a flat loss while the weights travel (a GAN player) is not a stalled run; large
updates while the loss falls are an info note, not a warning.

Synthetic histories are fed to the detectors through the same View a watch gives them, judged
at the same phases (after each validation for the validation rules, every 10 steps for the
others; a watch judges at most once per judging period, so these are its verdicts at their
most frequent), so the verdict is the one a watch would print.
"""

import math
import random

import pytest

from trainwise.probes.params import ParamInfo
from trainwise.rules import get
from trainwise.rules.inflight import View, Watched
from trainwise.rules.inflight.trends import fit, window_start
from trainwise.signals import History, Signals

RANK = {"error": 0, "warning": 1, "info": 2}
WEIGHT = ParamInfo("fc.weight", group=0, numel=4096, ndim=2, position=0, module_kind="Linear")
WATCHED = Watched(
    params=(WEIGHT,),
    trainable=(WEIGHT,),
    frozen=(),
    untracked_trainable=(),
    mode_layers=(),
    has_dropout=False,
    has_conv2d=False,
    weight_decay=False,
    total_steps=None,
)


def judge(slug, steps, train, val=None, val_every=None, extra=None, noise=0.0, seed=0):
    """Feeds `steps` steps of train(t) (and val(t) every `val_every` steps) to the slug's
    detector; returns the most severe finding (None if it never fired). `extra(t)` yields more
    (key, value) pairs of step t."""
    rule = get(slug)
    detector = rule.check(rule)
    signals, rng = Signals(), random.Random(seed)
    view = View(History(signals), WATCHED, set())
    worst = None

    def run():
        nonlocal worst
        for finding in detector.check(view):
            if worst is None or RANK[finding.severity] < RANK[worst.severity]:
                worst = finding
        view.memo.clear()  # as the watch does after each judging round

    for t in range(steps):
        signals.add("train/loss", t, train(t) * (1 + noise * rng.gauss(0, 1)))
        for key, value in extra(t) if extra else ():
            signals.add(key, t, value)
        view.iteration = view.step = t + 1
        if val is not None and t % val_every == val_every - 1:
            signals.add("val/loss", t, val(t) * (1 + noise * rng.gauss(0, 1)))
            if detector.when.name == "VAL":
                run()
        if detector.when.name != "VAL" and (t + 1) % 10 == 0:
            run()
    if detector.when.name == "VAL" and val is not None:
        run()  # at close
    return worst


def severity(finding):
    return None if finding is None else finding.severity


# -- curves -----------------------------------------------------------------------------------
def slowly_improving(t):  # the cadence loop's shape: 2.3 -> 0.3 over 2000 steps, steadily
    return 0.2 + 2.1 * math.exp(-t / 600)


def slowly_improving_val(t):
    return 1.05 * slowly_improving(t)


def memorizing(t):  # training loss falls to ~0
    return 0.01 + 2.3 * math.exp(-t / 150)


def memorizing_val(t):  # best at ~step 450, then rising 0.04% per step
    return 0.5 + 1.8 * math.exp(-t / 150) + 0.0004 * max(0, t - 450)


def stuck_high(t):  # a linear model on rings: at log(2) from step 50 on
    return 0.69 + 0.12 * math.exp(-t / 15)


def stuck_high_val(t):
    return 0.695 + 0.12 * math.exp(-t / 15)


def elbo(t):  # a VAE: 44 -> ~25, slowing down but still improving at the end
    return 23 + 21 * math.exp(-t / 120) + 3 * math.exp(-t / 600)


CADENCES = [1, 10, 100]


@pytest.mark.silent("overfitting")
@pytest.mark.parametrize("val_every", CADENCES)
def test_slowly_improving_run_is_not_overfitting_at_any_cadence(val_every):
    found = judge(
        "overfitting", 2000, slowly_improving, slowly_improving_val, val_every, noise=0.05
    )
    assert found is None, found.message


@pytest.mark.silent("underfitting")
@pytest.mark.parametrize("val_every", CADENCES)
def test_slowly_improving_run_is_not_underfitting_at_any_cadence(val_every):
    found = judge(
        "underfitting", 2000, slowly_improving, slowly_improving_val, val_every, noise=0.05
    )
    assert found is None, found.message


@pytest.mark.fires("overfitting")
@pytest.mark.parametrize("val_every", CADENCES)
def test_rising_validation_loss_is_overfitting_at_every_cadence(val_every):
    found = judge("overfitting", 2000, memorizing, memorizing_val, val_every, noise=0.02)
    assert severity(found) == "warning"
    assert 350 <= found.evidence["val_best_step"] <= 550  # the best of the fitted curve: ~450


@pytest.mark.fires("underfitting")
@pytest.mark.parametrize("val_every", CADENCES)
def test_flat_high_losses_are_underfitting_at_every_cadence(val_every):
    found = judge("underfitting", 1000, stuck_high, stuck_high_val, val_every, noise=0.02)
    assert severity(found) == "warning"


@pytest.mark.silent("underfitting")
@pytest.mark.parametrize("val_every", CADENCES)
def test_a_converging_elbo_is_not_underfitting(val_every):
    # Train and validation close, improvement slowing, the loss at ~60% of its start: the old
    # "above half the starting loss" bound called this underfitting.
    found = judge("underfitting", 1000, elbo, lambda t: 0.99 * elbo(t), val_every, noise=0.01)
    assert found is None, found.message


@pytest.mark.fires("underfitting")
def test_few_validation_points_give_an_info_note_not_a_warning():
    # 3 validations (every 100 steps of 300): the flat high curve, but too little evidence.
    found = judge("underfitting", 300, stuck_high, stuck_high_val, 100)
    assert severity(found) == "info"
    assert "too few to be sure" in found.message
    assert found.evidence["val_points"] == 3


@pytest.mark.fires("overfitting")
def test_a_short_rise_gives_an_info_note_not_a_warning():
    # Validated every 100 steps of 400: 4 points, rising from the first, while training falls.
    found = judge("overfitting", 400, memorizing, lambda t: 0.5 + 0.001 * t, 100)
    assert severity(found) == "info"
    assert "too few to be sure" in found.message
    # The same curve validated every 10 steps has the evidence: a warning.
    assert severity(judge("overfitting", 400, memorizing, lambda t: 0.5 + 0.001 * t, 10)) == (
        "warning"
    )


def test_window_is_measured_in_steps_and_widened_to_enough_points():
    signals = Signals()
    for t in range(0, 1000, 100):
        signals.add("val/loss", t, 1.0)
    since, thin = window_start(signals.get("val/loss"), 100, 5)
    assert since == 500 and not thin  # 5 points: 500..900, wider than 100 steps
    dense = Signals()
    for t in range(1000):
        dense.add("val/loss", t, 1.0)
    assert window_start(dense.get("val/loss"), 100, 5) == (899, False)
    assert window_start(dense.get("val/loss"), 2000, 5)[1]  # shorter than the window: thin


def test_fit_is_robust_and_relative():
    steps = list(range(100))
    values = [10 * (1 - 0.001 * t) for t in steps]
    values[50] = 1000.0  # one outlier batch
    trend = fit(steps, values)
    assert trend.change == pytest.approx(math.log(1 - 0.099), rel=0.02)  # ~ -10%, on any scale
    assert trend.z < -2 and trend.log
    flat = fit(steps, [1.0 + 0.01 * ((-1) ** t) for t in steps])
    assert abs(flat.change) < 0.01 and not flat.falls(0.01) and not flat.rises(0.01)


def test_a_long_window_is_fitted_on_group_medians_that_ignore_outliers():
    """45 points make 20 groups of 2 or 3; each group of 3 carries two opposite outliers that
    only a median ignores. The line is found exactly: start, end, no scatter."""
    steps = list(range(45))
    values = [-1.0 - 0.01 * t for t in steps]  # negative: fitted as a line, not on logs
    bounds = [g * 45 // 20 for g in range(21)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if hi - lo == 3:
            values[lo] += 100.0
            values[hi - 1] -= 100.0
    trend = fit(steps, values)
    assert not trend.log and trend.points == 45 and trend.span == 44
    assert trend.start == pytest.approx(-1.0) and trend.end == pytest.approx(-1.44)
    assert trend.noise == pytest.approx(0.0, abs=1e-12) and trend.z < -5


# -- loss-plateau -----------------------------------------------------------------------------
def weights(drift_per_step, ratio=3e-3, every=20):
    """Sampled weight norms (4.0, drifting by drift_per_step) and update ratios."""

    def extra(t):
        if t % every == 0:
            yield "weight_norm/fc.weight", 4.0 * (1 + drift_per_step * t)
            yield "update_ratio/fc.weight", ratio

    return extra


@pytest.mark.fires("loss-plateau")
def test_flat_loss_at_the_start_with_weights_wandering_is_a_plateau_warning():
    # Labels shuffled apart from the inputs: the loss sits at log(10), updates cancel out.
    found = judge("loss-plateau", 200, lambda t: 2.30, extra=weights(0.0), noise=0.02)
    assert severity(found) == "warning"
    assert "barely moved" in found.message


@pytest.mark.silent("loss-plateau")
def test_flat_loss_while_the_weights_travel_is_info_only():
    # A GAN discriminator: its loss stays near 1.1 while its weights drift steadily (4.0 -> 5.2
    # in 300 steps, far beyond the 3e-3 * sqrt(n) a random walk of its steps reaches).
    found = judge("loss-plateau", 300, lambda t: 1.1, extra=weights(1e-3), noise=0.05)
    assert severity(found) == "info"
    assert "weights travel" in found.message and found.evidence["walk_ratio"] > 1


@pytest.mark.silent("loss-plateau")
def test_slowly_improving_training_loss_is_no_plateau():
    assert judge("loss-plateau", 1000, slowly_improving, extra=weights(0.0), noise=0.05) is None


def test_a_converging_elbo_is_at_most_an_info_plateau():
    # 44 -> 24 with a floor at 23: once the last quarter gains under 1% it is info, never a
    # warning (it learned: it is far below where it started).
    found = judge("loss-plateau", 1000, elbo, extra=weights(0.0), noise=0.02)
    assert severity(found) in (None, "info")


@pytest.mark.fires("loss-plateau")
def test_plateau_after_learning_is_info():
    found = judge("loss-plateau", 600, lambda t: 0.3 + 2.0 * math.exp(-t / 30), noise=0.02)
    assert severity(found) == "info"


def one_cycle(t, steps=600, peak=3e-3):
    """OneCycleLR's shape (fit's default): 25% warm-up, then cosine down to ~0."""
    up = steps // 4
    if t < up:
        return peak * (0.04 + 0.96 * t / up)
    return peak * (0.5 + 0.5 * math.cos(math.pi * (t - up) / (steps - up))) + 1e-8


def learned_as_far_as_the_lr_went(t, steps=600):
    """A loss that falls with the distance the LR has travelled (its running sum): it keeps
    improving while the LR is high and flattens as one-cycle anneals it."""
    travelled = sum(one_cycle(i, steps) for i in range(t + 1))
    return 0.3 + 2.0 * math.exp(-travelled / 0.2)


@pytest.mark.silent("loss-plateau")
def test_a_plateau_after_learning_while_the_schedule_anneals_the_lr_is_no_finding():
    # tw.fit's healthy digits CNN (8 epochs, one-cycle): the loss flattened at its floor in
    # the last epoch, where the LR was under a tenth of its peak (seen on CPU and on an H200).
    lr = lambda t: [("lr/group0", one_cycle(t))]  # noqa: E731
    found = judge("loss-plateau", 600, learned_as_far_as_the_lr_went, extra=lr, noise=0.02)
    assert found is None
    unseen = judge("loss-plateau", 600, learned_as_far_as_the_lr_went, noise=0.02)
    assert severity(unseen) == "info"  # the same curve, the LR not seen: flat in its last 147
    # A curve that went flat while the LR was still high: annealing may help, said as info.
    early = judge("loss-plateau", 600, lambda t: 0.3 + 2.0 * math.exp(-t / 30), extra=lr,
                  noise=0.02)  # fmt: skip
    assert severity(early) == "info"


# -- update-ratio-high ------------------------------------------------------------------------
def big_updates(t):
    if t % 5 == 0:
        yield "update_ratio/fc.weight", 0.17
        yield "weight_norm/fc.weight", 4.0
    yield "lr/group0", 20.0


@pytest.mark.fires("update-ratio-high")
def test_large_updates_with_the_loss_above_its_start_warn():
    # Adam at SGD's learning rate: the loss jumps far above where it started.
    found = judge("update-ratio-high", 40, lambda t: 2.3 if t < 3 else 60.0, extra=big_updates)
    assert severity(found) == "warning"
    assert found.evidence["loss_shows_harm"]


@pytest.mark.silent("update-ratio-high")
def test_large_updates_while_the_loss_falls_are_info():
    # The word language model recipe: SGD lr 20, clipping 0.25, the loss falls steadily.
    found = judge("update-ratio-high", 300, lambda t: 1 + 3 * math.exp(-t / 80), extra=big_updates)
    assert severity(found) == "info"
    assert "still make progress" in found.message


@pytest.mark.fires("update-ratio-high")
def test_large_updates_with_a_flat_loss_warn():
    found = judge("update-ratio-high", 300, lambda t: 1 + 3 * math.exp(-t / 10), extra=big_updates)
    assert severity(found) == "warning"


@pytest.mark.fires("underfitting")
def test_a_watch_upgrades_an_info_note_to_a_warning_once_the_evidence_is_there():
    import torch
    from torch import nn

    import trainwise as tw

    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tw.watch(model, optimizer, verbose=False) as watch:
        for t in range(200):  # validated every 40 steps: thin at 120 and 160, 5 points at 200
            watch.log(loss=stuck_high(t))
            if t % 40 == 39:
                watch.log_val(loss=stuck_high_val(t))
    found = [f for f in watch.findings if f.rule == "underfitting"]
    assert [f.severity for f in found] == ["warning"]  # one finding per (rule, where), the worst
