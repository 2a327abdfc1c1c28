"""Segmentation, multilabel and a tw.fit result: the pass on other tasks and sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw
from trainwise.interpret.page import build_page
from trainwise.report.interpret_html import render

from .conftest import blobs, mlp


def test_segmentation_counts_pixels_and_draws_image_truth_prediction_error():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 1, 6, 6, generator=g)
    y = (x[:, 0] > 0.3).long() + (x[:, 0] > 1.0).long()  # (N, 6, 6): 3 classes per pixel
    y[0, 0, 0] = -100  # an ignored pixel
    torch.manual_seed(0)
    model = nn.Conv2d(1, 3, 1)
    interp = tw.interpret(model, TensorDataset(x, y), nn.CrossEntropyLoss(), task="segmentation")
    with torch.no_grad():
        predicted = model(x).argmax(1)
    valid = y != -100
    expected = np.bincount(
        (y[valid] * 3 + predicted[valid]).numpy(), minlength=9
    ).reshape(3, 3)
    assert interp.confusion() == expected.tolist()
    assert interp.form == "segmentation"
    top = interp.top_losses(1)[0]
    assert top.label is None and top.pred is None and 0 < top.prob <= 1
    page = render(build_page(interp))
    assert '<section id="top-losses">' in page and '<section id="confusion">' in page


def test_multilabel_scores_per_label_match_sklearn_and_there_is_no_confusion_matrix():
    x, _ = blobs(200, classes=3, features=6)
    y = torch.stack([x[:, 0] > 0.5, x[:, 1] > 0.5, x[:, 2] > 2], dim=1).float()
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    interp = tw.interpret(model, TensorDataset(x, y), nn.BCEWithLogitsLoss())
    assert interp.task == "multilabel"
    with torch.no_grad():
        predicted = (model(x).sigmoid() > 0.5).int().numpy()
    precision, recall, f1, support = precision_recall_fscore_support(
        y.int().numpy(), predicted, average=None, zero_division=0
    )
    scores = interp.per_class()
    for label in range(3):
        got = scores[str(label)]
        assert (got.precision, got.recall, got.f1) == pytest.approx(
            (precision[label], recall[label], f1[label]), abs=1e-6
        )
        assert got.support == support[label]  # the label's positives
    with pytest.raises(tw.SetupError, match="multilabel"):
        interp.confusion()
    assert interp.to_dict()["confusion"] is None


def test_a_fit_result_with_its_setup_and_without_one(tmp_path):
    x, y = blobs(160, classes=3)
    setup = tw.Setup(model=lambda: mlp(8, 3), train=TensorDataset(x[:120], y[:120]),
                     val=TensorDataset(x[120:], y[120:]), loss=nn.CrossEntropyLoss())  # fmt: skip
    result = tw.fit(setup, epochs=1, recipe=tw.Recipe(lr=1e-2), record=False, verbose=False)
    interp = tw.interpret(result, setup=setup)
    direct = tw.interpret(result.model, setup.val, nn.CrossEntropyLoss())
    assert interp.confusion() == direct.confusion() and interp.samples == 40
    assert interp.subject.recipe.lr == 1e-2
    with pytest.raises(tw.SetupError, match=r"give the Setup \(tw.interpret\(result, setup\)\)"):
        tw.interpret(result)


@pytest.mark.parametrize(
    ("shape", "dtype", "task", "form"),
    [
        ((1, 8, 8), torch.float32, "classification", "image"),
        ((3, 32, 32), torch.float32, "classification", "image"),
        ((28, 28), torch.float32, "classification", "image"),
        ((40,), torch.float32, "classification", "signal"),
        ((1, 40), torch.float32, "classification", "signal"),
        ((16, 4), torch.float32, "classification", "sequence"),
        ((30,), torch.float32, "regression", "table"),
        ((12,), torch.long, "classification", "tokens"),
        ((1, 8, 8), torch.float32, "segmentation", "segmentation"),
    ],
)
def test_the_form_a_sample_is_drawn_in(shape, dtype, task, form):
    from trainwise.interpret.forms import input_form

    assert input_form(torch.zeros(shape, dtype=dtype), task) == form
