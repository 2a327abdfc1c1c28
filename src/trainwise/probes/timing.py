"""Step time split into the wait for data and the compute of the step.

A step is timed from the end of the previous step (its `watch.log()` or optimizer step) to the
first forward of this one (data wait: fetching the batch, moving it, `zero_grad`), and from that
forward to this step's end (compute: forward, backward, optimizer; the end is its optimizer
step when there was one). On an accelerator these are host times: kernels still queued when a
step ends run into a later step's time.

Writes: DATA_WAIT, COMPUTE.
"""

from __future__ import annotations

import time

from trainwise.signals import COMPUTE, DATA_WAIT, Signals


class StepTimer:
    def __init__(self) -> None:
        self._last_end: float | None = None
        self._forward_start: float | None = None
        self._step_end: float | None = None

    def forward_started(self) -> None:
        if self._forward_start is None:
            self._forward_start = time.perf_counter()

    def optimizer_stepped(self) -> None:
        self._step_end = time.perf_counter()

    def step_ended(self) -> tuple[float, float] | None:
        """(data_wait_s, compute_s) of the step that just ended, or None for the first step.

        The step ends at its optimizer step when there was one (a later `watch.log()` may come
        after other work of the loop), else now.
        """
        now = self._step_end if self._step_end is not None else time.perf_counter()
        self._step_end = None
        start, last = self._forward_start, self._last_end
        self._forward_start, self._last_end = None, now
        if start is None or last is None:
            return None
        return max(0.0, start - last), now - start


def write_timing(t: int, timing: tuple[float, float], signals: Signals) -> None:
    """Step t's (data wait, compute) seconds, as `StepTimer.step_ended` took them."""
    signals.add(DATA_WAIT.key, t, timing[0])
    signals.add(COMPUTE.key, t, timing[1])
