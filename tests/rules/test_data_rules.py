import pytest
import torch
from torch import nn

from builders import blobs, cnn, images, mlp, setup, static
from helpers import assert_clean, assert_fires, assert_silent

LABELS = "labels-out-of-range"
NORMALIZED = "inputs-not-normalized"


@pytest.mark.fires(LABELS)
def test_one_based_labels_are_named_with_the_first_bad_sample():
    x, y = blobs(classes=4)
    y = y + 1  # 1..4 with 4 outputs
    first_bad = int((y == 4).nonzero()[0])
    report = static(setup(mlp, x, y))
    finding = assert_fires(report, LABELS, where=f"train[{first_bad}]", severity="error")
    assert finding.evidence["label_max"] == 4 and finding.evidence["num_outputs"] == 4
    assert "1-based" in finding.fix


@pytest.mark.fires(LABELS)
def test_negative_label_in_validation_set():
    x, y = blobs()
    vy = y.clone()
    vy[7] = -1
    report = static(setup(mlp, x, y, val=(x, vy)))
    assert_fires(report, LABELS, where="val[7]")
    assert_silent(
        [f for f in report.findings if f.where and str(f.where).startswith("train")], LABELS
    )


@pytest.mark.fires(LABELS)
def test_head_too_small_for_the_labels():
    x, y = blobs(classes=6)
    report = static(setup(lambda: mlp(classes=4), x, y))
    finding = assert_fires(report, LABELS)
    assert "6 outputs" in finding.fix


@pytest.mark.silent(LABELS)
def test_labels_in_range_and_ignore_index_are_silent():
    x, y = blobs()
    y[3] = -100  # CrossEntropyLoss's ignore_index is allowed
    assert_silent(static(setup(mlp, x, y)), LABELS)


@pytest.mark.fires(NORMALIZED)
def test_raw_pixels_give_the_per_channel_statistics():
    x, y = images(channels=3)
    raw = (x * torch.tensor([60.0, 50.0, 40.0])[:, None, None] + 120).clamp(0, 255)
    report = static(setup(cnn, raw, y))
    finding = assert_fires(report, NORMALIZED, severity="warning")
    mean = raw.mean(dim=(0, 2, 3))
    assert finding.evidence["mean"] == pytest.approx(mean.tolist(), rel=1e-3)
    assert finding.where.startswith("input channel")


@pytest.mark.fires(NORMALIZED)
def test_one_tabular_feature_on_a_large_scale():
    x, y = blobs()
    x[:, 5] = x[:, 5] * 1000 + 50_000  # e.g. an income column left in dollars
    finding = assert_fires(static(setup(mlp, x, y)), NORMALIZED, where="input feature 5")
    assert finding.evidence["mean"][5] == pytest.approx(50_000, rel=0.01)


@pytest.mark.silent(NORMALIZED)
def test_standardized_and_unit_interval_inputs_are_silent():
    x, y = images()
    assert_silent(static(setup(cnn, x, y)), NORMALIZED)
    assert_silent(static(setup(cnn, torch.rand_like(x), y)), NORMALIZED)  # [0, 1] pixels


@pytest.mark.silent(NORMALIZED)
def test_token_ids_are_not_inputs_to_normalize():
    tokens = torch.randint(0, 100, (64, 12))
    model = lambda: nn.Sequential(nn.Embedding(100, 8), nn.Flatten(), nn.Linear(96, 4))  # noqa: E731
    assert_silent(static(setup(model, tokens, torch.arange(64) % 4)), NORMALIZED)


def test_healthy_setups_are_clean():
    x, y = blobs()
    assert_clean(static(setup(mlp, x, y, val=blobs(seed=1))))
    xi, yi = images()
    assert_clean(static(setup(cnn, xi, yi)))
