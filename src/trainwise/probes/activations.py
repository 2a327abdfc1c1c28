"""Module outputs: a non-finite check on every training forward, statistics on sampled ones.

Every module gets a forward hook. On a training forward (grad enabled) it adds the float32 sum of
the module's output to the step's batch: a single reduction that is non-finite exactly when some
element is (or the sum overflows float32, which is as alarming), so the first module whose output
went NaN/Inf is known after the step's one sync. On sampled steps, leaf modules also report
mean, std, zero fraction, saturation fraction and dead-unit fraction of their output. A layer
whose output is the model's output (a VAE decoder's sigmoid, a GAN generator's tanh) reports no
saturation: there it is the model being sure (black background pixels predicted at ~0), and
the loss's gradient does not pass through the flat ends (BCE on a sigmoid's output gives its
logits p - y); a hidden layer's saturation is what stalls learning.

Writes: NONFINITE_OUTPUT (event), ACT_* per leaf module (sampled), and the sampled rows kept
for the record's ACTIVATIONS histograms.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from trainwise.probes.params import clean_name
from trainwise.probes.pending import Pending
from trainwise.signals import (
    ACT_SAT_FRAC,
    ACT_STATS,
    NONFINITE_OUTPUT,
    OUTPUT_CHECKED,
    NonfiniteOutput,
    Signals,
)

RELU_LIKE = (nn.ReLU, nn.ReLU6)
DROPOUT = (nn.modules.dropout._DropoutNd,)
SIGMOID_LIKE = (nn.Sigmoid, nn.Hardsigmoid)
# Hard clamps (ReLU6 is a Hardtanh(0, 6)): the gradient is 0 exactly at their limits and 1
# between them, so what saturates is what sits at a limit, wherever the limits are; a ReLU6's
# lower limit is its ReLU's zeros (the zero share and the dead units), its upper one saturates.
HARD_CLAMPS = (nn.Hardtanh,)
SATURATING = (*SIGMOID_LIKE, nn.Tanh, *HARD_CLAMPS)
_SATURATION = ACT_STATS.index(ACT_SAT_FRAC)  # its place in act_stats' list
# Modules whose output is finite whenever their input is: elementwise clamps and squashes, max
# pooling, reshapes. Such a module can never be the *first* whose output goes non-finite when its
# input is a tensor already checked in this forward, so its (large) output is not summed again.
# Dropout is not among them: its 1/(1-p) scaling can overflow float16.
FINITE_PRESERVING = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.Tanh, nn.Sigmoid, nn.Hardsigmoid,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd, nn.Flatten,
    nn.Unflatten, nn.Identity,
)  # fmt: skip
# Sigmoid outputs within 0.01 of 0 or 1 (tanh within 0.01 of ±1) pass back under 1% of the
# gradient they would pass at 0: the units learn nothing.
SATURATION_MARGIN = 0.01
SAMPLE_ROWS = 8
HISTOGRAM_VALUES = 4096  # values of a sampled output kept for its histogram (run record)


def first_tensor(out) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


@dataclass(frozen=True, slots=True)
class Counted:
    """What `output_sums` counted besides the sum and the norm, and over how many: the numbers
    that turn its sums into ACT_STATS on the host (`act_stats`)."""

    elements: int  # of the sampled rows
    nonzero: bool  # the nonzero elements were counted (ReLU-like units, dropout)
    saturated: bool  # the saturated ones (sigmoid-, tanh-like)
    units: int  # the units whose maximum is <= 0 were counted among these many (0: not)


def output_sums(module: nn.Module, y: torch.Tensor) -> tuple[torch.Tensor, Counted]:
    """The sums behind ACT_STATS of one output tensor, on device without a sync: a float32
    (2 to 5,) tensor [sum, L2 norm, nonzero count?, saturated count?, dead-unit count?] (the
    counts this kind of layer has: `Counted`).

    Reductions only (sum, vector_norm, count_nonzero, amax): the divisions, the variance and
    the square root wait for the host (`act_stats`). Each torch call here runs cold inside the
    user's forward (a few microseconds); doing the arithmetic on the device took ~25 calls a
    ReLU layer where this takes ~10. Mean and std from the sum and the sum of squares are exact
    enough for statistics reported to 3 digits, and several times cheaper than a Welford pass.
    """
    # The first SAMPLE_ROWS samples of the batch stand for it.
    x = (y.detach()[:SAMPLE_ROWS] if y.dim() >= 2 else y.detach()).float()
    sums = [x.sum(), torch.linalg.vector_norm(x)]
    # Exact zeros come from ReLU-like units and dropout; elsewhere the count is wasted work.
    nonzero = isinstance(module, RELU_LIKE + DROPOUT)
    if nonzero:
        sums.append(x.count_nonzero())
    saturated = isinstance(module, SATURATING)
    if isinstance(module, SIGMOID_LIKE):
        sums.append(((x < SATURATION_MARGIN) | (x > 1 - SATURATION_MARGIN)).sum())
    elif isinstance(module, nn.Tanh):
        sums.append((x.abs() > 1 - SATURATION_MARGIN).sum())
    elif isinstance(module, nn.ReLU6):  # its top: its bottom is the ReLU's zeros
        sums.append((x >= module.max_val).sum())
    elif saturated:
        sums.append(((x <= module.min_val) | (x >= module.max_val)).sum())
    units = 0
    if isinstance(module, RELU_LIKE) and x.dim() >= 2:
        # A unit is dead on this batch when it is <= 0 for every sample (and position).
        # Units: channels of (B, C, H, W) maps, the last dim of (B, F) or (B, T, F).
        unit_dim = 1 if x.dim() == 4 else x.dim() - 1
        per_unit = x.amax(dim=tuple(d for d in range(x.dim()) if d != unit_dim))  # (C,)
        sums.append((per_unit <= 0).sum())
        units = per_unit.numel()
    # stack promotes the int64 counts to float32: exact up to 2**24, beyond within ~6e-8 of
    # the count (shares are reported to 3 digits)
    return torch.stack(sums), Counted(x.numel(), nonzero, saturated, units)


def act_stats(sums: list[float], counted: Counted) -> list[float]:
    """ACT_STATS (mean, std, zero share, saturated share, dead-unit share) from `output_sums`'
    numbers, read out; NaN for a statistic this kind of layer does not have."""
    n = max(counted.elements, 1)
    total, norm, *counts = sums
    mean = total / n
    variance = max(norm * norm / n - mean * mean, 0.0) * n / max(n - 1, 1)  # unbiased
    counts.reverse()  # taken from the end, in the order they were stacked
    zero = (n - counts.pop()) / n if counted.nonzero else math.nan
    saturated = counts.pop() / n if counted.saturated else math.nan
    dead = counts.pop() / counted.units if counted.units else math.nan
    return [mean, math.sqrt(variance), zero, saturated, dead]


def _strided(t: object) -> bool:
    """A dense tensor (one with a storage to compare)."""
    return isinstance(t, torch.Tensor) and t.layout == torch.strided


PIECE = "activation probe"  # the name under which the watch's guard switches it off


class ActivationProbe:
    def __init__(self, model: nn.Module, guard=None) -> None:
        self.model = model
        self._guard = guard  # a trainwise.guard.Guard: a hook that raises switches the probe off
        self._scan()
        self._handles = []
        self.check_finite = True
        self.stats = True  # ACT_* on sampled steps (off when no rule reads them, no record)
        self.sample = False  # set by the watch for sampled steps
        self.keep_samples = False  # keep the sampled rows of leaf outputs (run record histograms)
        # (name, first rows) on sampled steps: device tensors until the read-out, CPU after it
        self.samples: list[tuple[str, torch.Tensor]] = []
        self._sums: list[torch.Tensor] = []
        self._sum_names: list[str] = []
        # The last output known finite-or-summed in this forward: (weak ref, version counter).
        self._checked: tuple[weakref.ref, int] | None = None
        self._stats_seen: set[str] = set()
        self._pending_stats: list[tuple[str, torch.Tensor, Counted]] = []  # (name, sums, ...)
        # (sums' slot, their names, (name, slot, Counted) of the stats, (name, slot) of rows)
        self._slots: tuple[int, list[str], list[tuple[str, int, Counted]],
                           list[tuple[str, int]]] | None = None  # fmt: skip
        self._stat_series: dict[str, list] = {}
        # (name, storage address) of the saturating leaves' outputs sampled in this forward,
        # until the model's own hook compares them with its output
        self._saturating_outputs: list[tuple[str, int]] = []
        self.output_layers: set[str] = set()  # leaves whose output was the model's output

    def _scan(self) -> None:
        self.modules: list[tuple[str, nn.Module]] = [
            (clean_name(name) or "(model)", m) for name, m in self.model.named_modules()
        ]
        self.kinds = {name: type(m).__name__ for name, m in self.modules}
        self._leaf = {id(m) for _, m in self.modules if not any(True for _ in m.children())}

    def attach(self) -> None:
        for name, m in self.modules:
            self._handles.append(m.register_forward_hook(self._make_hook(name, m)))

    def rescan(self) -> None:
        """The model's modules again (one was replaced after the watch started), hooks moved."""
        attached = self.attached
        self.detach()
        self._scan()
        if attached:
            self.attach()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _make_hook(self, name: str, module: nn.Module):
        is_leaf = id(module) in self._leaf
        is_root = module is self.model
        saturating = isinstance(module, SATURATING)
        preserving = isinstance(module, FINITE_PRESERVING)
        is_compiling = torch.compiler.is_compiling
        grad_enabled = torch.is_grad_enabled
        sums, names = self._sums, self._sum_names
        f32 = torch.float32

        def hook(_module, args, out) -> None:
            # A forward hook runs inside the user's forward: whatever fails here switches the
            # probe off (one warning) and never reaches the user. (A try costs nothing until it
            # raises, unlike a call through the guard on every module of every forward.)
            try:
                measure(args, out)
            except Exception as exc:  # noqa: BLE001 - training must never break because of us
                self.detach()
                if self._guard is None:
                    raise
                self._guard.switch_off(PIECE, exc)

        def measure(args, out) -> None:
            if is_root and self._saturating_outputs:  # the end of a sampled forward
                self._find_output_layers(out)
            check = self.check_finite
            sample = self.sample and is_leaf and self.stats
            if not (check or sample) or not grad_enabled() or is_compiling():
                return  # nothing to measure, an eval/no-grad forward, or a compiled graph
            y = out if type(out) is torch.Tensor else first_tensor(out)
            if y is None or not y.is_floating_point():
                return
            if check:
                checked = self._checked
                if checked is not None and checked[0]() is not None and (
                    (y is checked[0]() and y._version == checked[1])  # a container's output
                    or (preserving and args and args[0] is checked[0]()
                        and args[0]._version in (checked[1], checked[1] + 1))  # (+1: inplace)
                ):  # fmt: skip
                    pass  # finite exactly when a tensor already checked is: not summed again
                else:
                    y = y.detach()  # float32 needs no cast: the plain sum, same bits, faster
                    sums.append(y.sum() if y.dtype == f32 else torch.sum(y, dtype=f32))
                    names.append(name)
                self._checked = (weakref.ref(y), y._version)
            if sample and name not in self._stats_seen:
                self._stats_seen.add(name)  # the first micro-batch of the step is the sample
                self._pending_stats.append((name, *output_sums(module, y)))
                if saturating and y.layout == torch.strided:
                    self._saturating_outputs.append((name, y.untyped_storage().data_ptr()))
                if self.keep_samples:  # a copy (a view would pin the batch) of <= 4096 values
                    rows = (y.detach()[:SAMPLE_ROWS] if y.dim() >= 2 else y.detach()).flatten()
                    stride = -(-rows.numel() // HISTOGRAM_VALUES)  # ceil: evenly spread values
                    self.samples.append((name, rows[::stride].clone()))

        return hook

    def _find_output_layers(self, out) -> None:
        """Which saturating leaves' outputs (or views of them) the model returned: a tensor, or
        one among a tuple's, a list's or a dict's (a Hugging Face output) values."""
        if isinstance(out, torch.Tensor):
            returned = [out]
        elif isinstance(out, Mapping):
            returned = list(out.values())
        elif isinstance(out, (tuple, list)):
            returned = list(out)
        else:  # an object of the user's own: its tensors are not looked for
            returned = []
        at = {t.untyped_storage().data_ptr() for t in returned if _strided(t)}
        self.output_layers.update(name for name, ptr in self._saturating_outputs if ptr in at)
        self._saturating_outputs = []

    def begin_step(self, sample: bool) -> None:
        self.sample = sample
        self._saturating_outputs = []
        self._pending_stats = []
        self.samples = []
        self._stats_seen = set()
        self._checked = None

    def collect(self, pending: Pending) -> None:
        """Queues the step's tensors for the read-out."""
        sums_slot = pending.add(torch.stack(self._sums)) if self._sums else -1
        stats = [(name, pending.add(s), counted) for name, s, counted in self._pending_stats]
        # the sampled rows come back with the step's one transfer (no sync of their own)
        samples = [(name, pending.add(rows, as_tensor=True)) for name, rows in self.samples]
        self.samples = []
        self._slots = (sums_slot, list(self._sum_names), stats, samples)
        self._sums.clear()
        self._sum_names.clear()
        self._pending_stats = []
        self._stats_seen = set()
        self._checked = None

    def write(self, values: list[list[float]], t: int, signals: Signals) -> None:
        """The step's numbers into the history: ACT_* per module, the first non-finite output."""
        if self._slots is None:
            return
        sums_slot, sum_names, stats, samples = self._slots
        self._slots = None
        self.samples = [(name, values[slot]) for name, slot in samples]  # CPU tensors now
        for name, slot, counted in stats:
            series = self._stat_series.get(name)
            if series is None:
                series = self._stat_series[name] = [
                    signals.series_of(s.at(name)) for s in ACT_STATS
                ]
            numbers = act_stats(values[slot], counted)
            if name in self.output_layers:
                numbers[_SATURATION] = math.nan  # the model being sure (see the module doc)
            for s, v in zip(series, numbers, strict=True):
                s.append(t, v)
        if sums_slot < 0:
            return
        signals.add(OUTPUT_CHECKED.key, t, 1.0)
        if NONFINITE_OUTPUT in signals.events:
            return
        sums = values[sums_slot]
        bad = next((i for i, v in enumerate(sums) if not math.isfinite(v)), None)
        if bad is not None:
            name = sum_names[bad]
            signals.events[NONFINITE_OUTPUT] = NonfiniteOutput(
                t, name, self.kinds.get(name, "?"), sums[bad], self._weights_finite(name)
            )

    def _weights_finite(self, name: str) -> bool:
        module = dict(self.modules).get(name)
        if module is None:
            return True
        with torch.no_grad():  # SYNC, once: only on the step a first non-finite output shows
            return all(bool(torch.isfinite(p).all()) for p in module.parameters(recurse=False))
