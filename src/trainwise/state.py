"""Save and restore every piece of state an experiment may touch, so the user's stays as it was.

`with preserved(model, optimizer): ...` restores, in a `finally`: parameter and buffer values
(BN running statistics included) in the same tensor objects, gradients, train/eval mode of every
module, requires_grad flags, the optimizer's state and hyperparameters, and the torch (CPU and
CUDA), numpy and Python RNG states.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


@contextmanager
def preserved_rng() -> Iterator[None]:
    cpu = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextmanager
def preserved(
    model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None
) -> Iterator[None]:
    saved_tensors = saved_grads = modes = flags = opt_state = None
    if model is not None:
        saved_tensors = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
        saved_grads = {
            n: (p.grad.detach().clone() if p.grad is not None else None)
            for n, p in model.named_parameters()
        }
        modes = {n: m.training for n, m in model.named_modules()}
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
    if optimizer is not None:
        opt_state = copy.deepcopy(optimizer.state_dict())
    with preserved_rng():
        try:
            yield
        finally:
            if model is not None:
                _restore_model(model, saved_tensors, saved_grads, modes, flags)
            if optimizer is not None:
                optimizer.load_state_dict(opt_state)


@contextmanager
def preserved_loader(loader: object) -> Iterator[None]:
    """Restore the torch.Generator(s) a DataLoader shuffles with (`DataLoader(generator=g)`,
    a sampler's own `generator`): iterating the loader advances them, and they are the user's.
    Loaders without one draw their order from the global torch RNG, which `preserved` covers."""
    generators = _loader_generators(loader)
    states = [g.get_state() for g in generators]
    try:
        yield
    finally:
        for g, state in zip(generators, states, strict=True):
            g.set_state(state)


def _loader_generators(loader: object) -> list[torch.Generator]:
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    places = (loader, sampler, getattr(batch_sampler, "sampler", None))
    found: list[torch.Generator] = []
    for place in places:
        g = getattr(place, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


def _restore_model(model, saved_tensors, saved_grads, modes, flags) -> None:
    current = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for key, value in saved_tensors.items():
            if key in current and current[key].shape == value.shape:
                current[key].copy_(value)  # in place: the user's tensor objects stay the same
    for name, param in model.named_parameters():
        param.requires_grad_(flags.get(name, param.requires_grad))
        saved = saved_grads.get(name)
        param.grad = None if saved is None else saved
    for name, module in model.named_modules():
        module.training = modes.get(name, module.training)
