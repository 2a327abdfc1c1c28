"""Static rules about the optimizer and the parameters it trains.

The optimizer comes from the setup's own factory, built over the fresh model's parameters and
never stepped. A factory may ignore its argument and pick parameters itself (e.g.
`lambda p: SGD(model.head.parameters())` over the user's module): the parameters it holds are
matched to the model's by identity, and by name for the user's own module.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch import nn

from trainwise.context import StaticContext
from trainwise.data import take
from trainwise.rules.registry import Hit, rule
from trainwise.state import preserved
from trainwise.train.frozen_marks import frozen_on_purpose

# Usual ranges per optimizer family. Seed 004 gives LR 1e-6..1e-1, momentum 0.9..1 and weight
# decay 1e-6..1e-4 for SGD-style training; TIPS.md widens them to momentum 0.8..0.999 and decay
# 0..1e-2 (5e-4 is the standard SGD decay on CIFAR/ImageNet). Per family: SGD runs up to ~1
# under linear scaling of 0.1 per 256 samples (Goyal et al. 2017); adaptive methods default to
# 1e-3 (Kingma & Ba 2015) and are rarely stable above 1e-2; decoupled AdamW decay is multiplied
# by the LR and runs 1e-2..0.3 in published recipes (Loshchilov & Hutter 2019; ViT, ConvNeXt).
LR_RANGES: dict[type, tuple[float, float]] = {
    torch.optim.SGD: (1e-5, 1.0),
    torch.optim.Adam: (1e-6, 1e-2),
    torch.optim.AdamW: (1e-6, 1e-2),
    torch.optim.NAdam: (1e-6, 1e-2),
    torch.optim.RAdam: (1e-6, 1e-2),
    torch.optim.Adamax: (1e-6, 1e-2),
    torch.optim.RMSprop: (1e-6, 1e-2),
    torch.optim.Adagrad: (1e-5, 1e-1),
}
MOMENTUM_RANGE = (0.8, 0.999)  # TIPS.md; SGD momentum and Adam's beta1 (default 0.9)
BETA2_RANGE = (0.9, 0.99999)  # Adam's beta2: 0.999 default, 0.95-0.98 for transformers
COUPLED_DECAY_MAX = 1e-2  # TIPS.md: L2 weight decay within 0..1e-2
DECOUPLED_DECAY_MAX = 0.5  # AdamW: see above; past this weights shrink faster than they learn
DECOUPLED = (torch.optim.AdamW,)
ADAM_FAMILY = (torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam,
               torch.optim.Adamax)  # fmt: skip
BACKWARD_ROWS = 8  # samples in unused-parameters' backward pass
NO_DECAY_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def _trainable(ctx: StaticContext) -> bool:
    """Whether anything trains; without it, an optimizer over the trainable parameters cannot
    even be built (empty list), and frozen-parameters has already said so."""
    return any(p.requires_grad for p in ctx.model.parameters())


def _count(names: list[str], params: dict[str, nn.Parameter]) -> int:
    return sum(params[n].numel() for n in names)


def listed(names: list[str] | tuple[str, ...], limit: int = 5, quote: str = "") -> str:
    """The first `limit` names (each between `quote`s), and how many more."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(f"{quote}{n}{quote}" for n in names[:limit]) + more


@rule(
    "frozen-parameters",
    severity="error",
    category="model",
    summary="Parameters the optimizer holds are frozen (requires_grad=False), or nothing is "
    "trainable at all",
    why=(
        "A tensor with requires_grad=False never gets a gradient, so the optimizer silently "
        "skips it: the layers stay at their initial (or pretrained) values. With nothing "
        "trainable, backward() raises; with part of the model frozen by accident (a freeze "
        "loop that also caught the new head, a copy made under no_grad), training runs and "
        "plateaus early. Tensors frozen by tw.freeze, tw.freeze_batchnorm or "
        "tw.GradualUnfreezing are not reported: the optimizer holds them so that they train "
        "once unfrozen."
    ),
    fix="Unfreeze what should learn (`p.requires_grad_(True)`), and give the optimizer only the "
    "trainable parameters: `[p for p in model.parameters() if p.requires_grad]`.",
    example=(
        "model.fc = nn.Linear(512, 10)\n"
        "for p in model.parameters():       # freezes the new head too\n"
        "    p.requires_grad = False\n\n"
        "for p in model.parameters():\n"
        "    p.requires_grad = False\n"
        "model.fc = nn.Linear(512, 10)      # the new head is trainable"
    ),
    source="TrainCheck's parameter invariants.",
)
def frozen_parameters(ctx: StaticContext) -> Iterator[Hit]:
    params = dict(ctx.model.named_parameters())
    if not params:
        return
    trainable = [n for n, p in params.items() if p.requires_grad]
    if not trainable:
        yield Hit(
            f"none of the model's {len(params)} parameter tensors ({_count(list(params), params):,} "
            "values) requires grad: nothing can train and backward() will fail",
            where="model",
            evidence={"tensors": len(params), "trainable": 0},
            fix="Unfreeze the layers that should learn, e.g. "
            "`for p in model.fc.parameters(): p.requires_grad_(True)` after the freeze loop.",
        )
        return
    held, _ = ctx.optimizer_param_names
    deliberate = frozen_on_purpose(ctx.model)  # tw.freeze & co: frozen to be unfrozen later
    frozen_held = [
        n for n in params
        if n in held and not params[n].requires_grad and id(params[n]) not in deliberate
    ]  # fmt: skip
    if frozen_held:
        yield Hit(
            f"the optimizer holds {len(frozen_held)} frozen parameter tensors "
            f"({_count(frozen_held, params):,} values: {listed(frozen_held)}); they never change",
            where=frozen_held[0],
            evidence={"frozen_held": frozen_held, "values": _count(frozen_held, params)},
            fix="If they should learn, `requires_grad_(True)`; if they are meant to stay fixed, "
            "pass only the trainable ones: "
            "`optimizer=lambda ps: AdamW([p for p in ps if p.requires_grad])`.",
            severity="warning",
        )


@rule(
    "params-not-in-optimizer",
    severity="error",
    category="model",
    summary="Trainable parameters that the optimizer does not hold",
    why=(
        "Parameters missing from the optimizer get gradients but are never updated: the layer "
        "stays at its random init while everything else trains. It happens when the optimizer "
        "is built from one sub-module (`model.fc.parameters()`), before layers are added, or "
        "over another copy of the model."
    ),
    fix="Build the optimizer from `model.parameters()` (or parameter groups that together "
    "cover every trainable parameter).",
    example=(
        "optimizer=lambda params: torch.optim.SGD(model.head.parameters(), lr=0.1)\n\n"
        "optimizer=lambda params: torch.optim.SGD(params, lr=0.1)"
    ),
    source="TrainCheck's optimizer invariants.",
)
def params_not_in_optimizer(ctx: StaticContext) -> Iterator[Hit]:
    if not _trainable(ctx):
        return
    params = dict(ctx.model.named_parameters())
    held, foreign = ctx.optimizer_param_names
    missing = [n for n, p in params.items() if p.requires_grad and n not in held]
    if not missing:
        return
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    count = _count(missing, params)
    note = (
        f"; it holds {foreign} tensors that are not the model's parameters (built over another "
        "model object?)"
        if foreign
        else ""
    )
    yield Hit(
        f"the optimizer does not hold {len(missing)} trainable parameter tensors ({count:,} of "
        f"{trainable:,} trainable values, {count / trainable:.0%}): {listed(missing)}{note}",
        where=missing[0],
        evidence={
            "missing": missing,
            "missing_values": count,
            "trainable_values": trainable,
            "foreign_tensors": foreign,
        },  # fmt: skip
        fix="Build the optimizer over all trainable parameters: "
        f"`optimizer=lambda params: torch.optim.{type(ctx.optimizer).__name__}(params, ...)` "
        "(use the `params` argument, not a module captured from outside).",
    )


@rule(
    "unused-parameters",
    severity="warning",
    category="model",
    summary="Parameters that get no gradient from the loss",
    why=(
        "A trainable parameter whose gradient stays None after backward() took no part in the "
        "loss: a layer defined in __init__ but never called, a branch whose output is dropped, "
        "or a tensor detached on the way. It costs memory and optimizer state, breaks "
        "DistributedDataParallel (which waits for its gradient), and often means the forward "
        "is not the one intended."
    ),
    fix="Remove the unused layers, or fix the forward so their output reaches the loss.",
    example=(
        "def forward(self, x):\n"
        "    h = self.encoder(x)\n"
        "    h = self.extra(h)          # result dropped: self.extra never trains\n"
        "    return self.head(self.encoder(x))\n\n"
        "def forward(self, x):\n"
        "    return self.head(self.extra(self.encoder(x)))"
    ),
    source="PyTorch DDP's find_unused_parameters.",
)
def unused_parameters(ctx: StaticContext) -> Iterator[Hit]:
    model = ctx.model
    params = dict(model.named_parameters())
    if not any(p.requires_grad for p in params.values()) or not ctx.labels_in_range():
        return  # frozen-parameters / labels-out-of-range report those first
    x, y = ctx.batch
    # Which parameters get a gradient does not depend on the batch size: a few rows suffice
    # (at least 2, which BatchNorm needs in train mode).
    if isinstance(y, torch.Tensor) and y.dim() > 0:
        x, y = take(x, slice(0, BACKWARD_ROWS)), y[:BACKWARD_ROWS]
    # One forward/backward in train mode (training-only branches count), all state restored.
    with preserved(model):
        model.train()
        for p in params.values():
            p.grad = None
        try:
            with warnings.catch_warnings():  # shape warnings: output-size-mismatch's business
                warnings.simplefilter("ignore", UserWarning)
                loss = ctx.setup.batch_loss(model, x, y)
            loss.backward()
        except Exception:
            return  # a loss that cannot backpropagate is reported elsewhere
        unused = [n for n, p in params.items() if p.requires_grad and p.grad is None]
    if not unused:
        return
    count = _count(unused, params)
    modules = sorted({n.rsplit(".", 1)[0] if "." in n else n for n in unused})
    yield Hit(
        f"{len(unused)} trainable parameter tensors ({count:,} values) get no gradient from the "
        f"loss: {listed(unused)}",
        where=unused[0],
        evidence={"unused": unused, "values": count},
        fix=f"Remove {listed(modules)} from the model, or route their output into the loss "
        "(check `forward` for results that are computed and dropped, or `.detach()`).",
    )


@rule(
    "hyperparameter-range",
    severity="warning",
    category="model",
    summary="Learning rate, momentum or weight decay outside the usual range for the optimizer",
    why=(
        "Each optimizer has a range where its hyperparameters work: an Adam LR of 0.1 diverges, "
        "an SGD LR of 1e-6 does not move, momentum 0.5 loses most of its smoothing, a weight "
        "decay of 0.1 with plain L2 shrinks the weights faster than they learn. A value far "
        "outside is usually a typo (1e-1 for 1e-4) or a setting copied from another optimizer."
    ),
    fix="Bring the value into the usual range (the finding gives it); run `trainwise lr-find` "
    "for the LR.",
    example=(
        "torch.optim.Adam(params, lr=0.1)              # an SGD learning rate\n\n"
        "torch.optim.Adam(params, lr=1e-3)"
    ),
    source="Deep Learning Practical Tricks (a tips list) (typical learning rate, momentum and weight decay "
    "values). Kingma & Ba (2015); Goyal et al. (2017); Loshchilov & Hutter (2019).",
)
def hyperparameter_range(ctx: StaticContext) -> Iterator[Hit]:
    if ctx.setup.optimizer is None or not _trainable(ctx):
        return  # trainwise's own default (AdamW, lr=1e-3)
    opt = ctx.optimizer
    kind = type(opt)
    name = kind.__name__
    lr_range = next((r for cls, r in LR_RANGES.items() if kind is cls), None)
    for i, group in enumerate(opt.param_groups):
        where = f"optimizer group {i}" if len(opt.param_groups) > 1 else "optimizer"
        lr = float(group.get("lr", 0.0))
        if lr_range is not None and not lr_range[0] <= lr <= lr_range[1]:
            lo, hi = lr_range
            yield Hit(
                f"{name} lr={lr:g} is outside the usual {lo:g}..{hi:g}",
                where=where,
                evidence={"lr": lr, "range": [lo, hi], "optimizer": name},
                fix=f"Use an lr within {lo:g}..{hi:g} ({name} usually starts at "
                f"{_typical_lr(kind):g}); `trainwise lr-find` measures a good one.",
            )
        yield from _momentum(group, kind, name, where)
        yield from _decay(group, kind, name, where)


def _typical_lr(kind: type) -> float:
    return 0.1 if kind is torch.optim.SGD else 1e-2 if kind is torch.optim.Adagrad else 1e-3


def _momentum(group: dict, kind: type, name: str, where: str) -> Iterator[Hit]:
    lo, hi = MOMENTUM_RANGE
    if kind is torch.optim.SGD:
        m = float(group.get("momentum", 0.0))
        if m == 0:
            yield Hit(
                f"{name} runs without momentum; momentum 0.9 usually trains faster and smoother",
                where=where,
                evidence={"momentum": m},
                fix="`torch.optim.SGD(params, lr=..., momentum=0.9)` (often with nesterov=True).",
                severity="info",
            )
        elif not lo <= m <= hi:
            yield Hit(
                f"{name} momentum={m:g} is outside the usual {lo:g}..{hi:g}",
                where=where,
                evidence={"momentum": m, "range": [lo, hi]},
                fix="Use momentum=0.9.",
            )
    elif issubclass(kind, ADAM_FAMILY) and "betas" in group:
        b1, b2 = (float(b) for b in group["betas"])
        if not lo <= b1 <= hi:
            yield Hit(
                f"{name} beta1={b1:g} (its momentum) is outside the usual {lo:g}..{hi:g}",
                where=where,
                evidence={"beta1": b1, "range": [lo, hi]},
                fix="Use betas=(0.9, 0.999), the default.",
            )
        if not BETA2_RANGE[0] <= b2 <= BETA2_RANGE[1]:
            yield Hit(
                f"{name} beta2={b2:g} is outside the usual {BETA2_RANGE[0]:g}..{BETA2_RANGE[1]:g}",
                where=where,
                evidence={"beta2": b2, "range": list(BETA2_RANGE)},
                fix="Use beta2=0.999 (0.95-0.98 for large transformers).",
            )


def _decay(group: dict, kind: type, name: str, where: str) -> Iterator[Hit]:
    wd = float(group.get("weight_decay", 0.0))
    limit = DECOUPLED_DECAY_MAX if issubclass(kind, DECOUPLED) else COUPLED_DECAY_MAX
    if 0 <= wd <= limit:
        return
    style = "decoupled" if issubclass(kind, DECOUPLED) else "L2 (coupled)"
    typical = "0.01..0.1" if issubclass(kind, DECOUPLED) else "1e-5..5e-4"
    yield Hit(
        f"{name} weight_decay={wd:g} is outside the usual 0..{limit:g} for {style} weight decay",
        where=where,
        evidence={"weight_decay": wd, "range": [0, limit], "optimizer": name},
        fix=f"Use weight_decay in {typical} for {name}.",
    )


def no_decay_names(model: nn.Module) -> set[str]:
    """Biases and the weights of normalization layers: the tensors weight decay should skip."""
    names = set()
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if p.dim() <= 1 or isinstance(module, NO_DECAY_TYPES):
                names.add(f"{mname}.{pname}" if mname else pname)
    return names


@rule(
    "weight-decay-on-norm-and-bias",
    severity="info",
    category="model",
    summary="Weight decay is applied to normalization weights and biases",
    why=(
        "Weight decay regularizes by keeping weights small, which limits the function a layer "
        "can express. Biases and normalization scales/shifts do not multiply inputs in that "
        "way; decaying them pulls norm gains towards 0 and biases towards 0 for no benefit, and "
        "measurably costs accuracy in large-batch training (Goyal et al. 2017; Jia et al. 2018)."
    ),
    fix="Use two parameter groups, decay only on the weight matrices: "
    "`torch.optim.AdamW(tw.param_groups(model, weight_decay=0.05), lr=...)`.",
    example=(
        "torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)\n\n"
        "torch.optim.AdamW(tw.param_groups(model, weight_decay=0.05), lr=1e-3)"
    ),
    source="Goyal et al., Accurate, Large Minibatch "
    "SGD (2017), sec. 5.1; Jia et al., Highly Scalable Deep Learning Training System (2018).",
)
def weight_decay_on_norm_and_bias(ctx: StaticContext) -> Iterator[Hit]:
    if ctx.setup.optimizer is None or not _trainable(ctx):
        return  # trainwise's own default optimizer, not the user's choice
    exempt = no_decay_names(ctx.model)
    params = dict(ctx.model.named_parameters())
    decayed, wd = [], 0.0
    for group in ctx.optimizer.param_groups:
        if float(group.get("weight_decay", 0.0)) <= 0:
            continue
        for p in group["params"]:
            name = ctx.parameter_names.get(id(p))
            if name in exempt and name in params:
                decayed.append(name)
                wd = max(wd, float(group["weight_decay"]))
    if not decayed:
        return
    yield Hit(
        f"weight decay {wd:g} applies to {len(decayed)} bias/normalization tensors "
        f"({_count(decayed, params):,} values: {listed(decayed)})",
        where=decayed[0],
        evidence={"decayed": decayed, "weight_decay": wd},
        fix=f"`optimizer=lambda params: torch.optim.{type(ctx.optimizer).__name__}("
        f"tw.param_groups(params, weight_decay={wd:g}), lr=...)`: decay on weight matrices, "
        "none on 1-D tensors (biases, norm scales and shifts).",
    )
