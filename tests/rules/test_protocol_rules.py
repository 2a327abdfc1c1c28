"""The protocol and LR rules judge a stage's measurement alone: built here by hand, without
running an experiment (the stages' own tests run them, tests/stages/)."""

import ast
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_fires, assert_silent
from trainwise.measurements import (
    MemorizedBatch,
    MemorizedFew,
    RangeTest,
    Retry,
    SpeedProfile,
)
from trainwise.rules import Rule, judge, register, rules_of

SRC = Path(__file__).parents[2] / "src" / "trainwise"


def profile(step: float, data: float = 0.0, limit: float = 1.0) -> SpeedProfile:
    phases = {"data": data, "forward": step - data, "backward": 0.0, "optimizer": 0.0}
    return SpeedProfile("cpu", 32, 0, phases, step, step, data / step, limit)


def memorized(kind, reached=False, retries=()):
    return kind("one batch of 32", 32, 1e-5, 200, 2.3, 2.2, 0.23, reached, True, retries)


@pytest.mark.fires("slow-step")
def test_slow_step_judges_the_profile_against_its_limit():
    f = assert_fires(judge(profile(2.0)), "slow-step")
    assert f.evidence["step_seconds_judged"] == 2.0
    assert "largest part is forward" in f.message
    assert_silent(judge(profile(2.0, limit=3.0)), "slow-step")


@pytest.mark.silent("slow-step")
def test_a_step_under_a_second_is_not_slow():
    assert_silent(judge(profile(0.5)), "slow-step")


def test_data_loader_bound_reads_the_share_of_the_step():
    assert_fires(judge(profile(0.1, data=0.08)), "data-loader-bound")
    assert_silent(judge(profile(0.1, data=0.04)), "data-loader-bound")


def test_each_memorization_is_judged_by_its_own_rule_only():
    assert [f.rule for f in judge(memorized(MemorizedBatch))] == ["cannot-overfit-batch"]
    assert [f.rule for f in judge(memorized(MemorizedFew))] == ["cannot-overfit-few"]
    assert judge(memorized(MemorizedFew, reached=True)) == []


def test_a_retry_that_works_makes_a_warning_that_names_the_lr():
    (f,) = judge(memorized(MemorizedBatch, retries=(Retry(10.0, 1e-4, 0.1, 40, True),)))
    assert f.severity == "warning"
    assert f.evidence["working_lr"] == 1e-4 and f.evidence["final_loss_at_lr_x10"] == 0.1
    assert f.fix.startswith("At 10x the LR (0.0001)")


def test_lr_rules_need_a_suggestion_and_an_onset():
    lrs = np.logspace(-6, 0, 20)
    test = RangeTest(lrs, np.linspace(2, 1, 20), 1.0, None, None, None, None)
    assert judge(test) == []
    past = RangeTest(lrs, np.linspace(2, 1, 20), 1.0, 1e-3, 3e-4, 3e-3, 1e-2)
    assert [f.rule for f in judge(past)] == ["lr-too-high"]


def test_every_protocol_rule_declares_the_measurement_it_reads():
    assert all(r.reads is not None and r.check for r in rules_of("protocol"))
    with pytest.raises(ValueError, match="reads"):
        register(Rule("no-reads", "warning", "protocol", "s", "w", "f", "e", "s", check=list))


def _imported(path: Path) -> set[str]:
    """Every trainwise module a file imports, inside functions and TYPE_CHECKING blocks too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.startswith("trainwise")}


@pytest.mark.parametrize(
    "module", ["rules/lr.py", "rules/protocol.py", "measurements.py", "loss_kinds.py"]
)
def test_the_judges_import_no_experiment(module):
    # The judgement sits below what measures (lr_find, stages) and what records (runs): lr_find
    # records its findings through rules.lr, so an import back would be a cycle.
    bad = ("trainwise.lr_find", "trainwise.runs", "trainwise.stages")
    assert not [n for n in _imported(SRC / module) if n.startswith(bad)]
