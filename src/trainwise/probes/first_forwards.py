"""What each module does in the forwards before training versus the first training forward.

Until the first step is read out, every module has a forward hook. At its first call in a no-grad
forward (a baseline validation before training, normally in eval mode) and at its first call in
the first training forward (grad enabled), the hook keeps the RMS of the module's output and of
its first input: two 0-d float32 tensors on the device, no sync. The first step's read-out brings
them back with the step's one transfer, the probe writes one FIRST_FORWARDS event, and the watch
removes every hook: after the first step the probe costs nothing.

Both forwards run at the same weights, so a module whose output/input ratio differs between them
behaves differently in the two modes: spectral_norm before its first power iteration, BatchNorm
normalizing with running statistics that never saw a batch. Outputs that are tuples, lists or
dicts are measured at their first floating tensor; anything else (ints, None) is skipped.
Every hook runs through the watch's guard: an exception switches the probe off.

Writes: the event FIRST_FORWARDS (once).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from trainwise.probes.gradients import tensor_norm
from trainwise.probes.params import clean_name
from trainwise.probes.pending import Pending
from trainwise.signals import FIRST_FORWARDS, FirstForwards, ModuleGap, Signals

PIECE = "first-forward probe"  # the name under which the watch's guard switches it off


def first_float(value: Any) -> torch.Tensor | None:
    """The first floating-point dense tensor in an output (a tensor, tuple/list or dict)."""
    if isinstance(value, torch.Tensor):
        ok = value.is_floating_point() and value.layout == torch.strided and value.numel() > 0
        return value if ok else None
    if isinstance(value, (tuple, list)):
        items = value
    elif isinstance(value, dict):
        items = list(value.values())
    else:
        return None
    for item in items[:8]:  # a few entries: not a walk through a whole structure
        if isinstance(item, torch.Tensor):
            found = first_float(item)
            if found is not None:
                return found
    return None


def rms(t: torch.Tensor) -> torch.Tensor:
    """0-d float32 RMS on the device (no sync). Half precisions are accumulated in float32,
    float64 in its own precision (torch refuses to narrow a reduction's input)."""
    with torch.no_grad():
        return tensor_norm(t.detach(), torch.float32) / math.sqrt(t.numel())


def _kind(module: nn.Module) -> str:
    """The class name, with the wrapper that changes the module's weights in forward."""
    kind = type(module).__name__
    if hasattr(module, "weight_u") or "SpectralNorm" in type(module).__name__:
        return f"{kind} (spectral_norm)"  # torch.nn.utils.spectral_norm's buffers
    return kind


class FirstForwardProbe:
    def __init__(self, model: nn.Module, guard: Callable[..., Any] | None = None) -> None:
        self.model = model
        self.modules = [(clean_name(name) or "(model)", m) for name, m in model.named_modules()]
        self._guard = guard or (lambda _piece, fn, *args: fn(*args))
        self._handles: list = []
        self._eval: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._train: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._order: list[str] = []  # modules in the order of the training forward's calls
        self.eval_forwards = 0
        self._training_started = False
        self._slots: tuple[int, int, list[str], list[bool]] | None = None
        self._step = 0
        self._leaf: dict[str, bool] = {}
        self._kinds = {name: _kind(m) for name, m in self.modules}

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> None:
        leaves = {id(m) for _, m in self.modules if next(m.children(), None) is None}
        for name, m in self.modules:
            self._handles.append(m.register_forward_hook(self._make_hook(name, m is self.model)))
        self._leaf = {name: id(m) in leaves for name, m in self.modules}

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _make_hook(self, name: str, is_root: bool):
        def hook(_module, args, out) -> None:
            self._guard(PIECE, self._record, name, is_root, args, out)

        return hook

    def _record(self, name: str, is_root: bool, args: Any, out: Any) -> None:
        if torch.compiler.is_compiling():
            return
        if torch.is_grad_enabled():
            self._training_started = True
            kept = self._train
        elif self._training_started:
            return  # a no-grad forward inside the first step: not the baseline
        else:
            kept = self._eval
            if is_root:
                self.eval_forwards += 1
        if name in kept or (kept is self._train and not self._eval):
            return  # measured already, or no forward before training to compare with
        y = first_float(out)
        if y is None:
            return
        x = first_float(args[0]) if args else None
        kept[name] = (rms(y), rms(x) if x is not None else None)
        if kept is self._train:
            self._order.append(name)

    def collect(self, pending: Pending, step: int) -> None:
        """Queues the RMS values of the modules seen in both forwards for the step's read-out."""
        names = [n for n in self._order if n in self._eval]
        self._order = []
        if not names:
            return
        values, has_input = [], []
        for n in names:
            (eo, ei), (to, ti) = self._eval[n], self._train[n]
            both = ei is not None and ti is not None
            has_input.append(both)
            values += [eo, to] + ([ei, ti] if both else [])
        self._eval, self._train = {}, {}
        self._slots = (pending.add(torch.stack([v.to(values[0].device) for v in values])),
                       self.eval_forwards, names, has_input)  # fmt: skip
        self._step = step

    def write(self, values: list[list[float]], signals: Signals) -> None:
        """The FIRST_FORWARDS event from the read-out numbers (once)."""
        if self._slots is None:
            return
        slot, eval_forwards, names, has_input = self._slots
        self._slots = None
        numbers = iter(values[slot])
        gaps = []
        nan = math.nan
        for name, both in zip(names, has_input, strict=True):
            eo, to = next(numbers), next(numbers)
            ei, ti = (next(numbers), next(numbers)) if both else (nan, nan)
            leaf = self._leaf.get(name, True)
            gaps.append(ModuleGap(name, self._kinds.get(name, "?"), leaf, eo, to, ei, ti))
        signals.events[FIRST_FORWARDS] = FirstForwards(self._step, eval_forwards, tuple(gaps))
