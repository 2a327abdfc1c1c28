"""Setups, references and record readers shared by the fit tests (plain torch, no trainwise
internals): tiny blobs classifiers that train in a fraction of a second."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw
from builders import blobs, mlp

N_TRAIN, N_VAL, BATCH = 256, 64, 32
PER_EPOCH = N_TRAIN // BATCH


def blob_data(n: int = N_TRAIN + N_VAL, seed: int = 0):
    """(x_train, y_train), (x_val, y_val): one draw of blobs, split (the same centres)."""
    x, y = blobs(n=n, seed=seed)
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def blob_setup(model=None, val: bool = True, **kw) -> tw.Setup:
    (x, y), (vx, vy) = blob_data()
    return tw.Setup(
        model=model if model is not None else (lambda: mlp()),
        train=TensorDataset(x, y),
        val=TensorDataset(vx, vy) if val else None,
        loss=kw.pop("loss", nn.CrossEntropyLoss()),
        **kw,
    )


def imbalanced(counts: list[int], features: int = 16, seed: int = 0):
    """x (N, features), y with `counts[c]` samples of class c, shuffled; classes separable."""
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=g)]
    centers = torch.randn(len(counts), features, generator=g) * 2
    return centers[y] + torch.randn(len(y), features, generator=g), y


def metric_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def train_rows(run: Path) -> list[dict]:
    """The record's per-step rows (those with the training loss), in step order."""
    return [r for r in metric_rows(run) if "train/loss" in r]


def run_json(run: Path) -> dict:
    return json.loads((Path(run) / "run.json").read_text())


def fast(**tips) -> tw.Recipe:
    """A recipe without the LR range test (a fixed LR), other tips at their defaults."""
    return tw.Recipe(**{"lr": 1e-2, **tips})
