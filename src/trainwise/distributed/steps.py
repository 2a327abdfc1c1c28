"""What the single-process reference run and each rank of the multi-device check share.

The reference sees, at step k, exactly the samples the N ranks see together: a
DistributedSampler(shuffle=True, seed, drop_last=True) gives rank r the indices
order[r::N] of one permutation `order`, so rank r's k-th batch of b is order[r + N*j] for j in
[k*b, (k+1)*b), and the N batches together are order[N*k*b : N*(k+1)*b], one global batch of
N*b. With a loss averaged over the batch, DDP's averaged gradient is the reference's gradient
(up to the order of the float sums): the runs must agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from trainwise.data import input_parts, to_device
from trainwise.spec import Setup


@dataclass
class StepLog:
    """K training steps: the loss of each, the first step's update, what got no gradient."""

    losses: list[float] = field(default_factory=list)
    first_update: float | None = None  # L2 norm of the parameters' change in the first step
    no_grad: set[str] = field(default_factory=set)  # parameters without a gradient in a step
    fingerprints: list[str] = field(default_factory=list)  # one per sample seen (rank runs)


def without_dropout(model: nn.Module) -> nn.Module:
    """Dropout off: the ranks draw the same masks (same seed) over different samples, the
    reference other masks over all of them, so with dropout on the runs could never agree."""
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
        elif isinstance(module, (nn.MultiheadAttention, nn.RNNBase)):
            module.dropout = 0.0  # attention weights; between stacked RNN layers
    return model


def distributed_order(dataset: Dataset, world: int, seed: int) -> list[int]:
    """The permutation a DistributedSampler(shuffle=True, seed=seed, drop_last=True) deals out
    in epoch 0, cut to a multiple of `world` (torch's own sampler, asked rank by rank)."""
    per_rank = [
        list(DistributedSampler(dataset, world, r, shuffle=True, seed=seed, drop_last=True))
        for r in range(world)
    ]
    return [per_rank[r][j] for j in range(len(per_rank[0])) for r in range(world)]


def reference_batches(setup: Setup, world: int, batch: int, seed: int) -> Iterator[Any]:
    """The global batches (world * batch samples) the ranks see together, in step order."""
    dataset = setup.train_dataset
    order = distributed_order(dataset, world, seed)
    step = world * batch
    collate = setup.collate_fn("train")
    for start in range(0, len(order) - step + 1, step):
        yield collate([dataset[i] for i in order[start : start + step]])


def dealt_by_trainwise(setup: Setup) -> bool:
    """Whether trainwise deals the training data out to the ranks (a DistributedSampler over
    the training set): for a dataset, and for a DataLoader on torch's default samplers (plain
    shuffle or order: the DistributedSampler does both, at the loader's batch size). A loader
    with a sampler of its own (weighted, grouped, a batch sampler) or an IterableDataset is
    used as it is: whether it splits the data by rank is for the check to find out."""
    loader = setup.train
    if not isinstance(loader, DataLoader):
        return True
    plain = type(loader.sampler) in (RandomSampler, SequentialSampler)
    return (
        plain
        and type(loader.batch_sampler) is BatchSampler
        and not isinstance(loader.dataset, IterableDataset)
    )


def per_rank_batch(setup: Setup) -> int:
    loader = setup.train
    if isinstance(loader, DataLoader) and loader.batch_size:
        return loader.batch_size
    return setup.effective_batch_size


def rank_loader(setup: Setup, world: int, rank: int, seed: int) -> DataLoader:
    """Rank `rank`'s batches: the training set through a DistributedSampler (shuffled unless
    the Setup's own loader kept the order), or the Setup's own DataLoader as it is."""
    loader = setup.train
    if not dealt_by_trainwise(setup):
        return loader
    shuffle = not isinstance(loader, DataLoader) or isinstance(loader.sampler, RandomSampler)
    sampler = DistributedSampler(
        setup.train_dataset, world, rank, shuffle=shuffle, seed=seed, drop_last=True
    )
    return DataLoader(
        setup.train_dataset, batch_size=per_rank_batch(setup), sampler=sampler, drop_last=True,
        collate_fn=setup.collate_fn("train"),
    )  # fmt: skip


def ddp_unsupported(setup: Setup) -> str:
    """Why this setup cannot train under trainwise's DDP wrapper ("" when it can)."""
    from trainwise.steps import TrainingStep

    if isinstance(setup.loss, TrainingStep):
        return (
            f"its loss is a training step ({setup.loss_name}) that calls the model's own "
            "methods, which DistributedDataParallel does not route; a LightningModule trains "
            "on several devices through Lightning's own strategy: Trainer(strategy='ddp')"
        )
    return ""


def run_steps(
    setup: Setup,
    model: nn.Module,
    trained: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[Any],
    steps: int,
    device: torch.device,
    fingerprint: bool = False,
) -> StepLog:
    """`steps` optimizer steps of `model` (a DDP wrapper of `trained`, or `trained` itself) on
    `batches`, logged."""
    log = StepLog()
    names = {id(p): n for n, p in trained.named_parameters() if p.requires_grad}
    for index, batch in zip(range(steps), batches, strict=False):
        x, y = setup.split_batch(batch, index, "train")
        x, y = to_device(x, device), to_device(y, device)
        if fingerprint:
            log.fingerprints += sample_fingerprints(x)
        before = [p.detach().clone() for p in trained.parameters()] if index == 0 else None
        optimizer.zero_grad(set_to_none=True)
        loss = setup.batch_loss(model, x, y)
        loss.backward()
        log.no_grad |= {
            n for p in trained.parameters() if (n := names.get(id(p))) and p.grad is None
        }
        optimizer.step()
        log.losses.append(float(loss.detach()))
        if before is not None:
            with torch.no_grad():
                moved = [
                    (p.detach() - b).float().norm()
                    for p, b in zip(trained.parameters(), before, strict=True)
                ]
                log.first_update = float(torch.stack(moved).norm())
    return log


def sample_fingerprints(x: Any) -> list[str]:
    """A short hash of each sample of the batch's first tensor input (to tell whether two ranks
    were handed the same samples)."""
    tensors = [t for _, t in input_parts(x) if isinstance(t, torch.Tensor) and t.dim() >= 1]
    if not tensors:
        return []
    rows = tensors[0].detach().cpu().contiguous()
    if rows.dtype == torch.bfloat16:  # no numpy dtype for it
        rows = rows.float()
    return [hashlib.blake2b(row.numpy().tobytes(), digest_size=8).hexdigest() for row in rows]
