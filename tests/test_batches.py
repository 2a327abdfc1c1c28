"""Batches of any common shape, model outputs as models give them, and models that compute
their own loss (trainwise/batches.py and the Setup's inputs=, target=, split=, output=, loss=None).

The reference for "the check sees the right tensors" is the same data handed over as plain
(x, y) pairs: the findings must be the same.
"""

from __future__ import annotations

import dataclasses
from collections import UserDict

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

import trainwise as tw
from builders import blobs, mlp, static
from helpers import assert_fires, speed_unjudged
from trainwise.batches import BatchFormat
from trainwise.data import Inputs
from trainwise.stages.init_loss import InitLossStage
from trainwise.stages.overfit_batch import OverfitBatchStage
from trainwise.stages.static import StaticStage
from trainwise.steps import TrainingStep


class DictData(Dataset):
    """{"x": ..., "labels": ...} items (or other keys), from tensors."""

    def __init__(self, x, y, x_key="x", y_key="labels", **more):
        self.x, self.y, self.keys, self.more = x, y, (x_key, y_key), more

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        item = {self.keys[0]: self.x[i], self.keys[1]: self.y[i]}
        return {**item, **{k: v[i] for k, v in self.more.items()}}


class XModel(nn.Module):
    """forward(self, x): takes the dict's "x" by name."""

    def __init__(self, tail: nn.Module | None = None):
        super().__init__()
        self.net = mlp(tail=tail)

    def forward(self, x):
        return self.net(x)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 8), nn.Linear(3, 8)
        self.head = nn.Linear(16, 4)

    def forward(self, image, meta):
        return self.head(torch.cat([self.a(image).relu(), self.b(meta).relu()], dim=1))


class OwnLoss(nn.Module):
    """A model that computes its own loss when given labels, returning a dict (HF style)."""

    def __init__(self, softmax: bool = False):
        super().__init__()
        self.net, self.softmax = mlp(), softmax

    def forward(self, x, labels=None):
        logits = self.net(x)
        out = {"logits": logits}
        if labels is not None:
            scores = logits.softmax(dim=1) if self.softmax else logits
            out["loss"] = F.cross_entropy(scores, labels)
        return out


def _slugs(report):
    return sorted({f.rule for f in report.findings})


# -- splitting batches --------------------------------------------------------------------------


def test_the_forms_of_batch_split_into_input_and_target():
    x, y = torch.randn(4, 16), torch.arange(4)
    fmt = BatchFormat()
    assert fmt.split((x, y), 0, "train") == (x, y)
    inputs, target = fmt.split({"input_ids": x, "attention_mask": x, "labels": y}, 0, "train")
    assert isinstance(inputs, Inputs) and list(inputs.kwargs) == ["input_ids", "attention_mask"]
    assert target is y
    # BatchEncoding is a UserDict, not a dict; a dataclass batch is read by its fields.
    assert BatchFormat().split(UserDict({"x": x, "label": y}), 0, "train")[1] is y

    @dataclasses.dataclass
    class Batch:
        pixels: torch.Tensor
        target: torch.Tensor

    inputs, target = BatchFormat().split(Batch(x, y), 0, "train")
    assert target is y and inputs.kwargs == {"pixels": x}
    inputs, target = BatchFormat(target=-1).split((x, x[:, :3], y), 0, "train")
    assert target is y and len(inputs.args) == 2
    named = BatchFormat(inputs=("b",), target="t").split({"a": x, "b": x, "t": y}, 0, "train")
    assert list(named[0].kwargs) == ["b"] and named[1] is y


def test_a_model_computing_its_own_loss_gets_the_target_by_keyword():
    x, y = torch.randn(4, 16), torch.arange(4)
    inputs, _ = BatchFormat(own_loss=True).split({"x": x, "labels": y}, 0, "train")
    assert inputs.kwargs["labels"] is y and inputs.target_key == "labels"
    assert [name for name, _ in inputs.parts()] == ["x"]  # the rules see the input alone
    inputs, _ = BatchFormat(own_loss=True).split((x, y), 0, "train")
    assert inputs.args == (x,) and inputs.kwargs["labels"] is y


@pytest.mark.parametrize(
    ("fmt", "batch", "message"),
    [
        (BatchFormat(), {"x": 1, "z": 2}, r"keys \['x', 'z'\]; none holds the target.*target="),
        (BatchFormat(target="y"), {"x": 1, "z": 2}, r"looked for 'y'"),
        (BatchFormat(inputs=("img",)), {"x": 1, "labels": 2}, r"no key 'img'.*keys are"),
        (BatchFormat(), (1, 2, 3), r"tuple of 3 elements.*Setup\(target=-1\)"),
        (BatchFormat(target=5), (1, 2, 3), r"target=5.*3 elements"),
        (BatchFormat(split_fn=lambda b: b), (1, 2), r"split=.*expected \(model_args"),
        (BatchFormat(), "text", r"train item 7 is a str; expected a pair"),
    ],
)
def test_a_batch_that_cannot_be_split_is_named_with_what_was_expected(fmt, batch, message):
    with pytest.raises(tw.SetupError, match=message):
        fmt.split(batch, 7, "train")


def test_inputs_reach_the_model_by_name_or_by_position():
    image, meta = torch.randn(4, 16), torch.randn(4, 3)
    model = TwoInputs()
    expected = model(image, meta)
    by_name = BatchFormat().split({"image": image, "meta": meta, "label": torch.zeros(4)}, 0, "t")
    assert torch.equal(BatchFormat().call(model, by_name[0]), expected)
    # Keys that are not forward's names, in the order the setup gives them.
    keyed = {"pixels": image, "extra": meta, "label": torch.zeros(4)}
    ordered = BatchFormat(inputs=("pixels", "extra"))
    assert torch.equal(ordered.call(model, ordered.split(keyed, 0, "t")[0]), expected)
    with pytest.raises(tw.SetupError, match=r"forward\(image, meta\) takes no argument named"):
        BatchFormat().call(model, BatchFormat().split(keyed, 0, "t")[0])
    # ((a, b), y): a tuple of inputs is unpacked for forward(self, a, b) ...
    assert torch.equal(BatchFormat().call(model, (image, meta)), expected)
    # ... and passed whole to forward(self, pair).
    pair_model = nn.Identity()
    assert BatchFormat().call(pair_model, (image, meta)) == (image, meta)


def test_the_prediction_is_found_in_what_the_model_returns():
    from transformers.modeling_outputs import SequenceClassifierOutput

    logits = torch.randn(4, 3)
    loss = torch.tensor(1.5)
    fmt = BatchFormat()
    assert fmt.prediction(logits) is logits
    assert fmt.prediction(SequenceClassifierOutput(loss=loss, logits=logits)) is logits
    assert fmt.prediction({"loss": loss, "scores": logits}) is logits  # the first non-loss tensor
    assert fmt.prediction((logits, loss)) == (logits, loss)  # a tuple stays whole for the loss
    assert BatchFormat(output=0).prediction((logits, loss)) is logits
    assert BatchFormat(output="scores").prediction({"scores": logits}) is logits
    assert BatchFormat(output=lambda o: o[1]).prediction((loss, logits)) is logits
    with pytest.raises(tw.SetupError, match=r"Setup\(output='logit'\) could not be read"):
        BatchFormat(output="logit").prediction({"logits": logits})


# -- the check on dict batches sees what it sees on (x, y) pairs --------------------------------


def _unnormalized():
    x, y = blobs()
    return x * 300 + 1000, y


def _with_nan():
    x, y = blobs()
    x[3, 2] = float("nan")
    return x, y


@pytest.mark.parametrize(
    ("data", "tail", "expected"),
    [
        (blobs, None, []),
        (_unnormalized, None, ["inputs-not-normalized"]),
        (_with_nan, None, ["nonfinite-inputs"]),
        (blobs, nn.Softmax(dim=1), ["softmax-before-loss"]),
    ],
)
def test_dict_batches_get_the_same_findings_as_pairs(data, tail, expected):
    x, y = data()
    pairs = static(tw.Setup(model=lambda: XModel(tail), train=TensorDataset(x, y),
                            loss=nn.CrossEntropyLoss()))  # fmt: skip
    dicts = static(tw.Setup(model=lambda: XModel(tail), train=DictData(x, y),
                            loss=nn.CrossEntropyLoss()))  # fmt: skip
    assert _slugs(dicts) == _slugs(pairs)
    for slug in expected:
        assert_fires(dicts, slug)


def test_findings_on_one_input_of_several_name_its_key():
    x, y = blobs()
    meta = torch.randn(len(y), 3) * 500 + 2000  # a raw price column next to a clean input
    meta[9, 1] = float("inf")
    s = tw.Setup(
        model=TwoInputs,
        train=DictData(x, y, x_key="image", y_key="label", meta=meta),
        loss=nn.CrossEntropyLoss(),
    )
    report = static(s)
    scale = assert_fires(report, "inputs-not-normalized")
    assert "input 'meta'" in scale.message and scale.evidence["input"] == "meta"
    nan = assert_fires(report, "nonfinite-inputs", where="train[9]")
    assert "input 'meta'" in nan.message
    assert not [f for f in report.findings if "input 'image'" in f.message]


# -- models that compute their own loss ---------------------------------------------------------


def test_a_model_computing_its_own_loss_goes_through_the_protocol():
    x, y = blobs()
    s = tw.Setup(model=OwnLoss, train=DictData(x, y), loss=None, batch_size=32)
    stages = [StaticStage(), InitLossStage(), OverfitBatchStage()]
    report = tw.check(s, stages=stages, quick=True)
    assert [r.status for r in report.stages] == ["pass", "pass", "pass"]
    assert "expected 1.39" in report.stages[1].summary  # log(4): the kind was told by value


def test_a_softmax_inside_the_models_own_loss_is_found_by_its_value():
    x, y = blobs()
    s = tw.Setup(model=lambda: OwnLoss(softmax=True), train=DictData(x, y), loss=None)
    finding = assert_fires(static(s), "softmax-before-loss")
    assert finding.where == "the model's own loss" and finding.evidence["loss_floor"] > 0.7


def test_a_custom_loss_that_applies_softmax_is_found_too():
    x, y = blobs()
    s = tw.Setup(model=mlp, train=TensorDataset(x, y),
                 loss=lambda out, t: F.cross_entropy(out.softmax(dim=1), t))  # fmt: skip
    assert_fires(static(s), "softmax-before-loss")


def test_a_model_without_a_loss_of_its_own_needs_a_loss_function():
    x, y = blobs()
    s = tw.Setup(model=mlp, train=TensorDataset(x, y), loss=None)
    with pytest.raises(
        tw.SetupError, match=r"takes no such argument.*Setup\(loss=nn.CrossEntropyLoss"
    ):
        static(s)


def test_a_training_step_takes_the_batch_put_back_together():
    x, y = blobs()
    seen = []

    def step(model, batch):
        seen.append(sorted(batch))
        return F.cross_entropy(model(batch["x"]), batch["labels"])

    s = tw.Setup(model=XModel, train=DictData(x, y), loss=TrainingStep(step, "my_step"))
    report = tw.check(s, stages=[StaticStage(), InitLossStage()], quick=True)
    assert [r.status for r in report.stages] == ["pass", "pass"]
    assert seen and all(keys == ["labels", "x"] for keys in seen)


def test_split_cannot_be_combined_with_a_training_step_or_named_keys():
    x, y = blobs()
    split = lambda b: ((b[0],), {}, b[1])  # noqa: E731
    with pytest.raises(tw.SetupError, match="whole batches"):
        tw.Setup(model=mlp, train=TensorDataset(x, y), split=split,
                 loss=TrainingStep(lambda m, b: m(b[0]).sum()))  # fmt: skip
    with pytest.raises(tw.SetupError, match="either split=... or inputs=/target="):
        tw.Setup(model=mlp, train=TensorDataset(x, y), split=split, target="y")


def test_a_users_split_function_is_used_for_every_batch():
    x, y = blobs()
    s = tw.Setup(
        model=mlp,
        train=TensorDataset(x, y),
        loss=nn.CrossEntropyLoss(),
        split=lambda batch: ((batch[0],), {}, batch[1]),
    )
    report = tw.check(s, stages=speed_unjudged(), quick=True)
    assert report.verdict == "ready to train", [f.message for f in report.findings]


class Mixing(nn.Module):
    """Mixes samples: each row's output depends on the batch mean (batch-independence bug)."""

    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, x):
        return self.net(x - x.mean(dim=0, keepdim=True))


@pytest.mark.parametrize("form", ["pairs", "dicts"])
def test_the_protocol_sees_dict_inputs_as_it_sees_tensors(form):
    from trainwise.stages.baselines import BaselinesStage
    from trainwise.stages.batch_independence import BatchIndependenceStage

    x, y = blobs()
    train = TensorDataset(x, y) if form == "pairs" else DictData(x, y)
    s = tw.Setup(model=Mixing, train=train, loss=nn.CrossEntropyLoss())
    report = tw.check(s, stages=[StaticStage(), BatchIndependenceStage(), BaselinesStage()],
                      quick=True)  # fmt: skip
    assert_fires(report, "batch-mixing")
    assert "logistic regression" in report.stages[2].summary  # the linear baseline ran
