"""Tensors measured during one step, read back to the host in a single transfer.

Probes add device tensors (0-d or 1-d) while the step runs and keep the slot `add` returns;
`read()` concatenates them per device and copies each block to the CPU once. That copy is the
step's one device sync; afterwards no device tensor is referenced, so nothing outlives its step.
A slot added with `as_tensor=True` comes back as a float32 CPU tensor (e.g. the sampled values
of a histogram), every other slot as a list of floats.
"""

from __future__ import annotations

import torch


class Pending:
    def __init__(self) -> None:
        self._items: list[tuple[torch.Tensor, bool]] = []

    def add(self, tensor: torch.Tensor, as_tensor: bool = False) -> int:
        """Queues a tensor for the read-out; returns its slot in `read()`'s list. Detached when
        it requires grad (the graph must not outlive its step); reshaped at the read-out, not
        here: a step between measured ones adds its loss, and each torch call there counts."""
        self._items.append((tensor.detach() if tensor.requires_grad else tensor, as_tensor))
        return len(self._items) - 1

    def __bool__(self) -> bool:
        return bool(self._items)

    def read(self) -> list:
        """The values of every slot, in slot order; clears the queue. One copy per device."""
        items, self._items = self._items, []
        if not items:
            return []
        values: list = [None] * len(items)
        by_device: dict[torch.device, list[int]] = {}
        for i, (t, _) in enumerate(items):
            by_device.setdefault(t.device, []).append(i)
        with torch.no_grad():
            for indices in by_device.values():  # one block per device (usually one)
                # SYNC: the one device->host transfer of the step (per device)
                host = torch.cat(_flat_blocks([items[i][0] for i in indices])).cpu()
                numbers = host.tolist() if not any(items[i][1] for i in indices) else None
                at = 0
                for i in indices:
                    n = items[i][0].numel()
                    if numbers is not None:
                        values[i] = numbers[at : at + n]
                    elif items[i][1]:
                        values[i] = host[at : at + n]  # a view of the host copy, no device
                    else:
                        values[i] = host[at : at + n].tolist()
                    at += n
        return values


def _flat_blocks(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors as 1-d float32 blocks for one `torch.cat`, in order. A run of 0-d float32
    tensors (the losses of the steps kept between measured ones: ~20 in a row) becomes one
    block through one `torch.stack`, not a reshape and a cast each: every torch call in a
    step's read-out runs cold (a few microseconds)."""
    blocks: list[torch.Tensor] = []
    scalars: list[torch.Tensor] = []
    for t in tensors:
        if t.dtype is torch.float32 and t.dim() == 0:
            scalars.append(t)
            continue
        if scalars:
            blocks.append(torch.stack(scalars))
            scalars = []
        blocks.append(t if t.dim() == 1 and t.dtype is torch.float32 else t.reshape(-1).float())
    if scalars:
        blocks.append(torch.stack(scalars))
    return blocks
