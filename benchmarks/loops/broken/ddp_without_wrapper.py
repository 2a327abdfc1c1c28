"""Launched with 2 processes, but the model is never wrapped in DistributedDataParallel: each
rank trains on its own shard and the replicas drift apart."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["ddp-out-of-sync"]


def train(rank: int, world: int, wrap: bool, verbose: bool = False):
    import torch.distributed as dist

    torch.manual_seed(0)  # same init on every rank
    x, y, _, _ = digits()
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    if wrap:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = batches(x[rank::world], y[rank::world], 16, seed=rank)
    with tw.watch(model, optimizer, every=5, verbose=verbose and rank == 0) as watch:
        for _ in range(12):
            xb, yb = next(data)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)
    dist.barrier()
    return watch.findings


def run_two_processes(verbose: bool = False, timeout: float = 300) -> dict:
    """Runs this file under `torchrun --nproc_per_node 2` (gloo, CPU), training once without and
    once with the DDP wrapper in the same processes; returns rank 0's findings of each:
    {"unwrapped": [...], "wrapped": [...]}."""
    import json
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "findings.json"
        env = {**os.environ, "TW_FINDINGS_OUT": str(out), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", __file__]  # fmt: skip
        for attempt in range(2):
            # A free rendezvous port is picked at start; on a machine shared with other jobs
            # it can be taken before use, so one retry separates that from a real failure.
            proc = subprocess.run(cmd, env=env, capture_output=not verbose, text=True,
                                  timeout=timeout)  # fmt: skip
            if proc.returncode == 0:
                break
            if attempt == 1:
                raise RuntimeError(f"torchrun failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        runs = json.loads(out.read_text())
        return {k: [tw.Finding(**d) for d in v] for k, v in runs.items()}


def _torchrun_entry():
    import json
    import os

    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        runs = {
            variant: [f.to_dict() for f in train(rank, world, wrap=wrap, verbose=rank == 0)]
            for variant, wrap in (("unwrapped", False), ("wrapped", True))
        }
        if rank == 0 and os.environ.get("TW_FINDINGS_OUT"):
            Path(os.environ["TW_FINDINGS_OUT"]).write_text(json.dumps(runs))
    finally:
        dist.destroy_process_group()


def main(quick: bool = False, verbose: bool = False):
    return run_two_processes(verbose=verbose)["unwrapped"]


if __name__ == "__main__":
    import os

    if "LOCAL_RANK" in os.environ:  # started by torchrun
        _torchrun_entry()
    else:
        for f in main(verbose=True):
            print(f.rule, f.where, f.message)
