"""Module outputs: a non-finite check on every training forward, statistics on sampled ones.

Every module gets a forward hook. On a training forward (grad enabled) it adds the float32 sum of
the module's output to the step's batch: a single reduction that is non-finite exactly when some
element is (or the sum overflows float32, which is as alarming), so the first module whose output
went NaN/Inf is known after the step's one sync. On sampled steps, leaf modules also report
mean, std, zero fraction, saturation fraction and dead-unit fraction of their output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainwise.probes.params import clean_name
from trainwise.probes.pending import Pending

RELU_LIKE = (nn.ReLU, nn.ReLU6)
DROPOUT = (nn.modules.dropout._DropoutNd,)
SIGMOID_LIKE = (nn.Sigmoid, nn.Hardsigmoid)
TANH_LIKE = (nn.Tanh, nn.Hardtanh)
# Sigmoid outputs within 0.01 of 0 or 1 (tanh within 0.01 of ±1) pass back under 1% of the
# gradient they would pass at 0: the units learn nothing.
SATURATION_MARGIN = 0.01
STATS = ("mean", "std", "zero_frac", "sat_frac", "dead_frac")
SAMPLE_ROWS = 8
HISTOGRAM_VALUES = 4096  # values of a sampled output kept for its histogram (run record)


def first_tensor(out) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def output_stats(module: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """(5,) = STATS of one output tensor, computed on device without a sync.

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


class ActivationProbe:
    def __init__(self, model: nn.Module) -> None:
        self.modules: list[tuple[str, nn.Module]] = [
            (clean_name(name) or "(model)", m) for name, m in model.named_modules()
        ]
        self.kinds = {name: type(m).__name__ for name, m in self.modules}
        self._leaf = {id(m) for _, m in self.modules if not any(True for _ in m.children())}
        self._handles = []
        self.check_finite = True
        self.sample = False  # set by the watch for sampled steps
        self.keep_samples = False  # keep the sampled rows of leaf outputs (run record histograms)
        self.samples: list[tuple[str, torch.Tensor]] = []  # (name, first rows), sampled steps
        self._sums: list[torch.Tensor] = []
        self._sum_names: list[str] = []
        self._stats_seen: set[str] = set()
        self._pending_stats: list[tuple[str, torch.Tensor]] = []

    def attach(self) -> None:
        for name, m in self.modules:
            self._handles.append(m.register_forward_hook(self._make_hook(name, m)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _make_hook(self, name: str, module: nn.Module):
        is_leaf = id(module) in self._leaf

        def hook(_module, _args, out) -> None:
            if not (self.check_finite or self.sample):
                return  # nothing to measure on this step (preset "cheap" between samples)
            if torch.compiler.is_compiling() or not torch.is_grad_enabled():
                return  # inside a compiled graph, or an eval/no-grad forward
            y = first_tensor(out)
            if y is None or not y.is_floating_point():
                return
            if self.check_finite:
                self._sums.append(torch.sum(y.detach(), dtype=torch.float32))
                self._sum_names.append(name)
            if self.sample and is_leaf and name not in self._stats_seen:
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

    def collect(self, pending: Pending) -> list[str]:
        """Adds the step's tensors; returns the module names, in forward order, of the sums."""
        names = self._sum_names
        if self._sums:
            pending.add("output_sums", torch.stack(self._sums))
        for name, stats in self._pending_stats:
            pending.add(f"act/{name}", stats)
        self._sums, self._sum_names, self._pending_stats = [], [], []
        self._stats_seen = set()
        return names
