"""Interpretation of a trained model: top losses, confusion, per-class scores, calibration,
label issues, activations and attributions (see core.py)."""

from trainwise.interpret.core import (
    ClassScores,
    ConfusedPair,
    Interpretation,
    interpret,
    interpret_run,
)
from trainwise.interpret.label_issues import LabelIssue, find_label_issues
from trainwise.interpret.stream import Calibration, TopLoss

__all__ = [
    "Calibration",
    "ClassScores",
    "ConfusedPair",
    "Interpretation",
    "LabelIssue",
    "TopLoss",
    "find_label_issues",
    "interpret",
    "interpret_run",
]
