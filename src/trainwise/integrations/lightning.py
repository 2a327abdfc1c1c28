"""`trainwise.watch` as a Lightning Callback.

    trainer = lightning.Trainer(callbacks=[TrainwiseCallback()])

The watch attaches when fitting starts (to the LightningModule and its first optimizer), logs the
training loss after every optimizer step, validation metrics after every validation epoch
(`val_loss` / `val/loss` become `loss`, ...), and closes when fitting ends.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback

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
