"""The report as plain data: stages, findings, verdict. Renderers read it and compute nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trainwise.causes import fold
from trainwise.findings import Finding, _jsonable

StageStatus = Literal["pass", "warn", "fail", "skipped", "crashed"]

READY = "ready to train"
FIX_FIRST = "fix these first"


@dataclass
class StageResult:
    name: str  # e.g. "static"
    title: str  # e.g. "Static checks of model, loss, optimizer and data"
    status: StageStatus
    seconds: float
    summary: str = ""  # one line with the stage's key numbers
    metrics: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. a rule that could not run, and why

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "summary": self.summary,
            "metrics": _jsonable(self.metrics),
            "findings": [f.rule for f in self.findings],
            "notes": list(self.notes),
        }


@dataclass
class Report:
    setup_name: str
    stages: list[StageResult]
    seconds: float = 0.0
    record_path: Path | None = None  # the check's run record (None with record=False)

    @property
    def findings(self) -> list[Finding]:
        """All findings with their causes (trainwise.causes): each root cause, worst first (in
        stage order within a severity), followed by the findings it explains."""
        found = [f for s in self.stages for f in s.findings]
        return [f for group in fold(found) for f in (group.root, *group.consequences)]

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    @property
    def verdict(self) -> str:
        """ "fix these first" when any error finding or failed stage, else "ready to train"."""
        failed = any(s.status == "fail" for s in self.stages)
        return FIX_FIRST if failed or self.count("error") else READY

    @property
    def exit_code(self) -> int:
        """A linter's contract: 0 without error findings, 1 with them."""
        return 1 if self.verdict == FIX_FIRST else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "setup": self.setup_name,
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "stages": [s.to_dict() for s in self.stages],
            "seconds": round(self.seconds, 3),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)
