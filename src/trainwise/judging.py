"""The judging loop of a watch: runs the in-flight rules at their phase, keeps one finding per
(rule, where), and hands each new finding on (printing, the run record). A later finding of the
same (rule, where) at a higher severity replaces the earlier one and is handed on too: a rule
may note thin evidence as info and warn once the evidence is there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from trainwise.findings import SEVERITIES, Finding
from trainwise.guard import Guard
from trainwise.rules.inflight import Detector, Phase, View, detectors
from trainwise.signals import Producer


class Judge:
    def __init__(self, view: View, guard: Guard, on_finding: Callable[[Finding], None]) -> None:
        self.view = view
        self.detectors: list[Detector] = detectors()
        # per phase set: (the guard's name for a detector, the detector), built once
        self._by_phases: dict[frozenset[Phase], list[tuple[str, Detector]]] = {}
        self.findings: list[Finding] = []
        self._keys: dict[tuple[str, object], int] = {}  # -> index in findings
        self._guard = guard
        self._on_finding = on_finding

    def _of_phases(self, phases: frozenset[Phase]) -> list[tuple[str, Detector]]:
        """The detectors that run in these phases, in registration order."""
        chosen = self._by_phases.get(phases)
        if chosen is None:
            chosen = self._by_phases[phases] = [
                (f"detector {d.slug}", d) for d in self.detectors if d.when in phases
            ]
        return chosen

    def producers(self) -> set[Producer]:
        """Every producer whose signals some active detector reads."""
        return {signal.producer for d in self.detectors for signal in d.reads}

    def __call__(self, phases: frozenset[Phase]) -> None:
        for piece, detector in self._of_phases(phases):
            found = self._guard(piece, _run, detector, self.view)
            step = max(self.view.iteration - 1, 0)  # the last iteration closed
            for finding in found or ():
                finding = replace(finding, step=step)
                key = (finding.rule, finding.where)
                at = self._keys.get(key)
                if at is None:
                    self._keys[key] = len(self.findings)
                    self.findings.append(finding)
                    self._on_finding(finding)
                elif _RANK[finding.severity] < _RANK[self.findings[at].severity]:
                    self.findings[at] = finding  # the same mistake, now with more evidence
                    self._on_finding(finding)


_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}  # 0 is the worst


def _run(detector: Detector, view: View) -> list[Finding]:
    return list(detector.check(view))
