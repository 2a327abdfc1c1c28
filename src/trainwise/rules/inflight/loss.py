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
    weight_params,
)
from trainwise.rules.inflight.trends import (
    MIN_POINTS,
    MIN_STEPS,
    tail,
    trend_since,
    window_start,
    window_steps,
)
from trainwise.rules.registry import rule
from trainwise.signals import LR, TRAIN_LOSS, UPDATE_RATIO, VAL_LOSS, WEIGHT_NORM


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
    source="Deep Learning Practical Tricks (a tips list) (loss curves)",
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
    source="Deep Learning Practical Tricks (a tips list) (loss curves)",
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


def _moving_layer(view, since: int) -> tuple[str, float, float] | None:
    """The weight tensor whose norm changed most beyond what a random walk reaches, over the
    steps since `since`: (name, relative norm change, that change / the random walk's reach),
    when that ratio is above 1, else None.

    A stalled run's updates are noise: they cancel, so the weights wander like a random walk
    whose total displacement after n steps of relative size u is about u * sqrt(n), and the norm
    (one direction among thousands) changes far less. A norm that changes by more than u * sqrt(n)
    proves the steps keep a direction: the weights travel. With a flat loss that means the
    objective moves under the model (adversarial players such as a GAN's discriminator and
    generator, moving targets), not a stall. Momentum correlates ~1/(1 - beta) steps, which
    widens the walk's reach by sqrt((1 + beta) / (1 - beta)) (4.4 for 0.9) but only along all
    directions together; the norm's share of that is ~1/sqrt(size), so the bound keeps a margin.
    The argument needs a norm far from 0 compared with the walk (reach u * sqrt(n) <= 0.5): it
    holds for weight matrices and normalization scales (initialized at 1), not for biases
    started at 0, whose norm grows like the walk itself.
    """
    best = None
    scales = [
        info
        for info in view.model.params
        if "Norm" in info.module_kind and info.name.endswith("weight") and info.numel >= 16
    ]
    for info in weight_params(view) + scales:
        norms = view.history.get(WEIGHT_NORM.at(info.name))
        ratios = view.history.get(UPDATE_RATIO.at(info.name))
        steps, values = tail(norms, since)
        if len(values) < 3 or values[0] <= 0:
            continue
        u = median(tail(ratios, since)[1])
        n = steps[-1] - steps[0]
        if not (u > 0 and n > 0 and u * math.sqrt(n) <= 0.5):
            continue
        drift = abs(values[-1] - values[0]) / values[0]
        reach = drift / (u * math.sqrt(n))
        if reach > 1 and (best is None or reach > best[2]):
            best = (info.name, drift, reach)
    return best


@rule(
    "loss-plateau",
    severity="warning",
    category="in-flight",
    summary="The loss has not improved over a window of steps",
    why="A robust fit (Theil-Sen on the log of the loss) over the last quarter of the run (100 to "
    "1000 steps) that shows less than a 1% gain means the run spends compute for nothing: a "
    "learning rate too low (or annealed too early), too little capacity, or a bug that cuts the "
    "gradient or the labels. A plateau at the starting loss is a warning; one after learning is "
    "reported as info (annealing may help). A flat loss while the weights travel (a weight "
    "matrix's norm changes more than a random walk of its step sizes can reach) is what an "
    "adversarial objective looks like (a GAN's discriminator or generator): info only. A "
    "plateau after learning while the schedule has annealed the LR below a tenth of its peak "
    "is the schedule's end (a one-cycle or cosine run's last steps), not reported.",
    fix="Anneal (cosine, step decay) or restart the LR schedule, run an LR range test, grow the "
    "model; at the starting loss, check that inputs and labels still match.",
    example="optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)  # flat from the start\n\n"
    "scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)",
    source="Deep Learning Tips & Tricks (a tips list) (learning-rate annealing)",
)
class LossPlateau(Detector):
    reads = (TRAIN_LOSS, UPDATE_RATIO, WEIGHT_NORM, LR)
    GAIN = 0.01  # the fit gains under 1% over the window
    START = 0.9  # still above 90% of the starting loss: it never learned
    ANNEALED = 0.1  # every LR below a tenth of its peak: the schedule's end

    def check(self, view):
        series = view.history.get(TRAIN_LOSS.key)
        if len(series) < 10:
            return
        last = series.steps[-1]
        width = window_steps(last)
        if last - series.steps[0] < width + 10:  # the window, and 10 steps before it
            return
        since = last - width
        fitted = trend_since(series, since)
        if fitted is None or fitted.change <= -self.GAIN:
            return
        first, now = median(finite_train_loss(view)[:10]), fitted.end
        if first > 0 and now < 1e-3 * first:
            return  # converged to ~0: nothing left to gain
        stuck_at_start = now > self.START * first if first > 0 else now >= first
        if not stuck_at_start and _annealed(view, self.ANNEALED):
            return  # learned, then annealed: flat by design (fit's one-cycle ends so)
        message = (
            f"no improvement over the last {width} steps: the fitted loss went from "
            f"{fmt(fitted.start)} to {fmt(now)} ({fitted.change:+.1%})"
            + (f", and it started at {fmt(first)}: it has barely moved" if stuck_at_start else "")
        )
        evidence = {
            "change": fitted.change,
            "window": width,
            "start": fitted.start,
            "end": now,
            "first": first,
        }
        severity = "warning" if stuck_at_start else "info"
        moving = _moving_layer(view, since)
        if moving is not None:
            name, drift, reach = moving
            severity = "info"
            message += (
                f"; but the weights travel (`{name}`'s norm changed {drift:.0%}, {reach:.1f}x "
                "what a random walk of its step sizes reaches): the steps keep a direction, so "
                "the run is not stalled. A flat loss with travelling weights is an objective "
                "that moves under the model (a GAN player's) or steps too large to settle (a "
                "learning rate too high: see the other findings)"
            )
            evidence.update(moving_layer=name, norm_change=drift, walk_ratio=reach)
        yield self.finding(message, evidence=evidence, severity=severity)


def _annealed(view, below: float) -> bool:
    """Whether every param group's LR is now under `below` x its peak so far (False with no
    LR signal: a loop the watch cannot see the optimizer of)."""
    groups = list(view.history.layers(LR))
    return bool(groups) and all(
        series.values[-1] < below * max(series.values) for _, series in groups
    )


def _trend(view, key: str, series, since: int):
    """trend_since, fitted once per judging round: the two validation rules share a window
    whenever the best evaluation lies inside it."""
    memo_key = (_trend, key, since)
    if memo_key not in view.memo:
        view.memo[memo_key] = trend_since(series, since)
    return view.memo[memo_key]


def _val_window(view) -> tuple[int, bool]:
    """Where the validation rules' window starts, and whether the evidence is thin."""
    val = view.history.get(VAL_LOSS.key)
    return window_start(val, window_steps(val.steps[-1]), MIN_POINTS)


THIN = (
    "only {points} validation points over {span} steps: too few to be sure (a verdict needs "
    f"{MIN_POINTS} points over {MIN_STEPS}+ steps; it gets them as training goes on)"
)


@rule(
    "overfitting",
    severity="warning",
    category="in-flight",
    summary="Validation loss rises while training loss falls",
    why="When the validation loss has been rising since its best point (a robust fit over at "
    f"least {MIN_STEPS} steps and {MIN_POINTS} evaluations, 3% or more and beyond the scatter of "
    "the evaluations) while the training loss keeps falling, the model is memorizing the "
    "training set; every further step makes the model you would ship worse. With fewer "
    "evaluations it is an info note.",
    fix="Keep the checkpoint of the best validation step (early stopping) and regularize: dropout, "
    "weight decay, augmentation, a smaller head.",
    example="model = nn.Sequential(nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 10))  # 200 samples\n\n"
    "model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))",
    source="Deep Learning Practical Tricks (a tips list), Deep Learning Tips & Tricks (a tips list) (overfitting, early stopping)",
)
class Overfitting(Detector):
    reads = (TRAIN_LOSS, VAL_LOSS)
    when = Phase.VAL
    # A 3% rise of the fitted validation loss since its best: more than the evaluation noise
    # of a few hundred samples, and the fit (not one unlucky evaluation) says so.
    RISE = 0.03
    FALL = 0.01  # the training loss falls at least 1% over the same window

    def check(self, view):
        val, train = view.history.get(VAL_LOSS.key), view.history.get(TRAIN_LOSS.key)
        if len(val) < 3 or len(train) < 10:
            return
        since, thin = _val_window(view)
        # The trend since the best evaluation, when that lies before the window.
        best_i = min(range(len(val)), key=lambda i: val.values[i])
        t_best = val.steps[best_i]
        since = min(since, t_best)
        # The validation fit first: a few dozen points, and rarely rising; the training loss
        # has a point per step (its fit is the round's largest cost), only needed then.
        v = _trend(view, VAL_LOSS.key, val, since)
        if v is None or not v.rises(self.RISE, z=1.0 if thin else 2.0):
            return
        t = _trend(view, TRAIN_LOSS.key, train, since)
        if t is None or not t.falls(self.FALL):
            return
        message = (
            f"validation loss rose from {fmt(v.start)} to {fmt(v.end)} ({v.change:+.1%}, fitted "
            f"over steps {since}-{val.steps[-1]}) while the training loss fell from "
            f"{fmt(t.start)} to {fmt(t.end)}; its best was {fmt(val.values[best_i])} at step "
            f"{t_best}"
        )
        if thin:
            message += "; " + THIN.format(points=v.points, span=v.span)
        yield self.finding(
            message,
            evidence={
                "val_best": val.values[best_i],
                "val_best_step": t_best,
                "val_change": v.change,
                "train_change": t.change,
                "val_points": v.points,
                "window": v.span,
            },
            fix=f"Stop early at step {t_best} (keep that checkpoint); {_regularizers(view.model)}.",
            severity="info" if thin else None,
        )


@rule(
    "underfitting",
    severity="warning",
    category="in-flight",
    summary="Training and validation loss are close, both high, and no longer improving",
    why="Robust fits over a long window (at least 100 steps and 5 evaluations) in which neither "
    "the training nor the validation loss gains 1%, with the two within 10% of each other and "
    "both above 70% of the starting loss (it learned less than a third of the way to 0), mean "
    "the model cannot even fit the training data: too little capacity, too much "
    "regularization, or a learning rate too low. A loss whose floor is high (an ELBO, noisy "
    "regression targets) can look like this once it has converged; a run still improving "
    "never does. With fewer evaluations it is an info note.",
    fix="Grow the model, train longer or with a higher learning rate, and remove regularization.",
    example="model = nn.Linear(64, 10); optimizer = SGD(..., weight_decay=0.1)\n\n"
    "model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))",
    source="Deep Learning Practical Tricks (a tips list) (no gap between train and validation)",
)
class Underfitting(Detector):
    reads = (TRAIN_LOSS, VAL_LOSS)
    when = Phase.VAL
    GAP = 0.1  # train and validation within 10%
    # Still above 70% of the starting loss. Half (the earlier bound) breaks for losses with a
    # high floor: the official VAE's ELBO converges at ~60% of where it starts.
    HIGH = 0.7
    GAIN = 0.01  # neither fit gains 1% over the window

    def check(self, view):
        val, train = view.history.get(VAL_LOSS.key), view.history.get(TRAIN_LOSS.key)
        if len(val) < 3 or len(train) < 20:
            return
        since, thin = _val_window(view)
        v = _trend(view, VAL_LOSS.key, val, since)  # the cheap fit first, as in Overfitting
        if v is None or v.change <= -self.GAIN:
            return
        t = _trend(view, TRAIN_LOSS.key, train, since)
        if t is None or t.change <= -self.GAIN:
            return
        first = median(finite_train_loss(view)[:10])
        close = abs(v.end - t.end) <= self.GAP * max(abs(t.end), 1e-12)
        high = first > 0 and t.end > self.HIGH * first and v.end > self.HIGH * first
        if not (close and high):
            return
        message = (
            f"train loss {fmt(t.end)} and validation loss {fmt(v.end)} are close, both above "
            f"{self.HIGH:.0%} of the starting loss {fmt(first)}, and neither improved over steps "
            f"{since}-{val.steps[-1]} (fitted change {t.change:+.1%} and {v.change:+.1%})"
        )
        if thin:
            message += "; " + THIN.format(points=v.points, span=v.span)
        yield self.finding(
            message,
            evidence={
                "train": t.end,
                "val": v.end,
                "first": first,
                "train_change": t.change,
                "val_change": v.change,
                "val_points": v.points,
                "window": v.span,
            },
            severity="info" if thin else None,
        )
