"""The kinds of loss trainwise recognizes (StaticContext.loss_kind), declared once.

Rules and stages compare a setup's loss against these names and groups, never against string
literals of their own. The values are plain strings (they appear in JSON and messages).
"""

from __future__ import annotations

from typing import Literal

LossKind = Literal["cross_entropy", "nll", "bce_logits", "bce", "mse", "l1", "other"]

CROSS_ENTROPY: LossKind = "cross_entropy"
NLL: LossKind = "nll"
BCE_LOGITS: LossKind = "bce_logits"
BCE: LossKind = "bce"
MSE: LossKind = "mse"
L1: LossKind = "l1"  # L1, SmoothL1 and Huber: the same scale of loss for a know-nothing model
OTHER: LossKind = "other"  # a callable that matches none of the above

LOSS_KINDS: tuple[LossKind, ...] = (CROSS_ENTROPY, NLL, BCE_LOGITS, BCE, MSE, L1, OTHER)

# Losses over class indices (targets are integer labels, outputs one score per class).
CLASS_INDEX: tuple[LossKind, ...] = (CROSS_ENTROPY, NLL)
# Losses over one probability per label (binary and multi-label).
BINARY: tuple[LossKind, ...] = (BCE, BCE_LOGITS)
# Regression losses, whose know-nothing reference comes from the targets' spread.
REGRESSION: tuple[LossKind, ...] = (MSE, L1)

# CrossEntropyLoss / NLLLoss skip this label by default (their `ignore_index`).
IGNORE_INDEX = -100
