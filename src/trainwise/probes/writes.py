"""Who writes the weights: a fingerprint of every parameter when each optimizer step starts and
when it ends.

- A tensor whose fingerprint differs between one step's end and the next step's start was
  written by something other than the optimizer (a state_dict loaded, an EMA swapped in for
  validation and never swapped out, a hand-written clamp).
- A tensor the optimizer holds with requires_grad=False whose fingerprint differs across the
  step was moved by the optimizer although it is "frozen" (a zero gradient rather than None:
  momentum and weight decay still apply).

The fingerprint is SAMPLED evenly spaced elements of each tensor, read through views of its
storage and copied out by one `torch.cat` per (device, dtype), or on the CPU as each tensor's
sample bytes through a memoryview: a few microseconds whatever the model's size. A norm over
every element (the first design) read all the weights when each step ended, a full pass over
memory on a large model and the write probe's whole cost on a small one. Every write this
probe is for changes all or most elements (a copy, an average, a decay, a clamp that bites), so
it changes sampled ones; a write of a few elements off the sample is not seen. A tensor whose
storage was replaced (`p.data = other`, an EMA swapped in that way) is sampled again from its
new storage and compared by value (or counted as written, when its shape or dtype changed with
it); until then the views keep the old storage alive.

Cost: one copy of the samples when each step ends (a validation may come before the next), and
one when the next starts only where there is something to compare: after a validation (a
no-grad forward or watch.log_val ran in the gap, where swapped-in weights are left behind) and
on sampled steps (which also compare the step's own start and end, for frozen tensors). The
comparisons (a flag per sample: its bits changed) of tensors on an accelerator stay there and
come back with the step's one read-out; a CPU tensor's are made on the host at once.

Writes: WRITTEN_OUTSIDE and FROZEN_MOVED (counts per step), and the events
WRITTEN_OUTSIDE_NAMES and FROZEN_MOVED_NAMES (the tensors, at the latest step they moved).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainwise.probes.pending import Pending
from trainwise.signals import (
    FROZEN_MOVED,
    FROZEN_MOVED_NAMES,
    WRITTEN_OUTSIDE,
    WRITTEN_OUTSIDE_NAMES,
    FrozenMoved,
    Signals,
    WrittenOutside,
)

PIECE = "weight-write probe"
_data_ptr, _tobytes = torch.Tensor.data_ptr, memoryview.tobytes
SAMPLED = 16  # elements of each tensor in its fingerprint
Samples = list[bytes] | torch.Tensor  # one group's fingerprint (see _Layout.take)


class _Layout:
    """Which elements of which tensors the fingerprint holds: per (device, dtype) group, the
    tensors' indices and their sample views; for a CPU group, memoryviews of the samples' bytes
    as well."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self._count = len(params)
        # Where each strided tensor's data is (a sparse one has none: never sampled, never moves)
        self._strided_at = [i for i, p in enumerate(params) if p.layout == torch.strided]
        self._strided = [params[i] for i in self._strided_at]
        self._ptrs = list(map(_data_ptr, self._strided))
        # Every sampled element lies in its tensor's storage now (a storage resized to nothing,
        # as FSDP frees an unsharded parameter between its uses, is not read: that crashes)
        self.readable = all(_in_storage(p) for p in self._strided)
        by_kind: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        views = [_sample_view(p) for p in params] if self.readable else []
        for i, view in enumerate(views):
            by_kind.setdefault((view.device, view.dtype), []).append(i)
        self.groups = [
            (indices, [views[i] for i in indices], _host_views([views[i] for i in indices]))
            for indices in by_kind.values()
        ]
        # (index, samples) per tensor, in the order of the groups' concatenated samples
        self.sizes = [[(i, views[i].numel()) for i in indices] for indices in by_kind.values()]
        # Two layouts with the same signature sample the same elements: comparable by value.
        self.signature = (tuple(by_kind), tuple(tuple(sizes) for sizes in self.sizes))

    def take(self) -> list[Samples]:
        """Copies of the sampled elements, one per group: a CPU group's as the bytes of each
        tensor's samples, another's as one (T_g,) tensor on its device."""
        # map over the C methods: no Python frame per tensor (each one runs cold in a step)
        return [
            list(map(_tobytes, host)) if host is not None else torch.cat(views)
            for _, views, host in self.groups
        ]

    def moved(self) -> bool:
        """Some tensor's data is no longer where the views read it: replaced (`p.data = ...`)
        or reallocated in place (`untyped_storage().resize_()`), which frees the memory the
        views point at. Checked before every read (~2 us)."""
        return list(map(_data_ptr, self._strided)) != self._ptrs

    def replaced(self) -> list[bool]:
        """Per tensor (all of them, in order): its data moved since the views were made."""
        flags = [False] * self._count
        for i, p, ptr in zip(self._strided_at, self._strided, self._ptrs, strict=True):
            flags[i] = p.data_ptr() != ptr
        return flags


@dataclass(slots=True)
class _Comparison:
    """Two fingerprints compared: the tensors of CPU groups whose samples changed (known at
    once); per device group, the pending slot of its (T_g,) changed-sample flags (on the device
    until the read-out) and the (tensor, samples) runs they split into; the tensors whose
    storage was replaced outright."""

    host: list[int]
    device: list[tuple[int, list[tuple[int, int]]]]
    replaced: list[bool]

    def changed(self, values: list[list[float]]) -> list[bool]:
        flags = list(self.replaced)
        for i in self.host:
            flags[i] = True
        for slot, sizes in self.device:
            flagged, at = values[slot], 0
            for i, n in sizes:
                flags[i] = flags[i] or any(flagged[at : at + n])
                at += n
        return flags


class WriteProbe:
    def __init__(self) -> None:
        self.params: list[torch.Tensor] = []
        self.names: list[str] = []
        self._frozen_held: list[bool] = []  # (N,): held by the optimizer with requires_grad=False
        self._any_frozen = False
        self._layout: _Layout | None = None
        self._at_start: list[Samples] | None = None  # samples when the step started
        self._at_end: list[Samples] | None = None  # samples when the last step ended
        self._outside: _Comparison | None = None  # the gap before this step, compared
        self._frozen: _Comparison | None = None  # this step's start and end, compared
        self._eval_in_gap = False  # a no-grad forward or log_val since the last step ended
        self._gap_had_eval = False  # ... in the gap just compared

    def track(self, params: list[torch.Tensor], names: list[str]) -> None:
        """The tensors to fingerprint: the optimizer's first, then the model's others. Called
        again when that set changes; the next step then starts a fresh comparison."""
        self.params, self.names = params, names
        self._layout = None
        self._at_start = self._at_end = None

    def set_frozen(self, frozen_held: list[bool]) -> None:
        """Which of the optimizer's tensors (the first len(frozen_held)) have requires_grad=False
        now: those must not move when it steps."""
        self._frozen_held = frozen_held + [False] * (len(self.params) - len(frozen_held))
        self._any_frozen = any(frozen_held)

    def saw_eval(self) -> None:
        """A validation ran (a no-grad forward or watch.log_val) since the last step."""
        self._eval_in_gap = True

    @property
    def saw_eval_in_gap(self) -> bool:
        """The next step's start is compared with the last step's end (the watch measures it)."""
        return self._eval_in_gap

    def _fingerprint(self) -> list[Samples] | None:
        """The samples now, through views made anew when a tensor's data moved; None when
        some tensor's storage does not hold its elements now."""
        if not self.params:
            return None
        if self._layout is None or self._layout.moved():
            self._layout = _Layout(self.params)
        return self._layout.take() if self._layout.readable else None

    def _compare(self, pending: Pending, now: list[Samples], before: list[Samples]
                 ) -> _Comparison:  # fmt: skip
        """Two fingerprints of the current layout, sample by sample (a CPU tensor's, byte by
        byte: its bits, as _differ compares a device group's)."""
        host, device = [], []
        for sizes, a, b in zip(self._layout.sizes, now, before, strict=True):
            if isinstance(a, list):
                host += [i for (i, _), x, y in zip(sizes, a, b, strict=True) if x != y]
            else:  # (T_g,) flags, on the device until the read-out (no sync)
                device.append((pending.add(_differ(a, b)), sizes))
        return _Comparison(host, device, [False] * len(self.params))

    def before_step(self, pending: Pending, sampled: bool) -> None:
        if not (sampled or self._eval_in_gap):
            self._at_start = self._at_end = None  # nothing to compare this time: no copy
            return
        old = self._layout
        replaced = old.replaced() if old is not None else []
        if any(replaced):  # the views read a storage the tensor no longer has: new views
            self._layout = None
        now = self._fingerprint()
        if now is not None and self._at_end is not None:
            if old is not None and self._layout.signature == old.signature:
                self._outside = self._compare(pending, now, self._at_end)  # values decide
            else:  # a tensor came back with another shape or dtype: it counts as written
                self._outside = _Comparison([], [], replaced)
            self._gap_had_eval = self._eval_in_gap
        self._eval_in_gap = False
        self._at_start, self._at_end = now, None

    def after_step(self, pending: Pending) -> None:
        layout = self._layout
        now = self._fingerprint()
        start = self._at_start if self._layout is layout else None  # else: other views
        if now is not None and start is not None and self._any_frozen:
            self._frozen = self._compare(pending, now, start)
        self._at_end, self._at_start = now, None

    def take(self) -> tuple[_Comparison | None, _Comparison | None, bool]:
        """This step's pending comparisons, handed to the watch to write later (a step between
        measured ones, compared because a validation came before it)."""
        taken = (self._outside, self._frozen, self._gap_had_eval)
        self._outside = self._frozen = None
        return taken

    def write(self, values: list[list[float]], t: int, signals: Signals,
              taken: tuple[_Comparison | None, _Comparison | None, bool] | None = None,
              ) -> None:  # fmt: skip
        """Step t's comparisons into the history: this step's, or those `take` handed out."""
        outside, frozen, gap_had_eval = taken or self.take()
        if outside is not None:
            changed = outside.changed(values)
            written = tuple(n for n, c in zip(self.names, changed, strict=True) if c)
            signals.add(WRITTEN_OUTSIDE.key, t, float(len(written)))
            if written:
                signals.events[WRITTEN_OUTSIDE_NAMES] = WrittenOutside(t, written, gap_had_eval)
        if frozen is not None:
            moved = frozen.changed(values)
            names = tuple(
                n for n, m, f in zip(self.names, moved, self._frozen_held, strict=True) if m and f
            )
            signals.add(FROZEN_MOVED.key, t, float(len(names)))
            if names:
                signals.events[FROZEN_MOVED_NAMES] = FrozenMoved(t, names)

    def discard(self) -> None:
        self._at_start = self._at_end = None
        self._outside = self._frozen = None
        self._layout = None  # the views keep storages alive


def _sample_view(p: torch.Tensor) -> torch.Tensor:
    """(<= SAMPLED,) a view of evenly spaced elements of p (it reads p's values as they change).
    A tensor laid out densely in any order (channels_last) is sampled in memory order; one
    with gaps between its elements, by its first element; one without strides (sparse), not."""
    t = p.detach()
    if t.layout != torch.strided:
        return t.new_empty(0)  # never changes: never compared
    if _dense(t):
        flat = t.as_strided((t.numel(),), (1,), t.storage_offset())
    else:
        flat = t.as_strided((min(t.numel(), 1),), (1,), t.storage_offset())
    step = max(1, flat.numel() // SAMPLED)
    return flat[::step][:SAMPLED]


def _in_storage(p: torch.Tensor) -> bool:
    """Every element of p lies inside its storage (not so once the storage is resized away)."""
    if p.numel() == 0:
        return True
    last = p.storage_offset() + sum((n - 1) * s for n, s in zip(p.shape, p.stride(), strict=True))
    return (last + 1) * p.element_size() <= p.untyped_storage().nbytes()


def _dense(t: torch.Tensor) -> bool:
    """Its elements fill one block of memory (in whatever dimension order)."""
    expected = 1
    for stride, size in sorted((s, n) for s, n in zip(t.stride(), t.shape, strict=True) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


_SAME_WIDTH_INT = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _host_views(views: list[torch.Tensor]) -> list[memoryview] | None:
    """Memoryviews of a CPU group's sample views (through numpy, over the same memory), or None
    for another device or a dtype numpy has no match for. Copying the samples out with
    `tobytes` at a step's end costs ~4 us inside a training loop, against ~18 us for a
    torch.cat of their views and ~14 us for np.concatenate (the MNIST-1D CNN of
    benchmarks/fit_recipe.py: each library's code runs cold between the step's kernels)."""
    if views[0].device.type != "cpu":
        return None
    width = _SAME_WIDTH_INT.get(views[0].element_size())
    if views[0].dtype.is_floating_point and width is not None:
        views = [v.view(width) for v in views]  # bits: numpy has no bfloat16
    try:
        return [memoryview(v.numpy()) for v in views]
    except (TypeError, RuntimeError):  # complex32, the unsigned ints above uint8, ...
        return None


def _differ(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(T,) bool: the samples' bits differ. Bits, not values: one comparison, a NaN left NaN
    is no write, and neither is a value written back unchanged."""
    if a.dtype.is_floating_point or a.dtype.is_complex:
        width = _SAME_WIDTH_INT.get(a.element_size())
        if width is not None and not a.dtype.is_complex:
            return a.view(width) != b.view(width)
        return (a != b) & ~(a.isnan() & b.isnan())  # complex: per value
    return a != b
