"""The other training-tip helpers, each against a plain torch computation: TTA's average,
the distillation loss's KL/CE mix, YRange's bounds, Kaiming's std, the output-bias init,
progressive resizing and the train+val Setup."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw


def classifier(features: int = 6, classes: int = 4, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(features, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, classes)
    )


def data(n: int = 40, features: int = 6, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.randint(0, classes, (n,), generator=g)


# -- tta ----------------------------------------------------------------------------------------


def test_tta_is_the_average_of_the_views_probabilities_in_eval_mode():
    model = classifier().train()  # dropout on: tta must switch it off, and restore train mode
    x, y = data()
    flip, shift = (lambda t: t.flip(-1)), (lambda t: t + 0.5)
    preds, targets = tw.tta(model, DataLoader(TensorDataset(x, y), batch_size=16), [flip, shift])
    assert model.training
    model.eval()
    with torch.no_grad():
        views = [model(x).softmax(1), model(flip(x)).softmax(1), model(shift(x)).softmax(1)]
    torch.testing.assert_close(preds, (views[0] + views[1] + views[2]) / 3)
    assert torch.equal(targets, y)
    assert not torch.allclose(preds, views[0], atol=1e-3)  # the transforms did change something


def test_tta_raw_outputs_and_inputs_without_targets():
    model = classifier().eval()
    x, _ = data()
    flip = lambda t: t.flip(-1)  # noqa: E731
    preds, targets = tw.tta(model, DataLoader(x, batch_size=8), [flip], activation=None)
    with torch.no_grad():
        torch.testing.assert_close(preds, (model(x) + model(flip(x))) / 2)
    assert targets is None


def test_tta_refuses_a_transform_that_changes_the_prediction_shape():
    model = classifier()
    x, y = data()
    with pytest.raises(tw.SetupError, match="same shape"):
        tw.tta(model, DataLoader(TensorDataset(x, y), batch_size=8), [lambda t: t[:4]])
    with pytest.raises(tw.SetupError, match="list of callables"):
        tw.tta(model, [x], lambda t: t)


# -- distillation --------------------------------------------------------------------------------


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (4.0, 0.9), (10.0, 0.3)])
def test_distillation_loss_is_the_kl_ce_mix_at_temperature_t(T, alpha):
    teacher, student = classifier(seed=1).train(), classifier(seed=2)
    x, y = data()
    distill = tw.DistillationLoss(teacher, T=T, alpha=alpha)
    logits = student(x)
    loss = distill(logits, y, x)
    with torch.no_grad():  # by hand: the teacher in eval mode, KL(p_teacher || p_student) at T
        t = teacher.eval()(x)
        p_t, log_p_s = (t / T).softmax(1), (logits / T).log_softmax(1)
        kl = (p_t * (p_t.log() - log_p_s)).sum(1).mean()
        expected = alpha * T**2 * kl + (1 - alpha) * F.cross_entropy(logits, y)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())


def test_distillation_as_a_setup_training_step():
    teacher, student = classifier(seed=1), classifier(seed=2).eval()
    x, y = data()
    distill = tw.DistillationLoss(teacher, T=2.0, alpha=0.7)
    setup = tw.Setup(model=student, train=TensorDataset(x, y), loss=distill.training_step())
    assert isinstance(setup.loss, tw.TrainingStep)
    torch.testing.assert_close(setup.batch_loss(student, x, y), distill(student(x), y, x))


def test_distillation_loss_refuses_mismatched_classes_and_bad_arguments():
    x, y = data()
    distill = tw.DistillationLoss(classifier(classes=4))
    with pytest.raises(tw.SetupError, match="same classes"):
        distill(classifier(classes=3)(x), y, x)
    with pytest.raises(tw.SetupError, match="alpha=1.5"):
        tw.DistillationLoss(classifier(), alpha=1.5)


# -- YRange -------------------------------------------------------------------------------------


def test_yrange_bounds_outputs_and_is_the_scaled_sigmoid():
    head = tw.YRange(1.0, 5.5)
    x = torch.tensor([-1e4, -3.0, 0.0, 2.0, 1e4])
    out = head(x)
    assert bool(((out >= 1.0) & (out <= 5.5)).all())
    torch.testing.assert_close(out, 1.0 + 4.5 * torch.sigmoid(x))
    assert out[2].item() == pytest.approx(3.25)  # the middle of the range at 0
    with pytest.raises(tw.SetupError, match="lo < hi"):
        tw.YRange(5, 1)


# -- initialisation ------------------------------------------------------------------------------


def test_kaiming_init_matches_he_std_and_resets_biases_and_norms():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(64, 64, 3), nn.BatchNorm2d(64), nn.ReLU(), nn.Flatten(), nn.Linear(800, 400)
    )
    with torch.no_grad():
        model[1].weight.fill_(3.0)
        model[1].bias.fill_(-1.0)
    assert tw.kaiming_init_(model) is model
    for layer, fan_in in ((model[0], 64 * 3 * 3), (model[4], 800)):
        # He et al. 2015: std = sqrt(2 / fan_in) for ReLU; ~37k-320k draws: within 2%
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
        assert layer.weight.mean().abs().item() < 0.1 * math.sqrt(2 / fan_in)
        assert torch.count_nonzero(layer.bias) == 0
    assert torch.equal(model[1].weight, torch.ones(64))
    assert torch.equal(model[1].bias, torch.zeros(64))
    layer = tw.kaiming_init_(nn.Linear(1000, 500), nonlinearity="leaky_relu", a=0.2)
    gain = math.sqrt(2 / (1 + 0.2**2))
    assert layer.weight.std().item() == pytest.approx(gain / math.sqrt(1000), rel=0.02)
    with pytest.raises(tw.SetupError, match="calculate_gain"):
        tw.kaiming_init_(nn.Linear(2, 2), nonlinearity="swishy")


def test_init_output_bias_sets_the_log_prior_and_the_target_mean():
    x, _ = data(n=300)
    y = torch.cat([torch.zeros(240), torch.ones(45), torch.full((15,), 2)]).long()
    model = classifier(classes=3)
    note = tw.init_output_bias(model, TensorDataset(x, y))
    assert note == "3.bias set to the log class prior"
    expected = torch.tensor([240, 45, 15], dtype=torch.float64) + 1e-3  # fit's +1e-3 per count
    torch.testing.assert_close(model[3].bias.double(), (expected / expected.sum()).log())
    regressor = classifier(classes=1)
    targets = torch.randn(300, 1) * 2 + 7
    tw.init_output_bias(regressor, DataLoader(TensorDataset(x, targets), batch_size=32))
    assert regressor[3].bias.item() == pytest.approx(targets.mean().item(), rel=1e-5)


def test_init_output_bias_says_when_there_is_no_bias_to_set():
    x, y = data()
    with pytest.raises(tw.SetupError, match="nothing was set"):
        tw.init_output_bias(nn.Sequential(classifier(), nn.Softmax(dim=1)), TensorDataset(x, y))


# -- progressive resizing ------------------------------------------------------------------------


def test_progressive_resize_schedule_and_batches():
    resize = tw.ProgressiveResize(sizes=[4, 6, 8], epochs=[1, 2, 3])
    assert [resize.size_at(e) for e in range(8)] == [4, 6, 6, 8, 8, 8, 8, 8]
    assert [tw.ProgressiveResize([4, 8], epochs=5).size_at(e) for e in range(5)] == [4, 4, 8, 8, 8]
    images = torch.randn(2, 3, 8, 8)
    resize.on_epoch_start(0)
    expected = F.interpolate(images, size=(4, 4), mode="bilinear", antialias=True)
    torch.testing.assert_close(resize(images), expected)
    resize.on_epoch_start(5)
    assert resize(images) is images  # already the size: untouched
    resize.on_epoch_start(1)
    x, y = resize.collate([(images[0], 0), (images[1], 1)])
    assert x.shape == (2, 3, 6, 6) and torch.equal(y, torch.tensor([0, 1]))
    with pytest.raises(tw.SetupError, match="one positive int per size"):
        tw.ProgressiveResize([4, 8], epochs=[1])
    with pytest.raises(tw.SetupError, match=r"batch of images"):
        resize(torch.randn(3, 8))


# -- train + val ----------------------------------------------------------------------------------


def test_train_plus_val_trains_on_both_without_validation():
    x, y = data(n=50)
    train, val = TensorDataset(x[:40], y[:40]), TensorDataset(x[40:], y[40:])
    setup = tw.Setup(model=classifier(), train=DataLoader(train, batch_size=8, shuffle=True),
                     val=val, loss=nn.CrossEntropyLoss())  # fmt: skip
    final = tw.train_plus_val(setup)
    assert final.val is None and setup.val is val  # the original is left as it was
    assert len(final.train_dataset) == 50 and final.effective_batch_size == 8
    assert isinstance(final.train.sampler, torch.utils.data.RandomSampler)
    assert torch.equal(final.train_dataset[45][0], x[45])
    with pytest.raises(tw.SetupError, match="no validation data"):
        tw.train_plus_val(final)
