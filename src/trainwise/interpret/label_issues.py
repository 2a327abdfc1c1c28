"""Training labels that are probably wrong: confident learning (Northcutt, Jiang & Chuang,
"Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021) on out-of-sample
probabilities from k-fold cross-validation trained with trainwise's own fit.

A model scores its own training labels too well, so every sample's probabilities come from a
model that did not train on it (cross_val_probabilities). Then, per the paper (§3):

1. per-class thresholds t_j: the mean probability of class j over the samples labelled j;
2. the confident joint C[i][j]: samples labelled i whose probability of some class reaches that
   class's threshold, counted under the likeliest such class j;
3. C calibrated so each row sums to the count of its label (the paper's eq. 3);
4. pruned by noise rate ("prune_by_noise_rate", the paper's Cl:PBNR): for each off-diagonal
   (i, j), the C[i][j] samples labelled i with the largest margin p_j - p_i are issues;
   "confident_joint" (Cl:C_confusion) takes every off-diagonal sample of step 2 instead, and
   "both" the samples in both;
5. a sample whose likeliest class is its given label is never an issue;
6. issues ranked by the normalized margin max_{j≠given} p_j - p_given (the score, in [-1, 1]:
   higher is more likely wrong); the suggested label is that j.

benchmarks/label_issues.py compares this with cleanlab's find_label_issues on the same
probabilities (see README and benchmarks/results/label_issues.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainwise.errors import SetupError

METHODS = ("prune_by_noise_rate", "confident_joint", "both")
DEFAULT_METHOD = "prune_by_noise_rate"  # chosen by benchmarks/label_issues.py (see the README)
DEFAULT_FOLDS = 5
THRESHOLD_TOLERANCE = 1e-6  # cleanlab's: float noise must not drop a sample at its threshold


@dataclass(frozen=True)
class LabelIssue:
    """A training sample whose label is probably wrong. score: the out-of-sample probability
    of the suggested label minus that of the given one (higher: more likely mislabeled)."""

    index: int
    given_label: int
    suggested_label: int
    score: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def per_class_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j = mean of p_j over the samples labelled j (C,); a class no sample has gets 1 + eps
    (nothing reaches it)."""
    classes = probs.shape[1]
    thresholds = np.full(classes, 1.0 + 1e-6)
    for j in range(classes):
        members = labels == j
        if members.any():
            thresholds[j] = probs[members, j].mean()
    return thresholds


def confident_joint(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C (classes, classes) uncalibrated counts, each sample's confident class (N,), -1 where
    no class reaches its threshold).

    Where the paper leaves details open, this follows its reference implementation (cleanlab
    2.x, measured in benchmarks/label_issues.py): a probability within 1e-6 under a threshold
    reaches it; a sample above several thresholds counts under its likeliest class overall
    (the paper's eq. 1 takes the likeliest of the classes above threshold: 1-2 fewer flips
    found on MNIST-1D and digits at 5% noise); every diagonal count is at least 1."""
    classes = probs.shape[1]
    above = probs >= per_class_thresholds(probs, labels) - THRESHOLD_TOLERANCE  # (N, C)
    several = above.sum(axis=1) > 1
    confident = np.where(several, probs.argmax(axis=1), above.argmax(axis=1))
    confident = np.where(above.any(axis=1), confident, -1)  # (N,)
    counted = confident >= 0
    joint = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(joint, (labels[counted], confident[counted]), 1)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    return joint, confident


def calibrated(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The confident joint with each row i scaled to the number of samples labelled i (the
    paper's eq. 3), rounded so each row still sums to its count."""
    classes = joint.shape[0]
    counts = np.bincount(labels, minlength=classes)
    out = np.zeros_like(joint)
    for i in range(classes):
        row = joint[i].astype(float)
        if row.sum() == 0:
            out[i, i] = counts[i]
            continue
        out[i] = _round_to_total(row / row.sum() * counts[i], counts[i])
    return out


def _round_to_total(values: np.ndarray, total: int) -> np.ndarray:
    """Each value rounded to the nearest count, then the ones rounded furthest the wrong way
    moved by one until the row sums to `total` (as the reference implementation rounds)."""
    ints = np.round(values).astype(np.int64)
    short = int(total - ints.sum())
    if short:
        step = 1 if short > 0 else -1
        ints[np.argsort(values - ints)[::-step][: abs(short)]] += step
    return ints


def find_label_issues(probs: Any, labels: Any, method: str = DEFAULT_METHOD) -> list[LabelIssue]:
    """Probable label errors from out-of-sample probabilities (N, C) and given labels (N,),
    ranked most likely first."""
    if method not in METHODS:
        raise SetupError(f"label issues: method={method!r}; expected one of {', '.join(METHODS)}")
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise SetupError(
            f"label issues: probabilities of shape {probs.shape} for {len(labels)} labels; "
            "expected (N, classes) and (N,)"
        )
    joint, confident = confident_joint(probs, labels)
    off_diagonal = (confident >= 0) & (confident != labels)
    pruned = _prune_by_noise_rate(probs, labels, calibrated(joint, labels))
    flagged = {"prune_by_noise_rate": pruned, "confident_joint": off_diagonal,
               "both": pruned & off_diagonal}[method]  # fmt: skip
    flagged &= probs.argmax(axis=1) != labels  # step 5
    return _ranked(probs, labels, np.flatnonzero(flagged))


def _prune_by_noise_rate(probs: np.ndarray, labels: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """For each off-diagonal (i, j): the joint[i][j] samples labelled i with the largest margin
    p_j - p_i; every class keeps at least one sample."""
    flagged = np.zeros(len(labels), dtype=bool)
    for i in range(joint.shape[0]):
        members = np.flatnonzero(labels == i)
        budget = max(len(members) - 1, 0)  # keep at least one sample of the class
        for j in np.argsort(-joint[i]):
            count = int(min(joint[i, j], budget))
            if j == i or count <= 0:
                continue
            margin = probs[members, j] - probs[members, i]
            flagged[members[np.argsort(-margin, kind="stable")[:count]]] = True
            budget -= count
    return flagged


def _ranked(probs: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> list[LabelIssue]:
    others = probs[indices].copy()
    others[np.arange(len(indices)), labels[indices]] = -np.inf
    suggested = others.argmax(axis=1)
    score = others.max(axis=1) - probs[indices, labels[indices]]
    order = np.argsort(-score, kind="stable")
    return [LabelIssue(int(indices[o]), int(labels[indices[o]]), int(suggested[o]),
                       float(score[o])) for o in order]  # fmt: skip


# -- out-of-sample probabilities ----------------------------------------------------------------


@dataclass(frozen=True)
class CrossValidation:
    """How the out-of-sample probabilities were made: folds, epochs, the recipe's LR."""

    folds: int
    epochs: int
    lr: float
    steps: int  # optimizer steps over all folds: the compute spent

    def describe(self) -> str:
        return (f"{self.folds}-fold cross-validation, {self.epochs} epochs each at lr "
                f"{self.lr:.3g} ({self.steps} steps in all)")  # fmt: skip


def cross_val_probabilities(setup: Any, labels: np.ndarray, num_classes: int, folds: int,
                            epochs: int, recipe: Any = None, seed: int = 0,
                            output_form: str = "raw") -> tuple[np.ndarray, CrossValidation]:  # fmt: skip
    """(probabilities (N, classes) of every training sample from a model trained on the other
    folds (stratified), how). Each fold trains with tw.fit (no record, nothing printed); the
    recipe's LR "auto" is resolved once, by the first fold's fit, and reused by the others."""
    from sklearn.model_selection import StratifiedKFold
    from torch.utils.data import Subset

    from trainwise.interpret.passes import batches, probabilities
    from trainwise.train.data import replaced
    from trainwise.train.loop import fit
    from trainwise.train.recipe import Recipe

    recipe = recipe or Recipe()
    dataset = setup.train_dataset
    least = int(np.bincount(labels).min()) if len(labels) else 0
    if folds < 2 or least < folds:
        raise SetupError(
            f"label issues: {folds}-fold cross-validation needs every class in every fold; the "
            f"rarest class has {least} training samples"
        )
    probs = np.zeros((len(labels), num_classes), dtype=np.float32)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    steps = 0
    for fold, (kept, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold_setup = replaced(setup, Subset(dataset, kept.tolist()), Subset(dataset, held.tolist()))
        result = fit(fold_setup, epochs=epochs, recipe=recipe, seed=seed + fold, record=False,
                     verbose=False, preset="cheap")  # fmt: skip
        steps += result.steps
        recipe = result.recipe  # "auto" resolved by the first fold: the same LR for the rest
        model = result.model.eval()
        with torch.no_grad():
            for x, _, positions in batches(fold_setup, fold_setup.val_dataset, "train"):
                out = fold_setup.predict(model, x)
                probs[held[positions.numpy()]] = probabilities(
                    out, "classification", output_form
                ).cpu()
    return probs, CrossValidation(folds, epochs, float(recipe.lr), steps)
