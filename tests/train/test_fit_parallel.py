"""`trainwise fit --devices 2`: two gloo processes under torchrun train the model one process
trains at the same global batch, in the same data order (up to float reduction order); rank 0
alone writes the record and the JSON."""

import json
import subprocess
import sys

import pytest
import torch

SETUP_FILE = """
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import trainwise as tw


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return TensorDataset(x[:192], y[:192]), TensorDataset(x[192:], y[192:])


def setup():  # 16 samples per process: a global batch of 32 on two
    train, val = _data()
    return tw.Setup(model=lambda: nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4)),
                    train=train, val=val, loss=nn.CrossEntropyLoss(), batch_size=16)


def one_process():
    # One process at the global batch of 32, in the order the two ranks deal out together:
    # a DistributedSampler over one replica draws the same permutation (seed + epoch).
    s = setup()
    s.train = DataLoader(s.train, batch_size=32,
                         sampler=DistributedSampler(s.train, 1, 0, shuffle=True, seed=0))
    return s
"""


def fit(target, *args):
    run = subprocess.run([sys.executable, "-m", "trainwise", "fit", target, "--epochs", "2",
                          "--lr", "1e-2", "--quiet", *map(str, args)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


@pytest.mark.slow  # three processes importing torch (~15 s); the multi-device stage tests run DDP in CI
def test_two_processes_train_the_model_one_process_trains_at_the_same_global_batch(tmp_path):
    file = tmp_path / "parallel_setup.py"
    file.write_text(SETUP_FILE)
    fit(f"{file}:setup", "--devices", 2, "--json", tmp_path / "two.json",
        "--runs-dir", tmp_path / "two")  # fmt: skip
    fit(f"{file}:one_process", "--json", tmp_path / "one.json", "--runs-dir", tmp_path / "one")
    two, one = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("two", "one"))
    assert two["steps"] == one["steps"] == 12  # 6 global batches of 32 per epoch
    assert any(n.startswith("data parallel: 2 processes (gloo)") for n in two["notes"])
    assert len(list((tmp_path / "two").iterdir())) == 1  # rank 0's record only
    weights = [torch.load(json_["checkpoint"], weights_only=True) for json_ in (two, one)]
    for name, value in weights[1].items():
        assert torch.allclose(weights[0][name], value, atol=1e-5), name
    assert two["metrics"]["val_loss"] == pytest.approx(one["metrics"]["val_loss"], rel=1e-4)
