"""When the watch measures and when it judges, and how that follows the step time.

The preset's cadence: the first MEASURED_START steps are measured (most loop bugs show there,
and a notebook's short first try gets every signal), then every `measure_every`-th step until
DENSE_UNTIL, every `measure_every_later`-th after it, and every sampled step (every `every`-th).
The window and validation rules judge in rounds: every JUDGE_EVERY steps, later every tenth of
the steps so far, at most every JUDGE_MAX_EVERY.

The budget: after DENSE_UNTIL a measured step may cost at most MEASURE_BUDGET of a step's time,
amortised over the steps until the next one, and a judging round at most JUDGE_BUDGET. A
measured step's cost grows slowly with the model: hooks, one read-out, the step rules, and on
sampled steps a dozen torch calls per layer for the activation statistics. Clocked inside fit
(benchmarks/fit_recipe.py's speed tasks), a sampled measured step cost 0.9 ms more than a
0.9 ms step of the digits MLP, 1.9 ms more than a 2.5 ms CNN step, 2.5 ms more than a 6 ms
one: at every 20th step, 5%, 4% and 2% of the run. A round (the trend fits) takes ~0.15-0.35
ms. On such steps the periods stretch until the cost fits, to at most MAX_MEASURE_EVERY and
MAX_JUDGE_EVERY and never past what the window rules need (WINDOW_POINTS measured steps in a
quarter of the run, a round every tenth of it); on longer steps nothing changes.
The costs are clocked as the run goes, from the time between the ends of consecutive steps:
a measured step's extra is the median of the recent measured steps less the median of the
recent others; a round is timed on its own. Steps with a validation in them are not counted.
Before DENSE_UNTIL the cadence is fixed, so that short runs (and their tests) see the same
steps measured on any machine.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque

MEASURED_START = 20
# Then every `measure_every`-th step until DENSE_UNTIL, when the curves are young and the rules'
# windows short; later runs are judged over windows of 100+ steps, where every 20th step is
# plenty (a gradient-norm point per 20 steps; a finding at most 19 steps later).
DENSE_UNTIL = 200
# Window and validation rules judge every JUDGE_EVERY steps, later every tenth of the steps so
# far (at most every JUDGE_MAX_EVERY): their trend windows grow with the run (a quarter of it,
# 100+ steps), and a round costs ~0.3 ms of Python on a small model.
JUDGE_EVERY, JUDGE_MAX_EVERY = 10, 50
# Shares of the step time the measured steps and the judging rounds may take (after
# DENSE_UNTIL), and how far they may stretch for it: a finding on a measured step comes at most
# MAX_MEASURE_EVERY - 1 steps late, a window finding MAX_JUDGE_EVERY - 1. And never so far that
# a window rule's window (a quarter of the run) holds fewer than WINDOW_POINTS measured steps,
# or a tenth of the run passes between rounds: loss-plateau tells a GAN player's moving target
# from a stall by the weights' travel over its window, and with two points in it (every 100th
# step at step 300) it raised a warning on the DCGAN example (benchmarks/loops).
MEASURE_BUDGET, JUDGE_BUDGET = 0.01, 0.01
MAX_MEASURE_EVERY, MAX_JUDGE_EVERY = 100, 200
WINDOW_POINTS = 5
# Recent steps the medians are taken over (odd: a middle value)
RECENT_MEASURED, RECENT_QUIET, RECENT_ROUNDS = 7, 31, 5


class Cadence:
    """Decides which iterations are measured and whether a judging round is due.

    measure_every, measure_every_later, every: the preset's periods (steps); budgeted: stretch
    them after DENSE_UNTIL to keep the watch's cost within its budget (off for "full", or with
    `watch(budget=False)`)."""

    def __init__(self, measure_every: int, measure_every_later: int, every: int,
                 budgeted: bool, clock=None) -> None:  # fmt: skip
        self.measure_every, self.measure_every_later, self.every = (
            measure_every, measure_every_later, every
        )  # fmt: skip
        self.budgeted = budgeted
        self._clock = clock or time.perf_counter  # seconds (a test's own clock)
        self.stretch = 1  # measured steps come every stretch * measure_every_later after DENSE_UNTIL
        self.judge_floor = 0  # the budget's least judging period (0: none yet)
        self._measured: deque[float] = deque(maxlen=RECENT_MEASURED)  # seconds per step
        self._quiet: deque[float] = deque(maxlen=RECENT_QUIET)
        self._rounds: deque[float] = deque(maxlen=RECENT_ROUNDS)
        self._last_end: float | None = None
        self._in_step = 0.0  # seconds of this step not to count (judging rounds, clocked apart)

    # -- the schedule --------------------------------------------------------------------------
    def period(self, iteration: int) -> int:
        """The measured steps' period (steps) at this iteration, the sampled ones aside."""
        if iteration < DENSE_UNTIL:
            return self.measure_every
        return self.measure_every_later * self.stretch

    def is_measured(self, iteration: int) -> bool:
        if iteration < MEASURED_START:
            return True
        # sampled steps are measured, unless the budget stretched the period past them
        sampled = iteration % self.every == 0 and (iteration < DENSE_UNTIL or self.stretch == 1)
        return iteration % self.period(iteration) == 0 or sampled

    def measured_after(self, iteration: int) -> int:
        """The first measured iteration after this one (decided once per measured step, so
        that a step between measured ones costs one comparison)."""
        following = iteration + 1
        while not self.is_measured(following):
            following += 1
        return following

    def judging_period(self, iteration: int) -> int:
        """Steps between rounds of the window and validation rules at this iteration."""
        period = min(JUDGE_MAX_EVERY, max(JUDGE_EVERY, iteration // 10))
        if iteration < DENSE_UNTIL:
            return period
        return max(period, self.judge_floor)

    def every_step(self) -> None:
        """Something went non-finite: every step is measured from now on."""
        self.measure_every = self.measure_every_later = 1
        self.budgeted, self.stretch = False, 1

    # -- the clock -----------------------------------------------------------------------------
    def step_ended(self, measured: bool, validated: bool) -> None:
        """At the end of each step (its watch.log): the time since the last one's end, less
        the rounds clocked apart, counted as a measured or a quiet step's (not when a
        validation ran in it)."""
        if not self.budgeted:
            return
        now = self._clock()
        if self._last_end is not None and not validated:
            (self._measured if measured else self._quiet).append(now - self._last_end - self._in_step)
        self._last_end, self._in_step = now, 0.0

    def round_took(self, seconds: float) -> None:
        """A judging round of the window or validation rules took this long."""
        if not self.budgeted:
            return
        self._rounds.append(seconds)
        self._in_step += seconds

    def rebudget(self, iteration: int) -> None:
        """After DENSE_UNTIL, at each measured step: the periods that keep the clocked costs
        within budget (never shorter than the preset's, nor so long that a window rule's
        window thins out)."""
        if not self.budgeted or len(self._quiet) < RECENT_QUIET // 2 or not self._measured:
            return
        step = statistics.median(self._quiet)
        extra = statistics.median(self._measured) - step
        most = min(MAX_MEASURE_EVERY, iteration // (4 * WINDOW_POINTS))
        self.stretch = stretch_for(extra, step, MEASURE_BUDGET, self.measure_every_later, most)
        if self._rounds:
            most = min(MAX_JUDGE_EVERY, iteration // 10)
            self.judge_floor = min(most, periods_for(statistics.median(self._rounds), step,
                                                     JUDGE_BUDGET))  # fmt: skip


def periods_for(cost: float, step: float, budget: float) -> int:
    """Steps over which `cost` seconds must be spread to take at most `budget` of each
    `step`-second step."""
    if step <= 0 or cost <= 0:
        return 1
    return max(1, math.ceil(cost / (budget * step) - 1e-6))  # 60.0000001 steps are 60


def stretch_for(extra: float, step: float, budget: float, base: int, most: int) -> int:
    """How many times the base period (steps) a measured step costing `extra` seconds must be
    spread over, at most `most` steps in all."""
    return max(1, min(most // base, math.ceil(periods_for(extra, step, budget) / base)))
