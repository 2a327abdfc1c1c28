"""Each protocol stage fires on its broken setup and stays silent on a healthy one.

Small setups (blobs, tiny models) and single stages keep these fast; the fault suite and
tests/stages/test_healthy_examples.py run the whole protocol.
"""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import trainwise as tw
from builders import blobs, mlp, setup
from helpers import assert_fires, assert_silent
from trainwise.stages.baselines import BaselinesStage
from trainwise.stages.batch_independence import BatchIndependenceStage
from trainwise.stages.init_loss import InitLossStage
from trainwise.stages.input_dependence import InputDependenceStage
from trainwise.stages.overfit_batch import OverfitBatchStage
from trainwise.stages.overfit_few import OverfitFewStage
from trainwise.stages.speed import SpeedStage
from trainwise.stages.static import StaticStage
from trainwise.stages.train_eval import MISMATCH, TrainEvalStage


def healthy(model=mlp, **kw):
    x, y = blobs(n=400)  # 144 held out: fewer than 100 is a tiny validation set (a warning)
    return setup(model, x[:256], y[:256], val=(x[256:], y[256:]), **kw)


def run(s, *stages):
    return tw.check(s, stages=list(stages), quick=True)


# -- loss at init -----------------------------------------------------------------------------


@pytest.mark.fires("initial-loss-off")
def test_initial_loss_off_fires_on_a_large_output_init():
    def model():
        net = mlp()
        nn.init.normal_(net[2].weight, std=3.0)  # logits of std ~10
        return net

    report = run(healthy(model=model), InitLossStage())
    f = assert_fires(report, "initial-loss-off", severity="warning")
    assert f.evidence["loss"] > 3 * f.evidence["expected"]
    assert "log(4)" in f.message


@pytest.mark.fires("initial-loss-off")
def test_initial_loss_off_fires_on_unstandardized_regression_targets():
    x, _ = blobs(n=256)
    y = 50 + 3 * x[:, :1]  # mean 50, std 3; the outputs start near 0
    s = setup(lambda: mlp(classes=1), x, y, loss=nn.MSELoss())
    f = assert_fires(run(s, InitLossStage()), "initial-loss-off")
    assert "set the last bias to 50" in f.message


@pytest.mark.silent("initial-loss-off")
def test_initial_loss_is_near_log_c_on_a_default_init():
    report = run(healthy(), InitLossStage())
    assert_silent(report, "initial-loss-off")
    metrics = report.stages[0].metrics
    assert abs(metrics["loss"] - metrics["expected"]) < 0.3


# -- overfitting ------------------------------------------------------------------------------


def tiny_lr(p):
    return torch.optim.SGD(p, lr=1e-6)


@pytest.mark.fires("cannot-overfit-batch")
def test_cannot_overfit_batch_fires_at_a_tiny_lr():
    report = run(healthy(optimizer=tiny_lr), OverfitBatchStage())
    f = assert_fires(report, "cannot-overfit-batch", severity="error")
    assert f.evidence["final_loss"] > 0.9 * f.evidence["initial_loss"]


@pytest.mark.fires("cannot-overfit-batch")
def test_cannot_overfit_batch_says_when_another_lr_works():
    # Adam at 1e-4 is too slow for 200 steps; ten times more memorizes the batch.
    s = healthy(optimizer=lambda p: torch.optim.Adam(p, lr=1e-4))
    f = assert_fires(run(s, OverfitBatchStage()), "cannot-overfit-batch", severity="warning")
    assert "too low" in f.message and f.evidence["working_lr"] == pytest.approx(1e-3)


class DetachedBody(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 4), nn.ReLU())
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        return self.head(self.body(x).detach())  # the body never learns


@pytest.mark.fires("cannot-overfit-batch")
def test_cannot_overfit_batch_names_the_parameters_without_gradient():
    f = assert_fires(run(healthy(model=DetachedBody), OverfitBatchStage()), "cannot-overfit-batch")
    assert "body.0.weight" in f.message and "no gradient" in f.message


@pytest.mark.silent("cannot-overfit-batch")
def test_a_healthy_mlp_memorizes_one_batch():
    report = run(healthy(), OverfitBatchStage())
    assert_silent(report, "cannot-overfit-batch")
    assert report.stages[0].status == "pass"
    m = report.stages[0].metrics
    assert m["final_loss"] <= m["target"] < 0.2 * m["initial_loss"]


@pytest.mark.fires("cannot-overfit-few")
def test_cannot_overfit_few_fires_at_a_tiny_lr():
    f = assert_fires(run(healthy(optimizer=tiny_lr), OverfitFewStage()), "cannot-overfit-few")
    assert "8 samples" in f.message


@pytest.mark.silent("cannot-overfit-few")
def test_a_healthy_mlp_memorizes_eight_samples():
    report = run(healthy(), OverfitFewStage())
    assert_silent(report, "cannot-overfit-few")
    assert report.stages[0].metrics["samples"] == 8


def test_overfitting_runs_with_dropout_and_weight_decay_off():
    # p=0.9 dropout and heavy weight decay would keep the loss up; the stage turns both off.
    s = healthy(
        model=lambda: mlp(hidden=64, tail=None).append(nn.Dropout(0.9)),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.5),
    )
    assert run(s, OverfitBatchStage()).stages[0].status == "pass"


# -- input dependence -------------------------------------------------------------------------


class IgnoresInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(16, 32)
        self.query = nn.Parameter(torch.randn(1, 32))
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        h = self.body(x)  # computed, then the wrong tensor is read
        return self.head(self.query.expand(len(h), -1))


@pytest.mark.fires("input-independent")
def test_input_independent_fires_when_forward_reads_a_parameter():
    report = run(healthy(model=IgnoresInput), OverfitBatchStage(), InputDependenceStage())
    f = assert_fires(report, "input-independent")
    assert "same output" in f.message


@pytest.mark.silent("input-independent")
def test_a_healthy_model_does_worse_on_zeroed_inputs():
    report = run(healthy(), OverfitBatchStage(), InputDependenceStage())
    assert_silent(report, "input-independent")
    m = report.stages[1].metrics
    assert m["loss_zeroed_inputs"] > 3 * m["loss_real_inputs"]


# -- batch independence -----------------------------------------------------------------------


class GRUNotBatchFirst(nn.Module):
    def __init__(self, batch_first=False):
        super().__init__()
        self.gru = nn.GRU(4, 8, batch_first=batch_first)
        self.head = nn.Linear(8, 2)

    def forward(self, x):  # (B, T, F)
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def sequences(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, 4, generator=g)
    return x, (x.sum(dim=(1, 2)) > 0).long()


@pytest.mark.fires("batch-mixing")
def test_batch_mixing_names_a_gru_without_batch_first():
    s = setup(GRUNotBatchFirst, *sequences())
    f = assert_fires(run(s, BatchIndependenceStage()), "batch-mixing")
    assert f.where.startswith("layer 'gru' (GRU)") and "batch_first" in f.where


class SoftmaxOverBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 4)

    def forward(self, x):
        attention = torch.softmax(self.fc1(x), dim=0)  # mistake: dim=0 is the batch
        return self.fc2(attention)


@pytest.mark.fires("batch-mixing")
def test_batch_mixing_locates_a_functional_op_between_layers():
    f = assert_fires(run(healthy(model=SoftmaxOverBatch), BatchIndependenceStage()), "batch-mixing")
    assert "between layer 'fc1' (Linear) and layer 'fc2' (Linear)" in f.where


@pytest.mark.silent("batch-mixing")
def test_batch_norm_in_eval_mode_and_batch_first_gru_do_not_mix():
    bn = healthy(
        model=lambda: nn.Sequential(
            nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4)
        )
    )
    assert_silent(run(bn, BatchIndependenceStage()), "batch-mixing")
    gru = setup(lambda: GRUNotBatchFirst(batch_first=True), *sequences())
    report = run(gru, BatchIndependenceStage())
    assert_silent(report, "batch-mixing")
    assert report.stages[0].metrics["leak"] == 0.0


# -- train/eval consistency -------------------------------------------------------------------


def bn_mlp(momentum=0.1, dropout=0.0):
    return nn.Sequential(
        nn.Linear(16, 64),
        nn.BatchNorm1d(64, momentum=momentum),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(64, 64),
        nn.BatchNorm1d(64, momentum=momentum),
        nn.ReLU(),
        nn.Linear(64, 4),
    )


@pytest.mark.fires("train-eval-mismatch")
def test_train_eval_mismatch_names_a_batchnorm_with_frozen_statistics():
    x, y = blobs(n=320)
    s = setup(lambda: bn_mlp(momentum=0.0), x[:256] * 5 + 3, y[:256])  # far from BN's init stats
    f = assert_fires(run(s, BaselinesStage(), TrainEvalStage()), "train-eval-mismatch")
    assert "BatchNorm1d" in f.where and f.evidence["distance"] > 0.2


@pytest.mark.silent("train-eval-mismatch")
def test_batchnorm_and_dropout_with_defaults_stay_consistent():
    s = healthy(model=lambda: bn_mlp(dropout=0.2))
    report = run(s, BaselinesStage(), TrainEvalStage())
    assert_silent(report, "train-eval-mismatch")
    assert report.stages[1].metrics["distance"] < MISMATCH


# -- short training vs baselines --------------------------------------------------------------


@pytest.mark.fires("no-better-than-baseline")
def test_no_better_than_baseline_fires_when_labels_do_not_match_inputs():
    x, y = blobs(n=512)
    shuffled = y[:384][torch.randperm(384, generator=torch.Generator().manual_seed(1))]
    s = setup(mlp, x[:384], shuffled, val=(x[384:], y[384:]))
    f = assert_fires(run(s, BaselinesStage()), "no-better-than-baseline", severity="error")
    assert "majority class" in f.message


@pytest.mark.fires("no-better-than-baseline")
def test_no_better_than_baseline_fires_on_regression_noise():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 8, generator=g), torch.randn(400, 1, generator=g)
    s = setup(
        lambda: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1)),
        x,
        y,
        loss=nn.MSELoss(),
    )
    f = assert_fires(run(s, BaselinesStage()), "no-better-than-baseline")
    assert "mean target" in f.message


@pytest.mark.silent("no-better-than-baseline")
def test_a_healthy_mlp_beats_the_majority_class():
    report = run(healthy(), BaselinesStage())
    assert not [f for f in report.findings if f.severity in ("error", "warning")]
    m = report.stages[0].metrics
    assert m["curve"][-1]["val_accuracy"] > m["trivial"]["val_accuracy"] + 0.3
    assert m["validation"] == "the validation set"


# -- speed ------------------------------------------------------------------------------------


class Restandardized(Dataset):
    """Standardizes each item with statistics of the whole set, recomputed per item."""

    def __init__(self, n=256):
        self.x, self.y = torch.randn(n, 1, 48, 48), torch.arange(n) % 4

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return (self.x[i] - self.x.mean()) / self.x.std(), self.y[i]


def tiny_image_model():
    return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16, 4))


@pytest.mark.fires("data-loader-bound")
def test_data_loader_bound_fires_and_measures_workers():
    s = tw.Setup(
        model=tiny_image_model,
        train=DataLoader(Restandardized(), batch_size=32),
        loss=nn.CrossEntropyLoss(),
    )
    f = assert_fires(run(s, SpeedStage()), "data-loader-bound")
    assert f.evidence["data_share"] > 0.5
    assert "num_workers=" in f.evidence["suggested"] and f.evidence["suggested_step_seconds"] > 0


@pytest.mark.silent("data-loader-bound")
def test_in_memory_tensors_are_not_loader_bound():
    x = torch.randn(256, 1, 48, 48)
    s = setup(
        lambda: nn.Sequential(
            nn.Conv2d(1, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 4)
        ),
        x,
        torch.arange(256) % 4,
    )
    report = run(s, SpeedStage())
    assert_silent(report, "data-loader-bound")
    m = report.stages[0].metrics
    assert m["step_seconds"] == pytest.approx(
        sum(m[f"{p}_seconds"] for p in ("data", "forward", "backward", "optimizer"))
    )


@pytest.mark.fires("slow-step")
def test_slow_step_fires_above_the_threshold_with_the_breakdown():
    # The default threshold is one second; a lower one exercises the same measurement quickly.
    f = assert_fires(run(healthy(), SpeedStage(slow_step_seconds=1e-6)), "slow-step")
    assert {"forward", "backward", "optimizer", "data"} <= set(f.evidence)


@pytest.mark.silent("slow-step")
def test_a_small_mlp_step_is_fast():
    assert_silent(run(healthy(), SpeedStage()), "slow-step")


def test_quick_skips_the_experiments_at_the_speed_stages_own_limit():
    # The limit slow-step judges is the one --quick skips training at, so a test (or a user)
    # that sets it decides both; these two limits leave nothing to the machine's speed.
    over = run(healthy(), SpeedStage(slow_step_seconds=1e-9), OverfitBatchStage())
    assert over.stages[-1].status == "skipped" and "slow-step" in over.stages[-1].summary
    under = run(healthy(), SpeedStage(slow_step_seconds=math.inf), OverfitBatchStage())
    assert under.stages[-1].status == "pass"
    assert_silent(under, "slow-step")


# -- the protocol as a whole ------------------------------------------------------------------


def test_experiments_are_skipped_with_the_reason_when_labels_are_out_of_range():
    x, y = blobs(n=128)
    report = tw.check(setup(mlp, x, y + 1), quick=True)  # 4 outputs, labels 1..4
    assert report.stages[0].name == "static"
    assert_fires(report, "labels-out-of-range")
    assert len(report.stages) > 5
    for stage in report.stages[1:]:  # the loss cannot run, so no experiment can
        assert stage.status == "skipped", (stage.name, stage.summary)
        assert "labels-out-of-range" in stage.summary


def test_labels_out_of_range_never_reach_the_loss():
    # On the CPU the loss raises an IndexError the check catches; on a GPU the same call is a
    # device-side assert that ends the process's use of the GPU (a user's notebook included).
    x, y = blobs(n=128)
    calls = []

    def loss(out, target):
        calls.append(int(target.max()) >= out.shape[1])
        return nn.functional.cross_entropy(out, target)

    report = tw.check(setup(mlp, x, y + 1, loss=loss), quick=True, record=False)
    assert_fires(report, "labels-out-of-range")
    assert not any(calls), f"{sum(calls)} loss call(s) on labels 1..4 for 4 outputs"


def test_experiments_are_skipped_with_the_reason_when_nothing_requires_grad():
    def frozen():
        net = mlp()
        net.requires_grad_(False)  # a freeze loop that also froze the head
        return net

    x, y = blobs(n=128)
    report = tw.check(setup(frozen, x, y), quick=True)  # backward() would raise
    assert_fires(report, "frozen-parameters", severity="error")
    assert len(report.stages) > 5
    for stage in report.stages[1:]:  # no experiment can run backward(), none aborts the check
        assert stage.status == "skipped", (stage.name, stage.summary)
        assert "frozen-parameters" in stage.summary


@pytest.mark.parametrize("part", ["inputs", "targets"])
def test_experiments_are_skipped_naming_the_part_that_is_not_finite(part):
    x, y = blobs(n=128)
    y = y.float()[:, None]
    (x if part == "inputs" else y)[3, 0] = float("nan")
    s = setup(lambda: nn.Linear(16, 1), x, y, loss=nn.MSELoss())
    report = tw.check(s, stages=[StaticStage(), InitLossStage()], quick=True)
    assert_fires(report, "nonfinite-inputs")
    init = report.stages[1]
    assert init.status == "skipped"
    assert init.summary == f"skipped: NaN/Inf in the training {part} (nonfinite-inputs)"


class _PairInputs(Dataset):
    """((features, extra), label): inputs that are a tuple of tensors."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return (self.x[i], self.x[i, :2]), self.y[i]


class _FirstOfPair(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, inputs):
        return self.fc(inputs[0])


def test_nan_in_the_first_tensor_of_tuple_inputs_is_found_and_stops_the_experiments():
    x, y = blobs(n=128)
    x[5, 3] = float("nan")
    s = tw.Setup(model=_FirstOfPair, train=_PairInputs(x, y), loss=nn.CrossEntropyLoss())
    report = tw.check(s, stages=[StaticStage(), InitLossStage()], quick=True)
    assert_fires(report, "nonfinite-inputs", where="train[5]")
    assert report.stages[1].summary == (
        "skipped: NaN/Inf in the training input[0] (nonfinite-inputs)"
    )


def test_a_stage_run_alone_skips_on_what_the_static_rules_find():
    # Without the static stage in the run, the blocking rules are run for the experiments.
    x, y = blobs(n=128)
    report = run(setup(mlp, x, y + 1), InitLossStage(), OverfitBatchStage())  # labels 1..4
    for stage in report.stages:
        assert stage.status == "skipped"
        assert stage.summary == (
            "skipped: labels span 1..4 but the model has 4 outputs (labels-out-of-range): the "
            "loss cannot be computed"
        )


def test_labels_out_of_range_in_validation_only_do_not_stop_the_training_experiments():
    x, y = blobs(n=256)
    vy = y[200:].clone()
    vy[0] = 7  # 4 outputs
    report = tw.check(
        setup(mlp, x[:200], y[:200], val=(x[200:], vy)),
        stages=[StaticStage(), InitLossStage()],
        quick=True,
    )
    assert_fires(report, "labels-out-of-range", where="val[0]")
    assert report.stages[1].status == "pass"


def test_quick_check_of_a_healthy_setup_is_ready_to_train_with_every_stage():
    report = tw.check(healthy(), quick=True)
    names = [s.name for s in report.stages]
    for name in (
        "init-loss",
        "speed",
        "overfit-batch",
        "overfit-few",
        "input-dependence",
        "batch-independence",
        "baselines",
        "train-eval",
    ):
        assert name in names
    assert {s.status for s in report.stages} <= {"pass"}, [
        (s.name, s.summary) for s in report.stages
    ]
    assert report.verdict == "ready to train"


class _Words(Dataset):
    """Inputs that are no tensors at all: the model turns each word into a token id itself."""

    words = ["a", "bb", "ccc", "dddd"] * 16

    def __len__(self):
        return len(self.words)

    def __getitem__(self, i):
        return self.words[i], len(self.words[i]) - 1


class _WordLengths(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(8, 4)

    def forward(self, words):  # a list of B strings -> (B, 4) logits
        return self.emb(torch.tensor([len(w) for w in words]))


def test_batch_independence_skips_inputs_without_a_tensor():
    s = tw.Setup(model=_WordLengths, train=_Words(), loss=nn.CrossEntropyLoss(), batch_size=8)
    report = tw.check(s, stages=[BatchIndependenceStage()], quick=True, record=False)
    (stage,) = report.stages
    assert stage.status == "skipped" and "tensor input" in stage.summary  # was: crashed


def test_a_one_output_head_with_integer_targets_keeps_its_loss():
    # The out-of-range guard judges labels against the output's widths; one output per sample
    # (a binary or regression head, integer targets made float by the user's loss) is exempt.
    from trainwise.context import StaticContext

    x, y = blobs(n=128)
    binary = (y > 1).long()

    def bce(out, target):
        return nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), target.float())

    ctx = StaticContext(setup(lambda: mlp(classes=1), x, binary, loss=bce))
    assert ctx.setup_loss_value is not None and ctx.setup_loss_value > 0
