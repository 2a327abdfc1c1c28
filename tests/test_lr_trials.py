"""Trial runs after the range test: candidates under the onset, the pick, and nothing changed."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import trainwise as tw
from builders import blobs, loader, mlp, setup
from test_lr_find import _digits, _same, _snapshot
from trainwise.lr_trials import STEP, Trials, _pick, pick_from


def _picked(scores, x0=-3.0):
    xs = x0 + STEP * np.arange(len(scores))
    t = Trials([10**x for x in xs], list(scores), [], 100, "validation", None)
    _pick(t, xs, np.array(scores, dtype=float))
    return t, xs


def test_the_pick_finds_the_minimum_between_candidates():
    # Scores on a parabola in log10(lr) (in log space) with its minimum between two candidates.
    xs = -3.0 + STEP * np.arange(6)
    true = xs[2] + 0.1
    t, _ = _picked(np.exp(4 * (xs - true) ** 2))
    assert abs(math.log10(t.lr) - true) < 1e-6


def test_one_lucky_trial_does_not_decide_alone():
    # A smooth curve with its minimum at candidate 2, and candidate 4 made lucky by 10% noise:
    # the argmin jumps to 4, the fit over its neighbours stays between 2 and 4.
    xs = -3.0 + STEP * np.arange(7)
    scores = np.exp(2 * (xs - xs[2]) ** 2)
    scores[4] = 0.9 * scores[2]
    t, _ = _picked(scores)
    assert xs[2] <= math.log10(t.lr) < xs[4] - 1e-3


def test_the_pick_never_leans_towards_a_cliff():
    # Right neighbour 0.74 (under CLIFF = 1.5x the best): the parabola leans towards it.
    t, xs = _picked([1.0, 0.9, 0.5, 0.74])
    assert math.log10(t.lr) > xs[2]
    # At 0.76 (over 1.5x) it is a cliff, one seed away from diverging: stay on the best.
    t, xs = _picked([1.0, 0.9, 0.5, 0.76])
    assert math.isclose(math.log10(t.lr), xs[2])
    t, xs = _picked([1.0, 0.8, 0.5, math.inf])
    assert math.isclose(math.log10(t.lr), xs[2])


def test_a_best_trial_above_a_band_of_bad_ones_is_not_trusted():
    # A tiny U-Net's 10-step trials (benchmarks/faults/healthy/segmentation_tiny.py): the top
    # LR reached the all-background prediction (0.381) above a band of worse trials; the good
    # region below the band is where training works (IoU 0.96 there, 0.63 at the top).
    t, xs = _picked([0.433, 0.406, 1.12, 0.963, 1.42, 0.381])
    assert math.isclose(math.log10(t.lr), xs[1])
    assert "band" in t.notes[0]
    assert math.isclose(t.low, 10 ** xs[1]) and math.isclose(t.high, 10 ** xs[1])


def test_a_steep_improvement_up_to_the_top_is_kept():
    # Short trials where only the higher LRs learned: worse below the best, but no good region
    # under a band: the best stands (the BERT case's trials, scored at 15 steps).
    t, xs = _picked([1.1, 1.1, 1.06, 0.718, 0.499, 0.606])
    assert xs[3] < math.log10(t.lr) <= xs[5]
    assert not any("band" in note for note in t.notes)
    # A cliff under the best with nothing good further down: the best stands too.
    t, xs = _picked([2.3, 2.3, 2.3, 1.2, 0.5])
    assert math.isclose(math.log10(t.lr), xs[4])


def test_all_diverged_gives_no_pick_and_says_so():
    t, _ = _picked([math.inf] * 4)
    assert t.lr is None and "diverged" in t.notes[0]


def test_the_good_range_holds_the_candidates_within_five_percent():
    t, xs = _picked([1.0, 0.52, 0.5, 0.6, 0.9])
    assert math.isclose(t.low, 10 ** xs[1]) and math.isclose(t.high, 10 ** xs[2])


def test_pick_from_the_saved_dict_is_the_same_pick():
    t, _ = _picked([1.0, 0.6, 0.5, 0.52, math.inf])
    assert pick_from(t.to_dict()) == t.lr


def test_trials_leave_everything_as_it_was_bit_for_bit():
    x, y = blobs(n=256)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = nn.CrossEntropyLoss()
    for _ in range(2):
        opt.zero_grad()
        loss(model(x[:32]), y[:32]).backward()
        opt.step()
    before = _snapshot(model, opt)
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    shuffler = torch.Generator().manual_seed(3)  # the loader's own: its order is the user's too
    order_before = shuffler.get_state()
    train = loader(x, y, batch_size=32, shuffle=True, generator=shuffler)
    r = tw.lr_find(model, train, loss, opt, num_iter=50,
                   trial_steps=20, val=loader(x[:64], y[:64], batch_size=32))  # fmt: skip
    assert torch.equal(torch.rand(2), expected)
    assert torch.equal(shuffler.get_state(), order_before)
    after = _snapshot(model, opt)
    for part in ("tensors", "ptrs", "grads", "modes", "flags", "opt"):
        assert _same(before[part], after[part]), f"{part} changed"
    assert r.trials is not None and len(r.trials.scores) >= 6


def test_trials_on_digits_pick_where_training_did_well():
    """The pick is a candidate that really trained best on held-out data, and trial runs use
    the Setup's own validation set."""
    x, y, xv, yv = _digits()
    s = setup(lambda: mlp(64, 10, 64), x, y, val=(xv, yv))
    r = tw.lr_find(s, seed=0, num_iter=60, trial_steps=120, record=False)
    t = r.trials
    assert t.scored_on == "validation"
    finite = [v for v in t.scores if math.isfinite(v)]
    assert len(finite) >= 4
    # The pick sits where training did well: the candidate nearest to it is within 25% of
    # the best trial, and it is under the onset.
    nearest = int(np.argmin(np.abs(np.log10(t.lrs) - math.log10(r.suggested_lr))))
    assert t.scores[nearest] <= 1.25 * min(finite), t.summary()
    assert r.suggested_lr < r.suggestion.lr_div
    # The candidates span 0.25..1.5 decades under the onset, ascending.
    assert all(b > a for a, b in zip(t.lrs, t.lrs[1:], strict=False))
    assert t.lrs[-1] < r.suggestion.lr_div
    assert "trial runs" in r.summary() and r.to_dict()["trials"]["lr"] == t.lr


def test_without_validation_the_trials_score_the_training_loss(tmp_path):
    x, y = blobs(n=256)
    r = tw.lr_find(setup(mlp, x, y), num_iter=60, trial_steps=30, record=False)
    assert r.trials.scored_on == "training"
    assert r.trials.scores == r.trials.train_scores
    assert any("no validation data" in n for n in r.trials.notes)
    r.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 1000


def test_too_few_trial_steps_is_a_clear_error():
    x, y = blobs()
    with pytest.raises(tw.SetupError, match="trial_steps=5"):
        tw.lr_find(setup(mlp, x, y), num_iter=30, trial_steps=5, record=False)
