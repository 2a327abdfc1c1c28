"""Probes: they measure a running training through PyTorch's own hooks and write the declared
signals (trainwise.signals) themselves.

One module per signal family; none holds a threshold (rules judge) and none keeps a tensor past
the step it measured. `Pending` batches a step's device tensors into one host transfer; after it,
each probe's `write` puts its numbers into the history.
"""

from trainwise.probes.activations import ActivationProbe
from trainwise.probes.gradients import GradientProbe
from trainwise.probes.modes import ModeProbe
from trainwise.probes.params import ParamInfo, optimizer_params
from trainwise.probes.pending import Pending
from trainwise.probes.timing import StepTimer
from trainwise.probes.updates import UpdateProbe

__all__ = [
    "ActivationProbe",
    "GradientProbe",
    "ModeProbe",
    "ParamInfo",
    "Pending",
    "StepTimer",
    "UpdateProbe",
    "optimizer_params",
]
