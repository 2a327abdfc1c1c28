"""Replica agreement under data parallelism: every rank's parameter fingerprint, compared.

A fingerprint is (norm, sum) per parameter. Replicas kept in sync by DDP hold bit-identical
parameters, so identical fingerprints; replicas trained apart drift after their first step.
The gather is a collective: it runs on optimizer steps, which every rank takes in lockstep.

Writes: REPLICA_SPREAD (largest spread) and the event REPLICAS (per parameter), sampled steps.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from trainwise.probes.gradients import grad_norms
from trainwise.signals import REPLICA_SPREAD, REPLICAS, ReplicaSpread, Signals


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def replica_spread(params: list[torch.Tensor]) -> list[float]:
    """Per parameter: the largest relative difference of its fingerprint across ranks."""
    with torch.no_grad():
        flat = [p.detach() for p in params]
        sums = torch.stack([p.float().sum() for p in flat])
        local = torch.cat([grad_norms(flat), sums]).double()  # (2N,)
        gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, local)
        stacked = torch.stack(gathered)  # (world, 2N)
        spread = (stacked.amax(0) - stacked.amin(0)) / stacked.abs().amax(0).clamp_min(1e-12)
        n = len(params)
        return torch.maximum(spread[:n], spread[n:]).tolist()


def write(t: int, spread: list[float], signals: Signals) -> None:
    signals.events[REPLICAS] = ReplicaSpread(t, tuple(spread))
    signals.add(REPLICA_SPREAD.key, t, max(spread, default=0.0))
