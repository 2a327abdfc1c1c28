"""Runs the multi-device check's workers under torchrun, inside a time budget.

torchrun (torch.distributed.run, `--standalone`: a rendezvous on this machine) starts and
watches the N processes and stops them all when one fails. More bounds keep a broken setup
from hanging the check: each rank's collectives time out, and each rank ends itself at the
budget or when its torchrun is gone (worker.py); past the budget torchrun is asked to stop its
workers (SIGTERM), then killed with its process group. torchrun puts each worker in a session
of its own, so a kill of torchrun's group alone would leave them running: hence the workers'
own deadline. Output goes to a file, not a pipe a stray worker could hold open.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

TAIL = 2000  # characters of torchrun's output kept for the report
GRACE = 5.0  # seconds torchrun gets to stop its workers after SIGTERM


@dataclass
class Launched:
    """What the ranks left: per rank its results (None if it wrote none) or its error."""

    world: int
    backend: str
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    hung: bool = False  # the budget ran out and the processes were killed
    returncode: int | None = None
    output: str = ""  # the tail of torchrun's output


def backend_for(world: int) -> str:
    """nccl when there is a GPU for every rank, else gloo on CPU processes (runs anywhere)."""
    if torch.cuda.is_available() and torch.cuda.device_count() >= world:
        return "nccl"
    return "gloo"


def launch(target: str, world: int, steps: int, seed: int, budget: float) -> Launched:
    """torchrun N workers on `target` for `steps` steps; what they left, or how they failed."""
    backend = backend_for(world)
    launched = Launched(world, backend)
    with tempfile.TemporaryDirectory(prefix="trainwise-ddp-") as tmp:
        out = Path(tmp)
        config = out / "config.json"
        config.write_text(json.dumps({
            "target": target, "steps": steps, "seed": seed, "out": str(out),
            "backend": backend, "collective_timeout": max(5.0, budget / 2), "deadline": budget,
        }))  # fmt: skip
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={world}", "-m", "trainwise.distributed.worker", str(config),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        log = out / "torchrun.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # its own process group, killed whole on a hang
            )  # fmt: skip
            launched.hung = not _finished(process, budget)
        launched.returncode = process.returncode
        launched.output = log.read_text(errors="replace")[-TAIL:]
        for rank in range(world):
            result, error = out / f"rank{rank}.pt", out / f"rank{rank}.error"
            if error.is_file():
                launched.errors[rank] = error.read_text()
            elif result.is_file():
                launched.results[rank] = torch.load(result, weights_only=True)
    return launched


def _finished(process: subprocess.Popen, budget: float) -> bool:
    """Waits for torchrun; past the budget stops it (and so its workers). False: it hung."""
    try:
        process.wait(timeout=budget)
        return True
    except subprocess.TimeoutExpired:
        pass
    process.terminate()  # torchrun's agent stops its workers on SIGTERM
    try:
        process.wait(timeout=GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return False
