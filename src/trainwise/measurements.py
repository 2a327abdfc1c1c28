"""What the preflight experiments measured: one frozen record per stage, read by the rules.

A stage (stages/) runs its experiment and returns one of these; the protocol and LR rules
(rules/protocol.py, rules/lr.py) declare which type they read (`@rule(..., reads=...)`) and turn
it into findings. The records hold numbers and names only (no model, no tensor), and this module
imports nothing from trainwise, so rules can read them without importing the experiments
(`lr_find`, stages/, runs/).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainwise.loss_kinds import LossKind

# -- loss at init -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InitLoss:
    """The mean loss of a freshly initialized model against what a know-nothing model scores."""

    loss: float
    expected: float  # the know-nothing reference (log C, log 2, the target variance, ...)
    how: str  # how `expected` was derived, for the message
    samples: int
    loss_kind: LossKind
    # The training targets' mean and std, for regression losses on float targets (else None):
    # a large initial loss there is an offset or scale the last bias can absorb.
    target_mean: float | None = None
    target_std: float | None = None


# -- speed ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoaderTrial:
    """The step measured again with a copy of the user's loader using parallel workers."""

    settings: str  # the DataLoader arguments tried, as the user would write them
    step_seconds: float
    data_share: float


@dataclass(frozen=True)
class SpeedProfile:
    """Median phase times of a training step with the user's own DataLoader."""

    device: str
    batch_size: int | None
    num_workers: int
    phases: Mapping[str, float]  # data, forward, backward, optimizer: median seconds
    step_seconds: float  # the sum of the phases
    step_seconds_judged: float  # on CPU, capped by the CPU time (other processes' load)
    data_share: float  # phases["data"] / step_seconds
    slow_step_seconds: float  # the limit of `slow-step` this profile is judged against
    loader_trial: LoaderTrial | None = None  # measured only when data loading dominates


# -- memorizing a few samples (overfit-batch, overfit-few) -----------------------------------


@dataclass(frozen=True)
class Retry:
    """The memorization run again at `factor` times the configured LR."""

    factor: float
    lr: float
    final: float  # loss before the last step
    steps: int
    reached: bool  # the loss came near zero


@dataclass(frozen=True)
class Memorized:
    """Memorizing `what` with dropout and weight decay off at a constant LR."""

    what: str  # "one batch of 32", "8 samples"
    samples: int
    lr: float
    steps: int
    initial: float  # loss before the first step
    final: float  # loss before the last step
    target: float  # "near zero"
    reached: bool
    finite: bool  # every loss was finite
    # Measured only when the loss did not come near zero, to tell why:
    retries: tuple[Retry, ...] = ()  # other LRs, in the order tried (stops at the first success)
    no_gradient: tuple[str, ...] = ()  # trainable parameters that got no gradient at step 1
    inconsistent_samples: int = 0  # samples sharing an identical input with another label
    output_spread: float | None = None  # relative spread of the final outputs across samples

    @property
    def diagnostics(self) -> dict[str, Any]:
        """The measured evidence of a failed memorization, by name (the stage's metrics and the
        finding's evidence)."""
        evidence: dict[str, Any] = {}
        for retry in self.retries:
            evidence[f"final_loss_at_lr_x{retry.factor:g}"] = retry.final
            if retry.reached:
                evidence["working_lr"] = retry.lr
        if self.no_gradient:
            evidence["no_gradient"] = list(self.no_gradient[:20])
        if self.inconsistent_samples > 0:
            evidence["inconsistent_samples"] = self.inconsistent_samples
        return evidence


@dataclass(frozen=True)
class MemorizedBatch(Memorized):
    """The overfit-batch stage's measurement (judged by cannot-overfit-batch)."""


@dataclass(frozen=True)
class MemorizedFew(Memorized):
    """The overfit-few stage's measurement (judged by cannot-overfit-few)."""


# -- input dependence -------------------------------------------------------------------------


@dataclass(frozen=True)
class InputDependence:
    """A model trained on one batch, scored on it with real and with zeroed inputs."""

    samples: int
    steps: int
    loss_at_init: float
    loss_real: float
    loss_zeroed: float
    output_spread: float | None  # relative spread of its outputs across the samples
    # The loss of a model that knows nothing (log C for cross-entropy...), None when unknown:
    # an initial loss far above it (unscaled inputs) is not something zeroing must undo.
    loss_know_nothing: float | None = None

    @property
    def learned(self) -> float:
        """How far training brought the loss down from knowing nothing (or from init)."""
        start = self.loss_at_init
        if self.loss_know_nothing is not None:
            start = min(start, self.loss_know_nothing)
        return start - self.loss_real


# -- batch independence -----------------------------------------------------------------------


@dataclass(frozen=True)
class BatchLeak:
    """How much one sample's eval-mode output depends on the other samples' inputs."""

    batch: int
    leak: float  # max cross-sample gradient relative to the sample's own
    input_shape: str
    where: str | None = None  # the first place that mixes rows, located when it leaks


# -- short training vs baselines --------------------------------------------------------------


@dataclass(frozen=True)
class ShortTraining:
    """A bounded training with validation, and the trivial and linear baselines."""

    steps: int
    final: Mapping[str, float]  # the last point of the curve: val_loss (and val_accuracy)
    trivial: Mapping[str, Any]  # name, val_loss (and val_accuracy)
    linear: Mapping[str, Any]  # name and val_accuracy or val_loss; empty when not fitted
    val_samples: int


# -- train/eval consistency -------------------------------------------------------------------


@dataclass(frozen=True)
class StaleBatchNorm:
    layer: str
    mean_offset: float  # running mean vs the batch's, in batch standard deviations
    variance_ratio: float  # running variance / the batch's (geometric mean over channels)


@dataclass(frozen=True)
class TrainEvalGap:
    """Eval-mode against train-mode outputs on a training batch, after a short training."""

    distance: float  # relative distance between the two outputs
    loss_train_mode: float
    loss_eval_mode: float
    passes: int
    stale: StaleBatchNorm | None = None  # the first BatchNorm with stale running statistics
    # The single module whose switch to train mode moves the output most, and that distance:
    # located only when the outputs differ.
    layer: str | None = None
    layer_distance: float = 0.0


# -- LR range test ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RangeTest:
    """An LR range test's curve and suggestion, against the configured LR."""

    lrs: np.ndarray  # (N,) LR at each step
    smoothed: np.ndarray  # (N,) smoothed loss (NaN past divergence)
    configured_lr: float | None
    suggested_lr: float | None  # the range test's own suggestion
    low: float | None  # the good range around it
    high: float | None
    lr_div: float | None  # divergence onset: the loss climbs back up from here

    @classmethod
    def of(cls, result: Any) -> RangeTest:
        """From an `LRFindResult` (read by its fields, so the rules need not import lr_find)."""
        s = result.suggestion
        return cls(
            lrs=result.lrs,
            smoothed=result.smoothed,
            configured_lr=result.configured_lr,
            suggested_lr=s.lr,
            low=s.low,
            high=s.high,
            lr_div=s.lr_div,
        )

    @property
    def judgeable(self) -> bool:
        """A suggestion, a divergence onset and a configured LR to compare."""
        return (
            self.suggested_lr is not None and bool(self.configured_lr) and self.lr_div is not None
        )


# -- multi-device (data parallel) -------------------------------------------------------------


@dataclass(frozen=True)
class MultiDevice:
    """N processes under DDP against one process at the same global batch, same seed and data.

    Gaps are None when not measured: no reference when the user's own DataLoader decides the
    ranks' data (its order cannot be replayed in one process), nothing from the ranks when
    they failed."""

    devices: int
    backend: str  # "gloo" (CPU processes) or "nccl"
    steps: int
    per_device_batch: int
    seconds: float
    budget: float
    error: str = ""  # "rank R: Type: message" of the first rank that failed
    hung: bool = False  # the budget ran out: the processes were killed
    unused: tuple[str, ...] = ()  # parameters that got no gradient in a step
    spread: float | None = None  # replicas' largest relative parameter difference
    param_gap: float | None = None  # |theta_N - theta_1| / |theta_1 - theta_0|, final weights
    loss_ratio: float | None = None  # first step: the ranks' mean loss / the reference's
    update_ratio: float | None = None  # first step: |delta theta_N| / |delta theta_1|
    overlap: float | None = None  # share of rank 0's samples another rank saw as well
    own_loader: bool = False  # the ranks used the Setup's DataLoader as it is
    batchnorm: tuple[str, ...] = ()  # BatchNorm layers (normalising per device)
