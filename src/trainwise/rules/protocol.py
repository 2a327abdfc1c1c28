"""Rules judged on the preflight protocol's experiments (src/trainwise/stages/).

A stage runs its experiment and returns what it measured (a record of trainwise/measurements.py);
each rule here reads one such record (`reads=`) and turns it into findings. The thresholds live
beside the judgement that uses them; a stage imports one only where it decides how much more to
measure (e.g. locating the layer that mixes samples once they are found to mix).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from trainwise.loss_kinds import REGRESSION, LossKind
from trainwise.measurements import (
    BatchLeak,
    InitLoss,
    InputDependence,
    Memorized,
    MemorizedBatch,
    MemorizedFew,
    MultiDevice,
    ShortTraining,
    SpeedProfile,
    TrainEvalGap,
)
from trainwise.rules.registry import Hit, rule

SEED_003 = "How to start a deep learning project? (a 15-part thread)"


# Cross-entropy-like losses: "far" is half again above log C (log 2 for binary), with at least
# half a nat of room so two-class problems are not judged on noise.
RATIO_LOG = 1.5
MARGIN_LOG = 0.5
# MSE/L1: default-initialized outputs add their own variance (typically 0.1-0.5 of the target
# variance on standardized data); three times the reference is a genuine offset or scale error.
RATIO_REGRESSION = 3.0


@rule(
    "initial-loss-off",
    severity="warning",
    category="protocol",
    summary="The loss of the freshly initialized model is far above what a model that knows "
    "nothing should score (log C for C-class cross-entropy)",
    why=(
        "At initialization a classifier should spread its probability evenly, so "
        "cross-entropy starts near log C (2.30 for 10 classes), binary cross-entropy near "
        "log 2 and MSE near the target variance. A much higher start means the outputs are "
        "confidently wrong from step one: logits too large (an output layer initialized with "
        "a large std, a temperature, a scaling bug) or targets far from the outputs' range. "
        "The first hundreds of steps are then spent undoing the initialization (the "
        "'hockey stick' loss curve), and large initial gradients can destabilize training."
    ),
    fix=(
        "Keep the output layer at a small initialization (PyTorch's default, or scale its "
        "weights down), drop any scaling of the logits, and set the last bias to the log of "
        "the class prior (classification) or the target mean (regression); standardize "
        "regression targets."
    ),
    example=(
        "head = nn.Linear(128, 10)\n"
        "nn.init.normal_(head.weight, std=1.0)   # logits of std ~10: loss ~15 at init\n\n"
        "head = nn.Linear(128, 10)                # default init: loss ~log(10) = 2.30\n"
        "nn.init.zeros_(head.weight)              # or start from exactly uniform outputs\n"
        "head.bias.data = torch.log(class_prior)  # and the prior as the bias"
    ),
    source="Deep Learning Practical Tricks (a tips list) (initialization); Karpathy, "
    "'A recipe for training neural networks' (verify loss @ init, init well).",
    reads=InitLoss,
)
def initial_loss_off(m: InitLoss) -> Iterator[Hit]:
    limit = init_loss_limit(m.expected, m.loss_kind)
    if m.loss > limit:
        yield Hit(
            f"The freshly initialized model scores a loss of {fmt(m.loss)} on {m.samples} "
            f"training samples; a model that knows nothing should score about "
            f"{fmt(m.expected)} ({m.how}), {fmt(m.loss / m.expected)}x less. "
            + _init_loss_cause(m),
            evidence={"loss": m.loss, "expected": m.expected, "limit": limit},
        )


def init_loss_limit(expected: float, kind: LossKind) -> float:
    """The initial loss above which `initial-loss-off` fires."""
    if kind in REGRESSION:
        return RATIO_REGRESSION * expected
    return max(RATIO_LOG * expected, expected + MARGIN_LOG)


def _init_loss_cause(m: InitLoss) -> str:
    if m.target_mean is not None and m.target_std is not None:
        return (
            f"The targets have mean {fmt(m.target_mean)} and std {fmt(m.target_std)} while the "
            f"outputs start near 0: standardize the targets or set the last bias to "
            f"{fmt(m.target_mean)}."
        )
    return (
        "The initial logits are too large (a large init of the output layer or a scaled "
        "output): the model starts confidently wrong."
    )


_OVERFIT_FIX = (
    "Follow the cause the evidence points to: if another learning rate worked, use it; if some "
    "layers get no gradient, fix the graph (a .detach(), torch.no_grad(), a frozen or unused "
    "layer); if identical inputs carry different labels, fix the labels; otherwise give the "
    "model more capacity or check that the output layer matches the task."
)


# Relative spread of the outputs across samples below which they are "the same" output.
SAME_OUTPUT = 1e-5


@rule(
    "cannot-overfit-batch",
    severity="error",
    category="protocol",
    summary="With regularization off, the model cannot drive the loss of one batch near zero",
    why=(
        "A network with enough parameters can memorize a single batch: with dropout and "
        "weight decay off and a constant learning rate, its loss must fall near zero within "
        "a few hundred steps. When it cannot, a full training cannot work either, and the "
        "reason is one of a few: a learning rate far off, gradients that do not reach some "
        "layers, inputs and labels that do not match, or too little capacity. Finding this "
        "in a minute beats finding it after a day of training."
    ),
    fix=_OVERFIT_FIX,
    example=(
        "# copied from a fine-tuning recipe: far too low to train from scratch\n"
        "optimizer = lambda p: torch.optim.SGD(p, lr=1e-5)\n\n"
        "optimizer = lambda p: torch.optim.AdamW(p, lr=1e-3)"
    ),
    source=f"{SEED_003} (5/n: overfit first, regularizers off); "
    "Deep Learning Practical Tricks (a tips list) (overfit a small subset).",
    reads=MemorizedBatch,
)
def cannot_overfit_batch(m: MemorizedBatch) -> Iterator[Hit]:
    yield from _cannot_memorize(m)


@rule(
    "cannot-overfit-few",
    severity="error",
    category="protocol",
    summary="With regularization off, the model cannot memorize 5-10 training samples",
    why=(
        "Memorizing a handful of samples checks that the model can produce a different, "
        "correct output for each input. It is the cheapest proof that data loading, the "
        "model and the optimization fit together; if it fails, the loss curves of a long "
        "training will only show it much later."
    ),
    fix=_OVERFIT_FIX,
    example=(
        "out, _ = self.gru(x)          # (B, T, H)\n"
        "return self.head(out[:, 0])   # reads the first step: it has seen one token\n\n"
        "return self.head(out[:, -1])  # the last step has seen the whole sequence"
    ),
    source=f"{SEED_003} (6/n: overfit 5-10 samples).",
    reads=MemorizedFew,
)
def cannot_overfit_few(m: MemorizedFew) -> Iterator[Hit]:
    yield from _cannot_memorize(m)


def _cannot_memorize(m: Memorized) -> Iterator[Hit]:
    """The loss did not come near zero: say so, with the cause the retries and checks point at.
    A retry at another LR that worked makes it a warning (the setup learns; its LR is off)."""
    if m.reached:
        return
    causes = _memorize_causes(m)
    working = any(r.reached for r in m.retries)
    yield Hit(
        f"With dropout and weight decay off at a constant LR of {fmt(m.lr)}, the loss "
        f"on {m.what} went from {fmt(m.initial)} to {fmt(m.final)} in "
        f"{m.steps} steps; near zero is <= {fmt(m.target)}. Likely cause: "
        + "; ".join(causes)
        + ".",
        evidence={
            "steps": m.steps,
            "initial_loss": m.initial,
            "final_loss": m.final,
            **m.diagnostics,
        },
        fix=f"{causes[0][0].upper()}{causes[0][1:]}. " + _OVERFIT_FIX,
        severity="warning" if working else None,
    )


def _memorize_causes(m: Memorized) -> list[str]:
    causes: list[str] = []
    if not m.finite:
        causes.append(
            f"the loss became non-finite at step {m.steps}: the LR is too high or the "
            "loss has a numerical problem (log of 0, division by 0)"
        )
    for retry in m.retries:
        if retry.reached:
            direction = "too low" if retry.factor > 1 else "too high"
            causes.insert(
                0,
                f"at {retry.factor:g}x the LR ({fmt(retry.lr)}) the loss reached "
                f"{fmt(retry.final)} in {retry.steps} steps: the configured LR "
                f"({fmt(m.lr)}) is {direction} for this model",
            )
    if m.no_gradient:
        names = ", ".join(m.no_gradient[:5]) + ("..." if len(m.no_gradient) > 5 else "")
        causes.append(
            f"{len(m.no_gradient)} trainable parameters got no gradient ({names}): "
            "the loss does not reach them (detach, no_grad, an unused branch, a zero init)"
        )
    if m.inconsistent_samples > 0:
        causes.append(
            f"{m.inconsistent_samples} samples share an identical input with a sample of "
            "another label: no model can fit those; check how labels are matched to inputs"
        )
    if m.output_spread is not None and m.output_spread < SAME_OUTPUT:
        causes.append(
            "the model gives every sample the same output: the input does not reach it "
            "(see input-independent)"
        )
    if not causes:
        causes.append(
            "no LR worked and the gradients reach every layer: the model lacks the capacity or "
            "the architecture does not fit the task (check the output layer and pooling)"
        )
    return causes


# Zeroing the inputs must undo at least a quarter of what training on the batch gained, counted
# from the know-nothing loss (log C...) when the initial loss sits above it (unscaled inputs).
RECOVERED = 0.25


@rule(
    "input-independent",
    severity="error",
    category="protocol",
    summary="The model's output does not depend on its input: it ignores the data",
    why=(
        "A model trained on one batch should do far worse when its inputs are replaced by "
        "zeros, and it should give different samples different outputs. When neither holds, "
        "the input never reaches the output: a forward that reads the wrong tensor, a "
        "dataset that returns the same item, a mask that zeroes everything. The loss still "
        "falls a little (the model learns the label frequencies), which hides the bug."
    ),
    fix=(
        "Trace the input through forward: check that the tensor fed to the head comes from "
        "the input (print shapes and a few values), and that the dataset returns different "
        "inputs for different indices."
    ),
    example=(
        "h = self.encoder(self.embed(tokens) + self.pos)  # (B, T, D)\n"
        "return self.head(self.cls_token[:, 0])           # the parameter, not the output\n\n"
        "return self.head(h[:, 0])                        # the encoder output at CLS"
    ),
    source="Karpathy, 'A recipe for training neural networks' (input-independent baseline).",
    reads=InputDependence,
)
def input_independent(m: InputDependence) -> Iterator[Hit]:
    if same_output(m):
        yield Hit(
            f"After {m.steps} steps on one batch, the model gives all "
            f"{m.samples} samples the same output (relative spread "
            f"{m.output_spread:.1e}); with zeroed inputs its loss is {fmt(m.loss_zeroed)} vs "
            f"{fmt(m.loss_real)} on the real ones. The input does not reach the output.",
            evidence={
                "output_spread": m.output_spread,
                "loss_real_inputs": m.loss_real,
                "loss_zeroed_inputs": m.loss_zeroed,
            },
        )
        return
    gained = m.learned
    if m.loss_zeroed < m.loss_real + RECOVERED * gained:
        yield Hit(
            f"Trained on one batch, the model scores {fmt(m.loss_real)} on it and "
            f"{fmt(m.loss_zeroed)} with the inputs replaced by zeros: zeroing undoes less "
            f"than {RECOVERED:.0%} of the {fmt(gained)} it learned. The output "
            "barely depends on the input.",
            evidence={
                "loss_real_inputs": m.loss_real,
                "loss_zeroed_inputs": m.loss_zeroed,
                "loss_at_init": m.loss_at_init,
                "loss_know_nothing": m.loss_know_nothing,
            },
        )


def same_output(m: InputDependence) -> bool:
    """Every sample gets the same output: the input cannot reach it."""
    return m.output_spread is not None and m.output_spread < SAME_OUTPUT


# Gradient on other rows, relative to the sample's own: exact zeros when samples are independent,
# so anything above float rounding is a leak.
LEAK = 1e-6


@rule(
    "batch-mixing",
    severity="error",
    category="protocol",
    summary="In eval mode, the output for one sample depends on the inputs of other samples "
    "in the batch",
    why=(
        "Samples in a batch must be processed independently (BatchNorm in train mode aside). "
        "A reshape across the batch dimension (view instead of permute), a recurrent layer "
        "that takes the batch for the time axis, or a reduction over dim 0 silently mixes "
        "information between samples: training may even look fine, but the model learns "
        "from its neighbours and fails at batch size 1 or on shuffled data. trainwise "
        "measures it exactly: the gradient of sample i's output with respect to input j "
        "must be zero."
    ),
    fix=(
        "Use permute/transpose to reorder dimensions and view/reshape only within a sample "
        "(x.flatten(1)); give nn.GRU/nn.LSTM/nn.Transformer* batch_first=True for (B, T, F) "
        "inputs; reduce over the feature dimensions, not dim 0."
    ),
    example=(
        "self.gru = nn.GRU(8, 32)                  # expects (T, B, F)\n"
        "out, _ = self.gru(x)                      # x is (B, T, F): runs across the batch\n\n"
        "self.gru = nn.GRU(8, 32, batch_first=True)"
    ),
    source="Karpathy, 'A recipe for training "
    "neural networks' (use backprop to chart dependencies).",
    reads=BatchLeak,
)
def batch_mixing(m: BatchLeak) -> Iterator[Hit]:
    if m.leak <= LEAK:
        return
    yield Hit(
        f"In eval mode, the output for one sample depends on the inputs of other samples "
        f"in the batch: the gradient of a sample's output reaches other rows with "
        f"{m.leak:.2g} of its own magnitude (batch of {m.batch}, input {m.input_shape}). It "
        f"first happens at {m.where}.",
        where=m.where,
        evidence={"relative_gradient": m.leak, "batch": m.batch},
    )


# Relative distance between train-mode and eval-mode outputs. PyTorch's own dropout is switched
# off for the comparison (inverted dropout matches eval mode in expectation by construction).
# Healthy models after a short training measured 0.00-0.13 (BN running statistics lag the
# weights; dropout before BN inflates the running variance); an unscaled custom dropout p=0.5
# gives ~0.5-1.
MISMATCH = 0.3
# BatchNorm running statistics against the batch's own, per channel: a mean off by more than one
# batch standard deviation, or a variance off by more than 4x, is not lag but stale statistics.
BN_MEAN_OFF = 1.0
BN_VAR_RATIO = 4.0


@rule(
    "train-eval-mismatch",
    severity="error",
    category="protocol",
    summary="After a short training, the model's outputs in eval mode differ wildly from "
    "train mode on the same batch",
    why=(
        "Validation and inference run in eval mode: BatchNorm uses its running statistics "
        "and dropout is off. If those running statistics are stale (momentum 0, tiny or "
        "unrepresentative batches) or a custom dropout does not rescale, eval-mode outputs "
        "differ from what the model was trained to produce, and validation numbers say "
        "nothing about what training achieved."
    ),
    fix=(
        "Look at the named layer: for BatchNorm, keep momentum at 0.1 (PyTorch's convention "
        "is the weight of the new batch, the opposite of Keras), use batches of 16 or more "
        "or GroupNorm; for a custom dropout, scale the kept units by 1/(1-p) in training "
        "(or use nn.Dropout)."
    ),
    example=(
        "nn.BatchNorm2d(64, momentum=0.0)  # 'no momentum': running stats never move\n\n"
        "nn.BatchNorm2d(64)                # momentum=0.1"
    ),
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (BatchNorm at test time).",
    reads=TrainEvalGap,
)
def train_eval_mismatch(m: TrainEvalGap) -> Iterator[Hit]:
    if m.stale is not None:
        yield Hit(
            f"The running statistics of {m.stale.layer} do not match the batches it "
            f"normalizes in training: the running mean is off by {m.stale.mean_offset:.1f} "
            f"batch standard deviations and the running variance is "
            f"{m.stale.variance_ratio:.2g}x the batch's (mean over channels). Eval mode "
            f"normalizes with them: output distance {m.distance:.2f} to train mode, "
            f"loss {fmt(m.loss_eval_mode)} in eval vs {fmt(m.loss_train_mode)} in train mode.",
            where=m.stale.layer,
            evidence={
                "mean_offset_in_std": m.stale.mean_offset,
                "variance_ratio": m.stale.variance_ratio,
                "distance": m.distance,
                "loss_eval_mode": m.loss_eval_mode,
                "loss_train_mode": m.loss_train_mode,
            },
        )
        return
    if m.distance <= MISMATCH:
        return
    yield Hit(
        f"On the same training batch after a short training, the outputs in eval mode "
        f"differ from train mode by {m.distance:.2f} of their size (loss "
        f"{fmt(m.loss_eval_mode)} in eval mode vs {fmt(m.loss_train_mode)} in train mode). "
        f"Switching only {m.layer} to train mode accounts for a distance of "
        f"{m.layer_distance:.2f}.",
        where=m.layer,
        evidence={
            "distance": m.distance,
            "loss_eval_mode": m.loss_eval_mode,
            "loss_train_mode": m.loss_train_mode,
            "layer_distance": m.layer_distance,
        },
    )


def stale_statistics(mean_offset: float, variance_ratio: float) -> bool:
    """Running statistics too far from the batch's to be lag (see BN_MEAN_OFF, BN_VAR_RATIO)."""
    return mean_offset > BN_MEAN_OFF or not 1 / BN_VAR_RATIO < variance_ratio < BN_VAR_RATIO


# A regression model must remove at least 10% of the mean predictor's loss.
REGRESSION_GAIN = 0.9


@rule(
    "no-better-than-baseline",
    severity="error",
    category="protocol",
    summary="A short training does not beat the trivial baselines (majority class, mean "
    "target) on validation data",
    why=(
        "A few hundred steps are enough for a working setup to beat predicting the most "
        "frequent class or the mean target: if it does not, nothing has been learned yet "
        "and a longer run would most likely waste the compute. A linear model on the "
        "flattened inputs is the next bar: when a short run is below it, that is worth "
        "knowing (reported as info), since a simple baseline often beats complex models."
    ),
    fix=(
        "Read the stage's curves: a flat training loss points at the optimization (LR, "
        "gradients), a falling training loss with flat validation at the data (train/val "
        "from different distributions, labels misaligned). Start from the simplest model "
        "that beats the baselines and grow it."
    ),
    example=(
        "# trains on shuffled labels: the loss falls, validation stays at chance\n"
        "train = TensorDataset(x_train, y_train[torch.randperm(len(y_train))])"
    ),
    source=f"{SEED_003} (7/n: generalize for the first time; 14/n: simple baselines).",
    reads=ShortTraining,
)
def no_better_than_baseline(m: ShortTraining) -> Iterator[Hit]:
    final, trivial, linear, steps = m.final, m.trivial, m.linear, m.steps
    acc = final.get("val_accuracy")
    if acc is not None and "val_accuracy" in trivial:
        base = trivial["val_accuracy"]
        margin = accuracy_margin(base, m.val_samples)
        if acc <= base + margin:
            yield Hit(
                f"After {steps} training steps the model's validation accuracy is {acc:.1%}, "
                f"no better than always predicting the {trivial['name']} ({base:.1%}, margin "
                f"{margin:.1%} on {m.val_samples} samples); validation loss "
                f"{fmt(final['val_loss'])} vs {fmt(trivial['val_loss'])}. Nothing has been "
                "learned yet.",
                evidence={"val_accuracy": acc, "baseline_accuracy": base, "steps": steps},
            )
        elif linear and acc < linear["val_accuracy"] - margin:
            yield Hit(
                f"After {steps} steps the model reaches {acc:.1%} validation accuracy, below a "
                f"{linear['name']} on the flattened inputs ({linear['val_accuracy']:.1%}). A "
                "short run may simply need more steps; a long one that stays below it should "
                "start from the simpler model.",
                evidence={"val_accuracy": acc, "linear_accuracy": linear["val_accuracy"]},
                severity="info",
            )
        return
    loss, base = final["val_loss"], trivial.get("val_loss", math.nan)
    if not math.isfinite(base):
        return  # no trivial baseline for this loss
    if not math.isfinite(loss) or loss > REGRESSION_GAIN * base:
        yield Hit(
            f"After {steps} training steps the validation loss is {fmt(loss)}, not clearly "
            f"below the {trivial['name']} predictor's {fmt(base)} (needs < "
            f"{REGRESSION_GAIN:.0%} of it). Nothing has been learned yet.",
            evidence={"val_loss": loss, "baseline_loss": base, "steps": steps},
        )
    elif (
        linear and math.isfinite(linear["val_loss"]) and loss > linear["val_loss"] / REGRESSION_GAIN
    ):
        yield Hit(
            f"After {steps} steps the validation loss is {fmt(loss)}, above a "
            f"{linear['name']} on the flattened inputs ({fmt(linear['val_loss'])}).",
            evidence={"val_loss": loss, "linear_loss": linear["val_loss"]},
            severity="info",
        )


def accuracy_margin(base: float, samples: int) -> float:
    """Two standard errors of the baseline's accuracy on this many validation samples."""
    return 2 * math.sqrt(max(base * (1 - base), 0.01) / samples)


LOADER_BOUND = 0.5  # data wait over half the step: the loader is the bottleneck


@rule(
    "data-loader-bound",
    severity="warning",
    category="protocol",
    summary="Waiting for the next batch takes most of the training step",
    why=(
        "While the main process prepares data, the model is idle. When loading dominates "
        "the step, a faster model or a GPU changes nothing: the loader is the bottleneck. "
        "The usual causes are per-sample work in __getitem__ (decoding, recomputed "
        "statistics) done in the main process (num_workers=0)."
    ),
    fix=(
        "Move work out of __getitem__ (precompute, cache), and load in parallel: "
        "DataLoader(..., num_workers=N, persistent_workers=True, pin_memory=True on GPU). "
        "The finding gives the wait share measured with the suggested settings."
    ),
    example=(
        "def __getitem__(self, i):   # normalizes with statistics of the whole set, per item\n"
        "    return (self.x[i] - self.x.mean()) / self.x.std(), self.y[i]\n\n"
        "self.x = (x - x.mean()) / x.std()  # once, in __init__"
    ),
    source=f"{SEED_003} (8/n: know where the bottleneck lies).",
    reads=SpeedProfile,
)
def data_loader_bound(m: SpeedProfile) -> Iterator[Hit]:
    if m.data_share <= LOADER_BOUND:
        return
    step = m.step_seconds
    evidence: dict = {"data_share": m.data_share, "step_seconds": step, **m.phases}
    tried = ""
    if (trial := m.loader_trial) is not None:
        evidence.update(
            {
                "suggested": trial.settings,
                "suggested_step_seconds": trial.step_seconds,
                "suggested_data_share": trial.data_share,
            }
        )
        if trial.step_seconds > 0:
            tried = (
                f" Measured with DataLoader({trial.settings}): step {ms(trial.step_seconds)}, "
                f"data wait {trial.data_share:.0%} (speed-up {step / trial.step_seconds:.2f}x on "
                "this machine)."
            )
    yield Hit(
        f"Waiting for data takes {m.data_share:.0%} of the training step "
        f"({ms(m.phases['data'])} of {ms(step)}, median over the profiled batches) with "
        f"num_workers={m.num_workers}." + tried,
        evidence=evidence,
    )


SLOW_STEP = 1.0  # seconds; seed 003 (8/n): a batch should take under a second


@rule(
    "slow-step",
    severity="warning",
    category="protocol",
    summary="One training step takes over a second",
    why=(
        "Deep learning is empirical: fast turnaround decides how many ideas get tried. A "
        "step over a second makes every debugging run slow; in the first phase of a project "
        "a smaller model or smaller inputs answer the same questions many times faster."
    ),
    fix=(
        "Start small (under ~1M parameters), downsample early (a strided stem), use smaller "
        "inputs or batches while debugging; the finding shows where the step's time goes "
        "(data, forward, backward, optimizer)."
    ),
    example=(
        "nn.Conv2d(3, 128, 3, padding=1)  # full resolution, 224x224, 128 channels\n\n"
        "nn.Conv2d(3, 32, 3, stride=2, padding=1)  # downsample in the stem"
    ),
    source=f"{SEED_003} (2/n: start simple; 8/n: a single batch in under a second).",
    reads=SpeedProfile,
)
def slow_step(m: SpeedProfile) -> Iterator[Hit]:
    if m.step_seconds_judged <= m.slow_step_seconds:
        return
    breakdown = ", ".join(f"{p} {ms(v)}" for p, v in m.phases.items())
    yield Hit(
        f"One training step takes {ms(m.step_seconds)} on {m.device} (batch of "
        f"{m.batch_size}; {ms(m.step_seconds_judged)} of CPU time): {breakdown}. Debugging "
        "turnaround suffers; the "
        f"largest part is {max(m.phases, key=m.phases.get)}.",
        evidence={
            "step_seconds": m.step_seconds,
            "step_seconds_judged": m.step_seconds_judged,
            **m.phases,
        },
    )


# -- multi-device (data parallel) ------------------------------------------------------------

# The N-process weights against the one-process run's, relative to how far the one-process
# weights moved in the K steps. Float sums in another order differ by ~1e-7 relative, and SGD
# keeps it there (MLPs: 3e-7); Adam divides by sqrt(v), so on near-zero gradients that noise
# becomes a step of up to the LR: 1.5e-2 on the MNIST-1D CNN, 4.8e-2 on the tiny U-Net of
# benchmarks/multi_device.py. A summed loss under SGD moves each step 1/N as far: a gap of
# at least 1 - 1/N (0.5 at N = 2; measured 0.74).
PARAM_GAP = 0.2
REPLICA_SPREAD = 1e-6  # the `ddp-out-of-sync` tolerance: DDP replicas are bit-identical
OVERLAP = 0.5  # a share of rank 0's samples that other ranks also saw: the data is not split
SYNC_BN_BATCH = 16  # per-device batches under this make per-device BatchNorm statistics noisy
UNUSED_MARKERS = ("not used in producing loss", "did not receive grad")


@rule(
    "multi-device-broken",
    severity="error",
    category="protocol",
    summary="Training on several devices (DistributedDataParallel) fails, hangs, or does not "
    "compute what one device does",
    why=(
        "Data-parallel training should be the single-device run at a larger batch: each "
        "replica sees its own share of the data, gradients are averaged, and every replica "
        "takes the same step. Several mistakes break that silently or only at scale: a loss "
        "summed over the batch (the averaging divides each step by the number of devices), a "
        "DataLoader that hands every rank the same samples (N devices, one device's data), "
        "parameters that only some batches use (DDP waits for their gradients and stops), "
        "BatchNorm normalising over a few samples per device. trainwise runs N processes "
        "under torchrun against one process at the same global batch, seed and data order."
    ),
    fix=(
        "Average the loss over the batch (reduction='mean'), or scale the LR by the number of "
        "devices; give the DataLoader a DistributedSampler and call set_epoch each epoch; make "
        "every parameter take part in every forward, or pass find_unused_parameters=True to "
        "DistributedDataParallel; convert BatchNorm with "
        "nn.SyncBatchNorm.convert_sync_batchnorm(model) when each device holds few samples."
    ),
    example=(
        "loss_fn = nn.CrossEntropyLoss(reduction='sum')      # DDP averages: step / N\n"
        "loader = DataLoader(ds, batch_size=32, shuffle=True)  # every rank: the same data\n\n"
        "loss_fn = nn.CrossEntropyLoss()\n"
        "loader = DataLoader(ds, batch_size=32, sampler=DistributedSampler(ds))"
    ),
    source="PyTorch documentation, 'DistributedDataParallel' notes and the DDP tutorial; "
    "Goyal et al. 2017, 'Accurate, Large Minibatch SGD' (the linear scaling rule).",
    reads=MultiDevice,
)
def multi_device_broken(m: MultiDevice) -> Iterator[Hit]:
    setting = f"{m.devices} processes ({m.backend}), {m.per_device_batch} samples per device"
    if m.hung:
        yield Hit(
            f"Training on {setting} did not finish within {m.budget:.0f}s and was stopped: a "
            "rank waited in a collective for a rank that never joined (rank-dependent code "
            "paths, a rank that died, or a loader giving ranks different batch counts).",
            evidence={"budget_s": m.budget},
        )
        return
    if m.error:
        unused = any(marker in m.error for marker in UNUSED_MARKERS)
        names = f" ({', '.join(m.unused)})" if m.unused else ""
        yield Hit(
            f"Training on {setting} failed on {_first_sentence(m.error)}"
            + (f" Parameters got no gradient in some steps{names}: DDP waits for every "
               "parameter's gradient." if unused else ""),
            where=", ".join(m.unused) or None,
            evidence={"error": m.error[:500]},
            fix=("Make every parameter take part in each forward, or pass "
                 "find_unused_parameters=True to DistributedDataParallel.") if unused else "",
        )  # fmt: skip
        return
    yield from _multi_device_mismatch(m, setting)
    if m.batchnorm and m.per_device_batch < SYNC_BN_BATCH:
        yield Hit(
            f"{len(m.batchnorm)} BatchNorm layer(s) ({', '.join(m.batchnorm[:3])}) normalise "
            f"over each device's {m.per_device_batch} samples, not the global batch of "
            f"{m.devices * m.per_device_batch}: noisy statistics under {SYNC_BN_BATCH} per "
            "device.",
            where=m.batchnorm[0],
            severity="warning",
            fix="nn.SyncBatchNorm.convert_sync_batchnorm(model) before wrapping it in DDP.",
            evidence={"per_device_batch": m.per_device_batch},
        )


def _first_sentence(error: str, limit: int = 240) -> str:
    """ "rank 0: RuntimeError: Expected ... one. This error ..." -> up to the first full stop."""
    line = error.splitlines()[0] if error else ""
    end = line.find(". ")
    line = line if end < 0 else line[: end + 1]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _multi_device_mismatch(m: MultiDevice, setting: str) -> Iterator[Hit]:
    if m.overlap is not None and m.overlap > OVERLAP:
        yield Hit(
            f"On {setting}, {m.overlap:.0%} of rank 0's samples were also handed to another "
            "rank: the DataLoader ignores the rank, so N devices train on one device's data.",
            evidence={"overlap": m.overlap},
            fix="DataLoader(dataset, sampler=DistributedSampler(dataset)) and "
            "sampler.set_epoch(epoch) each epoch.",
        )
    if m.spread is not None and m.spread > REPLICA_SPREAD:
        yield Hit(
            f"On {setting}, the replicas' weights differ by {fmt(m.spread)} (relative) after "
            f"{m.steps} steps: they no longer train one model.",
            evidence={"spread": m.spread},
        )
    if m.param_gap is None or m.param_gap <= PARAM_GAP:
        return
    summed = m.loss_ratio is not None and abs(m.loss_ratio * m.devices - 1) < abs(m.loss_ratio - 1)
    scale = f"; first step {fmt(m.update_ratio)}x as long" if m.update_ratio else ""
    cause = (
        f" The first loss is {fmt(m.loss_ratio)}x the one-process loss on the same samples: "
        "the loss sums over the batch, and DDP's averaging of gradients over the "
        f"{m.devices} replicas makes each step 1/{m.devices} of the one-process step{scale}."
        if summed
        else f"{scale.lstrip(';')}."
    )
    yield Hit(
        f"After {m.steps} steps on {setting}, the weights are {m.param_gap:.1%} of the "
        "one-process run's movement away from it (same seed, data and global batch; float "
        f"noise stays well under {PARAM_GAP:.0%}).{cause}",
        evidence={
            "param_gap": m.param_gap,
            "loss_ratio": m.loss_ratio,
            "update_ratio": m.update_ratio,
        },  # fmt: skip
        fix=f"Average the loss over the batch (reduction='mean'), or scale the LR by {m.devices}."
        if summed
        else "",
    )


# -- how numbers read in messages -------------------------------------------------------------


def fmt(value: float) -> str:
    """A number for a message: 3 significant digits."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"
