"""What every stage shares: the run it belongs to and the shape of its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from trainwise.context import StaticContext
from trainwise.findings import Finding
from trainwise.spec import Setup


@dataclass
class CheckRun:
    """One `trainwise check`: the setup, the options, and what earlier stages left for later."""

    setup: Setup
    quick: bool = False
    sample: int = 2000
    seed: int = 0
    context: StaticContext = field(init=False)
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. the LR suggestion

    def __post_init__(self) -> None:
        self.context = StaticContext(self.setup, sample=self.sample, seed=self.seed)


@dataclass
class StageOutcome:
    findings: list[Finding] = field(default_factory=list)
    summary: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: bool = False  # the stage did not apply to this setup (summary says why)
    failed: bool | None = None  # None: decided from the findings' severities


class Stage(Protocol):
    name: str
    title: str

    def run(self, run: CheckRun) -> StageOutcome: ...
