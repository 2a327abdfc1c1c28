"""Tensors measured during one step, read back to the host in a single transfer.

Probes add device tensors (0-d or 1-d) under a key while the step runs; `read()` concatenates
them per device and copies each block to the CPU once. That copy is the step's one device sync;
afterwards no tensor is referenced, so nothing outlives its step.
"""

from __future__ import annotations

import torch


class Pending:
    def __init__(self) -> None:
        self._items: list[tuple[str, torch.Tensor]] = []

    def add(self, key: str, tensor: torch.Tensor) -> None:
        self._items.append((key, tensor.detach().reshape(-1)))

    def __bool__(self) -> bool:
        return bool(self._items)

    def read(self) -> dict[str, list[float]]:
        """{key: values}; clears the pending tensors. One device->host copy per device."""
        items, self._items = self._items, []
        if not items:
            return {}
        by_device: dict[torch.device, list[int]] = {}
        for i, (_, t) in enumerate(items):
            by_device.setdefault(t.device, []).append(i)
        values: list[list[float]] = [[] for _ in items]
        with torch.no_grad():
            for indices in by_device.values():
                flat = torch.cat([items[i][1].float() for i in indices])
                host = flat.cpu().tolist()  # SYNC: the one device->host transfer of the step
                at = 0
                for i in indices:
                    n = items[i][1].numel()
                    values[i] = host[at : at + n]
                    at += n
        out: dict[str, list[float]] = {}
        for (key, _), vals in zip(items, values, strict=True):
            out.setdefault(key, []).extend(vals)
        return out
