"""What every in-flight rule is built on: the Detector class, the read-only View it judges,
and the statistics helpers the families share.

A detector is registered with `@rule(slug, category="in-flight", ...)` on its class (the
documentation sits beside the code that judges). It declares the signals it reads (`reads`) and
its phase (`when`); the watch makes one instance per watched run, attaches the probes that
produce what the instances read, and calls `check(view)` at that phase. A detector sees only the
View: the history of declared signals and static facts about the watched model, never the watch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from trainwise.findings import Finding
from trainwise.probes.params import ParamInfo
from trainwise.rules.registry import Rule
from trainwise.signals import TRAIN_LOSS, History, Producer, Signal


class Phase(Enum):
    STEP = "after every step"
    WINDOW = "every few steps (the watch's JUDGE_EVERY, sparser as the run grows) and at close"
    VAL = "after each watch.log_val, and at close"
    CLOSE = "once, at close"


@dataclass(frozen=True)
class Watched:
    """Facts about the watched model and optimizer, taken when the watch starts and again when
    the optimizer's tensors or their requires_grad change."""

    params: tuple[ParamInfo, ...]  # every parameter the optimizer holds, in its order
    trainable: tuple[ParamInfo, ...]  # those that require grad
    frozen: tuple[ParamInfo, ...]  # those that do not (requires_grad=False)
    untracked_trainable: tuple[str, ...]  # the model's trainable tensors the optimizer lacks
    mode_layers: tuple[str, ...]  # class names of the BatchNorm/Dropout layers, model order
    has_dropout: bool
    has_conv2d: bool
    weight_decay: bool  # some param group has a non-zero weight decay
    total_steps: int | None  # the planned number of steps, when the user gave it
    frozen_on_purpose: frozenset[str] = frozenset()  # names frozen by tw.freeze & co


class View:
    """What a detector reads: the signal history (read-only), the step counters, the static
    facts. `request(signal)` asks the watch to produce a signal from now on (honoured after the
    judging round); `producing(signal)` says whether it is being produced."""

    __slots__ = ("history", "model", "iteration", "step", "_on", "requests", "memo")

    def __init__(self, history: History, model: Watched, on: set[Producer]) -> None:
        self.history = history
        self.model = model
        self.iteration = 0  # training iterations closed so far (skipped steps included)
        self.step = 0  # optimizer steps taken
        self._on = on  # the watch's set of running producers (read only here)
        self.requests: set[Producer] = set()
        self.memo: dict[Any, Any] = {}  # values several rules derive in one round (cleared after)

    def producing(self, signal: Signal) -> bool:
        return signal.producer in self._on

    def request(self, signal: Signal) -> None:
        self.requests.add(signal.producer)


class Detector:
    """One in-flight rule's judge. Subclasses set `reads`, `when` and `check`."""

    reads: tuple[Signal, ...] = ()
    when: Phase = Phase.WINDOW

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    @property
    def slug(self) -> str:
        return self.rule.slug

    def check(self, view: View) -> Iterator[Finding]:
        raise NotImplementedError

    def finding(
        self,
        message: str,
        where: Any = None,
        evidence: dict[str, Any] | None = None,
        fix: str = "",
        severity: Any = None,
    ) -> Finding:
        return self.rule.finding(message, where, evidence, fix, severity)


HISTORY = 1000  # loss-curve rules read the first 10 and the last 1000 steps: bounded cost


def train_loss(view: View) -> list[float]:
    """The first 10 and the last HISTORY training losses (one copy per judging round)."""
    loss = view.memo.get(train_loss)
    if loss is None:
        values = view.history.get(TRAIN_LOSS.key).values
        if len(values) <= HISTORY + 10:
            loss = list(values)
        else:
            loss = list(values[:10]) + list(values[-HISTORY:])
        view.memo[train_loss] = loss
    return loss


def finite_train_loss(view: View) -> list[float]:
    """train_loss without its NaN/Inf values."""
    loss = view.memo.get(finite_train_loss)
    if loss is None:
        loss = view.memo[finite_train_loss] = [v for v in train_loss(view) if math.isfinite(v)]
    return loss


def weight_params(view: View) -> list[ParamInfo]:
    """Matrices and kernels of layers that transform features (not embeddings or norms)."""
    return [
        info
        for info in view.model.params
        if info.ndim >= 2 and "Embedding" not in info.module_kind and "Norm" not in info.module_kind
    ]


def fmt(x: float) -> str:
    return f"{x:.3g}"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated q-th percentile (0..100), as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
