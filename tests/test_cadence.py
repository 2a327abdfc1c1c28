"""The watch's cadence: the preset's fixed schedule, and the budget that spaces measured steps and
judging rounds on short steps (clocked here by a clock the test sets, never the machine's)."""

import pytest
import torch
from torch import nn

import trainwise as tw
from trainwise.cadence import (
    DENSE_UNTIL,
    MAX_JUDGE_EVERY,
    MAX_MEASURE_EVERY,
    MEASURED_START,
    RECENT_QUIET,
    Cadence,
)

MS = 1e-3


class StepClock:
    """A clock a test advances by hand: the time each step ends."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def standard(clock: StepClock, budgeted: bool = True) -> Cadence:
    return Cadence(10, 20, 20, budgeted=budgeted, clock=clock)


def run(cadence: Cadence, clock: StepClock, steps: int, step_s: float, measured_extra_s: float,
        round_s: float = 0.0, validation_s: float = 0.0) -> list[int]:  # fmt: skip
    """Drives the cadence as the watch does, each step taking step_s (+ measured_extra_s when
    measured, + round_s of judging when a round is due, + validation_s on odd steps when
    given); returns the measured iterations."""
    measured, next_measured, last_round = [], 0, 0
    for i in range(steps):
        is_measured = i >= next_measured
        if is_measured:
            if i >= DENSE_UNTIL:
                cadence.rebudget(i)
            next_measured = cadence.measured_after(i)
            measured.append(i)
        clock.now += step_s + (measured_extra_s if is_measured else 0.0)
        if is_measured and i - last_round >= cadence.judging_period(i):
            last_round = i
            clock.now += round_s
            cadence.round_took(round_s)
        validated = bool(validation_s) and i % 2 == 1
        clock.now += validation_s if validated else 0.0
        cadence.step_ended(is_measured, validated)
    return measured


def test_the_first_steps_follow_the_preset_whatever_the_step_time():
    """Before DENSE_UNTIL nothing depends on the clock: the same steps on any machine."""
    clock = StepClock()
    measured = run(standard(clock), clock, DENSE_UNTIL, step_s=0.1 * MS, measured_extra_s=5 * MS)
    assert measured == [*range(MEASURED_START), *range(MEASURED_START, DENSE_UNTIL, 10)]


def test_short_steps_space_the_measured_ones_to_fit_the_budget():
    """A measured step 0.6 ms dearer than a 1 ms step must be spread over 60 steps to cost 1%:
    every 60th step (3 x 20), aligned with the sampled ones, once the run is long enough for a
    window rule's window (a quarter of it) to hold 5 such steps (from step 1200)."""
    clock = StepClock()
    cadence = standard(clock)
    measured = run(cadence, clock, 2400, step_s=1 * MS, measured_extra_s=0.6 * MS)
    assert cadence.stretch == 3
    later = [i for i in measured if i >= 1400]
    assert later and all(i % 60 == 0 for i in later)
    assert all(b - a == 60 for a, b in zip(later, later[1:], strict=False))


def test_long_steps_keep_the_preset():
    clock = StepClock()
    cadence = standard(clock)
    measured = run(cadence, clock, 1000, step_s=100 * MS, measured_extra_s=0.6 * MS)
    assert cadence.stretch == 1
    assert [i for i in measured if i >= DENSE_UNTIL] == list(range(DENSE_UNTIL, 1000, 20))


def test_the_stretch_is_capped():
    clock = StepClock()
    cadence = standard(clock)
    measured = run(cadence, clock, 4000, step_s=0.01 * MS, measured_extra_s=5 * MS)
    later = [i for i in measured if i >= 2400]
    assert later and all(b - a == MAX_MEASURE_EVERY for a, b in zip(later, later[1:], strict=False))


def test_a_window_keeps_five_measured_steps_and_rounds_a_tenth_of_the_run():
    """However dear a measured step, a window rule's window (a quarter of the run) holds five
    measured steps: at step 300 nothing stretches (every 20th), by step 800 every 40th; the
    DCGAN example's loss-plateau needs the weights' travel over its window."""
    clock = StepClock()
    cadence = standard(clock)
    measured = run(cadence, clock, 800, step_s=0.01 * MS, measured_extra_s=5 * MS,
                   round_s=5 * MS)  # fmt: skip
    assert [i for i in measured if DENSE_UNTIL <= i <= 400] == list(range(DENSE_UNTIL, 401, 20))
    assert cadence.stretch == 780 // 20 // 20  # 780: the last measured step
    assert cadence.judging_period(800) == 78


def test_a_budget_off_or_a_full_watch_keeps_the_fixed_cadence():
    clock = StepClock()
    cadence = standard(clock, budgeted=False)
    measured = run(cadence, clock, 600, step_s=0.1 * MS, measured_extra_s=5 * MS)
    assert [i for i in measured if i >= DENSE_UNTIL] == list(range(DENSE_UNTIL, 600, 20))
    full = Cadence(1, 1, 1, budgeted=False, clock=clock)
    assert run(full, clock, 300, step_s=0.1 * MS, measured_extra_s=5 * MS) == list(range(300))


def test_judging_rounds_stretch_on_short_steps_and_their_time_is_not_a_steps():
    """Rounds of 0.3 ms at 0.2 ms steps must be 150 steps apart to cost 1%. The round's time is
    clocked apart: the measured steps' extra stays 0.1 ms (stretch 3: 50 steps / 20)."""
    clock = StepClock()
    cadence = standard(clock)
    run(cadence, clock, 2000, step_s=0.2 * MS, measured_extra_s=0.1 * MS, round_s=0.3 * MS)
    assert cadence.judging_period(2000) == 150
    assert cadence.stretch == 3
    assert cadence.judging_period(100) == 10  # before DENSE_UNTIL: the preset's


def test_judging_rounds_are_capped_and_long_steps_keep_the_preset_period():
    clock = StepClock()
    cadence = standard(clock)
    run(cadence, clock, 4000, step_s=0.001 * MS, measured_extra_s=0.0, round_s=1 * MS)
    assert cadence.judging_period(4000) == MAX_JUDGE_EVERY
    clock = StepClock()
    cadence = standard(clock)
    run(cadence, clock, 2000, step_s=50 * MS, measured_extra_s=0.0, round_s=1 * MS)
    assert cadence.judging_period(2000) == 50


def test_steps_with_a_validation_in_them_are_not_counted():
    """A 5 ms validation after every odd step: counted, half the quiet steps would take 6 ms,
    their median would pass the measured ones' and nothing would stretch."""
    clock = StepClock()
    cadence = standard(clock)
    run(cadence, clock, 2400, step_s=1 * MS, measured_extra_s=0.6 * MS, validation_s=5 * MS)
    assert cadence.stretch == 3


def test_a_nonfinite_loss_measures_every_step_from_then_on():
    clock = StepClock()
    cadence = standard(clock)
    run(cadence, clock, 2400, step_s=1 * MS, measured_extra_s=0.6 * MS)
    assert cadence.stretch == 3
    cadence.every_step()
    assert all(cadence.is_measured(i) for i in range(2400, 2500))


@pytest.mark.parametrize("preset", ["cheap", "standard"])
def test_a_watched_run_keeps_the_preset_first_and_measures_aligned_and_bounded_later(preset):
    """Whatever this machine's speed: the first DENSE_UNTIL steps as the preset says; after
    them, measured steps on the preset's later period, at most MAX_MEASURE_EVERY apart; every
    step's loss kept."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    with tw.watch(model, optimizer, preset=preset, verbose=False, record=False) as watch:
        for _ in range(RECENT_QUIET * 20):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
    measured = list(watch.signals.get("grad_norm").steps)
    early = [i for i in measured if i < DENSE_UNTIL]
    assert early == [*range(MEASURED_START), *range(MEASURED_START, DENSE_UNTIL, 10)]
    later = [i for i in measured if i >= DENSE_UNTIL]
    assert later[0] == DENSE_UNTIL and all(i % 20 == 0 for i in later)
    assert all(b - a <= MAX_MEASURE_EVERY for a, b in zip(later, later[1:], strict=False))
    assert list(watch.signals.get("train/loss").steps) == list(range(RECENT_QUIET * 20))
