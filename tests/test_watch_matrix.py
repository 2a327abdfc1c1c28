"""The never-break matrix: a watch must not change training, whatever the model and optimizer.

Each case trains a few steps twice from the same seed, once plain and once inside
`tw.watch(..., record=False, verbose=False)`, and the parameters must come out bit-identical,
with no exception escaping from the watch into the user's forward, backward or step (issue 12,
item 1). A second test asks more: that the watch measured the case without switching any of its
probes off (its "switched off" RuntimeWarning), since a probe that is off sees nothing.
"""

from __future__ import annotations

import functools
import traceback
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

STEPS = 6


def _mlp(dtype=torch.float32) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).to(dtype)


def _batch(i: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(i)  # data independent of the global RNG
    return torch.randn(16, 8, generator=g).to(dtype), torch.randint(0, 3, (16,), generator=g)


def _classify(model, optimizer, dtype=torch.float32):
    """The usual step on (16, 8) inputs and 3 classes; the loss in float32 for low precisions."""

    def step(i):
        x, y = _batch(i, dtype)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()
        return loss

    return step


# -- cases: each builds (model, optimizer, step); step(i) runs one training step ----------------
def float64():
    model = _mlp(torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, opt, _classify(model, opt, torch.float64)


def float16():
    # Half-precision weights on CPU (matmul, relu and their backward exist for float16 there).
    model = _mlp(torch.float16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, opt, _classify(model, opt, torch.float16)


def bfloat16():
    model = _mlp(torch.bfloat16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, opt, _classify(model, opt, torch.bfloat16)


def bfloat16_autocast():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def step(i):
        x, y = _batch(i)
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)  # (16, 3) bfloat16 activations, float32 weights
        loss = F.cross_entropy(out.float(), y)
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


class MixedDtype(nn.Module):
    """A float64 input layer feeding a float32 head (e.g. a precise feature stage)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(8, 16).double()
        self.head = nn.Linear(16, 3)

    def forward(self, x):  # (B, 8) -> (B, 3) float32
        return self.head(torch.relu(self.encoder(x.double())).float())


def mixed_dtype():
    model = MixedDtype()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)  # foreach groups tensors by dtype
    return model, opt, _classify(model, opt)


def complex_params():
    model = nn.Sequential(
        nn.Linear(8, 16, dtype=torch.cfloat), nn.Linear(16, 3, dtype=torch.cfloat)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)  # Adam supports complex parameters

    def step(i):
        x, y = _batch(i)
        opt.zero_grad()
        logits = model(x.to(torch.cfloat)).abs()  # (16, 3) real magnitudes
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


class SparseRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 8, sparse=True)

    def forward(self, idx):  # (B, 5) token ids -> (B,) a score per row
        return self.emb(idx).sum(dim=(1, 2))


def sparse_gradients():
    model = SparseRegressor()
    opt = torch.optim.SparseAdam(model.parameters(), lr=1e-2)

    def step(i):
        g = torch.Generator().manual_seed(i)
        idx, target = torch.randint(0, 100, (16, 5), generator=g), torch.randn(16, generator=g)
        opt.zero_grad()
        loss = F.mse_loss(model(idx), target)
        loss.backward()  # emb.weight.grad is a sparse tensor
        opt.step()
        return loss

    return model, opt, step


def lbfgs_closure():
    model = _mlp()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)

    def step(i):
        x, y = _batch(i)

        def closure():  # forward and backward run inside optimizer.step()
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        return opt.step(closure)

    return model, opt, step


def only_frozen_tensors():
    # The optimizer was built, then the whole model frozen, then a new head put in: the optimizer
    # holds only requires_grad=False tensors; the new head trains in no optimizer.
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.requires_grad = False
    model[2] = nn.Linear(16, 3)
    return model, opt, _classify(model, opt)


def add_param_group_later():
    model = _mlp()
    opt = torch.optim.Adam(model[0].parameters(), lr=1e-2)
    train = _classify(model, opt)

    def step(i):
        if i == 2:  # the head joins after the watch started (gradual unfreezing)
            opt.add_param_group({"params": list(model[2].parameters()), "lr": 1e-3})
        return train(i)

    return model, opt, step


def module_replaced_later():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train = _classify(model, opt)

    def step(i):
        if i == 2:  # a new head after the watch started, handed to the optimizer
            model[2] = nn.Linear(16, 3)
            opt.add_param_group({"params": list(model[2].parameters())})
        return train(i)

    return model, opt, step


class SignDescent(torch.optim.Optimizer):
    """A hand-written optimizer whose groups have no "lr" (a step size named otherwise)."""

    def __init__(self, params, step_size=1e-2):
        super().__init__(params, {"step_size": step_size})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["step_size"])


OPTIMIZERS: dict[str, Callable] = {
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adam_fused": lambda p: torch.optim.Adam(p, lr=1e-2, fused=True),
    "adam_amsgrad": lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True, foreach=False),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2, momentum=0.5),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=1e-1),
    "adadelta": lambda p: torch.optim.Adadelta(p, lr=1.0),
    "adamax": lambda p: torch.optim.Adamax(p, lr=1e-2),
    "nadam": lambda p: torch.optim.NAdam(p, lr=1e-2),
    "radam": lambda p: torch.optim.RAdam(p, lr=1e-2),
    "asgd": lambda p: torch.optim.ASGD(p, lr=1e-2),
    "rprop": lambda p: torch.optim.Rprop(p, lr=1e-2),
    "adafactor": lambda p: torch.optim.Adafactor(p, lr=1e-2),
    "custom_without_lr": lambda p: SignDescent(p),
}


def _with_optimizer(name: str):
    def build():
        model = _mlp()
        opt = OPTIMIZERS[name](model.parameters())
        return model, opt, _classify(model, opt)

    return build


CASES: dict[str, Callable] = {
    "float64": float64,
    "float16": float16,
    "bfloat16": bfloat16,
    "bfloat16_autocast": bfloat16_autocast,
    "mixed_dtype": mixed_dtype,
    "complex_params": complex_params,
    "sparse_gradients": sparse_gradients,
    "lbfgs_closure": lbfgs_closure,
    "only_frozen_tensors": only_frozen_tensors,
    "add_param_group_later": add_param_group_later,
    "module_replaced_later": module_replaced_later,
    **{f"optimizer_{name}": _with_optimizer(name) for name in OPTIMIZERS},
}


# -- running a case ------------------------------------------------------------------------------
def _train(case: str, watched: bool):
    """Trains STEPS steps; returns (parameters, the exception that escaped, watch warnings)."""
    torch.manual_seed(0)
    model, optimizer, step = CASES[case]()
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if watched:
                with tw.watch(model, optimizer, record=False, verbose=False) as watch:
                    for i in range(STEPS):
                        watch.log(loss=step(i).detach())
            else:
                for i in range(STEPS):
                    step(i)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            error = exc
    params = [p.detach().clone() for p in model.parameters()]
    switched_off = [str(w.message) for w in caught if "trainwise" in str(w.message)]
    return params, error, switched_off


def _escaped(error: Exception) -> str:
    """The exception and the innermost trainwise frame it came from."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "trainwise" in f.filename]
    at = (
        f" (raised in {frames[-1].filename.split('src/')[-1]}:{frames[-1].lineno})"
        if frames
        else ""
    )
    return f"an exception escaped into training: {type(error).__name__}: {error}{at}"


# Known failures of today's watch, each to be fixed by issue 12; strict, so a fix that makes one
# pass turns its mark into a failure until the mark is removed.
KNOWN_TO_CHANGE_TRAINING: dict[str, str] = {}
KNOWN_TO_SWITCH_A_PROBE_OFF: dict[str, str] = {}


def _cases(known_failures: dict[str, str]) -> list:
    return [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=known_failures[c]))
        if c in known_failures
        else c
        for c in CASES
    ]


@functools.cache
def _watched(case: str):
    return _train(case, watched=True)


@pytest.mark.parametrize("case", _cases(KNOWN_TO_CHANGE_TRAINING))
def test_watch_never_changes_training(case):
    plain, plain_error, _ = _train(case, watched=False)
    assert plain_error is None, f"the case itself is broken: {plain_error!r}"
    watched, error, _ = _watched(case)
    assert error is None, _escaped(error)
    assert len(watched) == len(plain)
    for i, (a, b) in enumerate(zip(plain, watched, strict=True)):
        assert torch.equal(a, b), f"parameter {i} differs with the watch attached"


@pytest.mark.parametrize("case", _cases(KNOWN_TO_SWITCH_A_PROBE_OFF))
def test_watch_keeps_every_probe_on(case):
    _, error, switched_off = _watched(case)
    assert error is None, _escaped(error)
    assert switched_off == [], "\n".join(switched_off)


# -- seeing, not only surviving -----------------------------------------------------------------
def _measured(case: str, preset: str = "full") -> dict[str, list[int]]:
    """Trains the case watched with every probe on every step: {signal key: its iterations}."""
    torch.manual_seed(0)
    model, optimizer, step = CASES[case]()
    with tw.watch(model, optimizer, preset=preset, record=False, verbose=False) as watch:
        for i in range(STEPS):
            watch.log(loss=step(i).detach())
    return {key: list(s.steps) for key, s in watch.signals.series.items()}


def test_sparse_gradients_are_measured():
    steps = _measured("sparse_gradients")
    assert steps["grad_norm/emb.weight"] == list(range(STEPS))
    assert steps["update_ratio/emb.weight"] == list(range(STEPS))


def test_sparse_gradient_norm_is_the_dense_norm():
    from trainwise.probes.gradients import grad_norms

    emb = nn.Embedding(10, 4, sparse=True)
    emb(torch.tensor([1, 1, 2, 7])).pow(2).sum().backward()  # index 1 twice: values to coalesce
    dense = torch.randn(3)
    norms = grad_norms([emb.weight.grad, dense])
    assert torch.allclose(norms, torch.stack([emb.weight.grad.to_dense().norm(), dense.norm()]))


@pytest.mark.parametrize("case", ["add_param_group_later", "module_replaced_later"])
def test_tensors_and_modules_added_after_the_start_are_measured(case):
    steps = _measured(case)
    # the head joins at iteration 2: its gradient, update and output are measured from then on
    for key in ("grad_norm/2.weight", "update_ratio/2.weight", "act_mean/2"):
        assert set(range(2, STEPS)) <= set(steps[key]), key


def test_frozen_tensors_the_optimizer_holds_are_measured():
    steps = _measured("only_frozen_tensors")
    # their update ratio (0: frozen) is measured, so weights-not-updating can judge them
    assert steps["update_ratio/0.weight"] == list(range(STEPS))
