"""Multi-device: N processes under DistributedDataParallel against one process at the same
global batch (`check --devices N`). Judged by `multi-device-broken` (rules/protocol.py).

The one-process reference trains here, K steps on the global batches the ranks see together
(distributed/steps.py); torchrun then trains the same K steps on N processes (gloo on CPU when
there are fewer GPUs than N, so it runs anywhere), each loading the setup file anew. Compared:
the replicas' weights, the final weights against the reference's, the first step's loss and
update, which samples each rank saw; a rank's error or a hang ends the stage within its budget.
"""

from __future__ import annotations

import re
import time

import torch
from torch import nn

from trainwise.distributed.launch import Launched, launch
from trainwise.distributed.steps import (
    StepLog,
    ddp_unsupported,
    dealt_by_trainwise,
    per_rank_batch,
    reference_batches,
    run_steps,
    without_dropout,
)
from trainwise.measurements import MultiDevice
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome

STEPS = 5  # enough for a first-step ratio and a gap that float noise cannot fake
BUDGET = 120.0  # seconds for the whole launch: torchrun, N imports of torch, K steps


class MultiDeviceStage:
    name = "multi-device"
    title = "Multi-device (data parallel)"

    def __init__(self, budget: float = BUDGET) -> None:
        self.budget = budget  # seconds before the processes are killed as hung

    def run(self, run: CheckRun) -> StageOutcome:
        if run.devices < 2:
            return ex.skipped("runs with --devices N (N >= 2)")
        if run.target is None:
            return ex.skipped(
                "needs the setup file, so that each process can build the setup: "
                "check(setup, devices=N, target='my_setup.py')"
            )
        if (reason := ex.blocking_reason(run)) is not None:
            return ex.skipped(reason)
        setup, world = run.setup, run.devices
        if reason := ddp_unsupported(setup):
            return ex.skipped(f"not under trainwise's DDP: {reason}")
        own_loader = not dealt_by_trainwise(setup)
        batch = per_rank_batch(setup)
        steps = min(STEPS, len(setup.train_dataset) // (world * batch))
        if steps < 1:
            return ex.skipped(
                f"needs at least {world * batch} training samples ({world} x {batch})"
            )
        reference = None if own_loader else _reference(run, world, batch, steps)
        started = time.perf_counter()
        launched = launch(run.target, world, steps, run.seed, self.budget)
        seconds = time.perf_counter() - started
        m = _measure(run, launched, reference, steps, batch, seconds, self.budget)
        return StageOutcome(
            metrics={k: v for k, v in vars(m).items() if not isinstance(v, tuple)},
            summary=_summary(m),
            notes=[
                "the Setup's DataLoader has a sampler of its own and decides each rank's "
                "data: no one-process reference to compare with"
            ]
            if own_loader
            else [],  # fmt: skip
            measurement=m,
        )


def _reference(run: CheckRun, world: int, batch: int, steps: int) -> tuple[StepLog, dict, dict]:
    """The one-process run: (its log, the weights before, the weights after)."""
    setup = run.setup
    with ex.isolated(run):
        model, optimizer = ex.fresh(run)
        without_dropout(model)
        before = _weights(model)
        batches = reference_batches(setup, world, batch, run.seed)
        log = run_steps(setup, model, model, optimizer, batches, steps, setup.torch_device)
        return log, before, _weights(model)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().double().clone() for n, p in model.named_parameters()}


def _measure(run: CheckRun, launched: Launched, reference, steps: int, batch: int,
             seconds: float, budget: float) -> MultiDevice:  # fmt: skip
    common = {
        "devices": launched.world, "backend": launched.backend, "steps": steps,
        "per_device_batch": batch, "seconds": seconds, "budget": budget,
        "batchnorm": _batchnorm_layers(run), "own_loader": reference is None,
    }  # fmt: skip
    unused = tuple(sorted(reference[0].no_grad)) if reference else ()
    if launched.hung:
        return MultiDevice(**common, hung=True, unused=unused)
    if launched.errors:  # the first rank that failed, in its own words
        rank, error = min(launched.errors.items())
        unused = unused or _unused_from(error, run)
        return MultiDevice(**common, error=f"rank {rank}: {error}", unused=unused)
    if len(launched.results) < launched.world:  # a rank died without a word (killed, OOM)
        tail = launched.output.strip()[-500:]
        error = f"torchrun exited with {launched.returncode} and no rank said why: {tail}"
        return MultiDevice(**common, error=error, unused=unused)
    ranks = [launched.results[r] for r in range(launched.world)]
    first = ranks[0]
    overlap = _overlap([set(r["fingerprints"]) for r in ranks])
    if reference is None:
        return MultiDevice(**common, spread=first["spread"], overlap=overlap)
    log, before, after = reference
    state = {n: first["state"][n].double() for n in after if n in first["state"]}
    moved = _norm({n: after[n] - before[n] for n in after})
    gap = _norm({n: state[n] - after[n] for n in state}) / max(moved, 1e-12)
    loss = sum(r["losses"][0] for r in ranks) / len(ranks)
    return MultiDevice(
        **common, spread=first["spread"], overlap=overlap, unused=unused, param_gap=gap,
        loss_ratio=loss / log.losses[0] if log.losses and log.losses[0] else None,
        update_ratio=(first["first_update"] / log.first_update) if log.first_update else None,
    )  # fmt: skip


def _norm(tensors: dict[str, torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t * t).sum() for t in tensors.values())))


def _overlap(seen: list[set[str]]) -> float | None:
    """Share of rank 0's samples that some other rank saw too."""
    if not seen[0]:
        return None
    others = set().union(*seen[1:])
    return len(seen[0] & others) / len(seen[0])


def _batchnorm_layers(run: CheckRun) -> tuple[str, ...]:
    with ex.isolated(run):
        model = run.setup.build_model()
    return tuple(
        n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
    )


def _unused_from(error: str, run: CheckRun) -> tuple[str, ...]:
    """Parameter names from DDP's "Parameter indices which did not receive grad ... : 2 3"."""
    found = re.search(r"did not receive grad for rank \d+: ([\d ]+)", error)
    if not found:
        return ()
    with ex.isolated(run):
        names = [n for n, p in run.setup.build_model().named_parameters() if p.requires_grad]
    return tuple(names[int(i)] for i in found.group(1).split() if int(i) < len(names))


def _summary(m: MultiDevice) -> str:
    where = f"{m.devices} processes ({m.backend}), {m.steps} steps, {m.per_device_batch} per device"
    if m.hung:
        return f"{where}: stopped after {m.budget:.0f}s (hung)"
    if m.error:
        return f"{where}: {m.error.splitlines()[0][:160]}"
    parts = [f"replica spread {m.spread:.1e}"]
    if m.param_gap is not None:
        parts.append(f"weights vs one process {m.param_gap:.1e} of their movement")
    if m.overlap is not None:
        parts.append(f"samples shared between ranks {m.overlap:.0%}")
    return f"{where} in {m.seconds:.1f}s: " + ", ".join(parts)
