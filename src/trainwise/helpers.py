"""Helpers the fixes point to: normalization swap, weight-decay groups, class weights."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

# Wu & He (2018) use 32 groups; a channel count that 32 does not divide gets the largest
# divisor below it.
DEFAULT_GROUPS = 32
_NO_DECAY_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def _groups_for(channels: int, groups: int) -> int:
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


def _replacement(bn: nn.modules.batchnorm._BatchNorm, to: str, groups: int) -> nn.GroupNorm:
    c = bn.num_features
    # GroupNorm(1, C) normalizes over channels and positions together: LayerNorm for feature
    # maps, with a per-channel scale and shift like BatchNorm's (and works on (N, C) too).
    g = 1 if to == "layer" else _groups_for(c, groups)
    norm = nn.GroupNorm(g, c, eps=bn.eps, affine=bn.affine)
    if bn.affine:
        norm = norm.to(device=bn.weight.device, dtype=bn.weight.dtype)
        with torch.no_grad():
            norm.weight.copy_(bn.weight)
            norm.bias.copy_(bn.bias)
        norm.weight.requires_grad_(bn.weight.requires_grad)  # a frozen BN stays frozen
        norm.bias.requires_grad_(bn.bias.requires_grad)
    norm.train(bn.training)
    return norm


def convert_batchnorm(
    model: nn.Module, to: str = "group", groups: int = DEFAULT_GROUPS, inplace: bool = True
) -> nn.Module:
    """Replace every BatchNorm{1,2,3}d (and SyncBatchNorm) with a batch-independent norm.

    to="group": nn.GroupNorm with `groups` groups (or the largest divisor of the channel count
    below it); to="layer": nn.GroupNorm(1, C), i.e. LayerNorm over channels and positions.
    BatchNorm's learned scale and shift are carried over. Returns the model (a converted copy
    when inplace=False).
    """
    if to not in ("group", "layer"):
        raise ValueError(f"convert_batchnorm(to={to!r}): expected 'group' or 'layer'")
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"convert_batchnorm(groups={groups!r}): expected a positive int")
    if not inplace:
        model = copy.deepcopy(model)
    if isinstance(model, nn.modules.batchnorm._BatchNorm):
        return _replacement(model, to, groups)
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, child_name, _replacement(child, to, groups))
    return model


def param_groups(
    model_or_params: nn.Module | Iterable[nn.Parameter], weight_decay: float = 0.01
) -> list[dict[str, Any]]:
    """Two optimizer parameter groups: weight decay on weights, none on norms and biases.

    Give the model, or the parameters an optimizer factory receives (then every 1-D tensor, a
    bias or a norm scale/shift, goes without decay):

        optimizer=lambda params: torch.optim.AdamW(tw.param_groups(params, weight_decay=0.05))
    """
    if isinstance(model_or_params, nn.Module):
        exempt = decay_exempt(model_or_params)
        named = [(p, id(p) in exempt) for p in model_or_params.parameters()]
    else:
        named = [(p, p.dim() <= 1) for p in model_or_params]
    seen: set[int] = set()
    decay, no_decay = [], []
    for p, exempt in named:
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (no_decay if exempt else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def decay_exempt(model: nn.Module) -> set[int]:
    """ids of the parameters weight decay should skip: every tensor of one dimension (biases,
    norm scales and shifts) and every parameter of a norm layer. A parameter shared by two
    modules is judged where it first appears."""
    judged: dict[int, bool] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            judged.setdefault(id(p), p.dim() <= 1 or isinstance(module, _NO_DECAY_TYPES))
    return {pid for pid, exempt in judged.items() if exempt}


def class_weights(labels: Any, num_classes: int | None = None) -> torch.Tensor:
    """Per-class loss weights n_samples / (n_classes * count), as scikit-learn's "balanced".

    labels: class indices (tensor, array or list). A class with no sample gets weight 0.
    Use as `nn.CrossEntropyLoss(weight=tw.class_weights(train_labels))`.
    """
    y = torch.as_tensor(labels).flatten()
    if y.numel() == 0:
        raise ValueError("class_weights: no labels given")
    if torch.is_floating_point(y):
        if not bool((y == y.round()).all()):
            raise ValueError("class_weights: labels must be integer class indices")
        y = y.long()
    if int(y.min()) < 0:
        raise ValueError(f"class_weights: negative label {int(y.min())}")
    counts = torch.bincount(y, minlength=num_classes or 0).double()
    present = int((counts > 0).sum())
    weights = torch.where(counts > 0, y.numel() / (present * counts.clamp_min(1)), 0.0)
    return weights.float()
