"""One rank of the multi-device check, started by torchrun (launch.py):

    python -m torch.distributed.run --standalone --nproc-per-node N \\
        -m trainwise.distributed.worker CONFIG.json

Each rank loads the setup file, builds a fresh model with the check's seed (dropout off, as in
the reference), wraps it in DistributedDataParallel, trains K steps on its share of the data,
and writes what it saw to OUT/rank{r}.pt: the losses, the first step's update, the samples'
fingerprints, the replicas' parameter spread (the `ddp-out-of-sync` probe's measure) and the
final weights. An exception is written to OUT/rank{r}.error (the launcher reads it: rank and
message) and re-raised, so torchrun stops the other ranks.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from trainwise.distributed.steps import rank_loader, run_steps, without_dropout

EXIT_STOPPED = 3  # the worker ended itself: deadline reached or torchrun gone


def main(argv: list[str] | None = None) -> None:
    config = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    rank = int(os.environ["RANK"])
    _end_by_itself(config["deadline"])
    out = Path(config["out"])
    try:
        torch.save(_train(config, rank), out / f"rank{rank}.pt")
    except BaseException as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
        (out / f"rank{rank}.error").write_text(f"{type(exc).__name__}: {exc}{where}")
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _end_by_itself(deadline: float) -> None:
    """This process exits at the check's deadline, or as soon as its torchrun is gone, whatever
    the training code is doing (blocked in I/O, sleeping, in a collective): torchrun starts each
    worker in a session of its own, so killing torchrun would not stop it."""
    parent, started = os.getppid(), time.monotonic()

    def watch() -> None:
        while time.monotonic() - started < deadline and os.getppid() == parent:
            time.sleep(0.5)
        os._exit(EXIT_STOPPED)

    threading.Thread(target=watch, daemon=True, name="trainwise-deadline").start()


def _train(config: dict[str, Any], rank: int) -> dict[str, Any]:
    from trainwise.loader import load_setup
    from trainwise.probes.distributed import replica_spread

    backend = config["backend"]
    local = int(os.environ.get("LOCAL_RANK", 0))
    if backend == "nccl":
        # before the group and the first tensor: the Setup's "cuda" is then this rank's GPU
        # (all ranks built their models on cuda:0 first, each opening a context there)
        torch.cuda.set_device(local)
    # A collective that waits longer than this raises instead of hanging (gloo and nccl).
    dist.init_process_group(backend, timeout=timedelta(seconds=config["collective_timeout"]))
    world = dist.get_world_size()
    device = torch.device(f"cuda:{local}") if backend == "nccl" else torch.device("cpu")
    setup = load_setup(config["target"])
    torch.manual_seed(config["seed"])
    model = without_dropout(setup.build_model()).to(device).train()
    optimizer = setup.build_optimizer(model)
    ddp = DistributedDataParallel(model, device_ids=[local] if backend == "nccl" else None)
    loader = rank_loader(setup, world, rank, config["seed"])
    log = run_steps(setup, ddp, model, optimizer, iter(loader), config["steps"], device,
                    fingerprint=True)  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    return {
        "losses": log.losses,
        "first_update": log.first_update,
        "fingerprints": log.fingerprints,
        "spread": max(replica_spread(params), default=0.0),
        "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


if __name__ == "__main__":
    main()
