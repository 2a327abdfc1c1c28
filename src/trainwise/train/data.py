"""The data fit trains on: the Setup's own loaders, a held-out split when it has no
validation set, and a stratified sample (`--sample`, the seeds' "work on a small sample")."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from trainwise.data import class_labels_at, dataset_len
from trainwise.errors import SetupError
from trainwise.spec import Setup

HELD_OUT = 0.2  # of the training set, when the Setup has no validation set


def replaced(setup: Setup, train: Dataset, val: Dataset | None) -> Setup:
    """The setup with new train/val datasets, each behind a loader like the user's own (its
    batch size and collate function); no val stays no val (fit then holds out a split)."""
    import dataclasses

    size = setup.effective_batch_size
    return dataclasses.replace(
        setup,
        train=_loader_like(setup.train, train, size, shuffle=True),
        val=_loader_like(setup.val, val, size, shuffle=False) if val is not None else None,
    )


def _loader_like(source: Any, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
    if isinstance(source, DataLoader):
        return DataLoader(
            dataset, batch_size=source.batch_size or batch_size, shuffle=shuffle,
            collate_fn=source.collate_fn, num_workers=source.num_workers,
            pin_memory=source.pin_memory, drop_last=source.drop_last if shuffle else False,
        )  # fmt: skip
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)


def with_validation(setup: Setup, seed: int) -> tuple[Setup, str]:
    """(setup, note): the setup as it is when it has a validation set; else with 20% of the
    training set held out (seeded), and a note saying so."""
    if setup.val is not None:
        return setup, ""
    dataset = setup.train_dataset
    size = _sized(dataset, "hold out a validation split")
    order = np.random.default_rng(seed).permutation(size).tolist()
    cut = max(1, int(round(size * HELD_OUT)))
    note = (
        f"the setup has no validation set: {cut} of its {size} training samples "
        f"({HELD_OUT:.0%}) are held out for validation"
    )
    return replaced(setup, Subset(dataset, order[cut:]), Subset(dataset, order[:cut])), note


def sampled(setup: Setup, sample: float | int, seed: int, labels: Any) -> tuple[Setup, str]:
    """(setup, note): train and val reduced to a sample, stratified by class when `labels` (the
    training labels, one per sample, or None) are known: an int is a count, a float in (0, 1)
    a fraction of each set."""
    train = setup.train_dataset
    train_size = _sized(train, "sample it")
    keep = _count(sample, train_size)
    indices = _stratified(train_size, keep, labels, seed)
    val, val_note = setup.val_dataset, ""
    if val is not None:
        val_size = _sized(val, "sample it")
        val_keep = _count(sample, val_size) if isinstance(sample, float) else min(val_size, keep)
        val = Subset(val, _stratified(val_size, val_keep, None, seed + 1))
        val_note = f", validation {val_keep} of {val_size}"
    how = "stratified by class" if labels is not None else "at random"
    note = f"trained on a sample ({how}): train {len(indices)} of {train_size}{val_note}"
    return replaced(setup, Subset(train, indices), val), note


def _count(sample: float | int, size: int) -> int:
    if isinstance(sample, float) and 0 < sample < 1:
        return max(1, int(round(sample * size)))
    if isinstance(sample, int) and sample >= 1:
        return min(sample, size)
    raise SetupError(f"--sample {sample}: expected a count >= 1 or a fraction in (0, 1)")


def _stratified(size: int, keep: int, labels: Any, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    if keep >= size:
        return list(range(size))
    if labels is None:
        return sorted(rng.choice(size, size=keep, replace=False).tolist())
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    chosen: list[int] = []
    for label, share in zip(classes, _shares(counts, keep), strict=True):
        members = np.flatnonzero(labels == label)
        chosen += rng.choice(members, size=share, replace=False).tolist()
    return sorted(chosen)


def _shares(counts: np.ndarray, keep: int) -> list[int]:
    """Each class's part of `keep`, in proportion to its count and adding up to `keep` (the
    largest remainders round up); every class keeps at least one sample."""
    exact = counts * keep / counts.sum()
    shares = np.maximum(np.floor(exact).astype(int), 1)
    while shares.sum() < keep:  # the classes furthest under their exact share get one more
        shares[np.argmax(exact - shares)] += 1
    while shares.sum() > keep and (shares > 1).any():  # the ones given to tiny classes
        shares[np.argmax(np.where(shares > 1, shares - exact, -np.inf))] -= 1
    return shares.tolist()


def _sized(dataset: Dataset, what: str) -> int:
    size = dataset_len(dataset)
    if size is None or isinstance(dataset, IterableDataset):
        raise SetupError(
            f"fit: the dataset has no length (an IterableDataset), so fit cannot {what}; give "
            "the Setup a val= set, and --steps instead of --epochs"
        )
    return size


def class_labels(setup: Setup) -> list[int] | None:
    """Every training sample's class label (single-label classification), else None."""
    dataset = setup.train_dataset
    y = class_labels_at(dataset, setup.split_batch, range(_sized(dataset, "stratify")))
    return None if y is None else y.tolist()
