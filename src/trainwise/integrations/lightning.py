"""Lightning: `trainwise.watch` as a Callback, tw.GradualUnfreezing as one, and a Setup from a
LightningModule.

    trainer = lightning.Trainer(callbacks=[TrainwiseCallback(), schedule.lightning()])
    setup = tw.Setup.from_lightning(module, datamodule)     # for check, lr-find

The watch attaches when fitting starts (to the LightningModule and its first optimizer), logs the
training loss after every optimizer step, validation metrics after every validation epoch
(`val_loss` / `val/loss` become `loss`, ...), and closes when fitting ends.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from lightning.pytorch import Callback

from trainwise.errors import SetupError
from trainwise.steps import ModuleOptimizer, TrainingStep
from trainwise.watch import Watch


class TrainwiseCallback(Callback):
    def __init__(
        self,
        preset: str = "standard",
        every: int | None = None,
        verbose: bool = True,
        **watch_options: Any,
    ) -> None:
        self.options = {"preset": preset, "every": every, "verbose": verbose, **watch_options}
        self.watch: Watch | None = None
        self._logged_step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.optimizers:
            return
        optimizer = trainer.optimizers[0]
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # LightningOptimizer wrapper
        self.watch = Watch(pl_module, optimizer, **self.options)
        self._logged_step = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.watch is None or self.watch.step == self._logged_step:
            return  # an accumulation micro-batch: the step has not happened yet
        self._logged_step = self.watch.step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self.watch.log(loss=loss.detach())
        else:
            self.watch.log()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.watch is None or trainer.sanity_checking:
            return
        metrics = {}
        for key, value in trainer.callback_metrics.items():
            for prefix in ("val_", "val/", "validation_", "valid_"):
                if key.startswith(prefix) and isinstance(value, torch.Tensor | float | int):
                    metrics[key[len(prefix) :]] = value
        if metrics:
            self.watch.log_val(**metrics)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.watch is not None:
            self.watch.close()

    @property
    def findings(self):
        return self.watch.findings if self.watch is not None else []


class GradualUnfreezingCallback(Callback):
    """tw.GradualUnfreezing as a Lightning Callback: the schedule's on_epoch_start with the
    Trainer's epoch, before every training epoch (made by `schedule.lightning()`)."""

    def __init__(self, schedule: Any) -> None:
        self.schedule = schedule

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.schedule.on_epoch_start(trainer.current_epoch)


# -- a Setup from a LightningModule -------------------------------------------------------------

# Lightning warns on every `self.log` of a module not attached to a Trainer; the check calls
# training_step outside one on purpose.
_LOG_WITHOUT_TRAINER = r"You are trying to `self\.log\(\)` but the `self\.trainer` reference"


def setup_fields(
    module: Any,
    datamodule: Any = None,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
) -> dict[str, Any]:
    """The fields of a Setup (`Setup.from_lightning`) that checks a LightningModule as Lightning would train it: its `training_step`
    computes the loss (a TrainingStep), its `configure_optimizers` builds the optimizer, and
    the data come from the DataModule's loaders (prepare_data and setup("fit") called first)
    or from the loaders given, as `Trainer.fit` takes them."""
    from lightning.pytorch import LightningModule

    if not isinstance(module, LightningModule):
        raise SetupError(
            f"Setup.from_lightning(module, ...) expects a LightningModule, got "
            f"{type(module).__name__}"
        )
    cls = type(module).__name__
    if datamodule is not None:
        if train_dataloaders is not None:
            raise SetupError("Setup.from_lightning: give a datamodule or dataloaders, not both")
        train_dataloaders, val_dataloaders = _datamodule_loaders(datamodule)
    if train_dataloaders is None:
        raise SetupError(
            f"Setup.from_lightning({cls}, ...): no training data; pass datamodule=... or "
            "train_dataloaders=..."
        )
    return {
        "model": module,
        "train": _first_loader(train_dataloaders),
        "val": _first_loader(val_dataloaders),
        "loss": TrainingStep(_training_step, f"{cls}.training_step"),
        "optimizer": ModuleOptimizer(_configured_optimizer, f"{cls}.configure_optimizers"),
        "name": cls,
    }


def _training_step(module: Any, batch: Any) -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_LOG_WITHOUT_TRAINER, category=UserWarning)
        return module.training_step(batch, 0)


def _configured_optimizer(module: Any) -> torch.optim.Optimizer:
    """The optimizer of `configure_optimizers`, in any of the forms Lightning accepts (an
    optimizer, a list or tuple, a dict with "optimizer", ([optimizers], [schedulers])): the
    first one, the one automatic optimization steps."""
    return _first_optimizer(module.configure_optimizers(), type(module).__name__)


def _first_optimizer(configured: Any, cls: str) -> torch.optim.Optimizer:
    if isinstance(configured, torch.optim.Optimizer):
        return configured
    if isinstance(configured, dict) and "optimizer" in configured:
        return _first_optimizer(configured["optimizer"], cls)
    if isinstance(configured, (list, tuple)) and configured:
        return _first_optimizer(configured[0], cls)
    raise SetupError(
        f"{cls}.configure_optimizers() returned {type(configured).__name__}; expected an "
        "optimizer, a list of them, or a dict with 'optimizer' (as Lightning takes it)"
    )


def _datamodule_loaders(datamodule: Any) -> tuple[Any, Any]:
    name = type(datamodule).__name__
    try:
        datamodule.prepare_data()
        datamodule.setup("fit")
        train = datamodule.train_dataloader()
    except Exception as exc:
        raise SetupError(
            f"{name}: prepare_data(), setup('fit') and train_dataloader() raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    try:
        val = datamodule.val_dataloader()
    except Exception:  # a DataModule without validation data: Lightning's default raises
        val = None
    return train, val


def _first_loader(loaders: Any) -> Any:
    """The first loader of what Trainer.fit takes: a loader, a list/tuple or a dict of them."""
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    return loaders
