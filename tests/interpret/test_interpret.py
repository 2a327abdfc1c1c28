"""tw.interpret on small trained models: each method against a computation over every
prediction by hand (a full sort, sklearn's confusion matrix and scores, autograd)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw
from trainwise.interpret import activations
from trainwise.interpret.passes import PassCounts, batches, stream

from .conftest import blobs, mlp


@pytest.fixture(scope="module")
def interp(classifier):
    model, val = classifier
    return tw.interpret(model, val, nn.CrossEntropyLoss(), k=20)


def _everything(model, val):
    x, y = val.tensors
    with torch.no_grad():
        logits = model(x)
    return x, y, logits


def test_top_losses_are_the_largest_per_sample_cross_entropies(interp, classifier):
    x, y, logits = _everything(*classifier)
    losses = F.cross_entropy(logits, y, reduction="none")
    order = torch.argsort(losses, descending=True)[:20].tolist()
    got = interp.top_losses()
    assert [t.index for t in got] == order
    probs = logits.softmax(1)
    for t in got[:5]:
        assert t.label == int(y[t.index]) and t.pred == int(logits[t.index].argmax())
        assert t.prob == pytest.approx(float(probs[t.index].max()), rel=1e-5)
        assert t.loss == pytest.approx(float(losses[t.index]), rel=1e-5)
    assert interp.top_losses(3) == got[:3]
    assert interp.mean_loss == pytest.approx(float(losses.mean()), rel=1e-5)


def test_confusion_and_most_confused_match_sklearn(interp, classifier):
    _, y, logits = _everything(*classifier)
    expected = confusion_matrix(y.numpy(), logits.argmax(1).numpy(), labels=range(4))
    assert interp.confusion() == expected.tolist()
    off = expected.copy()
    np.fill_diagonal(off, 0)
    pairs = interp.most_confused()
    assert sum(p.count for p in pairs) == off.sum() > 0
    assert pairs[0].count == off.max()
    assert all(off[p.actual, p.predicted] == p.count for p in pairs)
    assert [p.count for p in pairs] == sorted((p.count for p in pairs), reverse=True)


def test_per_class_scores_match_sklearn(interp, classifier):
    _, y, logits = _everything(*classifier)
    precision, recall, f1, support = precision_recall_fscore_support(
        y.numpy(), logits.argmax(1).numpy(), labels=range(4), zero_division=0
    )
    scores = interp.per_class()
    assert list(scores) == ["0", "1", "2", "3"]
    for c in range(4):
        s = scores[str(c)]
        assert (s.precision, s.recall, s.f1) == pytest.approx(
            (precision[c], recall[c], f1[c]), abs=1e-6)  # fmt: skip
        assert s.support == support[c]


def test_the_json_contract(interp):
    d = interp.to_dict()
    for key in ("top_losses", "confusion", "most_confused", "per_class", "calibration",
                "label_issues"):  # fmt: skip
        assert key in d
    assert set(d["top_losses"][0]) == {"index", "label", "pred", "prob", "loss"}
    assert set(d["calibration"]) == {"ece", "bins"} and len(d["calibration"]["bins"]) == 15
    assert d["label_issues"] is None  # not asked for
    assert set(d["per_class"]["0"]) == {"precision", "recall", "f1", "support"}


def test_a_shuffling_dataloader_is_read_in_order(classifier):
    model, val = classifier
    shuffled = DataLoader(val, batch_size=7, shuffle=True)
    a = tw.interpret(model, shuffled, nn.CrossEntropyLoss()).top_losses()
    b = tw.interpret(model, val, nn.CrossEntropyLoss()).top_losses()
    assert [t.index for t in a] == [t.index for t in b]


def _footprint(counts: PassCounts) -> int:
    """Numbers the pass holds: heap entries, bin and metric state elements."""
    states = sum(v.numel() for m in counts.metrics.values()
                 for v in m.metric_state.values() if isinstance(v, torch.Tensor))  # fmt: skip
    lists = sum(len(v) for m in counts.metrics.values()
                for v in m.metric_state.values() if isinstance(v, list))  # fmt: skip
    bins = counts.calibration.count.numel() * 3
    return len(counts.top.heap) + states + lists + bins


def test_the_pass_keeps_as_much_for_10x_the_samples(classifier):
    """O(k + classes² + bins): the same footprint for 300 and 3000 samples."""
    from trainwise.context import StaticContext
    from trainwise.interpret.losses import per_sample_loss

    model, _ = classifier
    sizes = []
    for n in (300, 3000):
        x, y = blobs(n, seed=3)
        setup = tw.Setup(model=model, train=TensorDataset(x, y), loss=nn.CrossEntropyLoss())
        loss_fn, _ = per_sample_loss(setup.loss, None, "classification")
        counts = stream(setup, model, batches(setup, setup.train_dataset, "train"), loss_fn,
                        "classification", 4, "raw", k=8)  # fmt: skip
        assert counts.samples == n
        sizes.append(_footprint(counts))
        assert StaticContext  # imported for the setup's device default only
    assert sizes[0] == sizes[1]


def test_regression_gives_residuals_and_says_there_is_no_confusion(regressor):
    model, val = regressor
    interp = tw.interpret(model, val, nn.MSELoss())
    x, y = val.tensors
    with torch.no_grad():
        r = (model(x) - y).squeeze(1).double()
    residuals = interp.residuals()
    assert residuals.count == len(y)
    assert residuals.mae == pytest.approx(float(r.abs().mean()), rel=1e-5)
    assert residuals.mean == pytest.approx(float(r.mean()), rel=1e-4, abs=1e-6)
    top = interp.top_losses(1)[0]
    assert top.index == int(r.abs().argmax()) and top.pred == pytest.approx(
        float(model(x[top.index]).detach())
    )
    with pytest.raises(tw.SetupError, match="regression.*residuals"):
        interp.confusion()
    assert any("regression" in n and "residuals" in n for n in interp.notes)
    d = interp.to_dict()
    assert d["confusion"] is None and d["calibration"] is None and d["residuals"]["count"] == 100


def test_max_activating_matches_every_activation_by_hand(interp, classifier):
    model, val = classifier
    x, _ = val.tensors
    with torch.no_grad():
        hidden = model[0](x)  # (N, 16): the first Linear's outputs
    found = interp.max_activating("0", k=5, units=[2, 7])
    for unit in (2, 7):
        expected = torch.argsort(hidden[:, unit], descending=True)[:5].tolist()
        assert [a.index for a in found[unit]] == expected
        assert found[unit][0].value == pytest.approx(float(hidden[:, unit].max()))


def test_an_unknown_layer_lists_the_layers(interp):
    with pytest.raises(tw.SetupError, match=r"no layer named 'fc9'.*layers are: 0, 1, 2"):
        interp.max_activating("fc9")
    with pytest.raises(tw.SetupError, match="units 0..15"):
        interp.max_activating("0", units=[16])


def test_attributions_are_captums_saliency_of_the_predicted_class(interp, classifier):
    model, val = classifier
    maps = interp.attributions(k=3)
    for a in maps:
        x = val.tensors[0][a.index : a.index + 1].clone().requires_grad_(True)
        model(x)[0, a.target].backward()
        assert a.target == interp.top_losses(3)[maps.index(a)].pred
        np.testing.assert_allclose(a.values, x.grad[0].abs().numpy(), rtol=1e-5, atol=1e-7)
    ig = interp.attributions(k=1, method="integrated-gradients")[0]
    assert ig.values.shape == (8,)
    with pytest.raises(tw.SetupError, match="method='gradcam'"):
        interp.attributions(k=1, method="gradcam")


def test_distributions_per_weight_layer(interp):
    weights, outputs = interp.weight_distributions(), interp.activation_distributions()
    assert set(weights) == set(outputs) == {"0", "2"}
    assert sum(weights["0"]["counts"]) == 8 * 16
    assert sum(outputs["2"]["counts"]) == 200 * 4  # the 200 samples' 4 logits
    assert activations.ACTIVATION_SAMPLES >= 200


def test_interpret_from_a_setup_and_a_checkpoint(tmp_path, classifier):
    model, val = classifier
    torch.save(model.state_dict(), tmp_path / "best.pt")
    setup = tw.Setup(model=mlp, train=val, val=val, loss=nn.CrossEntropyLoss())
    interp = tw.interpret(setup, checkpoint=tmp_path / "best.pt")
    direct = tw.interpret(model, val, nn.CrossEntropyLoss())
    assert interp.confusion() == direct.confusion()
    assert [t.index for t in interp.top_losses()] == [t.index for t in direct.top_losses()]
    assert interp.subject.where == "val"


def test_interpret_without_a_validation_set_reads_fits_held_out_split(classifier):
    from trainwise.train.data import with_validation

    model, val = classifier
    setup = tw.Setup(model=mlp, train=val, loss=nn.CrossEntropyLoss())
    interp = tw.interpret(setup)
    held_out = with_validation(setup, 0)[0].val_dataset
    assert interp.samples == len(held_out) == 40
    assert any("held out by fit" in n for n in interp.notes)
    assert any("untrained" in n for n in interp.notes)
