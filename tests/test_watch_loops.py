"""The broken-loop suite as tests: each broken loop fires its rule, each healthy loop is silent.

The same cases run from `python benchmarks/loops/run.py`, which prints recall and false alarms.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

from helpers import assert_clean, assert_fires
from tips_slugs import IN_FLIGHT

LOOPS = Path(__file__).parents[1] / "benchmarks" / "loops"


def _runner():
    spec = importlib.util.spec_from_file_location("loop_runner", LOOPS / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


RUNNER = _runner()


def _run(case: str):
    result = RUNNER.run_case(LOOPS / f"{case}.py")
    assert not result.crashed, result.crashed
    return result


# The three longest clean loops (a third of the suite's time) run under `pytest -m slow` and in
# benchmarks/loops/run.py; what they exercise stays in the default run: LBFGS closures and
# bfloat16 autocast in tests/test_watch_matrix.py, two watches on a GAN in
# reported/gan_missing_d_zero_grad.
SLOW = {"transformer_lm_bf16", "examples/time_sequence_lbfgs", "examples/dcgan"}


def _params(cases):
    return [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c for c in cases]


BROKEN = [
    pytest.param("broken/log_of_zero_counts", marks=pytest.mark.fires("nonfinite-loss")),
    pytest.param("broken/sqrt_distance_at_zero", marks=pytest.mark.fires("nonfinite-gradient")),
    pytest.param("broken/outlier_targets", marks=pytest.mark.fires("exploding-gradients")),
    pytest.param("broken/deep_sigmoid_mlp", marks=pytest.mark.fires("vanishing-gradients")),
    pytest.param("broken/relu_killed_by_lr", marks=pytest.mark.fires("dead-relu")),
    pytest.param("broken/tanh_raw_pixels", marks=pytest.mark.fires("saturated-activations")),
    pytest.param("broken/adam_with_sgd_lr", marks=pytest.mark.fires("update-ratio-high")),
    pytest.param("broken/finetune_lr_from_scratch", marks=pytest.mark.fires("update-ratio-low")),
    pytest.param("broken/warmup_without_cap", marks=pytest.mark.fires("loss-diverging")),
    pytest.param("broken/sorted_by_label", marks=pytest.mark.fires("loss-oscillating")),
    pytest.param("broken/labels_shuffled_apart", marks=pytest.mark.fires("loss-plateau")),
    pytest.param("broken/big_model_few_samples", marks=pytest.mark.fires("overfitting")),
    pytest.param("broken/linear_on_rings", marks=pytest.mark.fires("underfitting")),
    pytest.param("broken/detached_encoder", marks=pytest.mark.fires("weights-not-updating")),
    pytest.param("broken/no_zero_grad", marks=pytest.mark.fires("missing-zero-grad")),
    pytest.param(
        "broken/validate_first_never_train", marks=pytest.mark.fires("eval-mode-during-training")
    ),
    pytest.param(
        "broken/validate_in_train_mode", marks=pytest.mark.fires("train-mode-during-eval")
    ),
    pytest.param("broken/steplr_per_batch", marks=pytest.mark.fires("lr-schedule-suspicious")),
    pytest.param(
        "broken/recon_plus_classifier", marks=pytest.mark.fires("loss-weights-unbalanced")
    ),
]


# Silent bugs reported in public (each case's docstring cites its report), issue 12.
REPORTED = [
    pytest.param(
        "reported/spectral_norm_eval_first", marks=pytest.mark.fires("train-eval-mismatch")
    ),
    pytest.param(
        "reported/batchnorm_input_layer_eval_first",
        marks=pytest.mark.fires("train-eval-mismatch"),
    ),
    pytest.param("reported/stale_graph_retain_graph", marks=pytest.mark.fires("stale-gradients")),
    pytest.param(
        "reported/ema_restore_overwrites_weights",
        marks=pytest.mark.fires("weights-changed-outside-optimizer"),
    ),
    pytest.param(
        "reported/finetune_all_frozen_before_watch", marks=pytest.mark.fires("frozen-parameters")
    ),
    pytest.param(
        "reported/frozen_layer_still_trains", marks=pytest.mark.fires("frozen-weights-changing")
    ),
    pytest.param("reported/gan_missing_d_zero_grad", marks=pytest.mark.fires("missing-zero-grad")),
]


@pytest.mark.parametrize("case", BROKEN + REPORTED)
def test_broken_loop_fires_its_rule(case):
    result = _run(case)
    assert set(result.expected) <= set(result.fired), (
        f"expected {result.expected}, fired {result.fired}"
    )


@pytest.mark.silent(
    "nonfinite-loss", "nonfinite-gradient", "exploding-gradients", "vanishing-gradients",
    "dead-relu", "saturated-activations", "update-ratio-high", "update-ratio-low",
    "loss-diverging", "loss-oscillating", "loss-plateau", "overfitting", "underfitting",
    "weights-not-updating", "missing-zero-grad", "eval-mode-during-training",
    "train-mode-during-eval", "lr-schedule-suspicious", "loss-weights-unbalanced",
    "train-eval-mismatch", "stale-gradients",
)  # fmt: skip
@pytest.mark.parametrize("case", _params(p.stem for p in sorted(LOOPS.glob("healthy/*.py"))))
def test_healthy_loop_raises_nothing(case):
    # MLP, CNN with accumulation, GRU with clipping, transformer LM in bf16 with accumulation,
    # GradScaler skipping its first steps: no finding at all, not even an info.
    result = _run(f"healthy/{case}")
    assert result.fired == [], f"healthy loop {case} raised {result.fired}"


# Official examples and clean loops validated at different cadences (every step on a random
# batch, every 10 steps, every epoch): the loss-curve rules judge trends over windows of steps,
# so how often a run validates must not raise an alarm. Infos are allowed (e.g. a note that
# there are too few validations to judge yet); errors and warnings are not.
# The official ones: MNIST CNN, VAE (an ELBO converging at ~60% of its start), word language
# model (SGD at lr 20 with clipping), time-sequence prediction (float64, LBFGS closures), DCGAN
# (two watches, G's backward through D after D's step), super-resolution.
EXAMPLES = [f"examples/{p.stem}" for p in sorted(LOOPS.glob("examples/*.py"))]


@pytest.mark.silent(
    "overfitting", "underfitting", "loss-plateau", "missing-zero-grad", "update-ratio-high",
    "weights-changed-outside-optimizer", "frozen-weights-changing", "frozen-parameters",
)  # fmt: skip
@pytest.mark.parametrize("case", _params(EXAMPLES))
def test_example_loop_raises_no_warning(case):
    result = _run(case)
    assert_clean(result.findings)


def test_every_inflight_slug_has_a_broken_loop():
    covered = {RUNNER.load(p).EXPECT[0] for p in LOOPS.glob("broken/*.py")}
    assert covered == set(IN_FLIGHT)


def test_nonfinite_loss_names_the_module_and_the_op():
    finding = assert_fires(
        RUNNER.load(LOOPS / "broken/log_of_zero_counts.py").main(), "nonfinite-loss"
    )
    assert finding.where == "0"  # LogCounts, the first module of the Sequential
    assert "LogCounts" in finding.message and "log of 0" in finding.message
    assert "log_softmax" in finding.fix or "clamp" in finding.fix


def test_exploding_gradients_suggests_the_measured_90th_percentile():
    loop = RUNNER.load(LOOPS / "broken/outlier_targets.py")
    finding = assert_fires(loop.main(), "exploding-gradients")
    p90 = finding.evidence["p90"]
    assert f"max_norm={p90:.3g}" in finding.fix
    assert finding.evidence["grad_norm"] > 10 * finding.evidence["median"]


@pytest.mark.fires("ddp-out-of-sync")
@pytest.mark.silent("ddp-out-of-sync")  # the DDP-wrapped run
def test_ddp_replicas_out_of_sync_under_torchrun_and_in_sync_with_ddp():
    # Two gloo processes started by the real torchrun; one launch trains both variants.
    loop = RUNNER.load(LOOPS / "broken/ddp_without_wrapper.py")
    runs = loop.run_two_processes()
    assert_fires(runs["unwrapped"], "ddp-out-of-sync")
    assert [f.rule for f in runs["wrapped"]] == []


def test_the_slow_loops_exist():
    healthy = {p.stem for p in LOOPS.glob("healthy/*.py")}
    assert SLOW <= healthy | set(EXAMPLES)
