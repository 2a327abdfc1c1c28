"""fit's pieces alone, against plain torch / numpy: the schedules, gradient clipping, the
output-bias init, the data (held-out split, stratified sample) and the one-batch metrics."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw
from builders import mlp
from train.fitkit import imbalanced
from trainwise.context import StaticContext
from trainwise.errors import SetupError
from trainwise.train.clipping import MEASURED, GradientClipper
from trainwise.train.data import class_labels, sampled, with_validation
from trainwise.train.init import output_bias_init
from trainwise.train.metrics import PointMetrics, TaskMetrics
from trainwise.train.recipe import SCHEDULES
from trainwise.train.schedules import build_schedule

# -- schedules ------------------------------------------------------------------------------------


def _adamw(lr: float = 0.01) -> torch.optim.Optimizer:
    return torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=lr)


def _lrs(scheduler, optimizer, steps: int) -> list[float]:
    """The LR each of `steps` optimizer steps runs at, the scheduler stepped after each."""
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("total", [*range(1, 13), 100])
def test_every_schedule_builds_and_runs_its_length_for_any_length(name, total):
    # fit steps the scheduler after every optimizer step, the last one included.
    optimizer = _adamw()
    lrs = _lrs(build_schedule(name, optimizer, total), optimizer, total)
    assert all(math.isfinite(lr) and 0 <= lr <= 0.01 * (1 + 1e-9) for lr in lrs), lrs


def test_an_unknown_schedule_or_no_steps_is_a_setup_error():
    with pytest.raises(SetupError, match="unknown schedule 'linear'"):
        build_schedule("linear", _adamw(), 10)
    with pytest.raises(SetupError, match="0 training steps"):
        build_schedule("cosine", _adamw(), 0)


# -- gradient clipping ----------------------------------------------------------------------------


def _grad_with_norm(p: nn.Parameter, norm: float, g: torch.Generator) -> torch.Tensor:
    direction = torch.randn(p.shape, generator=g, dtype=torch.float64)
    p.grad = (direction / direction.norm() * norm).to(p.dtype)
    return p.grad.clone()


def test_auto_clipping_measures_the_first_steps_then_clips_at_their_90th_percentile():
    g = torch.Generator().manual_seed(0)
    p = nn.Parameter(torch.zeros(50, dtype=torch.float64))
    clipper = GradientClipper("auto")
    norms = (torch.rand(MEASURED, generator=g, dtype=torch.float64) * 5 + 0.5).tolist()
    for norm in norms:  # measured: left as they are
        before = _grad_with_norm(p, norm, g)
        clipper.clip([p])
        assert torch.equal(p.grad, before)
    threshold = float(np.percentile(norms, 90))
    assert MEASURED == 20 and clipper.max_norm == pytest.approx(threshold, rel=1e-12)
    big = _grad_with_norm(p, threshold * 3, g)
    clipper.clip([p])
    assert float(p.grad.norm()) == pytest.approx(threshold, rel=1e-5)
    assert torch.allclose(p.grad / p.grad.norm(), big / big.norm())  # the direction is kept
    small = _grad_with_norm(p, threshold / 2, g)
    clipper.clip([p])
    assert torch.equal(p.grad, small)


def test_auto_clipping_does_not_count_a_non_finite_norm():
    p = nn.Parameter(torch.zeros(3))
    clipper = GradientClipper("auto")
    p.grad = torch.tensor([math.inf, 0.0, 0.0])
    clipper.clip([p])
    assert clipper.norms == [] and clipper.max_norm is None


def test_a_number_clips_at_that_norm_from_the_first_step_and_none_never_clips():
    g = torch.Generator().manual_seed(1)
    p = nn.Parameter(torch.zeros(20, dtype=torch.float64))
    fixed = GradientClipper(2.0)
    _grad_with_norm(p, 7.0, g)
    fixed.clip([p])
    assert float(p.grad.norm()) == pytest.approx(2.0, rel=1e-5)
    _grad_with_norm(p, 1.0, g)
    fixed.clip([p])
    assert float(p.grad.norm()) == pytest.approx(1.0, rel=1e-12)

    never = GradientClipper(None)
    for norm in [1.0] * MEASURED + [1e6, 1e9]:
        before = _grad_with_norm(p, norm, g)
        never.clip([p])
        assert torch.equal(p.grad, before)
    assert never.max_norm is None and never.norms == []


def test_the_clipping_state_round_trips():
    g = torch.Generator().manual_seed(2)
    p = nn.Parameter(torch.zeros(5, dtype=torch.float64))
    clipper = GradientClipper("auto")
    for norm in range(1, 8):
        _grad_with_norm(p, float(norm), g)
        clipper.clip([p])
    again = GradientClipper("auto")
    again.load_state_dict(clipper.state_dict())
    assert again.state_dict() == clipper.state_dict() == {"max_norm": None,
                                                          "norms": pytest.approx(range(1, 8))}  # fmt: skip


# -- output bias ----------------------------------------------------------------------------------


class Scale(nn.Module):
    """A last op that is not a Linear."""

    def forward(self, x):
        return x * 2


def _log_prior(y: torch.Tensor, classes: int) -> np.ndarray:
    counts = np.bincount(y.numpy(), minlength=classes).astype(np.float64) + 1e-3
    return np.log(counts / counts.sum())


@pytest.mark.parametrize("counts", [[128, 64, 48, 16], [150, 80, 26, 0]], ids=["all", "absent"])
def test_the_output_bias_is_the_log_class_prior(counts):
    x, y = imbalanced(counts)
    setup = tw.Setup(model=lambda: mlp(), train=TensorDataset(x, y), loss=nn.CrossEntropyLoss())
    model = setup.build_model()
    done = output_bias_init(model, StaticContext(setup))
    assert done == "2.bias set to the log class prior"
    bias = model[2].bias.detach().double().cpu().numpy()
    np.testing.assert_allclose(bias, _log_prior(y, 4), rtol=1e-6)
    assert np.isfinite(bias).all()  # an absent class gets a finite (very negative) bias
    # softmax of the bias: the (smoothed) class frequencies
    np.testing.assert_allclose(np.exp(bias), np.array(counts) / sum(counts), atol=1e-5)


def test_the_output_bias_of_a_regression_is_the_target_mean():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    y = x[:, :1] * 3 + 5.0
    setup = tw.Setup(model=lambda: mlp(classes=1), train=TensorDataset(x, y), loss=nn.MSELoss())
    model = setup.build_model()
    assert output_bias_init(model, StaticContext(setup)) == "2.bias set to the target mean"
    assert float(model[2].bias.detach()) == pytest.approx(float(y.double().mean()), rel=1e-6)


def test_the_output_bias_of_a_multilabel_head_is_each_labels_log_odds():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    y = (torch.rand(200, 4, generator=g) < torch.tensor([0.5, 0.2, 0.05, 0.9])).float()
    setup = tw.Setup(model=lambda: mlp(), train=TensorDataset(x, y), loss=nn.BCEWithLogitsLoss())
    model = setup.build_model()
    assert output_bias_init(model, StaticContext(setup)) == "2.bias set to each label's log-odds"
    rate = y.double().mean(dim=0).numpy()
    np.testing.assert_allclose(
        model[2].bias.detach().double().cpu().numpy(), np.log(rate / (1 - rate)), rtol=1e-6
    )


def test_a_model_whose_last_op_is_not_a_linear_is_left_alone():
    x, y = imbalanced([128, 64, 48, 16])
    setup = tw.Setup(
        model=lambda: mlp(tail=Scale()), train=TensorDataset(x, y), loss=nn.CrossEntropyLoss()
    )
    model = setup.build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert output_bias_init(model, StaticContext(setup)) == ""
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- data: the held-out split and the stratified sample ---------------------------------------------


def _indices(dataset) -> list[int]:
    assert isinstance(dataset, torch.utils.data.Subset)
    return list(dataset.indices)


def test_a_setup_without_val_gets_a_seeded_20_percent_held_out_split():
    x, y = imbalanced([100, 100, 50])
    setup = tw.Setup(model=lambda: mlp(classes=3), train=TensorDataset(x, y),
                     loss=nn.CrossEntropyLoss())  # fmt: skip
    split, note = with_validation(setup, seed=0)
    train, val = _indices(split.train_dataset), _indices(split.val_dataset)
    assert len(val) == 50 and len(train) == 200
    assert sorted(train + val) == list(range(250))  # disjoint, and nothing lost
    assert note == (
        "the setup has no validation set: 50 of its 250 training samples (20%) are held out "
        "for validation"
    )
    assert _indices(with_validation(setup, seed=0)[0].val_dataset) == val  # seeded
    assert _indices(with_validation(setup, seed=1)[0].val_dataset) != val
    same, nothing = with_validation(split, seed=0)  # a setup with val is left as it is
    assert same is split and nothing == ""


@pytest.mark.parametrize("sample, kept", [(0.25, 100), (100, 100)])
def test_a_sample_is_stratified_by_class(sample, kept):
    counts = [200, 120, 60, 20]
    x, y = imbalanced(counts)
    vx, vy = imbalanced([40, 24, 12, 4], seed=1)
    setup = tw.Setup(model=lambda: mlp(), train=TensorDataset(x, y),
                     val=TensorDataset(vx, vy), loss=nn.CrossEntropyLoss())  # fmt: skip
    labels = class_labels(setup)
    assert labels == y.tolist()
    small, note = sampled(setup, sample, 0, labels)
    chosen = _indices(small.train_dataset)
    assert len(set(chosen)) == len(chosen) == kept
    shares = np.bincount(y[chosen].numpy(), minlength=4)
    np.testing.assert_array_equal(shares, np.array(counts) * kept // sum(counts))
    val_kept = 20 if isinstance(sample, float) else 80
    assert len(small.val_dataset) == val_kept
    assert note == f"trained on a sample (stratified by class): train {kept} of 400, " + (
        f"validation {val_kept} of 80"
    )


@pytest.mark.parametrize("sample", [0, 1.0, 1.5, -3])
def test_a_bad_sample_is_a_setup_error(sample):
    x, y = imbalanced([10, 10])
    setup = tw.Setup(model=lambda: mlp(classes=2), train=TensorDataset(x, y),
                     loss=nn.CrossEntropyLoss())  # fmt: skip
    with pytest.raises(SetupError, match=f"--sample {sample}: expected"):
        sampled(setup, sample, 0, None)


def test_labels_are_not_read_from_a_regression_set():
    x = torch.randn(10, 3)
    setup = tw.Setup(model=lambda: nn.Linear(3, 1), train=TensorDataset(x, x[:, :1]),
                     loss=nn.MSELoss())  # fmt: skip
    assert class_labels(setup) is None


def test_a_stratified_sample_has_the_size_it_says():
    # 67/65/62/62 samples: a quarter of each is no whole number; the shares must still add up
    # to the 64 asked for, each class within one sample of its share.
    counts = [67, 65, 62, 62]
    x, y = imbalanced(counts)
    setup = tw.Setup(model=lambda: mlp(), train=TensorDataset(x, y), loss=nn.CrossEntropyLoss())
    small, note = sampled(setup, 0.25, 0, class_labels(setup))
    chosen = _indices(small.train_dataset)
    assert len(set(chosen)) == len(chosen) == 64
    assert note == "trained on a sample (stratified by class): train 64 of 256"
    shares = np.bincount(y[chosen].numpy(), minlength=4)
    assert (np.abs(shares - np.array(counts) / 4) < 1).all(), shares


# -- one-batch validation points ----------------------------------------------------------------


def _point_cases():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(20, 5, generator=g), torch.randint(0, 5, (20,), generator=g)
    labels[3] = -100  # ignored, as cross-entropy ignores it
    pixels = torch.randn(2, 3, 4, 4, generator=g)
    pixel_labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    tags, tag_labels = torch.randn(20, 4, generator=g), torch.randint(0, 2, (20, 4), generator=g)
    values, targets = torch.randn(20, 1, generator=g), torch.randn(20, generator=g)
    kept = labels != -100
    return [
        ("classification", 5, logits, labels, "accuracy",
         float((logits.argmax(1) == labels)[kept].float().mean())),
        ("segmentation", 3, pixels, pixel_labels, "accuracy",
         float((pixels.argmax(1) == pixel_labels).float().mean())),
        ("multilabel", 4, tags, tag_labels, "accuracy",  # macro over labels, as TaskMetrics
         float(((tags > 0).long() == tag_labels).float().mean(0).mean())),
        ("regression", None, values, targets, "mae",
         float((values.reshape(-1) - targets).abs().mean())),
    ]  # fmt: skip


@pytest.mark.parametrize("task, classes, prediction, target, name, expected", _point_cases())
def test_a_validation_point_gives_the_loss_and_the_headline_metric_of_the_whole_set_kind(
    task, classes, prediction, target, name, expected
):
    point = PointMetrics(task, classes)
    point.update(prediction, target, 0.7)
    whole = TaskMetrics(task, classes, torch.device("cpu"))
    whole.update(prediction, target, 0.7)
    values = point.compute()
    assert set(values) == {"loss", name} and values["loss"] == pytest.approx(0.7)
    assert values[name] == pytest.approx(expected, abs=1e-6)
    assert values[name] == pytest.approx(whole.compute()[name], abs=1e-6)
    point.reset()
    assert point.compute() == {"loss": 0.0}


@pytest.mark.parametrize("seed", range(6))
def test_the_point_accuracy_equals_torchmetrics_multiclass_accuracy(seed):
    """PointMetrics computes the accuracy itself (torchmetrics' functional form costs a fifth
    of a small step): torchmetrics' micro accuracy is the reference, per sample and per pixel,
    with ignored targets and few classes (ties in the logits included)."""
    from torchmetrics.functional.classification import multiclass_accuracy

    from trainwise.train.metrics import _headline_of

    g = torch.Generator().manual_seed(seed)
    classes = 2 + seed
    shape = [(16,), (3, 5, 5), (4, 7)][seed % 3]
    logits = torch.randint(-2, 3, (shape[0], classes, *shape[1:]), generator=g).float()  # ties
    target = torch.randint(0, classes, shape, generator=g)
    target[target == 0] = -100  # about 1 in `classes` ignored
    _, headline = _headline_of("classification", classes)
    expected = multiclass_accuracy(logits, target, classes, average="micro", ignore_index=-100)
    assert float(headline(logits, target)) == pytest.approx(float(expected), abs=1e-6)
