"""Module outputs: a non-finite check on every training forward, statistics on sampled ones.

Every module gets a forward hook. On a training forward (grad enabled) it adds the float32 sum of
the module's output to the step's batch: a single reduction that is non-finite exactly when some
element is (or the sum overflows float32, which is as alarming), so the first module whose output
went NaN/Inf is known after the step's one sync. On sampled steps, leaf modules also report
mean, std, zero fraction, saturation fraction and dead-unit fraction of their output.

Writes: NONFINITE_OUTPUT (event), ACT_* per leaf module (sampled), and the sampled rows kept
for the record's ACTIVATIONS histograms.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import nn

from trainwise.probes.params import clean_name
from trainwise.probes.pending import Pending
from trainwise.signals import ACT_STATS, NONFINITE_OUTPUT, OUTPUT_CHECKED, NonfiniteOutput, Signals

RELU_LIKE = (nn.ReLU, nn.ReLU6)
DROPOUT = (nn.modules.dropout._DropoutNd,)
SIGMOID_LIKE = (nn.Sigmoid, nn.Hardsigmoid)
TANH_LIKE = (nn.Tanh, nn.Hardtanh)
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


def output_stats(module: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """(5,) = ACT_STATS of one output tensor, computed on device without a sync.

    Written with the fastest CPU/GPU reductions (sum, vector_norm, count_nonzero, amax): mean
    and std come from the sum and the sum of squares, which is exact enough for statistics
    reported to 3 digits and several times cheaper than std_mean's Welford pass.
    """
    # The first SAMPLE_ROWS samples of the batch stand for it.
    x = (y.detach()[:SAMPLE_ROWS] if y.dim() >= 2 else y.detach()).float()
    n = max(x.numel(), 1)
    mean = x.sum() / n
    mean_sq = torch.linalg.vector_norm(x).square() / n
    std = (mean_sq - mean.square()).clamp_min(0).sqrt() * math.sqrt(n / max(n - 1, 1))
    nan = x.new_full((), math.nan)  # "not measured": the statistic means nothing for this layer
    # Exact zeros come from ReLU-like units and dropout; elsewhere the count is wasted work.
    zero = (x == 0).sum() / n if isinstance(module, RELU_LIKE + DROPOUT) else nan
    if isinstance(module, SIGMOID_LIKE):
        sat = ((x < SATURATION_MARGIN) | (x > 1 - SATURATION_MARGIN)).sum() / n
    elif isinstance(module, TANH_LIKE):
        sat = (x.abs() > 1 - SATURATION_MARGIN).sum() / n
    else:
        sat = nan
    if isinstance(module, RELU_LIKE) and x.dim() >= 2:
        # A unit is dead on this batch when it is <= 0 for every sample (and position).
        # Units: channels of (B, C, H, W) maps, the last dim of (B, F) or (B, T, F).
        unit_dim = 1 if x.dim() == 4 else x.dim() - 1
        per_unit = x.amax(dim=tuple(d for d in range(x.dim()) if d != unit_dim))  # (C,)
        dead = (per_unit <= 0).sum() / per_unit.numel()
    else:
        dead = nan
    return torch.stack([mean, std, zero.float(), sat.float(), dead.float()])


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
        self._pending_stats: list[tuple[str, torch.Tensor]] = []
        self._slots: tuple[int, list[str], list[tuple[str, int]]] | None = None
        self._stat_series: dict[str, list] = {}

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
                self._pending_stats.append((name, output_stats(module, y)))
                if self.keep_samples:  # a copy (a view would pin the batch) of <= 4096 values
                    rows = (y.detach()[:SAMPLE_ROWS] if y.dim() >= 2 else y.detach()).flatten()
                    stride = -(-rows.numel() // HISTOGRAM_VALUES)  # ceil: evenly spread values
                    self.samples.append((name, rows[::stride].clone()))

        return hook

    def begin_step(self, sample: bool) -> None:
        self.sample = sample
        self._pending_stats = []
        self.samples = []
        self._stats_seen = set()
        self._checked = None

    def collect(self, pending: Pending) -> None:
        """Queues the step's tensors for the read-out."""
        sums_slot = pending.add(torch.stack(self._sums)) if self._sums else -1
        stats = [(name, pending.add(s)) for name, s in self._pending_stats]
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
        for name, slot in stats:
            series = self._stat_series.get(name)
            if series is None:
                series = self._stat_series[name] = [
                    signals.series_of(s.at(name)) for s in ACT_STATS
                ]
            for s, v in zip(series, values[slot], strict=True):
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
