"""The parameters the optimizer holds, named as the model names them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Wrappers whose prefix says nothing to the user: DDP/DataParallel (`module.`) and
# torch.compile (`_orig_mod.`).
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def clean_name(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name.replace("._orig_mod.", ".")


@dataclass(frozen=True)
class ParamInfo:
    name: str
    group: int  # index of the optimizer's param group
    numel: int
    ndim: int
    position: int  # order in model.named_parameters(): a proxy for depth (input side first)
    module_kind: str  # class name of the module that owns it, e.g. "Linear", "Embedding"


def optimizer_params(model: nn.Module, optimizer: torch.optim.Optimizer):
    """[(param, ParamInfo)] for every distinct parameter the optimizer holds."""
    names, kinds = {}, {}
    for position, (name, p) in enumerate(model.named_parameters()):
        names.setdefault(id(p), (clean_name(name), position))
    for m in model.modules():
        for p in m.parameters(recurse=False):
            kinds.setdefault(id(p), type(m).__name__)
    out, seen = [], set()
    for g, group in enumerate(optimizer.param_groups):
        for j, p in enumerate(group["params"]):
            if id(p) in seen:  # shared parameters are listed once
                continue
            seen.add(id(p))
            name, position = names.get(id(p), (f"param_groups[{g}][{j}]", 10**9))
            kind = kinds.get(id(p), "?")
            out.append((p, ParamInfo(name, g, p.numel(), p.dim(), position, kind)))
    return out
