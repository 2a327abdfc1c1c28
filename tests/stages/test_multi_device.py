"""`check --devices 2`: two gloo processes under torchrun against one process, on the setups of
tests/fixtures/setups/data_parallel.py (a healthy one and one per mistake), and the rule on
measurements built by hand (the warnings that need no launch)."""

import subprocess
import time
from pathlib import Path

import pytest

import trainwise as tw
from trainwise.loader import load_setup
from trainwise.measurements import MultiDevice
from trainwise.rules import judge
from trainwise.stages.multi_device import MultiDeviceStage
from trainwise.stages.static import StaticStage

SLUG = "multi-device-broken"
FILE = Path(__file__).parents[1] / "fixtures" / "setups" / "data_parallel.py"


def checked(function: str, budget: float = 120.0):
    """(the multi-device stage's result, its findings of SLUG) for a setup of FILE."""
    target = f"{FILE}:{function}"
    report = tw.check(load_setup(target), devices=2, target=target, record=False,
                      stages=[StaticStage(), MultiDeviceStage(budget)])  # fmt: skip
    stage = next(s for s in report.stages if s.name == "multi-device")
    return stage, [f for f in report.findings if f.rule == SLUG]


@pytest.mark.silent(SLUG)
def test_a_healthy_setup_trains_on_two_processes_as_on_one():
    stage, found = checked("healthy")
    assert found == [] and stage.status == "pass"
    m = stage.metrics
    assert m["devices"] == 2 and m["backend"] == "gloo" and m["steps"] == 5
    assert m["spread"] == 0.0  # DDP replicas are bit-identical
    assert m["param_gap"] < 1e-4  # float reduction order only
    assert m["loss_ratio"] == pytest.approx(1.0, rel=1e-4) and m["overlap"] == 0.0


@pytest.mark.fires(SLUG)
def test_a_summed_loss_is_named_as_the_cause_of_the_mismatch():
    stage, (finding,) = checked("summed_loss")
    m = stage.metrics
    assert m["loss_ratio"] == pytest.approx(0.5, rel=1e-4)  # each rank sums half the samples
    assert m["update_ratio"] == pytest.approx(0.5, rel=1e-3)  # SGD: half the step
    assert m["param_gap"] > 0.3
    assert "the loss sums over the batch" in finding.message and "1/2" in finding.message
    assert "reduction='mean'" in finding.fix


@pytest.mark.fires(SLUG)
def test_parameters_unused_in_some_batches_stop_ddp_and_are_named():
    stage, (finding,) = checked("unused_parameters")
    assert finding.message.startswith("Training on 2 processes (gloo), 16 samples per device "
                                      "failed on rank")  # fmt: skip
    assert "no gradient" in finding.message and "b.weight" in finding.where
    assert "find_unused_parameters=True" in finding.fix


@pytest.mark.slow  # a second healthy launch; the healthy one runs in CI
@pytest.mark.silent(SLUG)
def test_a_plain_shuffled_loader_is_dealt_out_and_compared():
    stage, found = checked("plain_loader")
    assert found == [] and stage.metrics["own_loader"] is False
    assert stage.metrics["overlap"] == 0.0 and stage.metrics["param_gap"] < 1e-4


@pytest.mark.fires(SLUG)
def test_a_loader_with_its_own_sampler_that_ignores_the_rank_is_caught():
    stage, (finding,) = checked("loader_ignores_rank")
    assert stage.metrics["overlap"] == 1.0 and stage.metrics["own_loader"] is True
    assert "DataLoader ignores the rank" in finding.message
    assert "DistributedSampler" in finding.fix


@pytest.mark.slow  # waits out a 12 s budget
@pytest.mark.fires(SLUG)
def test_a_stalled_rank_ends_within_the_budget_and_leaves_no_process():
    stage, (finding,) = checked("stalls", budget=12.0)
    assert stage.metrics["hung"] is True and "did not finish within 12s" in finding.message
    for _ in range(20):  # each rank ends itself within half a second of its torchrun
        left = subprocess.run(["pgrep", "-f", "trainwise.distributed.worker"], capture_output=True)
        if left.stdout == b"":
            break
        time.sleep(0.5)
    assert left.stdout == b"", "a worker outlived the check"


def _measured(**changes) -> MultiDevice:
    healthy = {"devices": 2, "backend": "gloo", "steps": 5, "per_device_batch": 16,
               "seconds": 10.0, "budget": 120.0, "spread": 0.0, "param_gap": 1e-6,
               "loss_ratio": 1.0, "update_ratio": 1.0, "overlap": 0.0}  # fmt: skip
    return MultiDevice(**{**healthy, **changes})


@pytest.mark.silent(SLUG)
def test_the_rule_is_silent_on_float_noise_and_large_per_device_batches():
    assert judge(_measured()) == []
    assert judge(_measured(batchnorm=("bn1",), per_device_batch=32)) == []


@pytest.mark.fires(SLUG)
def test_batchnorm_on_few_samples_per_device_suggests_syncbatchnorm():
    (finding,) = judge(_measured(batchnorm=("features.1", "features.4"), per_device_batch=8))
    assert finding.severity == "warning" and finding.where == "features.1"
    assert "SyncBatchNorm" in finding.fix and "global batch of 16" in finding.message


@pytest.mark.fires(SLUG)
def test_replicas_out_of_sync_are_reported_with_their_spread():
    (finding,) = judge(_measured(spread=3e-3))
    assert "no longer train one model" in finding.message and finding.evidence["spread"] == 3e-3


def test_without_devices_or_a_setup_file_the_stage_says_why_it_skipped():
    setup = load_setup(f"{FILE}:healthy")
    report = tw.check(setup, devices=1, stages=[MultiDeviceStage()], record=False)
    assert report.stages[0].status == "skipped" and "--devices N" in report.stages[0].summary
    report = tw.check(setup, devices=2, stages=[MultiDeviceStage()], record=False)
    assert report.stages[0].status == "skipped" and "target=" in report.stages[0].summary


def test_a_setup_whose_loss_calls_the_models_own_methods_is_skipped_with_the_way_to_go():
    setup = load_setup(f"{FILE}:healthy")
    setup.loss = tw.TrainingStep(lambda model, batch: model(batch[0]).sum(), name="step")
    report = tw.check(setup, devices=2, target=f"{FILE}:healthy", record=False,
                      stages=[MultiDeviceStage()])  # fmt: skip
    assert report.stages[0].status == "skipped"
    assert "strategy='ddp'" in report.stages[0].summary
