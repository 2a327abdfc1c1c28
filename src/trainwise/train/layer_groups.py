"""Layer groups and discriminative learning rates (tw.layer_groups, tw.discriminative_lrs).

Fine-tuning treats a pretrained model as a few consecutive groups, from the body (generic
features, learnt on the pretraining data) to the head (task-specific, new): the earlier a group,
the less it should move. fastai calls this discriminative learning rates (`lr=slice(lo, hi)`,
Howard & Ruder 2018, "Universal Language Model Fine-tuning", ULMFiT); freezing and gradual
unfreezing (freezing.py) work on the same groups.

The rule that makes the groups, in the order modules were registered in `__init__` (which is the
forward order for nn.Sequential and most models):
1. the units are the model's top-level children that hold parameters (the model's own direct
   parameters, if any, are one unit first);
2. while there are fewer units than groups, the unit with the most parameters is replaced by its
   own children (so a model wrapping one nn.Sequential is split inside it);
3. the last unit is the head, a group of its own (the layer a fine-tuning replaces);
4. the units before it are split into n - 1 consecutive groups of about equal parameter count,
   each cut placed where the running count is nearest its share (a small norm layer stays with
   the convolution before it rather than starting a group of its own).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from trainwise.errors import SetupError
from trainwise.helpers import decay_exempt

# fastai's fine_tune trains the body at base_lr / 100 spread over 3 groups (lr_mult=100): a
# ratio of 10 between neighbours; ULMFiT used 2.6. The seeds (../shared/TIPS.md): "3 to 10".
DEFAULT_RATIO = 10.0
DEFAULT_GROUPS = 3  # fastai's usual split: two body groups and the head


@dataclass(frozen=True, eq=False)
class LayerGroup:
    """One group: its index (0 = the earliest), the qualified names of its units, the modules
    it holds whole (with their submodules), and all its parameters."""

    index: int
    names: tuple[str, ...]
    modules: tuple[nn.Module, ...]
    params: tuple[nn.Parameter, ...]

    def parameters(self) -> Iterator[nn.Parameter]:
        return iter(self.params)

    def __repr__(self) -> str:
        size = sum(p.numel() for p in self.params)
        return f"LayerGroup({self.index}: {', '.join(self.names)}; {size} parameters)"


@dataclass
class _Unit:
    name: str
    module: nn.Module | None  # None: a module's own direct parameters
    params: list[nn.Parameter]

    @property
    def size(self) -> int:
        return sum(p.numel() for p in self.params)


def layer_groups(model: nn.Module, n: int = DEFAULT_GROUPS) -> list[LayerGroup]:
    """`model`'s parameters in `n` consecutive groups, body first, the head last (the module
    doc gives the rule). Every parameter is in exactly one group."""
    if not isinstance(model, nn.Module):
        raise SetupError(
            f"layer_groups(model=...): expected an nn.Module, got {type(model).__name__}"
        )
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SetupError(f"layer_groups(model, n={n!r}): expected a positive int")
    units = _split_until(model, n)
    if len(units) < n:
        raise SetupError(
            f"layer_groups: {type(model).__name__} has {len(units)} layer(s) with parameters "
            f"({', '.join(u.name for u in units)}); cannot make {n} groups"
        )
    if n == 1:
        parts = [units]
    else:
        body = units[:-1]
        cuts = _balanced_cuts([u.size for u in body], n - 1)
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        parts.append(units[-1:])
    return _groups(parts)


def resolve_groups(
    model: nn.Module, groups: int | Sequence[LayerGroup], where: str
) -> list[LayerGroup]:
    """The groups a helper works on: layer_groups(model, groups) for a count, or the groups
    given (as layer_groups returned them)."""
    if isinstance(groups, int) and not isinstance(groups, bool):
        return layer_groups(model, groups)
    if isinstance(groups, Sequence) and groups and all(isinstance(g, LayerGroup) for g in groups):
        return list(groups)
    raise SetupError(
        f"{where}(groups={groups!r}): expected a number of groups or the list tw.layer_groups "
        "returned"
    )


def discriminative_lrs(
    model: nn.Module,
    lr: float,
    ratio: float = DEFAULT_RATIO,
    groups: int | Sequence[LayerGroup] = DEFAULT_GROUPS,
    weight_decay: float = 0.01,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups where the head trains at `lr` and each earlier layer group at
    `ratio` times less: lr / ratio**k for the group k places before the head (fastai's
    `slice(lr / ratio**(n-1), lr)`). Each layer group is split as tw.param_groups splits a
    model: `weight_decay` on weights, none on biases and norms. Every dict carries
    "layer_group" (its index). Frozen parameters are included, so that unfreezing them later
    trains them without rebuilding the optimizer (a parameter without a gradient is skipped by
    torch's optimizers, weight decay included).

        opt = torch.optim.AdamW(tw.discriminative_lrs(model, lr=1e-3, ratio=10, groups=3))
        # a torch scheduler with one LR per group: max_lr=[g["lr"] for g in opt.param_groups]
    """
    if not _positive(lr):
        raise SetupError(
            f"discriminative_lrs(lr={lr!r}): expected a positive number (the head's LR)"
        )
    if not (_positive(ratio) and ratio >= 1):
        raise SetupError(
            f"discriminative_lrs(ratio={ratio!r}): expected a number >= 1 (3 to 10 is usual)"
        )
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise SetupError(
            f"discriminative_lrs(weight_decay={weight_decay!r}): expected a number >= 0"
        )
    chosen = resolve_groups(model, groups, "discriminative_lrs")
    exempt = decay_exempt(model)
    out = []
    for group in chosen:
        group_lr = lr / ratio ** (len(chosen) - 1 - group.index)
        decay = [p for p in group.params if id(p) not in exempt]
        no_decay = [p for p in group.params if id(p) in exempt]
        for params, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if params:
                out.append(
                    {
                        "params": params,
                        "lr": group_lr,
                        "weight_decay": wd,
                        "layer_group": group.index,
                    }
                )
    return out


# -- the rule ------------------------------------------------------------------------------------


def _units_of(module: nn.Module, prefix: str) -> list[_Unit]:
    """The parameter-holding parts one level down: the module's own parameters, its children."""
    units = []
    own = list(module.parameters(recurse=False))
    if own:
        units.append(_Unit(f"{prefix or type(module).__name__} (own parameters)", None, own))
    for name, child in module.named_children():
        params = list(child.parameters())
        if params:
            units.append(_Unit(f"{prefix}.{name}" if prefix else name, child, params))
    return units


def _split_until(model: nn.Module, n: int) -> list[_Unit]:
    units = _units_of(model, "")
    while len(units) < n:
        splittable = [
            i for i, u in enumerate(units)
            if u.module is not None and len(_units_of(u.module, u.name)) > 1
        ]  # fmt: skip
        if not splittable:
            break
        i = max(splittable, key=lambda i: units[i].size)
        units[i : i + 1] = _units_of(units[i].module, units[i].name)
    return units


def _balanced_cuts(sizes: list[int], parts: int) -> list[int]:
    """parts - 1 increasing cut indices into `sizes`, each where the running total is nearest
    total * j / parts, every part non-empty."""
    total = sum(sizes)
    running = [sum(sizes[:i]) for i in range(len(sizes) + 1)]  # running[i] = size of sizes[:i]
    cuts: list[int] = []
    for j in range(1, parts):
        lo = (cuts[-1] if cuts else 0) + 1
        hi = len(sizes) - (parts - j)  # leave one unit for every part still to come
        target = total * j / parts
        cuts.append(min(range(lo, hi + 1), key=lambda i: abs(running[i] - target)))
    return cuts


def _groups(parts: list[list[_Unit]]) -> list[LayerGroup]:
    seen: set[int] = set()  # a parameter shared by two units belongs to the first
    groups = []
    for index, part in enumerate(parts):
        params = []
        for unit in part:
            for p in unit.params:
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        modules = tuple(u.module for u in part if u.module is not None)
        groups.append(LayerGroup(index, tuple(u.name for u in part), modules, tuple(params)))
    return groups


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
