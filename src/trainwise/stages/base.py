"""What every stage shares: the run it belongs to and the shape of its outcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from torch import nn

from trainwise.context import StaticContext
from trainwise.findings import Finding
from trainwise.measurements import Memorized
from trainwise.rules import judge
from trainwise.rules.protocol import SLOW_STEP
from trainwise.spec import Setup

if TYPE_CHECKING:
    from trainwise.report.model import StageResult

# Moves the second progress bar: (label, steps done, steps in all).
ProgressUpdate = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Trained:
    """A model an experiment trained, and the batch (x, y) it trained on last, for a later stage
    to examine instead of training its own."""

    model: nn.Module
    x: Any
    y: Any


@dataclass(frozen=True)
class TrainedBatch:
    """The overfit-batch stage's model and the record of its training (for input-dependence)."""

    trained: Trained
    memorized: Memorized


@dataclass
class CheckRun:
    """One `trainwise check`: the setup, the options, and what earlier stages left for later.

    Every hand-off between stages is a typed field here; None until the stage that fills it ran.
    """

    setup: Setup
    quick: bool = False
    sample: int = 2000
    seed: int = 0
    devices: int = 1  # >= 2: the multi-device stage runs on this many processes
    target: str | None = None  # the setup file ("file.py[:function]") each process loads
    context: StaticContext = field(init=False)
    # Set by the protocol runner:
    results: list[StageResult] = field(default_factory=list)  # the stages run so far
    progress: ProgressUpdate | None = None  # the step bar, when the runner draws one
    # Left by the stages for later ones:
    static_findings: list[Finding] | None = None  # static: what its rules found
    step_seconds: float | None = None  # speed: the judged median training step
    # speed: its slow-step limit; --quick skips the training experiments on a step over it
    slow_step_seconds: float = SLOW_STEP
    overfit_batch: TrainedBatch | None = None  # overfit-batch, for input-dependence
    short_training: Trained | None = None  # baselines, for train-eval

    def __post_init__(self) -> None:
        self.context = StaticContext(self.setup, sample=self.sample, seed=self.seed)


@dataclass
class StageOutcome:
    """What a stage returns. With a `measurement`, the rules that read its type judge it on
    construction: their findings come first in `findings`."""

    findings: list[Finding] = field(default_factory=list)
    summary: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: bool = False  # the stage did not apply to this setup (summary says why)
    failed: bool | None = None  # None: decided from the findings' severities
    measurement: Any = None  # a record of trainwise/measurements.py

    def __post_init__(self) -> None:
        if self.measurement is not None:
            self.findings = [*judge(self.measurement), *self.findings]


class Stage(Protocol):
    name: str
    title: str

    def run(self, run: CheckRun) -> StageOutcome: ...
