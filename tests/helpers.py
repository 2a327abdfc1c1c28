"""Assertions shared by the rule tests, and the protocol as tests run it."""

from __future__ import annotations

import math

from trainwise.findings import Finding
from trainwise.report.model import Report


def _findings(found: Report | list[Finding]) -> list[Finding]:
    return found.findings if isinstance(found, Report) else list(found)


def assert_fires(found: Report | list[Finding], slug: str, where=None, severity=None) -> Finding:
    """The rule fired (at `where`, with `severity`, when given); returns its finding."""
    hits = [f for f in _findings(found) if f.rule == slug]
    assert hits, f"{slug} did not fire; found {[f.rule for f in _findings(found)]}"
    if where is not None:
        assert any(f.where == where for f in hits), (
            f"{slug} fired at {[f.where for f in hits]}, not {where!r}"
        )
        hits = [f for f in hits if f.where == where]
    if severity is not None:
        assert hits[0].severity == severity, f"{slug} has severity {hits[0].severity}"
    return hits[0]


def assert_silent(found: Report | list[Finding], slug: str) -> None:
    hits = [f for f in _findings(found) if f.rule == slug]
    assert not hits, f"{slug} fired on a healthy setup: {[f.message for f in hits]}"


def assert_clean(found: Report | list[Finding]) -> None:
    """No error or warning at all (infos allowed)."""
    bad = [f"{f.rule}: {f.message}" for f in _findings(found) if f.severity in ("error", "warning")]
    assert not bad, "healthy setup raised:\n" + "\n".join(bad)


def speed_unjudged(quick: bool = True) -> list:
    """The protocol with slow-step's limit lifted (the step is still measured): how fast, or
    how loaded, the machine is decides neither a finding nor which experiments --quick skips.
    slow-step's own tests set the limit against the measured step."""
    from trainwise.stages.protocol import default_stages
    from trainwise.stages.speed import SpeedStage

    return [
        SpeedStage(slow_step_seconds=math.inf) if stage.name == "speed" else stage
        for stage in default_stages(quick=quick)
    ]
