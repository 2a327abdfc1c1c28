"""The Python API: Setup validation, Finding, check() leaving the user's objects alone."""

import dataclasses
import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw
from builders import blobs, mlp, setup


def test_finding_is_frozen_and_serializes():
    f = tw.Finding(
        "labels-out-of-range",
        "error",
        "bad label",
        where="train[3]",
        evidence={"n": 1, "x": float("nan")},
        fix="y - 1",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.message = "other"
    with pytest.raises(TypeError):
        f.evidence["n"] = 2
    assert json.loads(f.to_json())["evidence"] == {"n": 1, "x": "nan"}
    with pytest.raises(ValueError):
        tw.Finding("x", "fatal", "m")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"model": 3}, "model=...) must be an nn.Module"),
        ({"train": [1, 2]}, "train=...) must be a torch Dataset or DataLoader"),
        ({"loss": "ce"}, "loss=...) must be callable"),
        ({"task": "detection"}, "expected one of classification"),
        ({"batch_size": 0}, "expected a positive int"),
        ({"optimizer": torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)}, "pass a factory"),
    ],
)
def test_setup_rejects_bad_fields_with_a_clear_message(kwargs, message):
    x, y = blobs()
    fields = {"model": mlp, "train": TensorDataset(x, y), "loss": nn.CrossEntropyLoss(), **kwargs}
    with pytest.raises(tw.SetupError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tw.Setup(**fields)


def test_batch_size_comes_from_the_dataloader():
    x, y = blobs()
    s = tw.Setup(
        model=mlp, train=DataLoader(TensorDataset(x, y), batch_size=8), loss=nn.CrossEntropyLoss()
    )
    assert s.effective_batch_size == 8
    assert (
        tw.Setup(
            model=mlp, train=TensorDataset(x, y), loss=nn.CrossEntropyLoss()
        ).effective_batch_size
        == 32
    )


def test_check_leaves_a_user_module_and_rng_untouched():
    x, y = blobs()
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    report = tw.check(setup(model, x, y))
    assert torch.equal(torch.rand(3), expected_next)  # the user's random stream is unshifted
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training  # not left in eval mode
    assert report.verdict == "ready to train"
    assert json.loads(report.to_json())["verdict"] == "ready to train"


def test_report_exit_code_follows_errors():
    x, y = blobs()
    assert tw.check(setup(mlp, x, y)).exit_code == 0
    assert tw.check(setup(mlp, x, y + 1)).exit_code == 1


def test_a_gpu_the_machine_lacks_is_named_before_any_model_moves():
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    missing = "cuda" if gpus == 0 else f"cuda:{gpus}"
    said = "has no CUDA GPU" if gpus == 0 else f"has {gpus} GPU\\(s\\), cuda:0 to cuda:{gpus - 1}"
    x, y = blobs()
    broken = tw.Setup(
        model=mlp, train=TensorDataset(x, y), loss=nn.CrossEntropyLoss(), device=missing
    )
    with pytest.raises(tw.SetupError, match=f"Setup\\(device='{missing}'\\): this machine {said}"):
        broken.build_model()
