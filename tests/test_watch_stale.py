"""stale-gradients: bit-identical gradients while the weights move (issue 12, deliverable 4)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw
from helpers import assert_fires, assert_silent

STALE = "stale-gradients"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def data(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def full_batch(model, optimizer, steps=30, stale=False):
    x, y = data(128)
    output = model(x) if stale else None
    with tw.watch(model, optimizer, verbose=False, record=False) as watch:
        for _ in range(steps):
            optimizer.zero_grad()
            loss = F.cross_entropy(output if stale else model(x), y)
            loss.backward(retain_graph=stale)
            optimizer.step()
            watch.log(loss=loss)
    return watch.findings


@pytest.mark.fires(STALE)
def test_a_graph_built_once_outside_the_loop_gives_stale_gradients():
    torch.manual_seed(0)
    model = nn.Linear(8, 3)  # saves only its input: the stale backward does not raise
    findings = full_batch(model, torch.optim.SGD(model.parameters(), lr=0.05), stale=True)
    finding = assert_fires(findings, STALE, severity="error")
    assert finding.evidence["parameters"] == ["weight", "bias"]
    assert finding.evidence["loss_identical"]


@pytest.mark.silent(STALE)
def test_full_batch_deterministic_training_is_silent():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    findings = full_batch(model, torch.optim.SGD(model.parameters(), lr=0.05))
    assert_silent(findings, STALE)


@pytest.mark.silent(STALE)
def test_a_zero_learning_rate_is_not_stale_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    findings = full_batch(model, torch.optim.SGD(model.parameters(), lr=0.0), steps=60)
    assert_silent(findings, STALE)
    assert_fires(findings, "weights-not-updating")  # the right finding for a frozen run
