"""What a sweep returns and shows: one row per trial, read from the study in its storage (the
one truth, whichever process or machine ran the trial), and the result's --json contract:
{"study", "storage", "best": {"params", "value", "record"},
 "trials": [{"number", "state", "params", "value", "steps", "record", "why"}]}."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trainwise.sweep.objective import RECORD, STEPS, UNREAD, WHY, WORKER


@dataclass(frozen=True)
class TrialRow:
    """A trial as the sheet shows it. state: running | complete | pruned | fail | waiting.
    value: the best whole-validation-set loss (complete trials); last: the latest validation
    loss reported (running and pruned trials), at step `last_step`."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    steps: int | None
    record: str | None
    why: str | None = None
    last: float | None = None
    last_step: int | None = None
    unread: tuple[str, ...] = ()
    worker: str | None = None  # host:pid of the process that trained it
    curve: tuple[tuple[int, float], ...] = ()  # (step, validation loss) as reported

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "state": self.state, "params": self.params,
                "value": self.value, "steps": self.steps, "record": self.record,
                "why": self.why}  # fmt: skip


def trial_rows(study: Any) -> list[TrialRow]:
    return [_row(t) for t in study.get_trials(deepcopy=False)]


def _row(t: Any) -> TrialRow:
    curve = tuple(sorted((int(s), float(v)) for s, v in t.intermediate_values.items()))
    last_step, last = curve[-1] if curve else (None, None)
    attrs = t.user_attrs
    value = t.value if t.value is not None and math.isfinite(t.value) else None
    return TrialRow(
        number=t.number, state=t.state.name.lower(), params=dict(t.params),
        value=value if t.state.name == "COMPLETE" else None,
        steps=attrs.get(STEPS, last_step), record=attrs.get(RECORD), why=attrs.get(WHY),
        last=last, last_step=last_step, unread=tuple(attrs.get(UNREAD) or ()),
        worker=attrs.get(WORKER), curve=curve,
    )  # fmt: skip


def best_row(rows: list[TrialRow]) -> TrialRow | None:
    done = [r for r in rows if r.state == "complete" and r.value is not None]
    return min(done, key=lambda r: r.value) if done else None


@dataclass
class SweepResult:
    """What `tw.sweep` returns: the study's name and storage, the best trial, every trial;
    `to_dict()` is the --json contract. unread: setup parameters no trial's setup read."""

    study: str
    storage: str
    trials: list[TrialRow]
    unread: list[str] = field(default_factory=list)
    record_path: Any = None  # the sweep's own run record (sheet.csv, report.html)
    report_path: Any = None

    @property
    def best(self) -> TrialRow | None:
        return best_row(self.trials)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "study": self.study,
            "storage": self.storage,
            "best": {"params": best.params, "value": best.value, "record": best.record}
            if best else {"params": None, "value": None, "record": None},
            "trials": [r.to_dict() for r in self.trials],
        }  # fmt: skip

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.trials:
            counts[r.state] = counts.get(r.state, 0) + 1
        return counts


def unread_params(rows: list[TrialRow]) -> list[str]:
    """Setup parameters that the trials that ran never read (each trial's own list)."""
    ran = [r for r in rows if r.state in ("complete", "pruned", "fail")]
    if not ran:
        return []
    unread = set(ran[0].unread)
    for r in ran[1:]:
        unread &= set(r.unread)
    return sorted(unread)
