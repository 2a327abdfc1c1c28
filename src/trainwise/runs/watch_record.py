"""The run record of a `trainwise.watch`: what the watch measured, written as training goes.

Every closed step: one `log_metrics` line with the step's scalars (train/..., lr, grad_norm,
timing). On the watch's sampled steps (every `every` steps): per-layer grad norm and
update/weight ratio (the report's heatmaps) and a histogram of each leaf module's output (the
rows the activation probe samples). Validation metrics when the loop logs them, findings as
they fire. The record must never stop or slow the user's training: any exception here switches
recording off with one RuntimeWarning, and the watch goes on.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

from trainwise.runs.record import Run, start

# Per-step scalars copied from the watch's signals; the rest (stepped, backward_passes, ...)
# is bookkeeping for the detectors.
STEP_SCALARS = ("grad_norm", "grad_norm_applied", "data_wait_s", "compute_s")
LAYER_SIGNALS = ("grad_norm", "update_ratio")  # per-layer families drawn as heatmaps


class WatchRecord:
    """Writes one watch's record. Holds no reference to the watch (see `finalizer`)."""

    def __init__(self, run: Run) -> None:
        self.run: Run | None = run  # None once finished or switched off
        self.path = run.path
        self._step_keys: list[str] = []
        self._known_series = -1

    @classmethod
    def open(cls, model: Any, optimizer: Any, *, name, root, preset, every) -> WatchRecord | None:
        """Opens the record; None (with one warning) when it cannot be written."""
        try:
            first = next(model.parameters(), None)
            config = {
                "model": type(model).__name__,
                "parameters": sum(p.numel() for p in model.parameters()),
                "watch": {"preset": preset, "every": every},
            }
            run = start(
                "watch",
                name=name or "watch",
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
        if len(series) != self._known_series:  # a new series appeared: refresh the scalar keys
            self._known_series = len(series)
            self._step_keys = [
                k for k in series if k.startswith(("train/", "lr/")) or k in STEP_SCALARS
            ]
        row: dict[str, float] = {}
        for key in self._step_keys:
            s = series[key]
            if s.steps and s.steps[-1] == t:
                row[_metric_name(key, signals)] = s.values[-1]
        if row:
            run.log_metrics(t, row)
        if not sampled:
            return
        for family in LAYER_SIGNALS:
            layers = {
                layer: s.values[-1] for layer, s in signals.layers(family) if s.steps[-1] == t
            }
            if layers:
                run.log_layers(t, family, layers)
        for module, output in samples:
            run.log_histogram(t, f"activations/{module}", output)

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
    if key == "lr/group0" and "lr/group1" not in signals:
        return "lr"
    return key


def _warn(message: str) -> None:
    warnings.warn(
        f"trainwise.watch: {message}. Recording is off; training goes on.",
        RuntimeWarning,
        stacklevel=4,
    )
