"""Every signal the watch produces, declared once: key (or key pattern), unit, cadence, producer,
and how a record or report draws it. Plus the history they are kept in and the typed events
(observations that are not one number per step).

Probes write the declared signals, in-flight rules declare the ones they read (`reads`), the
watch turns on the probes those rules need, and the run record and the HTML report decide what
to draw from `Signal.draw`: a plot exists because a signal is declared a curve, a heatmap or a
histogram, never because of the data's shape.

A leaf module: standard library only, so the report (and anything else) imports it cheaply.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from functools import cache, lru_cache


class Draw(Enum):
    """How a record or report shows a signal."""

    CURVE = "curve"  # value over steps (metrics.jsonl, one plot per `Signal.plot`)
    HEATMAP = "heatmap"  # layer x step (layers.jsonl)
    HISTOGRAM = "histogram"  # a distribution per sampled step (histograms.jsonl)
    NONE = "none"  # bookkeeping for the rules, never drawn


class Cadence(Enum):
    STEP = "every step"
    SAMPLED = "sampled steps"  # every `every` steps (the preset's period)
    MEASURED = "measured steps"  # the watch's measured steps (every step under preset "full")
    EVENT = "when it happens"  # validation, a first non-finite value, a new gradient mask


class Producer(Enum):
    """Who measures it. The watch attaches the probe of a producer only when a rule reads one
    of its signals or the record draws one."""

    LOG = "watch.log / log_val / log_latest (the user's loop)"
    STEP = "optimizer step hooks (steps taken, learning rates)"
    GRADIENTS = "probes.gradients (parameter hooks at backward end, optimizer pre-step)"
    UPDATES = "probes.updates (parameters copied before the step, compared after)"
    ACTIVATION_STATS = "probes.activations (leaf module outputs on sampled steps)"
    OUTPUT_CHECK = "probes.activations (sum of every module output, each training step)"
    MODES = "probes.modes (train/eval mode of BatchNorm/Dropout layers)"
    TIMING = "probes.timing"
    REPLICAS = "probes.distributed (parameter fingerprints across ranks)"
    WRITES = "probes.writes (parameter fingerprints at each optimizer step's start and end)"
    FIRST_FORWARDS = "probes.first_forwards (module output RMS, forwards before the first step)"
    USER = "a Run's own log_metrics / log_layers / log_histogram (any record)"


_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Signal:
    """One declared signal. `key` is a name (`grad_norm`) or a pattern with named fields
    (`grad_norm/{param}`); `plot` names the curve panel it joins (a pattern over the same
    fields; train/X and val/X share the panel X)."""

    key: str
    unit: str
    cadence: Cadence
    producer: Producer
    draw: Draw
    doc: str
    plot: str = ""

    @property
    def family(self) -> str:
        """The part before the first slash: `grad_norm` for `grad_norm/{param}`, `lr` for
        `lr/group{group}` (a layers.jsonl row names its signal by family)."""
        return self.key.split("/", 1)[0]

    def at(self, *values: str, **fields: str) -> str:
        """The concrete key: GRAD_NORM_LAYER.at("fc1.weight") -> "grad_norm/fc1.weight"."""
        if values:
            fields = dict(zip(_FIELD.findall(self.key), values, strict=True))
        return self.key.format(**fields)

    def match(self, key: str) -> dict[str, str] | None:
        """The fields of a concrete key of this signal, else None."""
        found = _pattern(self.key).fullmatch(key)
        return None if found is None else found.groupdict()

    def panel(self, key: str) -> str:
        """The curve panel a concrete key of this signal is drawn in."""
        fields = self.match(key) or {}
        return self.plot.format(**fields) if self.plot else key


@cache
def _pattern(key: str) -> re.Pattern[str]:
    parts = _FIELD.split(key)  # literal, field, literal, field, ...
    regex = "".join(
        re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+)" for i, p in enumerate(parts)
    )  # fmt: skip
    return re.compile(regex)


S, E, SAMP, M = Cadence.STEP, Cadence.EVENT, Cadence.SAMPLED, Cadence.MEASURED
P = Producer

# fmt: off

# -- the loop's own numbers ---------------------------------------------------------------------
TRAIN = Signal("train/{metric}", "as logged", S, P.LOG, Draw.CURVE,
               "watch.log(loss=..., **metrics), one value per step", plot="{metric}")
TRAIN_LOSS = Signal("train/loss", "as logged", S, P.LOG, Draw.CURVE,
                    "the training loss given to watch.log", plot="loss")
VAL = Signal("val/{metric}", "as logged", E, P.LOG, Draw.CURVE,
             "watch.log_val(**metrics), at each validation", plot="{metric}")
VAL_LOSS = Signal("val/loss", "as logged", E, P.LOG, Draw.CURVE,
                  "the validation loss given to watch.log_val", plot="loss")
# -- the optimizer step -----------------------------------------------------------------------
STEPPED = Signal("stepped", "0/1", S, P.STEP, Draw.NONE, "1 when the optimizer stepped")
LR = Signal("lr/group{group}", "lr", S, P.STEP, Draw.CURVE,
            "learning rate of each param group, on steps the optimizer took")
LR_SINGLE = Signal("lr", "lr", S, P.STEP, Draw.CURVE,
                   "the record's name of lr/group0 when there is one param group")
# -- gradients --------------------------------------------------------------------------------
GRAD_NORM = Signal("grad_norm", "L2 norm", M, P.GRADIENTS, Draw.CURVE,
                   "global gradient norm at backward end (before clipping, unscaled)")
GRAD_NORM_LAYER = Signal("grad_norm/{param}", "L2 norm", M, P.GRADIENTS, Draw.HEATMAP,
                         "each parameter's gradient norm at backward end (heatmap on sampled steps)")
GRAD_NORM_APPLIED = Signal("grad_norm_applied", "L2 norm", M, P.GRADIENTS, Draw.CURVE,
                           "global norm of the gradients the optimizer applied (after clipping)")
CLIPPED = Signal("clipped", "flag", M, P.GRADIENTS, Draw.NONE,
                 "1 on steps whose applied norm is below the backward-end norm")
SKIPPED_NONFINITE = Signal("skipped_nonfinite", "flag", M, P.GRADIENTS, Draw.NONE,
                           "1 on steps skipped with non-finite gradients (GradScaler)")
BACKWARD_PASSES = Signal("backward_passes", "count", M, P.GRADIENTS, Draw.NONE,
                         "backward passes since the previous optimizer step")
GRADS_KEPT = Signal("grads_kept", "0/1", M, P.GRADIENTS, Draw.NONE,
                    "1 when the first backward of a step added to the previous step's grads")
# -- updates (sampled) ------------------------------------------------------------------------
WEIGHT_NORM = Signal("weight_norm/{param}", "L2 norm", SAMP, P.UPDATES, Draw.NONE,
                     "each trainable parameter's norm after the step")
UPDATE_RATIO = Signal("update_ratio/{param}", "ratio", SAMP, P.UPDATES, Draw.HEATMAP,
                      "norm of the step's change / norm of the parameter")
# -- who writes the weights (measured steps) --------------------------------------------------
WRITTEN_OUTSIDE = Signal("written_outside", "count", M, P.WRITES, Draw.NONE,
                         "tensors changed between the previous step's end and this step's start")
FROZEN_MOVED = Signal("frozen_moved", "count", M, P.WRITES, Draw.NONE,
                      "requires_grad=False tensors the optimizer holds that its step changed")
# -- activations (sampled) --------------------------------------------------------------------
ACT_MEAN = Signal("act_mean/{module}", "as output", SAMP, P.ACTIVATION_STATS, Draw.NONE,
                  "mean of a leaf module's output (first sampled rows)")
ACT_STD = Signal("act_std/{module}", "as output", SAMP, P.ACTIVATION_STATS, Draw.NONE,
                 "standard deviation of a leaf module's output")
ACT_ZERO_FRAC = Signal("act_zero_frac/{module}", "share", SAMP, P.ACTIVATION_STATS, Draw.NONE,
                       "share of exact zeros (ReLU-like and dropout modules, else NaN)")
ACT_SAT_FRAC = Signal("act_sat_frac/{module}", "share", SAMP, P.ACTIVATION_STATS, Draw.NONE,
                      "share of sigmoid/tanh outputs within 1% of their limits (else NaN)")
ACT_DEAD_FRAC = Signal("act_dead_frac/{module}", "share", SAMP, P.ACTIVATION_STATS, Draw.NONE,
                       "share of ReLU units <= 0 for every sample of the batch (else NaN)")
ACT_STATS = (ACT_MEAN, ACT_STD, ACT_ZERO_FRAC, ACT_SAT_FRAC, ACT_DEAD_FRAC)  # probe's order
ACTIVATIONS = Signal("activations/{module}", "histogram", SAMP, P.ACTIVATION_STATS,
                     Draw.HISTOGRAM, "distribution of a leaf module's sampled output values")
# -- modes, timing, replicas ------------------------------------------------------------------
EVAL_MODE_LAYERS = Signal("eval_mode_layers", "count", M, P.MODES, Draw.NONE,
                          "BatchNorm/Dropout layers in eval mode during the training forward")
DATA_WAIT = Signal("data_wait_s", "s", S, P.TIMING, Draw.CURVE,
                   "time from the end of the previous step to this step's first forward")
COMPUTE = Signal("compute_s", "s", S, P.TIMING, Draw.CURVE,
                 "time from the first forward to the end of the step")
REPLICA_SPREAD = Signal("replica_spread", "relative", SAMP, P.REPLICAS, Draw.NONE,
                        "largest relative difference of a parameter fingerprint across ranks")
OUTPUT_CHECKED = Signal("output_checked", "0/1", M, P.OUTPUT_CHECK, Draw.NONE,
                        "1 on the steps whose every module output was checked for NaN/Inf")
# -- events: typed observations, one value when they happen (see the dataclasses below) ---------
NONFINITE_OUTPUT = Signal("nonfinite_output", "event", E, P.OUTPUT_CHECK, Draw.NONE,
                          "the first module whose training output went NaN/Inf")
NONFINITE_GRAD = Signal("nonfinite_grad", "event", E, P.GRADIENTS, Draw.NONE,
                        "the first step the optimizer applied non-finite gradients")
GRAD_PARAMS = Signal("grad_params", "event", E, P.GRADIENTS, Draw.NONE,
                     "the parameters that got a gradient in the latest backward")
REPLICAS = Signal("replicas", "event", SAMP, P.REPLICAS, Draw.NONE,
                  "per-parameter replica spread at a sampled step")
VAL_FORWARDS_TRAIN_MODE = Signal("val_forwards_train_mode", "count", E, P.MODES, Draw.NONE,
                                 "no-grad forwards run with BatchNorm/Dropout in train mode")
WRITTEN_OUTSIDE_NAMES = Signal("written_outside_names", "event", E, P.WRITES, Draw.NONE,
                               "the tensors written outside the optimizer, latest time")
FROZEN_MOVED_NAMES = Signal("frozen_moved_names", "event", E, P.WRITES, Draw.NONE,
                            "the frozen tensors an optimizer step changed, latest time")
FIRST_FORWARDS = Signal("first_forwards", "event", E, P.FIRST_FORWARDS, Draw.NONE,
                        "each module's output RMS in the first no-grad forward before training "
                        "and in the first training forward (once, at the first step)")
# -- what any record may hold besides the watch's own (Run.log_metrics/log_layers/...) -------------
SPLITS = ("train", "val", "valid", "validation", "test")  # share a panel: train/X with val/X
USER_SPLIT = tuple(
    Signal(f"{split}/{{metric}}", "as logged", E, P.USER, Draw.CURVE, f"a {split} metric",
           plot="{metric}")
    for split in SPLITS
)
USER_METRIC = Signal("{metric}", "as logged", E, P.USER, Draw.CURVE, "any other logged scalar")
USER_LAYERS = Signal("{signal}/{layer}", "as logged", E, P.USER, Draw.HEATMAP,
                     "any per-layer signal logged with Run.log_layers")
USER_HISTOGRAM = Signal("{name}", "histogram", E, P.USER, Draw.HISTOGRAM,
                        "any distribution logged with Run.log_histogram")
# What each record file may hold (the watch's drawn signals, then anything a Run's own
# log_metrics / log_layers / log_histogram wrote), most specific first: the first declaration
# that matches a key decides how it is drawn.
METRICS = (TRAIN_LOSS, VAL_LOSS, TRAIN, VAL, LR_SINGLE, LR, GRAD_NORM, GRAD_NORM_APPLIED,
           DATA_WAIT, COMPUTE, *USER_SPLIT, USER_METRIC)
LAYERS = (GRAD_NORM_LAYER, UPDATE_RATIO, USER_LAYERS)
HISTOGRAMS = (ACTIVATIONS, USER_HISTOGRAM)
ALL = (TRAIN_LOSS, TRAIN, VAL_LOSS, VAL, STEPPED, LR, GRAD_NORM, GRAD_NORM_LAYER,
       GRAD_NORM_APPLIED, CLIPPED, SKIPPED_NONFINITE, BACKWARD_PASSES, GRADS_KEPT, WEIGHT_NORM,
       UPDATE_RATIO, *ACT_STATS, ACTIVATIONS, EVAL_MODE_LAYERS, DATA_WAIT, COMPUTE,
       REPLICA_SPREAD, OUTPUT_CHECKED, NONFINITE_OUTPUT, NONFINITE_GRAD, GRAD_PARAMS, REPLICAS,
       VAL_FORWARDS_TRAIN_MODE, WRITTEN_OUTSIDE, FROZEN_MOVED, WRITTEN_OUTSIDE_NAMES,
       FROZEN_MOVED_NAMES, FIRST_FORWARDS)  # the watch's own signals
# fmt: on


@lru_cache(maxsize=4096)
def declared(key: str, among: tuple[Signal, ...] = METRICS) -> Signal | None:
    """The first declaration in `among` that `key` is a concrete key of."""
    for signal in among:
        if signal.match(key) is not None:
            return signal
    return None


def layer_family(name: str, among: tuple[Signal, ...] = LAYERS) -> Signal | None:
    """The per-layer declaration whose family is `name` (layers.jsonl rows name a family)."""
    return declared(f"{name}/_", among)


# -- events -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NonfiniteOutput:
    step: int
    module: str
    kind: str  # the module's class name
    value: float  # the float32 sum of its output: NaN, +inf or -inf
    weights_finite: bool  # False: the module's own weights are already non-finite


@dataclass(frozen=True)
class NonfiniteGrad:
    step: int
    params: tuple[str, ...]  # the parameters whose applied gradient is non-finite
    total: float


@dataclass(frozen=True)
class WrittenOutside:
    step: int  # the iteration whose optimizer step found them changed
    params: tuple[str, ...]  # the tensors written since the previous step ended
    after_eval: bool  # a validation (no-grad forward, watch.log_val) ran in that gap


@dataclass(frozen=True)
class FrozenMoved:
    step: int
    params: tuple[str, ...]  # requires_grad=False tensors the optimizer's step changed


@dataclass(frozen=True)
class ModuleGap:
    """One module's output (and input) RMS in the first no-grad forward before training (eval)
    and in the first training forward, at the same weights. NaN: not measured (no floating
    tensor). A module called several times per forward is measured at its first call."""

    module: str
    kind: str  # the module's class name
    leaf: bool  # no child modules
    eval_out: float
    train_out: float
    eval_in: float
    train_in: float

    def jump(self) -> float:
        """log(eval/train) of the output minus that of the input: what this module does
        differently in the two forwards (0 when it does the same to a different input; the
        output's log-ratio when the input is not a floating tensor). NaN when not measured."""
        out = _log_ratio(self.eval_out, self.train_out)
        into = _log_ratio(self.eval_in, self.train_in)
        return out - (into if math.isfinite(into) else 0.0)


def _log_ratio(a: float, b: float) -> float:
    if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b):
        return math.log(a / b)
    return math.nan


@dataclass(frozen=True)
class FirstForwards:
    step: int  # the iteration of the first training forward
    eval_forwards: int  # no-grad forwards of the whole model seen before it
    modules: tuple[ModuleGap, ...]  # in the order of the first training forward's calls


@dataclass(frozen=True)
class ReplicaSpread:
    step: int
    spread: tuple[float, ...]  # per parameter, in the watch's parameter order


# -- the history ----------------------------------------------------------------------------------
class Series:
    """One signal over training: `steps[i]` is the iteration at which `values[i]` was seen."""

    __slots__ = ("steps", "values")

    def __init__(self) -> None:
        self.steps = array("q")
        self.values = array("d")

    def append(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)

    def last(self, n: int) -> list[float]:
        return list(self.values[-n:]) if n else []

    def finite_last(self, n: int) -> list[float]:
        return [v for v in self.values[-n:] if math.isfinite(v)]


class Signals:
    """All series of one watched run, keyed by concrete key (`grad_norm/fc1.weight`), plus the
    latest event of each kind. Compact arrays: 10k steps of a few dozen series stay a few MB."""

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.events: dict[Signal, object] = {}

    def add(self, key: str, step: int, value: float) -> None:
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series()
        series.append(step, value)

    def series_of(self, key: str) -> Series:
        """The series of `key`, created empty if new: probes keep it and append directly."""
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series()
        return series

    def get(self, key: str) -> Series:
        return self.series.get(key) or Series()

    def __contains__(self, key: str) -> bool:
        series = self.series.get(key)
        return series is not None and len(series) > 0

    def layers(self, family: str | Signal) -> Iterator[tuple[str, Series]]:
        """(layer, series) for every `family/layer` key, in the order they first appeared."""
        prefix = (family.family if isinstance(family, Signal) else family) + "/"
        for key, series in self.series.items():
            if key.startswith(prefix) and len(series):
                yield key[len(prefix) :], series

    def to_dict(self) -> dict[str, dict[str, list[float]]]:
        """{key: {"steps": [...], "values": [...]}}: plain numbers, ready to serialize."""
        return {
            key: {"steps": list(s.steps), "values": list(s.values)}
            for key, s in self.series.items()
            if len(s)
        }


class History:
    """A read-only view of a watch's signals: what an in-flight rule sees."""

    __slots__ = ("_signals",)

    def __init__(self, signals: Signals) -> None:
        self._signals = signals

    def get(self, key: str) -> Series:
        return self._signals.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._signals

    def layers(self, family: str | Signal) -> Iterator[tuple[str, Series]]:
        return self._signals.layers(family)

    def matching(self, signal: Signal) -> Iterator[tuple[dict[str, str], Series]]:
        """(fields, series) of every concrete key of a pattern signal."""
        prefix = signal.key.split("{", 1)[0]  # the literal start: a cheap test before the regex
        for key, series in self._signals.series.items():
            if not key.startswith(prefix):
                continue
            fields = signal.match(key)
            if fields is not None and len(series):
                yield fields, series

    def event(self, signal: Signal) -> object | None:
        """The latest event of a declared event signal, or None."""
        return self._signals.events.get(signal)
