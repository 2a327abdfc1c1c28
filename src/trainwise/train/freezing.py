"""Freezing for fine-tuning: tw.freeze / tw.unfreeze, tw.freeze_batchnorm, tw.GradualUnfreezing.

A frozen parameter has requires_grad off: it gets no gradient, and torch's optimizers skip a
parameter without one (its weight decay and momentum included), so an optimizer built over the
whole model can stay as it is while groups are frozen and unfrozen.

A frozen BatchNorm layer must also stop updating its running mean and variance, or its
statistics drift towards the new data while its scale and shift stay put. It is held in eval
mode by a forward pre-hook that switches it back to eval before every forward, so the hold
survives `model.train()` (which a loop calls every epoch) and deep copies, and pickles (the hook
is a module-level function).

Every module whose parameters these helpers freeze records why (by freeze, by
freeze_batchnorm), so that unfreezing the body does not undo freeze_batchnorm, and so that the
frozen-parameters rule can tell a deliberate freeze from an accident (frozen_marks.py).

The boundary `upto` is the same for freeze and unfreeze: everything before it is the frozen part.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from trainwise.errors import SetupError
from trainwise.train.frozen_marks import FROZEN_BY
from trainwise.train.layer_groups import LayerGroup, resolve_groups

FREEZE, BATCHNORM = "freeze", "batchnorm"  # why a module's parameters are frozen
_BATCHNORM = nn.modules.batchnorm._BatchNorm  # BatchNorm1d/2d/3d, SyncBatchNorm, lazy ones


def freeze(
    model: nn.Module, upto: int | str = -1, groups: int | Sequence[LayerGroup] = 2
) -> nn.Module:
    """Freeze the part of `model` before `upto`: its parameters stop training, its BatchNorm
    layers stop updating their statistics (held in eval mode across model.train()).

    upto: a layer-group index (the groups of tw.layer_groups(model, groups); -1, the default,
    freezes every group but the last, the head), or a module name (every module registered
    before it is frozen; it and what follows stay trainable). Returns the model.
    """
    modules, loose = _part(model, upto, groups, before=True, where="freeze")
    if loose:  # the model's own direct parameters: the model records the freeze
        modules.append(model)
    for module in modules:
        _mark(module, FREEZE)
    return model


def unfreeze(
    model: nn.Module,
    upto: int | str = 0,
    groups: int | Sequence[LayerGroup] = 2,
    batchnorm: bool = False,
) -> nn.Module:
    """Make the part of `model` from `upto` on trainable again (0, the default: all of it);
    `upto` reads as in freeze. BatchNorm layers held by tw.freeze_batchnorm stay frozen unless
    batchnorm=True. Returns the model."""
    modules, loose = _part(model, upto, groups, before=False, where="unfreeze")
    reasons = {FREEZE, BATCHNORM} if batchnorm else {FREEZE}
    if loose:
        modules.append(model)
    for module in modules:
        _unmark(module, reasons, model.training)
    return model


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Every BatchNorm layer of `model` in eval mode (its running statistics fixed, across
    model.train()) with its scale and shift frozen: fine-tuning on small batches or on data
    unlike the pretraining data keeps the statistics the pretrained weights were trained with.
    tw.unfreeze(model, batchnorm=True) releases them. Returns the model."""
    for module in model.modules():
        if isinstance(module, _BATCHNORM):
            _mark(module, BATCHNORM)
    return model


class GradualUnfreezing:
    """Unfreeze one layer group every `epochs_per_group` epochs, from the head back (ULMFiT,
    Howard & Ruder 2018): in the first epoch only the head trains, then the group before it
    joins, and so on until the whole model trains.

        schedule = tw.GradualUnfreezing(model, groups=3)
        for epoch in range(epochs):
            schedule.on_epoch_start(epoch)
            ...
        trainer = lightning.Trainer(callbacks=[schedule.lightning()])   # the same, in Lightning
        trainer = transformers.Trainer(..., callbacks=[schedule.transformers()])   # or HF's

    Build the optimizer over all parameters (e.g. tw.discriminative_lrs with the same groups):
    frozen ones are skipped until they get gradients. An optimizer built only from the
    parameters that require gradients (the HF Trainer's own, Lightning modules that filter)
    must be built before the first freeze, which the callbacks' order gives: leave the freezing
    to the schedule.
    """

    def __init__(
        self, model: nn.Module, groups: int | Sequence[LayerGroup] = 3, epochs_per_group: int = 1
    ) -> None:
        if not isinstance(epochs_per_group, int) or epochs_per_group < 1:
            raise SetupError(
                f"GradualUnfreezing(epochs_per_group={epochs_per_group!r}): expected a positive int"
            )
        self.model = model
        self.groups = resolve_groups(model, groups, "GradualUnfreezing")
        self.epochs_per_group = epochs_per_group

    def trainable_groups(self, epoch: int) -> int:
        """How many groups (counted from the head) train in `epoch` (0-based)."""
        return min(len(self.groups), 1 + epoch // self.epochs_per_group)

    def on_epoch_start(self, epoch: int) -> int:
        """Freeze and unfreeze for `epoch` (0-based); returns the number of trainable groups.
        Sets the whole state each time, so a run resumed at a later epoch is right too."""
        boundary = len(self.groups) - self.trainable_groups(epoch)
        freeze(self.model, upto=boundary, groups=self.groups)
        unfreeze(self.model, upto=boundary, groups=self.groups)
        return len(self.groups) - boundary

    def lightning(self):
        """This schedule as a Lightning Callback (called at every training epoch's start)."""
        from trainwise.integrations.lightning import GradualUnfreezingCallback

        return GradualUnfreezingCallback(self)

    def transformers(self):
        """This schedule as a Hugging Face TrainerCallback (called at every epoch's start)."""
        from trainwise.integrations.transformers import GradualUnfreezingTrainerCallback

        return GradualUnfreezingTrainerCallback(self)


# -- the part of a model before or after a boundary ------------------------------------------------


def _part(
    model: nn.Module, upto: int | str, groups: int | Sequence[LayerGroup], before: bool, where: str
) -> tuple[list[nn.Module], list[nn.Parameter]]:
    """(the modules of the part, each with its submodules listed too; the parameters of the
    part held by no listed module, i.e. the model's own direct parameters)."""
    if not isinstance(model, nn.Module):
        raise SetupError(f"{where}(model=...): expected an nn.Module, got {type(model).__name__}")
    if isinstance(upto, str):
        return _modules_around(model, upto, before, where), []
    if not isinstance(upto, int) or isinstance(upto, bool):
        raise SetupError(f"{where}(upto={upto!r}): expected a layer-group index or a module name")
    chosen = resolve_groups(model, groups, where)
    n = len(chosen)
    boundary = upto + n if upto < 0 else upto
    if not 0 <= boundary <= n:
        raise SetupError(
            f"{where}(upto={upto}): the model has {n} layer groups; expected -{n}..{n}"
        )
    part = chosen[:boundary] if before else chosen[boundary:]
    modules = list({id(m): m for g in part for top in g.modules for m in top.modules()}.values())
    owned = {id(p) for m in modules for p in m.parameters(recurse=False)}
    loose = [p for g in part for p in g.params if id(p) not in owned]
    return modules, loose


def _modules_around(model: nn.Module, name: str, before: bool, where: str) -> list[nn.Module]:
    """The modules registered before module `name` (before=True), or it and those after,
    leaving out its ancestors (which contain it)."""
    names = [n for n, _ in model.named_modules() if n]
    if name not in names:
        shown = ", ".join(n for n, _ in model.named_children()) or "(none)"
        dotted = next((n for n in names if "." in n), None)
        inside = f" (dotted names reach inside them, e.g. {dotted!r})" if dotted else ""
        raise SetupError(
            f"{where}(upto={name!r}): {type(model).__name__} has no module of that name; its "
            f"layers: {shown}{inside}"
        )
    ancestors = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
    modules = dict(model.named_modules())
    at = names.index(name)
    chosen = names[:at] if before else names[at:]
    return [modules[n] for n in chosen if n not in ancestors]


# -- marking frozen modules; holding BatchNorm in eval mode --------------------------------------


def _mark(module: nn.Module, reason: str) -> None:
    """Freeze `module`'s own parameters for `reason`; a BatchNorm layer is also held in eval."""
    if not isinstance(module, _BATCHNORM) and next(module.parameters(False), None) is None:
        return  # nothing of its own to freeze (a ReLU, a container): left unmarked
    reasons = getattr(module, FROZEN_BY, None)
    if reasons is None:
        reasons = set()
        setattr(module, FROZEN_BY, reasons)
        if isinstance(module, _BATCHNORM):
            module.register_forward_pre_hook(_stay_in_eval)
    reasons.add(reason)
    for p in module.parameters(recurse=False):
        p.requires_grad_(False)
        p.grad = None  # a gradient left from before would still be applied by the next step
    if isinstance(module, _BATCHNORM):
        module.train(False)


def _unmark(module: nn.Module, reasons: set[str], training: bool) -> None:
    """Drop `reasons`; with none left, `module`'s own parameters train again (and a BatchNorm
    layer returns to the model's mode now, not only at its next train()). A module these
    helpers never froze is made trainable too: unfreeze(model) means all of it."""
    held = getattr(module, FROZEN_BY, None)
    if held:
        held -= reasons
        if held:
            return  # still frozen for another reason (freeze_batchnorm's)
        if isinstance(module, _BATCHNORM):
            module.train(training)
    for p in module.parameters(recurse=False):
        p.requires_grad_(True)


def _stay_in_eval(bn: nn.Module, args: tuple) -> None:
    """Forward pre-hook of a frozen BatchNorm layer: eval mode before every forward (running
    statistics used, not updated), whatever model.train() set."""
    if bn.training and getattr(bn, FROZEN_BY, None):
        bn.train(False)
