"""Tensors measured during one step, read back to the host in a single transfer.

Probes add device tensors (0-d or 1-d) while the step runs and keep the slot `add` returns;
`read()` concatenates them per device and copies each block to the CPU once. That copy is the
step's one device sync; afterwards no tensor is referenced, so nothing outlives its step.
"""

from __future__ import annotations

import torch


class Pending:
    def __init__(self) -> None:
        self._items: list[torch.Tensor] = []

    def add(self, tensor: torch.Tensor) -> int:
        """Queues a tensor for the read-out; returns its slot in `read()`'s list."""
        self._items.append(tensor.detach().reshape(-1))
        return len(self._items) - 1

    def __bool__(self) -> bool:
        return bool(self._items)

    def read(self) -> list[list[float]]:
        """The values of every slot, in slot order; clears the queue. One copy per device."""
        items, self._items = self._items, []
        if not items:
            return []
        device = items[0].device
        with torch.no_grad():
            if all(t.device == device for t in items):
                # SYNC: the one device->host transfer of the step
                host = torch.cat([t.float() for t in items]).cpu().tolist()
                out, at = [], 0
                for t in items:
                    n = t.numel()
                    out.append(host[at : at + n])
                    at += n
                return out
            values: list[list[float]] = [[] for _ in items]
            by_device: dict[torch.device, list[int]] = {}
            for i, t in enumerate(items):
                by_device.setdefault(t.device, []).append(i)
            for indices in by_device.values():  # model split over devices: one copy each
                host = torch.cat([items[i].float() for i in indices]).cpu().tolist()
                at = 0
                for i in indices:
                    n = items[i].numel()
                    values[i] = host[at : at + n]
                    at += n
            return values
