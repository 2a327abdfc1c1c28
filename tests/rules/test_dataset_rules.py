import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import trainwise as tw
from builders import blobs, images, loader, mlp, setup, static
from helpers import assert_fires, assert_silent
from trainwise.stages.static import StaticStage

NONFINITE = "nonfinite-inputs"
IMBALANCE = "class-imbalance"
OVERLAP = "train-val-overlap"
VAL_AUG = "val-augmented"
UNSHUFFLED = "unshuffled-train"
TINY_VAL = "tiny-validation"
DUPLICATES = "duplicate-samples"


@pytest.mark.fires(NONFINITE)
def test_nan_features_are_named():
    x, y = blobs()
    x[[5, 9], 3] = float("nan")
    x[20, 7] = float("inf")
    finding = assert_fires(static(setup(mlp, x, y)), NONFINITE, where="train[5]", severity="error")
    assert finding.evidence["samples"] == 3 and finding.evidence["columns"] == [3, 7]
    assert finding.evidence["nan"] == 2 and finding.evidence["inf"] == 1


@pytest.mark.fires(NONFINITE)
def test_nan_regression_target_in_validation():
    x, _ = blobs()
    y = torch.randn(len(x), 1)
    vy = y.clone()
    vy[4] = float("nan")
    report = static(setup(lambda: mlp(classes=1), x, y, loss=nn.MSELoss(), val=(x, vy)))
    assert_fires(report, NONFINITE, where="val[4]")


@pytest.mark.silent(NONFINITE)
def test_finite_data_is_silent():
    x, y = blobs()
    assert_silent(static(setup(mlp, x, y, val=blobs(seed=1))), NONFINITE)


def imbalanced(minority=10):
    x, y = blobs(n=512, classes=2)
    keep = (y == 0) | (torch.cumsum((y == 1).long(), 0) <= minority)
    return x[keep], y[keep]


@pytest.mark.fires(IMBALANCE)
def test_imbalance_gives_the_class_weights():
    x, y = imbalanced()
    finding = assert_fires(static(setup(lambda: mlp(classes=2), x, y)), IMBALANCE, where="class 1")
    counts = torch.bincount(y)
    assert finding.evidence["counts"] == counts.tolist()
    expected = (len(y) / (2 * counts.double())).tolist()  # scikit-learn's "balanced"
    assert finding.evidence["class_weights"] == pytest.approx(expected, rel=1e-3)


@pytest.mark.silent(IMBALANCE)
def test_balanced_and_already_weighted_losses_are_silent():
    x, y = blobs()
    assert_silent(static(setup(mlp, x, y)), IMBALANCE)
    xi, yi = imbalanced()
    weighted = nn.CrossEntropyLoss(weight=tw.class_weights(yi))
    assert_silent(static(setup(lambda: mlp(classes=2), xi, yi, loss=weighted)), IMBALANCE)


@pytest.mark.fires(OVERLAP)
def test_validation_samples_copied_from_train():
    x, y = blobs()
    vx, vy = blobs(n=100, seed=1)
    vx[:10], vy[:10] = x[50:60], y[50:60]
    finding = assert_fires(static(setup(mlp, x, y, val=(vx, vy))), OVERLAP, where="val[0]")
    assert finding.evidence["overlapping"] == 10
    assert finding.evidence["pairs"][:2] == [[0, 50], [1, 51]]


@pytest.mark.silent(OVERLAP)
def test_disjoint_splits_are_silent():
    x, y = blobs()
    assert_silent(static(setup(mlp, x, y, val=blobs(n=100, seed=1))), OVERLAP)


class Noisy(Dataset):
    def __init__(self, x, y, noise):
        self.x, self.y, self.noise = x, y, noise

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + self.noise * torch.randn_like(self.x[i]), self.y[i]


@pytest.mark.fires(VAL_AUG)
def test_random_transform_on_validation():
    x, y = blobs()
    s = tw.Setup(
        model=mlp, train=TensorDataset(x, y), val=Noisy(x[:64], y[:64], 0.1),
        loss=nn.CrossEntropyLoss(),
    )  # fmt: skip
    state = torch.random.get_rng_state()
    finding = assert_fires(static(s), VAL_AUG, where="val[0]")
    assert finding.evidence["max_abs_difference"] > 0
    assert torch.equal(torch.random.get_rng_state(), state)  # the user's stream is untouched


@pytest.mark.silent(VAL_AUG)
def test_deterministic_validation_is_silent():
    x, y = blobs()
    s = tw.Setup(
        model=mlp, train=TensorDataset(x, y), val=Noisy(x[:64], y[:64], 0.0),
        loss=nn.CrossEntropyLoss(),
    )  # fmt: skip
    assert_silent(static(s), VAL_AUG)


@pytest.mark.fires(UNSHUFFLED)
def test_sorted_data_without_shuffle():
    x, y = blobs()
    order = torch.argsort(y, stable=True)
    s = tw.Setup(
        model=mlp, train=loader(x[order], y[order], batch_size=32), loss=nn.CrossEntropyLoss()
    )
    finding = assert_fires(static(s), UNSHUFFLED, where="train loader", severity="warning")
    assert finding.evidence["label_changes"] == 3  # 4 classes in sorted blocks
    assert "grouped by label" in finding.message


@pytest.mark.fires(UNSHUFFLED)
def test_fixed_order_even_when_mixed_and_sorted_plain_dataset_is_info():
    x, y = blobs()
    s = tw.Setup(model=mlp, train=loader(x, y, batch_size=32), loss=nn.CrossEntropyLoss())
    finding = assert_fires(static(s), UNSHUFFLED)
    assert "grouped" not in finding.message
    order = torch.argsort(y, stable=True)
    assert_fires(static(setup(mlp, x[order], y[order])), UNSHUFFLED, severity="info")


@pytest.mark.silent(UNSHUFFLED)
def test_shuffled_loader_and_unsorted_dataset_are_silent():
    x, y = blobs()
    s = tw.Setup(
        model=mlp, train=loader(x, y, batch_size=32, shuffle=True), loss=nn.CrossEntropyLoss()
    )
    assert_silent(static(s), UNSHUFFLED)
    assert_silent(static(setup(mlp, x, y)), UNSHUFFLED)


@pytest.mark.fires(TINY_VAL)
def test_forty_validation_samples():
    x, y = blobs()
    finding = assert_fires(static(setup(mlp, x, y, val=blobs(n=40, seed=1))), TINY_VAL)
    assert finding.evidence["samples_needed"]["+-1%"] == 9604  # 1.96^2 * 0.25 / 0.01^2
    assert finding.evidence["margin_95"] == pytest.approx(1.96 * (0.25 / 40) ** 0.5)


@pytest.mark.fires(TINY_VAL)
def test_no_validation_set_is_an_info_with_a_hold_out_size():
    x, y = blobs()
    finding = assert_fires(static(setup(mlp, x, y)), TINY_VAL, severity="info")
    assert "51 of the 256" in finding.fix


@pytest.mark.silent(TINY_VAL)
def test_a_few_hundred_validation_samples_are_silent():
    x, y = blobs()
    assert_silent(static(setup(mlp, x, y, val=blobs(n=200, seed=1))), TINY_VAL)


@pytest.mark.fires(DUPLICATES)
def test_training_set_with_copies_and_conflicting_labels():
    x, y = blobs()
    x2, y2 = torch.cat([x, x[:40]]), torch.cat([y, (y[:40] + 1) % 4])  # copies, other labels
    finding = assert_fires(static(setup(mlp, x2, y2)), DUPLICATES, where="train[0]")
    assert finding.evidence["duplicates"] == 40
    assert finding.evidence["conflicting_label_groups"] == 40


@pytest.mark.fires(DUPLICATES)
def test_duplicates_estimated_from_a_sample():
    x, y = blobs(n=1000)
    x2, y2 = torch.cat([x, x]), torch.cat([y, y])  # every sample twice
    report = tw.check(setup(mlp, x2, y2), sample=500, stages=[StaticStage()])
    finding = assert_fires(report, DUPLICATES)
    assert 0.3 < finding.evidence["estimated_share"] <= 1.0


@pytest.mark.silent(DUPLICATES)
def test_unique_samples_are_silent():
    x, y = images()
    assert_silent(
        static(setup(lambda: nn.Sequential(nn.Flatten(), nn.LazyLinear(4)), x, y)), DUPLICATES
    )


class TwoInputs(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return (self.x[i], self.x[i] * 2), self.y[i]


class TwoInputNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(16, 8), nn.Linear(16, 8), nn.Linear(16, 4)

    def forward(self, inputs):
        a, b = inputs
        return self.out(torch.cat([self.a(a), self.b(b)], dim=1))


@pytest.mark.fires(OVERLAP)
def test_overlap_between_multi_input_samples():
    x, y = blobs()
    s = tw.Setup(
        model=TwoInputNet, train=TwoInputs(x, y), val=TwoInputs(x[:50], y[:50]),
        loss=nn.CrossEntropyLoss(),
    )  # fmt: skip
    assert assert_fires(static(s), OVERLAP).evidence["overlapping"] == 50


class ShuffledBatches(torch.utils.data.Sampler):
    """A custom batch sampler (e.g. bucketing by length) that shuffles by itself."""

    def __init__(self, n, batch):
        self.n, self.batch = n, batch

    def __len__(self):
        return self.n // self.batch

    def __iter__(self):
        order = torch.randperm(self.n).tolist()
        return iter([order[i : i + self.batch] for i in range(0, self.n, self.batch)])


@pytest.mark.silent(UNSHUFFLED)
def test_custom_batch_sampler_and_subset_random_sampler_are_silent():
    x, y = blobs()
    ds = TensorDataset(x, y)
    for train in (
        DataLoader(ds, batch_sampler=ShuffledBatches(len(x), 32)),
        DataLoader(ds, batch_size=32, sampler=torch.utils.data.SubsetRandomSampler(range(200))),
    ):
        s = tw.Setup(model=mlp, train=train, loss=nn.CrossEntropyLoss())
        assert_silent(static(s), UNSHUFFLED)
