"""Healthy: a Lightning MLP on standardized digits. The loss lives in `training_step` (cross-
entropy on the logits, logged with `self.log`), the optimizer in `configure_optimizers`, the data
in a LightningDataModule (shuffled train loader, a validation loader). See _lightning_digits.py."""

import sys
from pathlib import Path

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _lightning_digits import DigitsData, DigitsMLP  # noqa: E402

EXPECT: list[str] = []


def setup():
    return tw.Setup.from_lightning(DigitsMLP(), DigitsData())
