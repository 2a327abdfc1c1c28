"""Probes: they measure a running training through PyTorch's own hooks and emit plain numbers.

One module per signal family; none holds a threshold (rules judge) and none keeps a tensor past
the step it measured. `Pending` batches a step's device tensors into one host transfer.
"""

from trainwise.probes.activations import ActivationProbe
from trainwise.probes.gradients import GradientProbe
from trainwise.probes.params import ParamInfo, optimizer_params
from trainwise.probes.pending import Pending
from trainwise.probes.signals import Series, Signals
from trainwise.probes.timing import StepTimer
from trainwise.probes.updates import UpdateProbe

__all__ = [
    "ActivationProbe",
    "GradientProbe",
    "ParamInfo",
    "Pending",
    "Series",
    "Signals",
    "StepTimer",
    "UpdateProbe",
    "optimizer_params",
]
