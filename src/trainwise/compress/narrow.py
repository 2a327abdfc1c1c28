"""A narrower copy of a model: every hidden layer with a fraction of its units.

Two uses, one walk over the layers:
    prune-channels:F   keep the (1 - F) share of each hidden layer's output channels with the
                       largest L2 norm and copy their weights (channels really removed: the
                       tensors are smaller, not masked with zeros)
    distill:W          the same architecture at width W, freshly initialized: the student

The walk follows the layers in the order the model registers them (`named_modules`), which is
the order a plain feed-forward model (nn.Sequential, a CNN, an RNN with a head) runs them in.
Each weight layer's input follows the previous one's kept outputs; the first layer keeps its
inputs and the last its outputs, so the model takes the same input and gives the same output
shape. A flatten between a conv and a Linear is followed (the Linear's inputs are the channels
times a spatial size). What the walk cannot follow (a residual sum, attention, grouped
convolutions, a layer type it does not know) is refused with the reason, and a narrowed model
whose output shape differs from the original's is refused too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
RNNS = (nn.GRU, nn.LSTM)
WEIGHTED = (nn.Linear, *CONVS, *RNNS, nn.Embedding)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)
GATES = {nn.GRU: 3, nn.LSTM: 4}  # gate blocks stacked in an RNN's weight rows


class CannotNarrow(Exception):
    """The model is not one the walk can narrow; the message says which layer and why."""


class _Width:
    """The features flowing between layers: `kept` indices into the original `width` of them
    (None: all of them, unchanged)."""

    def __init__(self) -> None:
        self.width: int | None = None
        self.kept: torch.Tensor | None = None

    def inputs_of(self, name: str, count: int, spatial_ok: bool) -> torch.Tensor | None:
        """The kept indices among a layer's `count` inputs."""
        if self.width is None or self.kept is None:
            return None  # the model's own input: untouched
        if count == self.width:
            return self.kept
        if spatial_ok and count % self.width == 0:
            # a flatten of (C, *spatial) channel-major: input c * S + s for channel c
            spatial = count // self.width
            return (self.kept[:, None] * spatial + torch.arange(spatial)).reshape(-1)
        raise CannotNarrow(
            f"layer {name!r} takes {count} inputs, the layer before gives {self.width}: "
            "not a plain chain of layers"
        )


def narrower(model: nn.Module, keep: float, example: Callable[[nn.Module], Any],
             copy_weights: bool) -> nn.Module:  # fmt: skip
    """A copy of `model` whose hidden layers keep `keep` (0 < keep < 1) of their units, the ones
    of the largest weight norm with their weights when `copy_weights`, else freshly
    initialized. `example(model)` runs the model on an example input (its output is compared)."""
    layers = _layers(model)
    if layers[0][0] == "":
        raise CannotNarrow("the model is a single layer: nothing hidden to narrow")
    last = max(i for i, (_, m) in enumerate(layers) if isinstance(m, WEIGHTED))
    flow = _Width()
    narrow = copy.deepcopy(model)
    for i, (name, module) in enumerate(layers):
        new = _narrowed(name, module, flow, keep, i == last, copy_weights)
        _replace(narrow, name, new)
    with torch.no_grad():
        was = example(model.eval())
        try:
            shrunk = example(narrow.eval())
        except Exception as exc:  # e.g. a residual sum of a narrowed and a full-width tensor
            raise CannotNarrow(
                f"the narrowed model fails ({type(exc).__name__}: {str(exc)[:200]}): its "
                "layers are not one plain chain"
            ) from exc
    if _shape(was) != _shape(shrunk):
        raise CannotNarrow(
            f"the narrowed model's output is {_shape(shrunk)}, the original's {_shape(was)}: "
            "its layers are not one plain chain"
        )
    return narrow


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHTED + NORMS):
            found.append((name, module))
        elif next(module.parameters(recurse=False), None) is not None:
            raise CannotNarrow(
                f"layer {name!r} ({type(module).__name__}) has weights of a kind the walk does "
                "not narrow (it knows Linear, Conv, GRU, LSTM, Embedding, BatchNorm, LayerNorm)"
            )
    if not any(isinstance(m, WEIGHTED) for _, m in found):
        raise CannotNarrow("the model has no Linear, Conv, GRU, LSTM or Embedding layer")
    return found


def _chosen(score: torch.Tensor, keep: float) -> torch.Tensor:
    """The indices of the round(keep * n) largest scores (at least 1), in their order."""
    count = max(1, round(len(score) * keep))
    return torch.topk(score, count).indices.sort().values


def _narrowed(name: str, m: nn.Module, flow: _Width, keep: float, last: bool,
              copy_weights: bool) -> nn.Module:  # fmt: skip
    if isinstance(m, nn.Linear):
        return _linear(name, m, flow, keep, last, copy_weights)
    if isinstance(m, CONVS):
        return _conv(name, m, flow, keep, last, copy_weights)
    if isinstance(m, RNNS):
        return _rnn(name, m, flow, keep, last, copy_weights)
    if isinstance(m, nn.Embedding):
        return _embedding(name, m, flow, keep, last, copy_weights)
    return _norm(name, m, flow, copy_weights)


def _out_indices(weight: torch.Tensor, keep: float, last: bool) -> torch.Tensor:
    if last:
        return torch.arange(weight.shape[0])
    return _chosen(weight.detach().flatten(1).norm(dim=1), keep)  # one L2 norm per output unit


def _linear(name, m: nn.Linear, flow: _Width, keep, last, copy_weights) -> nn.Module:
    inputs = flow.inputs_of(name, m.in_features, spatial_ok=True)
    outputs = _out_indices(m.weight, keep, last)
    in_count = m.in_features if inputs is None else len(inputs)
    new = nn.Linear(in_count, len(outputs), bias=m.bias is not None,
                    device=m.weight.device, dtype=m.weight.dtype)  # fmt: skip
    if copy_weights:
        _copy(new.weight, _take(m.weight, outputs, inputs))
        if m.bias is not None:
            _copy(new.bias, m.bias[outputs])
    flow.width, flow.kept = m.out_features, outputs
    return new


def _conv(name, m, flow: _Width, keep, last, copy_weights) -> nn.Module:
    if m.groups != 1:
        raise CannotNarrow(f"layer {name!r} is a grouped convolution (groups={m.groups})")
    inputs = flow.inputs_of(name, m.in_channels, spatial_ok=False)
    outputs = _out_indices(m.weight, keep, last)
    in_count = m.in_channels if inputs is None else len(inputs)
    new = type(m)(in_count, len(outputs), m.kernel_size, stride=m.stride, padding=m.padding,
                  dilation=m.dilation, bias=m.bias is not None, padding_mode=m.padding_mode,
                  device=m.weight.device, dtype=m.weight.dtype)  # fmt: skip
    if copy_weights:
        _copy(new.weight, _take(m.weight, outputs, inputs))
        if m.bias is not None:
            _copy(new.bias, m.bias[outputs])
    flow.width, flow.kept = m.out_channels, outputs
    return new


def _rnn(name, m, flow: _Width, keep, last, copy_weights) -> nn.Module:
    """GRU/LSTM: the same hidden units kept in every layer and direction (scored by their
    recurrent weights' norms summed over layers). Weight rows are `gates` blocks of H."""
    if getattr(m, "proj_size", 0):
        raise CannotNarrow(f"layer {name!r} is an LSTM with proj_size: not narrowed")
    if last:
        raise CannotNarrow(f"layer {name!r}: an RNN as the model's last layer is not narrowed")
    gates, hidden = GATES[type(m)], m.hidden_size
    directions = 2 if m.bidirectional else 1
    inputs = flow.inputs_of(name, m.input_size, spatial_ok=False)
    score = sum(
        getattr(m, f"weight_hh_l{layer}{suffix}").detach().reshape(gates, hidden, hidden)
        .norm(dim=(0, 2))
        for layer in range(m.num_layers)
        for suffix in ("", "_reverse")[:directions]
    )  # fmt: skip
    units = _chosen(score, keep)
    rows = torch.cat([g * hidden + units for g in range(gates)])
    below = torch.cat([d * hidden + units for d in range(directions)])  # a deeper layer's input
    in_count = m.input_size if inputs is None else len(inputs)
    new = type(m)(in_count, len(units), num_layers=m.num_layers, bias=m.bias,
                  batch_first=m.batch_first, dropout=m.dropout, bidirectional=m.bidirectional,
                  device=m.weight_hh_l0.device, dtype=m.weight_hh_l0.dtype)  # fmt: skip
    if copy_weights:
        for layer in range(m.num_layers):
            layer_inputs = inputs if layer == 0 else below
            for suffix in ("", "_reverse")[:directions]:
                tail = f"_l{layer}{suffix}"
                _copy(getattr(new, "weight_ih" + tail),
                      _take(getattr(m, "weight_ih" + tail), rows, layer_inputs))  # fmt: skip
                _copy(getattr(new, "weight_hh" + tail),
                      _take(getattr(m, "weight_hh" + tail), rows, units))  # fmt: skip
                if m.bias:
                    for kind in ("bias_ih", "bias_hh"):
                        _copy(getattr(new, kind + tail), getattr(m, kind + tail)[rows])
    flow.width, flow.kept = hidden * directions, below
    return new


def _embedding(name, m: nn.Embedding, flow: _Width, keep, last, copy_weights) -> nn.Module:
    if flow.width is not None:
        raise CannotNarrow(f"layer {name!r}: an Embedding after other layers is not narrowed")
    dims = torch.arange(m.embedding_dim) if last else _chosen(m.weight.detach().norm(dim=0), keep)
    new = nn.Embedding(m.num_embeddings, len(dims), padding_idx=m.padding_idx,
                       device=m.weight.device, dtype=m.weight.dtype)  # fmt: skip
    if copy_weights:
        _copy(new.weight, m.weight[:, dims])
    flow.width, flow.kept = m.embedding_dim, dims
    return new


def _norm(name, m, flow: _Width, copy_weights) -> nn.Module:
    if isinstance(m, nn.LayerNorm):
        if len(m.normalized_shape) != 1:
            raise CannotNarrow(f"layer {name!r}: a LayerNorm over several dimensions")
        count = m.normalized_shape[0]
    else:
        count = m.num_features
    kept = flow.inputs_of(name, count, spatial_ok=False)
    if kept is None:
        return copy.deepcopy(m)
    new = copy.deepcopy(m)
    for attr in ("weight", "bias", "running_mean", "running_var"):
        value = getattr(m, attr, None)
        if value is None:
            continue
        sliced = value.detach()[kept].clone()
        if not copy_weights:  # a fresh layer's values: ones, zeros, unit variance
            sliced = torch.ones_like(sliced) if attr in ("weight", "running_var") else sliced * 0
        if isinstance(value, nn.Parameter):
            setattr(new, attr, nn.Parameter(sliced))
        else:
            new.register_buffer(attr, sliced)
    if isinstance(m, nn.LayerNorm):
        new.normalized_shape = (len(kept),)
    else:
        new.num_features = len(kept)
    return new


def _take(weight: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor | None) -> torch.Tensor:
    """weight[rows][:, cols] (every column when cols is None)."""
    taken = weight.detach()[rows]
    return taken if cols is None else taken[:, cols]


def _copy(target: torch.Tensor, value: torch.Tensor) -> None:
    with torch.no_grad():
        target.copy_(value)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _shape(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)):
        return [_shape(o) for o in output]
    if isinstance(output, dict):
        return {k: _shape(v) for k, v in output.items()}
    return type(output).__name__
