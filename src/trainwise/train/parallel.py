"""fit on several processes: torchrun starts them (`trainwise fit --devices N` does it for you;
`torchrun ... -m trainwise fit ...` across machines), each runs `tw.fit`, and this is what
changes there:

- the process group: gloo for a Setup on the CPU, nccl for one on cuda when each process on
  the machine has a GPU of its own, and then the Setup's "cuda" is that process's GPU
  (torch.distributed's environment variables, set by torchrun, say who is who; every rank
  picks the same backend); a Setup on cuda with fewer GPUs than processes is refused with the
  counts;
- the model trains wrapped in DistributedDataParallel (gradients averaged every step);
- the training set is dealt out by a DistributedSampler (a DataLoader the Setup built is used
  as it is: `check --devices N` tells whether it splits the data), each process at the Setup's
  batch size, so the global batch is N times it;
- decisions every process must take together come from rank 0: the LR of lr "auto", and
  whether to stop (agreed at fixed steps, so no process waits in a collective the others left);
- the whole-set validation is sharded: batch i is evaluated by rank i mod N, and the sums
  (the loss, torchmetrics' states) are reduced across ranks, so every rank has the numbers one
  process would have;
- rank 0 alone writes the run record and the checkpoints.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from trainwise.distributed.launch import backend_for
from trainwise.distributed.steps import (
    ddp_unsupported,
    dealt_by_trainwise,
    per_rank_batch,
    rank_loader,
)
from trainwise.errors import SetupError
from trainwise.spec import Setup


@dataclass(frozen=True)
class Parallel:
    world: int
    rank: int
    local_rank: int
    backend: str

    @classmethod
    def from_env(cls, device: torch.device) -> Parallel | None:
        """The process group torchrun describes (WORLD_SIZE >= 2), joined; None for one process.
        `device`: the Setup's; a Setup on the CPU trains in gloo processes on a GPU machine too
        (nccl moves only GPU tensors)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world < 2:
            return None
        local = int(os.environ.get("LOCAL_RANK", "0"))
        on_gpus = device.type == "cuda"
        backend = backend_for(int(os.environ.get("LOCAL_WORLD_SIZE", world))) if on_gpus else "gloo"
        if backend == "nccl":
            # "cuda" (the Setup's default device) then means this process's own GPU: every
            # rank on cuda:0 would make nccl refuse the group (one GPU, two ranks)
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group(backend)
        return cls(dist.get_world_size(), dist.get_rank(), local, backend)

    @property
    def local_world(self) -> int:
        return int(os.environ.get("LOCAL_WORLD_SIZE", self.world))

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def loader(self, setup: Setup, seed: int) -> DataLoader:
        """This process's share of the training set (distributed/steps.py's rank_loader; fit
        reshuffles it each epoch with set_epoch)."""
        return rank_loader(setup, self.world, self.rank, seed)

    def check(self, setup: Setup) -> None:
        if reason := ddp_unsupported(setup):
            raise SetupError(f"fit on {self.world} processes: not possible here: {reason}")
        if setup.torch_device.type == "cuda" and self.backend != "nccl":
            raise SetupError(
                f"fit on {self.world} processes: the Setup trains on cuda, but this machine has "
                f"{torch.cuda.device_count()} GPU(s) for {self.local_world} processes, and data "
                f"parallelism needs one GPU per process; use --devices "
                f"{max(1, torch.cuda.device_count())} (or device='cpu' in the Setup for CPU "
                f"processes)"
            )

    def wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.local_rank] if self.backend == "nccl" else None
        return DistributedDataParallel(model, device_ids=ids)

    def shard(self, loader: Any) -> tuple[Iterable[tuple[int, Any]], bool]:
        """(this rank's (index, batch) pairs of a validation loader, whether they are a shard).
        Batch i goes to rank i mod N. Every batch still passes through each rank's loader
        (collated, not evaluated): it works for any loader the Setup built. With fewer batches
        than ranks (or a loader without a length), every rank evaluates all of them: an empty
        shard would leave torchmetrics' reduction without states on that rank."""
        try:
            enough = len(loader) >= self.world
        except TypeError:
            enough = False
        if not enough:
            return enumerate(loader), False
        return itertools.islice(enumerate(loader), self.rank, None, self.world), True

    def agree(self, value: Any) -> Any:
        """Rank 0's value, on every process (a collective: every rank calls it at the same step)."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def note(self, setup: Setup) -> str:
        if not dealt_by_trainwise(setup):
            return (
                "data parallel: the Setup's DataLoader has a sampler of its own and is used as "
                "it is on every process (`check --devices N` tells whether it splits the data)"
            )
        per_device = per_rank_batch(setup)
        return (
            f"data parallel: {self.world} processes ({self.backend}), {per_device} samples per "
            f"process, a global batch of {self.world * per_device}"
        )
