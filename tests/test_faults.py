"""The fault suite as tests, in a form that no machine's speed or load can change.

`python benchmarks/faults.py --quick` runs every case through the whole quick protocol, as a
user's check does, and prints recall and false alarms. Here:
- each static case runs the static stage alone: what it must find are static rules;
- each protocol and healthy case runs the quick protocol with slow-step's limit lifted, so that
  neither a finding nor --quick's skipping of the experiments depends on how fast (or how
  loaded) the machine is. The healthy segmentation U-Net, a quarter of the suite's time, runs
  only under the `slow` marker (`pytest -m slow`), with every case through the whole protocol;
- protocol/full_resolution_cnn, whose one expectation is slow-step (a verdict on the speed of
  the machine), stays in the benchmark; slow-step's own tests (tests/stages, tests/rules) set
  the limit against the measured step instead.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

from helpers import speed_unjudged
from trainwise.stages.static import StaticStage

SUITE = Path(__file__).parents[1] / "benchmarks" / "faults.py"
JUDGES_MACHINE_SPEED = {"protocol/full_resolution_cnn"}
SLOW = {"healthy/segmentation_tiny"}


def _suite():
    spec = importlib.util.spec_from_file_location("fault_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


FAULTS = _suite()


def _case(path):
    return str(path.relative_to(FAULTS.FAULTS).with_suffix(""))


def _cases(family):
    return [_case(p) for p in FAULTS.case_paths(f"{family}/")]


def _check(case, stages):
    result = FAULTS.run_case(FAULTS.FAULTS / f"{case}.py", quick=True, stages=stages)
    assert result.ok, (
        f"{case}: expected {result.expected}, fired {result.fired}, alarms {result.alarms} "
        f"{result.crashed}"
    )
    return result


@pytest.mark.parametrize("case", _cases("static"))
def test_static_case_is_caught_by_the_static_stage(case):
    _check(case, lambda: [StaticStage()])


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c
        for c in _cases("protocol") + _cases("healthy")
        if c not in JUDGES_MACHINE_SPEED
    ],
)
def test_protocol_case_is_caught_and_healthy_case_is_quiet(case):
    _check(case, speed_unjudged)


@pytest.mark.slow
@pytest.mark.parametrize("case", _cases("static"))
def test_static_case_through_the_whole_quick_protocol(case):
    # The later stages must not crash on a broken setup, and still find what the static
    # stage finds.
    _check(case, speed_unjudged)


def test_every_case_runs_here_but_the_speed_verdict():
    everything = {_case(p) for p in FAULTS.case_paths()}
    here = set(_cases("static")) | set(_cases("protocol")) | set(_cases("healthy"))
    assert everything - here == set()
    assert JUDGES_MACHINE_SPEED <= everything and SLOW <= everything
