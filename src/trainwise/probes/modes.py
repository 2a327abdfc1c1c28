"""Train/eval mode of the layers that behave differently in the two: BatchNorm and Dropout.

Counts, at the first training forward of each step, the layers left in eval mode (a
`model.train()` forgotten after validation), and the no-grad forwards (validation) that ran
with any of them in train mode (a `model.eval()` forgotten before it).

Writes: EVAL_MODE_LAYERS (each step, when the model has such layers) and the event
VAL_FORWARDS_TRAIN_MODE (handed over at each validation and at close).
"""

from __future__ import annotations

from torch import nn

from trainwise.signals import EVAL_MODE_LAYERS, VAL_FORWARDS_TRAIN_MODE, Signals

MODE_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


class ModeProbe:
    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, MODE_LAYERS)]
        self.kinds = tuple(type(m).__name__ for m in self.layers)  # static facts for rules
        self._eval_seen = 0
        self._val_forwards_train_mode = 0

    def no_grad_forward(self) -> None:
        """A forward without grad (validation): BN/dropout should be in eval mode there."""
        if self.layers and any(m.training for m in self.layers):
            self._val_forwards_train_mode += 1

    def step_started(self) -> None:
        self._eval_seen = sum(not m.training for m in self.layers)

    def write(self, t: int, signals: Signals) -> None:
        if self.layers:
            signals.add(EVAL_MODE_LAYERS.key, t, float(self._eval_seen))

    def hand_over(self, signals: Signals) -> None:
        """The no-grad forwards in train mode since the last validation, as an event."""
        if self._val_forwards_train_mode:
            signals.events[VAL_FORWARDS_TRAIN_MODE] = self._val_forwards_train_mode
        self._val_forwards_train_mode = 0
