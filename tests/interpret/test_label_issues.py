"""Label issues: confident learning against its reference implementation (cleanlab) on the
same probabilities, and planted label flips found through tw.interpret's cross-validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw
from trainwise.interpret.label_issues import (
    calibrated,
    confident_joint,
    find_label_issues,
    per_class_thresholds,
)

from .conftest import blobs, mlp


def noisy_probabilities(n: int, classes: int, flips: float, seed: int):
    """(probabilities (n, classes) of a decent but imperfect model, given labels with `flips`
    of them changed, the flipped indices)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), true] += rng.uniform(0.5, 4, n)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flipped = rng.choice(n, int(flips * n), replace=False)
    given[flipped] = (given[flipped] + rng.integers(1, classes, len(flipped))) % classes
    return probs, given, flipped


def test_thresholds_and_the_confident_joint_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.2, 0.8]])
    labels = np.array([0, 0, 1, 1, 1])
    t = per_class_thresholds(probs, labels)
    np.testing.assert_allclose(t, [(0.9 + 0.6) / 2, (0.7 + 0.2 + 0.8) / 3])
    joint, confident = confident_joint(probs, labels)
    # sample 0: only p0 0.9 >= 0.75 -> 0; sample 1: 0.6 < 0.75, 0.4 < 0.567 -> none;
    # 2: 0.7 >= 0.567 -> 1; 3: 0.8 >= 0.75 -> 0 (labelled 1: off-diagonal); 4 -> 1
    assert confident.tolist() == [0, -1, 1, 0, 1]
    assert joint.tolist() == [[1, 0], [1, 2]]
    assert calibrated(joint, labels).tolist() == [[2, 0], [1, 2]]  # rows sum to the label counts
    issues = find_label_issues(probs, labels)
    assert [(i.index, i.given_label, i.suggested_label) for i in issues] == [(3, 1, 0)]
    assert issues[0].score == pytest.approx(0.8 - 0.2)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("flips", [0.05, 0.2])
def test_the_same_flags_as_cleanlab_on_the_same_probabilities(seed, flips):
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    probs, given, _ = noisy_probabilities(2000, 6, flips, seed)
    ours = {i.index for i in find_label_issues(probs, given)}
    reference = set(np.flatnonzero(cleanlab_filter.find_label_issues(given, probs)).tolist())
    assert ours == reference and len(ours) > 0


def test_issues_are_ranked_by_margin_and_never_the_predicted_label():
    probs, given, flipped = noisy_probabilities(3000, 5, 0.1, 0)
    issues = find_label_issues(probs, given)
    scores = [i.score for i in issues]
    assert scores == sorted(scores, reverse=True)
    assert all(probs[i.index].argmax() != i.given_label for i in issues)
    assert all(i.suggested_label != i.given_label for i in issues)
    found = {i.index for i in issues}
    assert len(found & set(flipped.tolist())) / len(flipped) > 0.6


def test_interpret_finds_planted_flips_with_cross_validation():
    """Well-separated blobs, 6% of the training labels flipped: 3 folds of tw.fit find them."""
    x, y = blobs(600, classes=3, spread=0.8, seed=5)
    rng = np.random.default_rng(0)
    flipped = np.sort(rng.choice(600, 36, replace=False))
    noisy = y.clone()
    noisy[flipped] = (noisy[flipped] + torch.from_numpy(rng.integers(1, 3, 36))) % 3
    setup = tw.Setup(model=lambda: mlp(8, 3),
                     train=DataLoader(TensorDataset(x, noisy), batch_size=32, shuffle=True),
                     loss=nn.CrossEntropyLoss())  # fmt: skip
    interp = tw.interpret(setup, split="train")
    issues = interp.label_issues(folds=3, epochs=4, recipe=tw.Recipe(lr=1e-2))
    found = {i.index for i in issues}
    hits = len(found & set(flipped.tolist()))
    assert hits / len(flipped) >= 0.9 and hits / len(found) >= 0.9
    assert interp.cross_validation.folds == 3 and interp.cross_validation.steps == 3 * 4 * 13
    by_index = {i.index: i for i in issues}
    assert all(by_index[i].suggested_label == int(y[i]) for i in found & set(flipped.tolist()))
    assert interp.to_dict()["label_issues"][0]["index"] == issues[0].index


def test_label_issues_refuse_regression(regressor):
    model, val = regressor
    with pytest.raises(tw.SetupError, match="regression"):
        tw.interpret(model, val, nn.MSELoss()).label_issues()
