"""The protocol's defaults are right on the issue's healthy examples: no stage fails, no error
or warning (the full protocol runs in benchmarks/protocol_speed.py --examples)."""

import sys
from pathlib import Path

import pytest

import trainwise as tw
from helpers import speed_unjudged

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from healthy_setups import HEALTHY  # noqa: E402


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_quick_protocol_passes_on_a_healthy_example(name):
    # slow-step's limit lifted: a loaded machine must not turn a healthy example into an alarm
    # or make --quick skip the experiments this test is about.
    report = tw.check(HEALTHY[name](), quick=True, stages=speed_unjudged())
    bad = [(s.name, s.status, s.summary) for s in report.stages if s.status in ("fail", "crashed")]
    assert not bad, bad
    alarms = [f"{f.rule}: {f.message}" for f in report.findings if f.severity != "info"]
    assert not alarms, alarms
    assert report.verdict == "ready to train"
    ran = {s.name for s in report.stages if s.status != "skipped"}
    # The experiments really ran (none was skipped for time or lack of data).
    assert {"init-loss", "overfit-batch", "overfit-few", "batch-independence", "baselines"} <= ran
