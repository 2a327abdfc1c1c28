"""`trainwise fit --devices 2`: two gloo processes under torchrun train the model one process
trains at the same global batch, in the same data order (up to float reduction order); rank 0
alone writes the record and the JSON."""

import json
import os
import subprocess
import sys

import pytest
import torch

SETUP_FILE = """
import os

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import trainwise as tw


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return TensorDataset(x[:192], y[:192]), TensorDataset(x[192:], y[192:])


def _model(dropout=0.0):
    net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 4))
    kill_at = int(os.environ.get("KILL_RANK_1_AT", "0"))  # the resume test: a rank dies
    if kill_at and os.environ.get("RANK") == "1":
        forwards = [0]

        def count(module, args):
            if module.training and torch.is_grad_enabled():
                forwards[0] += 1
                if forwards[0] == kill_at:
                    os._exit(3)

        net.register_forward_pre_hook(count)
    return net


def setup():  # 16 samples per process: a global batch of 32 on two
    train, val = _data()
    return tw.Setup(model=_model, train=train, val=val, loss=nn.CrossEntropyLoss(),
                    batch_size=16, device="cpu")  # gloo processes, also where a GPU is


def on_cuda():  # two processes, fewer GPUs than that (none here)
    s = setup()
    s.device = "cuda"
    return s


def with_dropout():  # the resume test: dropout's masks must come out the same after it
    s = setup()
    s.model = lambda: _model(dropout=0.2)
    return s


def one_process():
    # One process at the global batch of 32, in the order the two ranks deal out together:
    # a DistributedSampler over one replica draws the same permutation (seed + epoch).
    s = setup()
    s.train = DataLoader(s.train, batch_size=32,
                         sampler=DistributedSampler(s.train, 1, 0, shuffle=True, seed=0))
    return s
"""


def fit(target, *args, env=None, code=0):
    run = subprocess.run([sys.executable, "-m", "trainwise", "fit", target, "--epochs", "2",
                          "--lr", "1e-2", "--quiet", *map(str, args)],
                         capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert (run.returncode == 0) == (code == 0), run.stdout[-3000:] + run.stderr[-3000:]
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
    for metric in ("val_loss", "val_accuracy", "val_f1", "val_ece"):  # validation sharded, reduced
        assert two["metrics"][metric] == pytest.approx(one["metrics"][metric], rel=1e-4, abs=1e-6)


def test_a_setup_on_cuda_with_fewer_gpus_than_processes_exits_2_with_the_counts(tmp_path):
    file = tmp_path / "parallel_setup.py"
    file.write_text(SETUP_FILE)
    run = fit(f"{file}:on_cuda", "--devices", 2, "--runs-dir", tmp_path / "runs", code=2)
    said = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 2  # unusable input, as on one process: said once, not per rank
    gpus = torch.cuda.device_count()
    if gpus == 0:  # this machine (CI): no GPU at all
        assert said.count("Setup(device='cuda'): this machine has no CUDA GPU") == 1, said
    else:
        assert f"the Setup trains on cuda, but this machine has {gpus} GPU(s) for 2" in said
        assert f"use --devices {gpus}" in said


def test_each_rank_validates_every_nth_batch_and_all_of_them_when_there_are_too_few():
    from trainwise.train.parallel import Parallel

    batches = [f"batch {i}" for i in range(5)]
    shares = [Parallel(2, rank, rank, "gloo").shard(batches) for rank in (0, 1)]
    assert [(list(pairs), sharded) for pairs, sharded in shares] == [
        ([(0, "batch 0"), (2, "batch 2"), (4, "batch 4")], True),
        ([(1, "batch 1"), (3, "batch 3")], True),
    ]
    pairs, sharded = Parallel(8, 3, 3, "gloo").shard(batches)  # an empty share: not sharded
    assert (list(pairs), sharded) == (list(enumerate(batches)), False)


@pytest.mark.slow  # three launches of two processes (~40 s)
def test_a_data_parallel_run_killed_mid_epoch_resumes_on_two_processes_to_the_same_weights(
    tmp_path,
):
    file = tmp_path / "parallel_setup.py"
    file.write_text(SETUP_FILE)
    target = f"{file}:with_dropout"
    fit(target, "--devices", 2, "--runs-dir", tmp_path / "whole")
    killed = {**os.environ, "KILL_RANK_1_AT": "9"}  # rank 1 dies in its 9th training forward
    fit(target, "--devices", 2, "--runs-dir", tmp_path / "killed", env=killed, code=1)
    (folder,) = (tmp_path / "killed").iterdir()
    at = torch.load(folder / "checkpoints" / "last.pt", weights_only=True)
    assert 0 < at["step"] < 12 and at["processes"] == 2  # died mid-run, in epoch 2
    one = fit(target, "--resume", folder, "--runs-dir", tmp_path / "one", code=1)
    said = " ".join((one.stdout + one.stderr).split())
    assert "trained on 2 process(es)" in said and "resume it with --devices 2" in said
    fit(target, "--resume", folder, "--devices", 2, "--runs-dir", tmp_path / "resumed")
    (whole,), (resumed,) = ((tmp_path / name).iterdir() for name in ("whole", "resumed"))
    final = [torch.load(f / "checkpoints" / "last.pt", weights_only=True) for f in (whole, resumed)]
    assert final[0]["step"] == final[1]["step"] == 12
    for name, value in final[0]["model"].items():  # dropout included: the same masks again
        assert torch.allclose(final[1]["model"][name], value, atol=1e-6), name
