"""The loss curve: diverging, oscillating, on a plateau; with validation, over- and underfitting."""

from __future__ import annotations

import math

from trainwise.rules.inflight.base import (
    Detector,
    Phase,
    Watched,
    finite_train_loss,
    fmt,
    median,
    train_loss,
)
from trainwise.rules.registry import rule
from trainwise.signals import TRAIN_LOSS, VAL_LOSS


def _medians(values: list[float], width: int) -> list[float]:
    """Medians of consecutive non-overlapping windows (smooths minibatch noise); `median`
    inlined, as this runs over every window of the history at each judging round."""
    mid, odd = width // 2, width % 2
    out = []
    for i in range(0, len(values) - width + 1, width):
        window = sorted(values[i : i + width])
        out.append(window[mid] if odd else 0.5 * (window[mid - 1] + window[mid]))
    return out


def _regularizers(model: Watched) -> str:
    tips = []
    if not model.has_dropout:
        tips.append("add dropout (p=0.1-0.5) before the last layers")
    if not model.weight_decay:
        tips.append("add weight decay (AdamW weight_decay=1e-2, SGD 5e-4)")
    if model.has_conv2d:
        tips.append("augment the training images (flips, crops)")
    tips.append("use a smaller head or fewer parameters")
    return "; ".join(tips)


@rule(
    "loss-diverging",
    severity="error",
    category="in-flight",
    summary="The loss climbs well above its best value",
    why="A loss that doubles from its best and climbs back toward (or past) where it started has left "
    "the region the optimizer can handle: usually a learning rate too high for this phase, a "
    "gradient spike, or bad data in a part of the stream.",
    fix="Lower the learning rate (or add warmup), clip gradients at the measured percentile, and "
    "look at the batches where it began.",
    example="optimizer = torch.optim.SGD(model.parameters(), lr=2.0)\n\n"
    "optimizer = torch.optim.SGD(model.parameters(), lr=0.05)",
    source="seed 004 (loss curves); TIPS.md In flight",
)
class LossDiverging(Detector):
    reads = (TRAIN_LOSS,)
    MIN_STEPS = 30

    def check(self, view):
        loss = finite_train_loss(view)
        if len(loss) < self.MIN_STEPS:
            return
        first, recent = median(loss[:10]), median(loss[-10:])
        best = min(_medians(loss, 10))
        previous = median(loss[-20:-10])
        # Twice its best, back above halfway to where it started, and still climbing.
        if recent > 2 * best and recent > best + 0.5 * (first - best) and recent > previous:
            yield self.finding(
                f"the loss climbed to {fmt(recent)} (median of the last 10 steps) from its best "
                f"{fmt(best)}; it started at {fmt(first)}",
                evidence={"recent": recent, "best": best, "first": first},
            )


@rule(
    "loss-oscillating",
    severity="warning",
    category="in-flight",
    summary="The loss jumps up and down with no downward trend",
    why="Minibatch noise makes the loss wiggle around a falling trend; a loss whose spread is a "
    "quarter of its starting value with no trend means the steps overshoot: the learning rate is "
    "too high, the batches are not shuffled (ordered by class), or the batch is tiny.",
    fix="Lower the learning rate, shuffle the training data, grow the batch, or clip gradients.",
    example="DataLoader(train, batch_size=32, shuffle=False)  # sorted by label\n\n"
    "DataLoader(train, batch_size=32, shuffle=True)",
    source="seed 004 (loss curves); TIPS.md In flight",
)
class LossOscillating(Detector):
    reads = (TRAIN_LOSS,)
    WINDOW = 50
    SPREAD = 0.25  # std over the window above a quarter of the starting loss: not noise

    def check(self, view):
        loss = finite_train_loss(view)
        if len(loss) < self.WINDOW + 10:
            return
        first = median(loss[:10])
        window = loss[-self.WINDOW :]
        mean = sum(window) / len(window)
        std = math.sqrt(sum((v - mean) ** 2 for v in window) / len(window))
        half = len(window) // 2
        falling = median(window[half:]) < 0.9 * median(window[:half])
        if first > 0 and std > self.SPREAD * first and not falling and mean > 0.3 * first:
            yield self.finding(
                f"the loss jumps around {fmt(mean)} ± {fmt(std)} over the last {self.WINDOW} "
                f"steps without a downward trend (it started at {fmt(first)})",
                evidence={"mean": mean, "std": std, "first": first},
            )


@rule(
    "loss-plateau",
    severity="warning",
    category="in-flight",
    summary="The loss has not improved over a window of steps",
    why="No 1% gain in 50 steps means the run spends compute for nothing: a learning rate too low (or "
    "annealed too early), too little capacity, or a bug that cuts the gradient. A plateau at the "
    "starting loss is a warning; one after learning is reported as info (annealing may help).",
    fix="Anneal (cosine, step decay) or restart the LR schedule, run an LR range test, grow the model.",
    example="optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)  # flat from the start\n\n"
    "scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)",
    source="seed 001 (learning-rate annealing); TIPS.md In flight",
)
class LossPlateau(Detector):
    reads = (TRAIN_LOSS,)
    WINDOW = 50
    GAIN = 0.01  # under 1% better than the best before the window

    def check(self, view):
        loss = finite_train_loss(view)
        if len(loss) < 2 * self.WINDOW:
            return
        first = median(loss[:10])
        before = min(_medians(loss[: -self.WINDOW], 5))
        recent = min(_medians(loss[-self.WINDOW :], 5))
        if recent < before * (1 - self.GAIN) and before > 0:
            return
        if recent < 1e-3 * max(first, 1e-12):
            return  # converged to ~0: nothing left to gain
        stuck_at_start = recent > 0.9 * first
        yield self.finding(
            f"no improvement over the last {self.WINDOW} steps: best {fmt(recent)} vs "
            f"{fmt(before)} before"
            + (" (it has barely moved from the start)" if stuck_at_start else ""),
            evidence={"best_recent": recent, "best_before": before, "first": first},
            severity="warning" if stuck_at_start else "info",
        )


@rule(
    "overfitting",
    severity="warning",
    category="in-flight",
    summary="Validation loss rises while training loss falls",
    why="When the validation loss has risen 5% above its best (two evaluations in a row) while the training loss keeps falling, "
    "the model is memorizing the training set; every further step makes the model you would ship "
    "worse.",
    fix="Keep the checkpoint of the best validation step (early stopping) and regularize: dropout, "
    "weight decay, augmentation, a smaller head.",
    example="model = nn.Sequential(nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 10))  # 200 samples\n\n"
    "model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))",
    source="seeds 004, 001 (overfitting, early stopping); TIPS.md In flight",
)
class Overfitting(Detector):
    reads = (TRAIN_LOSS, VAL_LOSS)
    when = Phase.VAL
    # Validation loss 5% above its best at the last two evaluations, still rising: more than
    # the evaluation noise of a few hundred samples, and not a single unlucky evaluation.
    RISE = 0.05

    def check(self, view):
        val, train = view.history.get(VAL_LOSS.key), view.history.get(TRAIN_LOSS.key)
        if len(val) < 4 or len(train) < 10:
            return
        best_i = min(range(len(val)), key=lambda i: val.values[i])
        best, last, prev = val.values[best_i], val.values[-1], val.values[-2]
        if best_i >= len(val) - 2 or prev < best * (1 + self.RISE) or last <= prev:
            return
        t_best = val.steps[best_i]
        train_at_best = median(
            [v for s, v in zip(train.steps, train.values, strict=True) if s <= t_best][-10:]
            or [math.nan]
        )
        train_now = median(train.last(10))
        if not train_now < train_at_best:
            return
        yield self.finding(
            f"validation loss rose from {fmt(best)} (step {t_best}) to {fmt(last)} while the "
            f"training loss fell from {fmt(train_at_best)} to {fmt(train_now)}",
            evidence={
                "val_best": best,
                "val_best_step": t_best,
                "val_last": last,
                "train_at_best": train_at_best,
                "train_now": train_now,
            },
            fix=f"Stop early at step {t_best} (keep that checkpoint); {_regularizers(view.model)}.",
        )


@rule(
    "underfitting",
    severity="warning",
    category="in-flight",
    summary="Training and validation loss are close, both high, and no longer improving",
    why="No gap between training and validation while both stay above half the starting loss means the "
    "model cannot even fit the training data: too little capacity, too much regularization, or "
    "too short/slow training.",
    fix="Grow the model, train longer or with a higher learning rate, and remove regularization.",
    example="model = nn.Linear(64, 10); optimizer = SGD(..., weight_decay=0.1)\n\n"
    "model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))",
    source="seed 004 (no gap between train and validation); TIPS.md In flight",
)
class Underfitting(Detector):
    reads = (TRAIN_LOSS, VAL_LOSS)
    when = Phase.VAL
    GAP = 0.1  # train and validation within 10%
    HIGH = 0.5  # still above half the starting loss
    STALLED = 0.05  # the last validation improved less than 5%

    def check(self, view):
        val, train = view.history.get(VAL_LOSS.key), train_loss(view)
        if len(val) < 3 or len(train) < 20:
            return
        first, train_now = median(train[:10]), median(train[-10:])
        last, prev = val.values[-1], val.values[-2]
        close = abs(last - train_now) <= self.GAP * max(train_now, 1e-12)
        high = train_now > self.HIGH * first and last > self.HIGH * first
        stalled = last > prev * (1 - self.STALLED)
        if close and high and stalled:
            yield self.finding(
                f"train loss {fmt(train_now)} and validation loss {fmt(last)} are close and "
                f"both above half the starting loss {fmt(first)}, and no longer improving",
                evidence={"train": train_now, "val": last, "first": first},
            )
