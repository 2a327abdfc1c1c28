"""`target-leak`: an input that gives the label away.

A column derived from the label ("approval date is set" beside "approved") makes training look
perfect and the model useless in use, where the column is not known yet. Two signs, measured on
tabular classification (inputs (N, F) of floats) from the samples StaticContext already drew:

- one feature alone predicts the label on validation: a small decision tree on that one column
  (a threshold, or a label per range of values), fitted on the training sample and scored on
  the validation sample (held-out rows of the training sample without one);
- a logistic regression on all features makes (almost) no error on a validation sample large
  enough for that to mean something (the features it leans on most are named, with what each reaches alone).

No model of the user's is trained; scikit-learn fits the trees and the logistic regression (as
the baselines stage does).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch

from trainwise.context import StaticContext
from trainwise.data import sole_input
from trainwise.rules.registry import Hit, rule

MAX_FEATURES = 512  # tabular inputs only: one row of at most this many numbers
LEAVES = 32  # intervals of one feature's values, each predicting one label
MIN_LEAF = 3  # training rows per interval: a noise column cannot carve out single rows
# "Alone predicts the label": 99% right on validation, and at most a tenth of the errors that
# guessing the majority class makes (on a 99:1 set, the majority guess alone is 99% right).
ALONE_ACCURACY = 0.99
ERRORS_LEFT = 0.1
MIN_VAL = 50  # validation rows for the single-feature test (1 error in 50 is already 98%)
# A linear model (almost) without error: at most 1 error in 200+ validation rows bounds its
# error rate under about 2.4% (95%), below what honest tabular data allows a linear model
# (breast cancer 96.7% here; the wine set 97-100% on its 36 validation rows, too few to judge).
LINEAR_MIN_VAL = 200
LINEAR_ACCURACY = 0.995
HOLDOUT_EVERY = 5  # without a validation set: every 5th sampled training row is held out
NAMED = 3  # features named in a message
LINEAR_C = 100.0  # weak regularization: a leak spread over columns needs large weights to show


@rule(
    "target-leak",
    severity="warning",
    category="data",
    summary="A single input feature, or a linear model, predicts the label almost perfectly on "
    "validation",
    why=(
        "When one column gives the label away it was usually made from the label, or recorded "
        "after the outcome was known (an approval date beside 'approved', a discharge code "
        "beside the diagnosis). Training and validation both look excellent, and the model "
        "fails in use, where that column is not available yet or means something else."
    ),
    fix="Find out how the named column is made; drop it if it is only known once the label "
    "is, or rebuild it from information available at prediction time.",
    example=(
        "df['approved_on_set'] = df['approved_on'].notna()   # set only for approved loans\n"
        "x = df.drop(columns=['approved']).to_numpy()          # the label leaks back in\n\n"
        "x = df.drop(columns=['approved', 'approved_on', 'approved_on_set']).to_numpy()"
    ),
    source="S. Kaufman, S. Rosset, C. Perlich, Leakage in Data Mining: Formulation, Detection, "
    "and Avoidance (KDD 2011); J. Howard, R. Thomas, S. Gugger, fast.ai course and fastbook, "
    "look at the data and at what each column means before training.",
)
def target_leak(ctx: StaticContext) -> Iterator[Hit]:
    split = _tabular_split(ctx)
    if split is None:
        return
    x, y, vx, vy, val_from = split
    n_val = len(vy)
    majority = float(np.mean(vy == np.bincount(y).argmax()))
    alone = _alone_accuracies(x, y, vx, vy)  # (F,)
    order = np.argsort(-alone, kind="stable")
    bar = max(ALONE_ACCURACY, 1 - ERRORS_LEFT * (1 - majority))
    leaking = [int(j) for j in order if alone[j] >= bar][:NAMED]
    evidence = {"validation": val_from, "val_rows": n_val, "majority_accuracy": majority}
    if n_val >= MIN_VAL and leaking:
        named = (
            f"input feature {leaking[0]} alone predicts"
            if len(leaking) == 1
            else f"input features {', '.join(map(str, leaking))} each alone predict"
        )
        reach = ", ".join(f"{alone[j]:.1%}" for j in leaking)
        yield Hit(
            f"{named} the label: {reach} of {n_val} {val_from} right from that one column, "
            f"where guessing the majority class gets {majority:.1%}. A column this telling is "
            "usually made from the label or recorded after the outcome.",
            where=f"inputs[:, {leaking[0]}]",
            evidence={
                **evidence,
                "features": leaking,
                "alone_accuracy": [float(alone[j]) for j in leaking],
            },  # fmt: skip
            fix=f"Check how input column {leaking[0]} is built; drop it if it is only known "
            "once the label is.",
        )
        return
    if n_val < LINEAR_MIN_VAL:
        return
    linear, weights = _linear(x, y, vx, vy)
    if linear is None or linear < LINEAR_ACCURACY:
        return
    top = [int(j) for j in np.argsort(-weights, kind="stable")[:NAMED]]
    yield Hit(
        f"a logistic regression on the inputs gets {linear:.1%} of {n_val} {val_from} right "
        f"(the majority class {majority:.1%}); it leans most on {_named(top, alone)}. Real "
        "tabular labels are rarely this linear: some column may encode the label.",
        where=f"inputs[:, {top[0]}]",
        evidence={
            **evidence,
            "linear_accuracy": linear,
            "features": top,
            "alone_accuracy": [float(alone[j]) for j in top],
        },  # fmt: skip
        fix=f"Check how input columns {', '.join(map(str, top))} are built, and drop any made "
        "from the label or known only after it.",
    )


def _named(features: list[int], alone: np.ndarray) -> str:
    parts = [f"{j} ({alone[j]:.1%} alone)" for j in features]
    return ("input feature " if len(parts) == 1 else "input features ") + ", ".join(parts)


def _tabular_split(ctx: StaticContext):
    """(x, y, val x, val y, what the validation rows are) as numpy, or None when the setup is
    not tabular single-label classification."""
    if ctx.task != "classification":
        return None
    train, val = ctx.train_sample, ctx.val_sample
    tx, vx_all = sole_input(train.inputs), sole_input(val.inputs) if val is not None else None
    if not _tabular(tx, train.targets):
        return None
    x, y = tx.double().numpy(), train.targets.numpy()
    if val is not None and _tabular(vx_all, val.targets) and vx_all.shape[1] == x.shape[1]:
        vx, vy, val_from = vx_all.double().numpy(), val.targets.numpy(), "validation rows"
    else:
        held = np.arange(len(y)) % HOLDOUT_EVERY == 0
        x, y, vx, vy = x[~held], y[~held], x[held], y[held]
        val_from = "held-out training rows"
    keep, vkeep = (y >= 0) & np.isfinite(x).all(1), (vy >= 0) & np.isfinite(vx).all(1)
    x, y, vx, vy = x[keep], y[keep], vx[vkeep], vy[vkeep]
    if len(y) < 2 * LEAVES or len(vy) == 0 or len(np.unique(y)) < 2:
        return None
    return x, y, vx, vy, val_from


def _tabular(x, y) -> bool:
    return (
        isinstance(x, torch.Tensor)
        and isinstance(y, torch.Tensor)
        and x.dim() == 2
        and torch.is_floating_point(x)
        and 1 <= x.shape[1] <= MAX_FEATURES
        and y.dim() == 1
        and not torch.is_floating_point(y)
    )


def _alone_accuracies(x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """Validation accuracy of each feature alone: (F,). A decision tree on that one column, of
    at most LEAVES intervals: a threshold, or a code per value, whatever the column holds."""
    from sklearn.tree import DecisionTreeClassifier

    out = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        tree = DecisionTreeClassifier(max_leaf_nodes=LEAVES, min_samples_leaf=MIN_LEAF)
        tree.fit(x[:, j : j + 1], y)
        out[j] = float(np.mean(tree.predict(vx[:, j : j + 1]) == vy))
    return out


def _linear(x, y, vx, vy) -> tuple[float | None, np.ndarray]:
    """Validation accuracy of a logistic regression on standardized inputs, and each feature's
    largest absolute weight (F,)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings: 300 iterations do here
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=LINEAR_C, max_iter=1000))
            clf.fit(x, y)
    except ValueError:  # e.g. a single class in the training rows
        return None, np.zeros(x.shape[1])
    weights = np.abs(clf[-1].coef_).max(axis=0)
    return float(np.mean(clf.predict(vx) == vy)), weights
