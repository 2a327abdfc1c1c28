"""`tw.check()` from Python keeps the same run record as `trainwise check` (issue 11): one
`recording(...)` path for every command, `record=False` to opt out."""

from __future__ import annotations

import json

import pytest
import torch

import trainwise as tw
from builders import mlp, setup
from trainwise.runs import list_runs
from trainwise.stages.static import StaticStage


def _data(n=96, features=8, classes=3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


def _setup(labels_offset=0):
    x, y = _data()
    return setup(lambda: mlp(features=8, classes=3), x, y + labels_offset, name="api-check")


def test_check_from_python_records_the_run(tmp_path):
    report = tw.check(_setup(labels_offset=1), stages=[StaticStage()], runs_dir=tmp_path)
    (record,) = list_runs(tmp_path)
    assert record.path == report.record_path
    assert record.meta["kind"] == "check" and record.status == "finished"
    assert record.meta["name"] == "api-check"
    assert record.meta["config"]["check"] == {"quick": False, "sample": 2000, "devices": 1}
    assert record.meta["config"]["optimizer"]["class"] == "AdamW"
    assert record.meta["summary"]["verdict"] == report.verdict == "fix these first"
    assert record.report == json.loads(report.to_json())
    assert {f["rule"] for f in record.findings} == {f.rule for f in report.findings}
    assert (record.path / "report.html").stat().st_size > 1000


def test_record_false_writes_nothing_and_finds_the_same(tmp_path):
    recorded = tw.check(_setup(labels_offset=1), stages=[StaticStage()], runs_dir=tmp_path)
    off = tw.check(
        _setup(labels_offset=1), stages=[StaticStage()], runs_dir=tmp_path / "off", record=False
    )
    assert off.record_path is None and not (tmp_path / "off").exists()
    assert off.to_dict()["findings"] == recorded.to_dict()["findings"]


def test_recording_does_not_shift_the_users_random_streams(tmp_path):
    # The record reads the optimizer's settings off a freshly built model: that build must not
    # consume the caller's RNG.
    torch.manual_seed(123)
    tw.check(_setup(), stages=[StaticStage()], runs_dir=tmp_path)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))


def test_a_check_that_fails_on_bad_input_leaves_a_failed_record(tmp_path):
    def broken_model():
        raise RuntimeError("no such layer")

    x, y = _data()
    with pytest.raises(tw.SetupError):
        tw.check(setup(broken_model, x, y), stages=[StaticStage()], runs_dir=tmp_path)
    (record,) = list_runs(tmp_path)
    assert record.status == "failed" and "SetupError" in record.meta["error"]
