"""The run record of a `trainwise.watch`: what the watch measured, written as training goes.

Every closed step: one `log_metrics` line with the step's signals declared per-step curves
(train/..., lr, grad_norm, timing; trainwise.signals). On the watch's sampled steps (every
`every` steps): the per-layer signals declared heatmaps (grad norm, update/weight ratio) and the
histograms of each leaf module's output (the rows the activation probe samples). Validation metrics when the loop logs them, findings as
they fire. The record must never stop or slow the user's training: any exception here switches
recording off with one RuntimeWarning, and the watch goes on.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

from trainwise.runs.describe import count_parameters
from trainwise.runs.record import Run, start
from trainwise.signals import ACTIVATIONS, ALL, LR, LR_SINGLE, Cadence, Draw, Signal, declared

# What the record draws, from the declarations: per-step curves go to metrics.jsonl (one row per
# step), per-layer heatmaps to layers.jsonl and histograms to histograms.jsonl on sampled steps.
# Signals declared Draw.NONE are the rules' bookkeeping and are not written.
DRAWN: tuple[Signal, ...] = tuple(s for s in ALL if s.draw is not Draw.NONE)
HEATMAPS: tuple[Signal, ...] = tuple(s for s in ALL if s.draw is Draw.HEATMAP)


def _step_curve(key: str) -> bool:
    """A concrete key the record writes in each step's metrics row."""
    signal = declared(key, ALL)
    return (
        signal is not None
        and signal.draw is Draw.CURVE
        and signal.cadence in (Cadence.STEP, Cadence.MEASURED)
    )


class WatchRecord:
    """Writes one watch's record. Holds no reference to the watch (see `finalizer`)."""

    draws = DRAWN  # the watch runs the probes of these (their producers) even without a rule

    def __init__(self, run: Run) -> None:
        self.run: Run | None = run  # None once finished or switched off
        self.path = run.path
        self._columns: list[tuple[str, Any]] = []  # (metrics.jsonl name, Series) per step
        self._known_series = -1

    @classmethod
    def open(
        cls, model: Any, optimizer: Any, *, name, root, preset, every, kind="watch", config=None
    ) -> WatchRecord | None:
        """Opens the record (of `kind`, with `config` added to its settings); None (with one
        warning) when it cannot be written."""
        try:
            first = next(model.parameters(), None)
            config = {
                "model": type(model).__name__,
                "parameters": count_parameters(model.parameters()),
                "watch": {"preset": preset, "every": every},
                **(config or {}),
            }
            run = start(
                kind,
                name=name or kind,
                config=config,
                optimizer=optimizer,
                device=str(first.device) if first is not None else None,
                root=root,
            )
        except Exception as exc:  # noqa: BLE001 - an unwritable runs folder must not stop training
            _warn(f"could not open the run record ({type(exc).__name__}: {exc})")
            return None
        return cls(run)

    def finalizer(self, owner: Any) -> None:
        """Finish the record when `owner` (the watch) is collected or the interpreter exits
        without `close()`: a two-line integration still leaves a finished record."""
        weakref.finalize(owner, self.finish, "finished")

    # -- writing -----------------------------------------------------------------------------
    def step(self, signals: Any, t: int, sampled: bool, samples: list[tuple[str, Any]]) -> None:
        """Step t has closed: its scalars, and on sampled steps its per-layer signals."""
        self._guard(self._step, signals, t, sampled, samples)

    def metrics(self, t: int, values: dict[str, float]) -> None:
        self._guard(lambda: self.run.log_metrics(t, values))

    def findings(self, findings: list[Any]) -> None:
        self._guard(lambda: self.run.log_findings(findings))

    def config(self, settings: dict[str, Any]) -> None:
        self._guard(lambda: self.run.log_config(**settings))

    def finish(self, status: str = "finished", error: str | None = None) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        try:
            run.finish(status, error)
        except Exception as exc:  # noqa: BLE001
            _warn(f"could not finish the run record ({type(exc).__name__}: {exc})")

    def _step(self, signals: Any, t: int, sampled: bool, samples: list[tuple[str, Any]]) -> None:
        run = self.run
        series = signals.series
        if len(series) != self._known_series:  # a new series appeared: refresh the columns
            self._known_series = len(series)
            self._columns = [
                (_metric_name(k, signals), s) for k, s in series.items() if _step_curve(k)
            ]
        row: dict[str, float] = {}
        for name, s in self._columns:
            if len(s) and s.steps[-1] == t:
                row[name] = s.values[-1]
        if row:
            run.log_metrics(t, row)
        if not sampled:
            return
        for signal in HEATMAPS:
            layers = {
                layer: s.values[-1] for layer, s in signals.layers(signal) if s.steps[-1] == t
            }
            if layers:
                run.log_layers(t, signal.family, layers)
        for module, output in samples:
            run.log_histogram(t, ACTIVATIONS.at(module), output)

    def _guard(self, fn, *args) -> None:
        if self.run is None:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the record must never stop the training
            _warn(f"writing the run record raised {type(exc).__name__}: {exc}")
            run, self.run = self.run, None
            try:
                run.finish("failed", f"recording stopped: {type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001, S110 - already warned once
                pass


def _metric_name(key: str, signals: Any) -> str:
    # One parameter group: "lr" (what the runs table and the report expect); else lr/groupN.
    if key == LR.at("0") and LR.at("1") not in signals:
        return LR_SINGLE.key
    return key


def _warn(message: str) -> None:
    warnings.warn(
        f"trainwise.watch: {message}. Recording is off; training goes on.",
        RuntimeWarning,
        stacklevel=4,
    )
