"""Finding: one frozen record of something a rule judged wrong, with its evidence."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
# Ordered from worst to mildest; the order is used to sort findings for display.
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """What a rule found.

    rule:     the rule slug (a public contract, see `trainwise rules`)
    severity: "error" (training is broken), "warning" (likely costs accuracy or time), "info"
    message:  what is wrong, with the measured numbers
    where:    layer name, sample index, step, or None
    evidence: the measured numbers, by name
    fix:      a concrete action, with code where it helps
    step:     in flight, the training iteration after which it fired (None before training)
    caused_by: the slug of the finding that explains this one, None for a root cause
               (trainwise.causes; fix the cause first)
    explains: the slugs of the findings this one explains
    """

    rule: str
    severity: Severity
    message: str
    where: str | int | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    fix: str = ""
    step: int | None = None
    caused_by: str | None = None
    explains: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        # A read-only view keeps the record frozen all the way down.
        object.__setattr__(self, "evidence", MappingProxyType(dict(self.evidence)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "where": self.where,
            "evidence": {k: _jsonable(v) for k, v in self.evidence.items()},
            "fix": self.fix,
            "step": self.step,
            "caused_by": self.caused_by,
            "explains": list(self.explains),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _jsonable(value: Any) -> Any:
    """Numbers, strings and lists of them, with NaN/Inf as strings (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _jsonable(value.item())
    return value


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)  # type: ignore[arg-type]


def dedupe(findings: list[Finding]) -> list[Finding]:
    """Keep the first finding per (rule, where): one mistake is reported once."""
    seen: set[tuple[str, Any]] = set()
    kept = []
    for f in findings:
        key = (f.rule, f.where)
        if key not in seen:
            seen.add(key)
            kept.append(f)
    return kept
