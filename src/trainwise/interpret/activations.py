"""What layers respond to: activation distributions of a sample, weight distributions, and the
inputs that most activate chosen units (forward hooks that remove themselves).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainwise.errors import SetupError
from trainwise.runs.summary import histogram

HISTOGRAM_BINS = 30
ACTIVATION_SAMPLES = 512  # samples whose layer outputs are histogrammed (a sample, said so)
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding, nn.LSTM, nn.GRU,
                 nn.MultiheadAttention)  # fmt: skip


def weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The named modules holding weight matrices or kernels, in the model's order."""
    return {n: m for n, m in model.named_modules() if n and isinstance(m, WEIGHT_LAYERS)}


def layer_named(model: nn.Module, name: str) -> nn.Module:
    """The module named `name`; a SetupError listing the model's layers when there is none."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    names = [n for n in modules if n]
    shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
    raise SetupError(f"the model has no layer named {name!r}; its layers are: {shown}")


def unit_values(output: Any, channels_first: bool) -> torch.Tensor | None:
    """A layer's output as (B, units): channels averaged over the positions for convolutions
    (B, C, ...) (channels_first), features averaged over the positions for sequences (B, T, F),
    (B, F) as it is. A tuple output (an LSTM's) gives its first element; None for an output
    that is no float tensor."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor) or not output.is_floating_point() or output.dim() < 2:
        return None
    output = output.detach().float()
    if output.dim() == 2:
        return output
    if channels_first:
        return output.flatten(2).mean(dim=2)  # (B, C, ...) -> (B, C)
    return output.flatten(1, -2).mean(dim=1)  # (B, T, F) -> (B, F)


CHANNELS_FIRST = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                  nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm,
                  nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)  # fmt: skip


def channels_first(model: nn.Module, module: nn.Module) -> bool:
    """Whether `module`'s output holds channels on dim 1: a conv-family layer, or an
    activation inside a model made of convolutions."""
    if isinstance(module, CHANNELS_FIRST):
        return True
    if isinstance(module, (nn.Linear, nn.RNNBase, nn.MultiheadAttention, nn.Embedding)):
        return False
    return any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in model.modules())


class ActivationSample:
    """Histograms of each given layer's outputs over the first ACTIVATION_SAMPLES samples of a
    pass (bounded: a sample, not the whole set)."""

    def __init__(self, layers: dict[str, nn.Module], limit: int = ACTIVATION_SAMPLES) -> None:
        self.layers, self.limit = layers, limit
        self.values: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
        self.seen: dict[str, int] = dict.fromkeys(layers, 0)
        self.handles: list[Any] = []

    def __enter__(self) -> ActivationSample:
        for name, module in self.layers.items():
            self.handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _hook(self, name: str):
        def keep(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, (tuple, list)) and output:
                output = output[0]
            if not isinstance(output, torch.Tensor) or self.seen[name] >= self.limit:
                return
            rows = output.detach()[: self.limit - self.seen[name]]
            self.seen[name] += len(rows)
            self.values[name].append(rows.float().flatten().cpu())

        return keep

    def histograms(self) -> dict[str, dict[str, Any]]:
        return {n: histogram(torch.cat(v), HISTOGRAM_BINS) for n, v in self.values.items() if v}


def weight_histograms(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Each weight layer's weight distribution ({"edges", "counts", ...})."""
    found = {}
    for name, module in weight_layers(model).items():
        weight = getattr(module, "weight", None)
        if weight is None:  # LSTM/GRU/attention: their first weight matrix
            weight = next((p for p in module.parameters() if p.dim() >= 2), None)
        if isinstance(weight, torch.Tensor):
            found[name] = histogram(weight.detach(), HISTOGRAM_BINS)
    return found


@dataclass(frozen=True)
class Activation:
    """A sample that strongly activates a unit: its dataset index and the unit's value."""

    index: int
    value: float

    def to_dict(self) -> dict:
        return {"index": self.index, "value": self.value}


class TopActivations:
    """Per unit, the k samples with the largest value: one min-heap of k per unit."""

    def __init__(self, units: list[int], k: int) -> None:
        self.units, self.k = units, k
        self.heaps: dict[int, list[tuple[float, int]]] = {u: [] for u in units}

    def update(self, values: torch.Tensor, indices: torch.Tensor) -> None:
        """values: (B, units) of the layer; indices: (B,) dataset indices."""
        take = min(self.k, len(indices))
        chosen = values[:, self.units]  # (B, U)
        top_values, rows = torch.topk(chosen, take, dim=0)  # (take, U)
        top_indices = indices[rows.cpu()]
        for column, unit in enumerate(self.units):
            heap = self.heaps[unit]
            for value, index in zip(top_values[:, column].tolist(),
                                    top_indices[:, column].tolist(), strict=True):  # fmt: skip
                if len(heap) < self.k:
                    heapq.heappush(heap, (value, index))
                elif (value, index) > heap[0]:
                    heapq.heapreplace(heap, (value, index))

    def result(self) -> dict[int, list[Activation]]:
        return {u: [Activation(i, v) for v, i in sorted(h, reverse=True)]
                for u, h in self.heaps.items()}  # fmt: skip


class UnitCapture:
    """A forward hook that keeps the last (B, units) output of one layer."""

    def __init__(self, module: nn.Module, channels_first: bool) -> None:
        self.module, self.channels_first = module, channels_first
        self.values: torch.Tensor | None = None
        self.handle = None

    def __enter__(self) -> UnitCapture:
        def keep(module: nn.Module, args: Any, output: Any) -> None:
            self.values = unit_values(output, self.channels_first)

        self.handle = self.module.register_forward_hook(keep)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.handle is not None:
            self.handle.remove()
