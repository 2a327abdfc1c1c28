"""A shallower copy of a model, for a distillation student of a depth fraction.

Two kinds of depth a model can lose without changing what it takes and gives:
- stacked recurrent layers: a GRU/LSTM of L layers keeps round(keep * L) (at least 1);
- blocks whose output has the shape of their input (a conv block 32 -> 32 at the same size,
  a residual block, a Linear 128 -> 128) inside a stack (nn.Sequential or nn.ModuleList):
  the fraction 1 - keep of them, evenly spread, become nn.Identity. A block is the largest
  such module below the stack (a residual block, not the conv inside it), and it must hold
  a weight layer (a BatchNorm or a ReLU alone is not depth).
Whether a block keeps its shape is measured, with forward hooks on one example batch. The
student is freshly initialized (its weights are trained by distillation).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainwise.compress.narrow import RNNS, WEIGHTED, CannotNarrow, _replace, _shape

STACKS = (nn.Sequential, nn.ModuleList)


def shallower(model: nn.Module, keep: float, example: Callable[[nn.Module], Any]) -> nn.Module:
    """A fresh copy of `model` with `keep` (0 < keep < 1) of its depth (see the module doc);
    CannotNarrow when it has no depth to lose."""
    student = copy.deepcopy(model)
    changed = _fewer_rnn_layers(student, keep)
    blocks = _same_shape_blocks(model, example)
    drop = _evenly(len(blocks), math.floor(len(blocks) * (1 - keep) + 0.5))
    for i in drop:
        _replace(student, blocks[i], nn.Identity())
    if not changed and not drop:
        raise CannotNarrow(
            "no depth to remove: no stacked GRU/LSTM layers and no block in a stack whose "
            f"output has its input's shape (found {len(blocks)})"
        )
    for module in student.modules():  # a student starts fresh
        if module is not student and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    with torch.no_grad():
        was, now = example(model.eval()), example(student.eval())
    if _shape(was) != _shape(now):
        raise CannotNarrow(f"the shallower model's output is {_shape(now)}, not {_shape(was)}")
    return student


def _fewer_rnn_layers(model: nn.Module, keep: float) -> bool:
    changed = False
    for name, m in list(model.named_modules()):
        if isinstance(m, RNNS) and m.num_layers > 1 and name:
            layers = max(1, math.floor(m.num_layers * keep + 0.5))
            if layers < m.num_layers:
                _replace(model, name, type(m)(m.input_size, m.hidden_size, num_layers=layers,
                                              bias=m.bias, batch_first=m.batch_first,
                                              dropout=m.dropout if layers > 1 else 0.0,
                                              bidirectional=m.bidirectional))  # fmt: skip
                changed = True
    return changed


def _same_shape_blocks(model: nn.Module, example: Callable[[nn.Module], Any]) -> list[str]:
    """The names of the largest modules under a stack that hold a weight layer and return a
    tensor of their (single tensor) input's shape, in the model's order."""
    parents = {f"{name}.{child}" if name else child
               for name, m in model.named_modules() if isinstance(m, STACKS)
               for child, _ in m.named_children()}  # fmt: skip
    same: set[str] = set()
    hooks = []

    def record(name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if (len(args) == 1 and isinstance(args[0], torch.Tensor)
                    and isinstance(output, torch.Tensor) and output.shape == args[0].shape):  # fmt: skip
                same.add(name)

        return hook

    for name, m in model.named_modules():
        if name in parents and any(isinstance(x, WEIGHTED) for x in m.modules()):
            hooks.append(m.register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            example(model.eval())
    finally:
        for h in hooks:
            h.remove()
    ordered = [n for n, _ in model.named_modules() if n in same]
    return [n for n in ordered if not any(n.startswith(f"{o}.") for o in ordered)]


def _evenly(count: int, drop: int) -> list[int]:
    """`drop` of `count` indices spread evenly, the last first (the first block stays)."""
    if drop <= 0 or count == 0:
        return []
    drop = min(drop, count)
    step = count / drop
    return sorted({count - 1 - int(i * step) for i in range(drop)})
