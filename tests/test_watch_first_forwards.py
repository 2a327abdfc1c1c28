"""train-eval-mismatch judged while training runs, and the first-forward probe that names the
module (issue 12, deliverable 4)."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

import trainwise as tw
from helpers import assert_fires, assert_silent
from trainwise.probes import first_forwards
from trainwise.signals import FIRST_FORWARDS

MISMATCH = "train-eval-mismatch"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def data(n=256, scale=1.0, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return x * scale + shift, y


def validate(model, x, y):
    model.eval()
    with torch.no_grad():
        loss = F.cross_entropy(model(x), y)
    model.train()
    return loss


def run(model, steps=12, scale=1.0, shift=0.0, val_first=True, lr=1e-3, **watch_kw):
    torch.manual_seed(0)
    x, y = data(scale=scale, shift=shift)
    xv, yv = data(64, scale=scale, shift=shift, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    with tw.watch(model, optimizer, verbose=False, record=False, **watch_kw) as watch:
        if val_first:
            watch.log_val(loss=validate(model, xv, yv))
        for step in range(steps):
            i = slice(step * 32 % 256, step * 32 % 256 + 32)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[i]), y[i])
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
    return watch


# -- train-eval-mismatch --------------------------------------------------------------------------
@pytest.mark.fires(MISMATCH)
def test_spectral_norm_evaluated_before_training_is_named():
    torch.manual_seed(0)
    model = nn.Sequential(
        spectral_norm(nn.Linear(8, 128)), nn.ReLU(),
        spectral_norm(nn.Linear(128, 128)), nn.ReLU(),
        spectral_norm(nn.Linear(128, 3)),
    )  # fmt: skip
    watch = run(model)
    finding = assert_fires(watch.findings, MISMATCH, severity="error")
    assert set(finding.evidence["modules"]) == {"0", "2", "4"}  # the three spectral_norm layers
    assert finding.evidence["ratio"] > 10
    assert "spectral_norm" in finding.message and "parametrizations" in finding.fix
    assert not watch._first.attached  # the probe left with the first step


@pytest.mark.fires(MISMATCH)
def test_batchnorm_input_layer_on_raw_features_is_named():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(8), nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    watch = run(model, scale=50.0, shift=200.0)  # raw features: BN is the only normalization
    finding = assert_fires(watch.findings, MISMATCH, where="0")
    assert list(finding.evidence["modules"]) == ["0"] and "BatchNorm" in finding.message


@pytest.mark.silent(MISMATCH)
def test_healthy_baseline_validation_with_batchnorm_and_dropout_is_silent():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 3)
    )
    watch = run(model)
    assert_silent(watch.findings, MISMATCH)
    gaps = watch.signals.events[FIRST_FORWARDS].modules
    assert [g.module for g in gaps][:3] == ["0", "1", "2"]  # execution order, root last
    assert watch.signals.events[FIRST_FORWARDS].eval_forwards == 1


@pytest.mark.silent(MISMATCH)
def test_no_validation_before_training_measures_nothing():
    torch.manual_seed(0)
    model = nn.Sequential(spectral_norm(nn.Linear(8, 32)), nn.ReLU(), nn.Linear(32, 3))
    watch = run(model, val_first=False)
    assert_silent(watch.findings, MISMATCH)
    assert FIRST_FORWARDS not in watch.signals.events
    assert not watch._first.attached


@pytest.mark.silent(MISMATCH)
def test_inputs_that_differ_are_not_blamed_on_a_module():
    # Validation data 100x the training data: the losses disagree, but every module maps its
    # input the same way in both forwards: a data matter, not a train/eval one.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    x, y = data()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with tw.watch(model, optimizer, verbose=False, record=False) as watch:
        watch.log_val(loss=validate(model, x * 100, y))
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        watch.log(loss=loss)
    assert_silent(watch.findings, MISMATCH)


class Odd(nn.Module):
    """Outputs of every shape a hook meets: dict, tuple with ints first, complex, empty."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        h = self.lin(x)
        return {"n": torch.tensor(3), "z": torch.complex(h, h), "e": h[:0], "h": h}


class WithOdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.odd = Odd()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.odd(x)["h"])


def test_probe_handles_odd_outputs_and_changes_nothing():
    def train(watched):
        torch.manual_seed(0)
        model = WithOdd()
        x, y = data()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        watch = tw.watch(model, optimizer, verbose=False, record=False) if watched else None
        with torch.no_grad():
            model(x)
        for _ in range(3):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            if watch is not None:
                watch.log(loss=loss)
        if watch is not None:
            watch.close()
        return [p.detach().clone() for p in model.parameters()], watch

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no probe switched off
        plain, _ = train(False)
        watched, watch = train(True)
    assert all(torch.equal(a, b) for a, b in zip(plain, watched, strict=True))
    gaps = {g.module: g for g in watch.signals.events[FIRST_FORWARDS].modules}
    assert {"odd", "odd.lin", "head", "(model)"} <= set(gaps)  # the dict output: its float "h"


def test_a_failing_probe_is_switched_off_and_training_goes_on(monkeypatch):
    def broken(_t):
        raise RuntimeError("boom")

    monkeypatch.setattr(first_forwards, "rms", broken)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    with pytest.warns(RuntimeWarning, match="first-forward probe raised RuntimeError"):
        watch = run(model, steps=3)
    assert "first-forward probe" in watch._guard.disabled
    assert not watch._first.attached and watch.iteration == 3


BASELINE_INPUTS = {  # a matrix case -> the input of a no-grad forward before training
    "float64": lambda x: x.double(),
    "float16": lambda x: x.half(),
    "bfloat16": lambda x: x.bfloat16(),
    "mixed_dtype": lambda x: x,
    "complex_params": lambda x: x.to(torch.cfloat),  # complex outputs: not measured
    "sparse_gradients": lambda x: (x[:, :5].abs() * 30).long(),  # token ids: no float input
}


@pytest.mark.parametrize("case", sorted(BASELINE_INPUTS))
def test_probe_with_a_baseline_forward_never_changes_training(case):
    import test_watch_matrix as matrix

    def train(watched):
        torch.manual_seed(0)
        model, optimizer, step = matrix.CASES[case]()
        x = BASELINE_INPUTS[case](matrix._batch(99)[0])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            watch = tw.watch(model, optimizer, record=False, verbose=False) if watched else None
            with torch.no_grad():
                model.eval()
                model(x)
                model.train()
            for i in range(3):
                loss = step(i)
                if watch is not None:
                    watch.log(loss=loss.detach())
            if watch is not None:
                watch.close()
        assert [str(w.message) for w in caught if "trainwise" in str(w.message)] == []
        return [p.detach().clone() for p in model.parameters()], watch

    plain, _ = train(False)
    watched, watch = train(True)
    assert all(torch.equal(a, b) for a, b in zip(plain, watched, strict=True))
    assert not watch._first.attached
    if case != "complex_params":
        assert watch.signals.events[FIRST_FORWARDS].modules  # measured, whatever the dtype
