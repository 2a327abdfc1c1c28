"""Static rules about the datasets as a whole: missing values, balance, leaks, order, size.

They read the samples StaticContext already drew (at most `--sample` per split), hash tensors
to find identical samples, and read a handful of extra items only where a rule needs them
(val-augmented reads 4 validation items twice; unshuffled-train reads the labels of the first
samples in training order). Nothing is written to the datasets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from trainwise.context import StaticContext
from trainwise.data import (
    DataSample,
    Inputs,
    class_labels_at,
    first_tensor,
    input_parts,
    part_label,
)
from trainwise.helpers import class_weights
from trainwise.rules.registry import Hit, rule
from trainwise.state import preserved_rng

# "Many times": at 10:1 the loss is dominated by the majority class and a classifier that
# ignores the minority still scores >90% accuracy (He & Garcia, Learning from Imbalanced
# Data, 2009, call 1:10 and beyond the imbalanced regime).
IMBALANCE_RATIO = 10.0
# Share of validation samples also in train (estimated over the datasets) that makes the
# validation score untrustworthy; a stray identical blank image or two stays below it.
OVERLAP_SHARE = 0.01
OVERLAP_MIN = 2
# Share of the training set that are exact copies of another training sample: from 5% the
# copies carry real extra weight in the loss (and usually leak into any random split).
DUPLICATE_SHARE = 0.05
DUPLICATE_MIN = 3
VAL_REREAD = 4  # validation items read twice by val-augmented
ORDER_WINDOW = 256  # labels read in training order by unshuffled-train (8 batches of 32)
# A random order of C balanced classes changes label at a rate 1 - sum p^2; a set sorted by
# label changes C - 1 times. Under a quarter of the expected changes is a sorted/grouped order.
SORTED_RUNS_FRACTION = 0.25
# Validation size: the 95% half-width of an accuracy estimate is 1.96 * sqrt(p (1 - p) / n),
# at most 0.98 / sqrt(n). Under 100 samples it exceeds 10 points: comparisons are noise.
MIN_VAL = 100
Z95 = 1.96

# -- hashing ----------------------------------------------------------------------------------


def row_hashes(x: Any) -> list[int] | None:
    """One hash per sample of collated inputs: a tensor (N, ...), or a tuple/list/dict of
    them (multi-input models). Equal hashes = identical samples."""
    if isinstance(x, Inputs):
        x = dict(x.parts())  # the inputs, without a target a model takes as a keyword
    if isinstance(x, dict):
        x = [x[k] for k in sorted(x, key=str)]
    if isinstance(x, (tuple, list)):
        parts = [row_hashes(v) for v in x]
        if not parts or any(p is None for p in parts) or len({len(p) for p in parts}) != 1:
            return None
        return [hash(row) for row in zip(*parts, strict=True)]
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return None
    flat = x.detach().cpu().reshape(len(x), -1).contiguous()
    if flat.dtype in (torch.bfloat16, torch.float16):
        flat = flat.float()
    if torch.is_floating_point(flat):
        flat = flat + 0.0  # -0.0 and 0.0 hash alike
    rows = flat.numpy()
    return [hash(r.tobytes()) for r in rows]


def _coverage(sample: DataSample) -> float:
    """Fraction of the dataset the sample holds (1 when it holds all of it)."""
    if not sample.dataset_size:
        return 1.0
    return len(sample) / sample.dataset_size


# -- rules ------------------------------------------------------------------------------------


@rule(
    "nonfinite-inputs",
    severity="error",
    category="data",
    summary="NaN or Inf values in the inputs or targets (missing values)",
    why=(
        "A single NaN in a batch makes the loss NaN, and one optimizer step with a NaN gradient "
        "writes NaN into every weight it touches; the run is lost. Missing values in tabular "
        "data are the usual source (a CSV column with blanks read as float)."
    ),
    fix=(
        "Replace missing values by a sentinel (the column median, or 0 after standardizing) "
        "and add a 0/1 indicator column saying the value was missing; or drop those samples."
    ),
    example=(
        "x = torch.tensor(df.values, dtype=torch.float32)      # NaN where cells are empty\n\n"
        "missing = torch.isnan(x)\n"
        "x = torch.where(missing, torch.nanmedian(x, dim=0).values, x)\n"
        "x = torch.cat([x, missing.float()], dim=1)            # indicator columns"
    ),
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (fast.ai: missing values get a fill value and "
    "an indicator column).",
)
def nonfinite_inputs(ctx: StaticContext) -> Iterator[Hit]:
    for split, sample in (("train", ctx.train_sample), ("val", ctx.val_sample)):
        if sample is None:
            continue
        for part, t in nonfinite_tensors(sample):
            bad = ~torch.isfinite(t)
            rows = bad.reshape(len(t), -1).any(dim=1)  # (N,)
            first = sample.indices[int(rows.nonzero()[0])]
            nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            evidence = {"samples": int(rows.sum()), "sampled": len(sample), "nan": nan,
                        "inf": inf, "first_index": first}  # fmt: skip
            columns = ""
            if part != "targets" and t.dim() == 2:
                cols = bad.any(dim=0).nonzero().flatten().tolist()
                evidence["columns"] = cols
                columns = f"; features {cols[:10]}{' ...' if len(cols) > 10 else ''}"
            yield Hit(
                f"{int(rows.sum())} of {len(sample)} sampled {split} samples have non-finite "
                f"{part} ({nan} NaN, {inf} Inf values{columns}); first: {split}[{first}]",
                where=f"{split}[{first}]",
                evidence=evidence,
                fix=(
                    "Fill missing values with the column median and add an indicator column "
                    "(`torch.isnan(x).float()`), or drop those samples."
                    if part != "targets"
                    else "Drop or repair the samples whose targets are NaN/Inf."
                ),
            )


def nonfinite_parts(sample: DataSample) -> list[str]:
    """Which parts of the sample hold NaN/Inf: "inputs" (or "input 'meta'", "input[0]" for one
    input of several), "targets"."""
    return [part for part, _ in nonfinite_tensors(sample)]


def nonfinite_tensors(sample: DataSample) -> list[tuple[str, torch.Tensor]]:
    """(part, tensor) of each float input and of the targets (their first tensor) that holds
    NaN/Inf; a part of several inputs is named by its key."""
    found = []
    tensors = [(part_label(k), v) for k, v in input_parts(sample.inputs)]
    for part, value in [*tensors, ("targets", sample.targets)]:
        t = first_tensor(value)
        if not isinstance(t, torch.Tensor) or not torch.is_floating_point(t) or t.dim() == 0:
            continue
        if bool(torch.isfinite(t.sum())):
            continue  # one reduction: any NaN/Inf would make the sum non-finite
        if bool((~torch.isfinite(t)).any()):  # else finite values whose sum overflowed
            found.append((part, t))
    return found


@rule(
    "class-imbalance",
    severity="warning",
    category="data",
    summary=f"The largest class has {IMBALANCE_RATIO:g}+ times the samples of the smallest",
    why=(
        "With a plain mean loss the majority class dominates every gradient: the model can "
        "reach a high accuracy by rarely predicting the small classes, and the loss curve hides "
        "it. Class weights, resampling, or starting the last-layer bias at the log class prior "
        "put the small classes back in the objective."
    ),
    fix=(
        "Weight the loss by the inverse class frequency: "
        "`nn.CrossEntropyLoss(weight=tw.class_weights(train_labels))`, or sample with a "
        "WeightedRandomSampler; start the last bias at log(prior). Report per-class metrics."
    ),
    example=(
        "loss = nn.CrossEntropyLoss()\n\n"
        "loss = nn.CrossEntropyLoss(weight=tw.class_weights(train_labels))\n"
        "model.fc.bias.data = torch.log(class_counts / class_counts.sum())"
    ),
    source="How to start a deep learning project? (a 15-part thread) (11/n: look at the class balance), Deep Learning Practical Tricks (a tips list) "
    "(imbalanced data: weights, resampling).",
)
def class_imbalance(ctx: StaticContext) -> Iterator[Hit]:
    y = ctx.class_labels
    if y is None or y.numel() == 0 or int(y.min()) < 0:
        return
    counts = torch.bincount(y)
    present = counts > 0
    if int(present.sum()) < 2:
        return
    big, small = int(counts.argmax()), int(torch.where(present, counts, counts.max() + 1).argmin())
    ratio = float(counts[big]) / float(counts[small])
    if ratio < IMBALANCE_RATIO:
        return
    if getattr(ctx.setup.loss, "weight", None) is not None:
        return  # the loss is already class-weighted
    weights = [round(float(w), 4) for w in class_weights(y)]
    prior = counts.float() / counts.sum()
    log_prior = [round(math.log(float(p)), 4) if p > 0 else None for p in prior]
    yield Hit(
        f"class {big} has {int(counts[big])} of {len(y)} sampled train labels, class {small} "
        f"only {int(counts[small])} ({ratio:.1f}x fewer)",
        where=f"class {small}",
        evidence={
            "counts": counts.tolist(),
            "ratio": ratio,
            "class_weights": weights,
            "log_prior": log_prior,
        },  # fmt: skip
        fix=f"`nn.CrossEntropyLoss(weight=torch.tensor({weights}))` (= tw.class_weights(labels)),"
        " or a WeightedRandomSampler; initialize the last bias to the log prior "
        f"{log_prior}.",
    )


@rule(
    "train-val-overlap",
    severity="error",
    category="data",
    summary="Identical samples appear in both the training and the validation set",
    why=(
        "A validation sample that is also in the training set measures memorization, not "
        "generalization: the validation score comes out too good and model selection rewards "
        "overfitting. It comes from splitting after augmentation or oversampling, from "
        "duplicates in the raw data, or from building val from a slice that overlaps train."
    ),
    fix="Deduplicate before splitting and split by a stable key (file, patient, user), not by "
    "position after copies were made.",
    example=(
        "data = oversample(data)                    # copies of minority samples\n"
        "train, val = random_split(data, [0.8, 0.2])   # copies land on both sides\n\n"
        "train, val = random_split(deduplicate(data), [0.8, 0.2])\n"
        "train = oversample(train)"
    ),
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (fast.ai: build a validation set that truly "
    "holds out data).",
)
def train_val_overlap(ctx: StaticContext) -> Iterator[Hit]:
    val = ctx.val_sample
    if val is None:
        return
    train_h, val_h = row_hashes(ctx.train_sample.inputs), row_hashes(val.inputs)
    if train_h is None or val_h is None:
        return
    where_in_train: dict[int, int] = {}
    for i, h in enumerate(train_h):
        where_in_train.setdefault(h, ctx.train_sample.indices[i])
    pairs = [
        (val.indices[j], where_in_train[h]) for j, h in enumerate(val_h) if h in where_in_train
    ]
    # A val sample's twin is in the train sample with probability = the train sample's coverage.
    share = len(pairs) / len(val) / _coverage(ctx.train_sample)
    if len(pairs) < OVERLAP_MIN or share < OVERLAP_SHARE:
        return
    estimate = (
        ""
        if _coverage(ctx.train_sample) == 1 and _coverage(val) == 1
        else f" (sampled; about {min(share, 1):.0%} of the validation set)"
    )
    shown = ", ".join(f"val[{v}] = train[{t}]" for v, t in pairs[:5])
    yield Hit(
        f"{len(pairs)} of {len(val)} validation samples are identical to training samples"
        f"{estimate}: {shown}",
        where=f"val[{pairs[0][0]}]",
        evidence={
            "overlapping": len(pairs),
            "val_sampled": len(val),
            "estimated_share": min(share, 1.0),
            "pairs": [list(p) for p in pairs[:20]],
        },  # fmt: skip
        fix=f"Remove the {len(pairs)}+ shared samples from one side (deduplicate before "
        "splitting, then split by a stable key).",
    )


@rule(
    "duplicate-samples",
    severity="warning",
    category="data",
    summary=f"Many exact duplicates inside the training set (over {DUPLICATE_SHARE:.0%})",
    why=(
        "Exact copies weigh their samples several times in the loss, shrink the effective "
        "dataset, and usually leak into any random split. Copies with different labels are "
        "label noise the model cannot fit."
    ),
    fix="Deduplicate the training set (hash the inputs), and resolve copies whose labels disagree.",
    example=(
        "keys = {hash(x.numpy().tobytes()): i for i, (x, _) in enumerate(ds)}\n"
        "ds = torch.utils.data.Subset(ds, sorted(keys.values()))"
    ),
    source="A. Karpathy, A Recipe for Training "
    "Neural Networks (2019), 'become one with the data': look for duplicates.",
)
def duplicate_samples(ctx: StaticContext) -> Iterator[Hit]:
    sample = ctx.train_sample
    hashes = row_hashes(sample.inputs)
    if hashes is None:
        return
    groups: dict[int, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        groups[h].append(i)
    copies = [g for g in groups.values() if len(g) > 1]
    extra = sum(len(g) - 1 for g in copies)  # rows beyond the first of each group
    # A sampled row's twin is sampled with probability = coverage: scale back to the dataset.
    share = extra / len(sample) / _coverage(sample)
    if extra < DUPLICATE_MIN or share < DUPLICATE_SHARE:
        return
    y = sample.targets
    conflicting = 0
    if isinstance(y, torch.Tensor) and len(y) == len(sample):
        conflicting = sum(1 for g in copies if any(not torch.equal(y[g[0]], y[i]) for i in g[1:]))
    first = [sample.indices[i] for i in copies[0]]
    yield Hit(
        f"{extra} of {len(sample)} sampled training samples are exact copies of another "
        f"(about {min(share, 1):.0%} of the set; {len(copies)} groups, e.g. indices {first[:5]})"
        + (f"; {conflicting} groups have conflicting labels" if conflicting else ""),
        where=f"train[{first[0]}]",
        evidence={
            "duplicates": extra,
            "groups": len(copies),
            "sampled": len(sample),
            "estimated_share": min(share, 1.0),
            "conflicting_label_groups": conflicting,
            "example_group": first[:10],
        },  # fmt: skip
        fix=f"Deduplicate the training set by hashing inputs ({extra}+ copies in the sample).",
    )


@rule(
    "val-augmented",
    severity="warning",
    category="data",
    summary="The validation set returns different tensors for the same index (random transforms)",
    why=(
        "Random augmentation on the validation set makes its score noisy from epoch to epoch "
        "and biased (it measures the model on distorted inputs), so early stopping and model "
        "comparison chase noise. The usual cause is reusing the training transform for val."
    ),
    fix="Give the validation set deterministic transforms (resize/center-crop/normalize only).",
    example=(
        "val = MyDataset(val_files, transform=train_transform)   # random crops and flips\n\n"
        "val = MyDataset(val_files, transform=eval_transform)    # deterministic"
    ),
    source="How to start a deep learning project? (a 15-part thread) (11/n: check what the validation data really "
    "looks like).",
)
def val_augmented(ctx: StaticContext) -> Iterator[Hit]:
    ds = ctx.setup.val_dataset
    if ds is None or isinstance(ds, IterableDataset) or ctx.val_sample is None:
        return
    indices = ctx.val_sample.indices[:VAL_REREAD]
    with preserved_rng():  # the user's random streams continue as if nothing was read
        for i in indices:
            first = first_tensor(ctx.setup.split_batch(ds[i], i, "val")[0])
            second = first_tensor(ctx.setup.split_batch(ds[i], i, "val")[0])
            if not isinstance(first, torch.Tensor) or not isinstance(second, torch.Tensor):
                return
            if first.shape == second.shape and torch.equal(first, second):
                continue
            diff = (
                float((first.float() - second.float()).abs().max())
                if first.shape == second.shape
                else None
            )
            shapes = (
                ""
                if diff is not None
                else f" (shapes {tuple(first.shape)} vs {tuple(second.shape)})"
            )
            yield Hit(
                f"reading val[{i}] twice gave different inputs"
                + (f" (max difference {diff:.3g})" if diff is not None else shapes)
                + ": the validation transform is random",
                where=f"val[{i}]",
                evidence={"index": i, "max_abs_difference": diff},
                fix="Use a deterministic transform for the validation dataset (no random "
                "crop/flip/noise); keep augmentation on the training set only.",
            )
            return


@rule(
    "unshuffled-train",
    severity="warning",
    category="data",
    summary="The training order is fixed (no shuffling) or sorted by label",
    why=(
        "SGD assumes each batch is a fair sample of the data. A fixed order repeats the same "
        "batches each epoch; a set sorted by label gives whole runs of one class, so the model "
        "swings towards the latest class and the loss oscillates with the order, not the "
        "learning."
    ),
    fix="Shuffle every epoch: `DataLoader(train, batch_size=..., shuffle=True)` (or a "
    "RandomSampler / DistributedSampler(shuffle=True)).",
    example=(
        "DataLoader(train, batch_size=64)                 # shuffle defaults to False\n\n"
        "DataLoader(train, batch_size=64, shuffle=True)"
    ),
    source="Deep Learning Practical Tricks (a tips list) (shuffle / reorder the samples every epoch).",
)
def unshuffled_train(ctx: StaticContext) -> Iterator[Hit]:
    train = ctx.setup.train
    dataset = ctx.setup.train_dataset
    if isinstance(dataset, IterableDataset):
        # No sampler: what the stream yields first is what training sees first.
        yield from _sorted_stream(ctx, _first_labels_in_stream(ctx), loader=train)
        return
    if not isinstance(train, DataLoader):
        # trainwise shuffles its own experiments; the user's own loop is not known. Still worth
        # knowing when the dataset itself is stored grouped by label.
        labels = _labels_at(ctx, range(min(ORDER_WINDOW, len(dataset))))
        runs = _runs(labels)
        if runs is not None and runs[0] < SORTED_RUNS_FRACTION * runs[1]:
            yield Hit(
                f"the training dataset is stored grouped by label ({runs[0]} label changes in "
                f"its first {len(labels)} samples, about {runs[1]:.0f} expected at random); "
                "make sure the loader you train with shuffles",
                where="train dataset",
                evidence={"label_changes": runs[0], "expected": runs[1], "window": len(labels)},
                fix="Train with `DataLoader(train, shuffle=True)`.",
                severity="info",
            )
        return
    batches = train.batch_sampler
    if batches is not None and not isinstance(batches, BatchSampler):
        sampler = batches  # a custom batch sampler decides the order itself
    else:
        sampler = batches.sampler if batches is not None else train.sampler
    if isinstance(sampler, RandomSampler) or getattr(sampler, "shuffle", False):
        return
    order = _first_indices(sampler)
    if order is None:
        return
    if not isinstance(sampler, SequentialSampler) and order != list(range(len(order))):
        return  # a custom sampler with its own order
    labels = _labels_at(ctx, order)
    runs = _runs(labels)
    evidence: dict[str, Any] = {"sampler": type(sampler).__name__}
    sorted_note = ""
    if runs is not None:
        evidence.update(label_changes=runs[0], expected=runs[1], window=len(labels))
        if runs[0] < SORTED_RUNS_FRACTION * runs[1]:
            sorted_note = (
                f", and it is grouped by label: {runs[0]} label changes in the first "
                f"{len(labels)} samples where a random order gives about {runs[1]:.0f}"
            )
    yield Hit(
        f"the training DataLoader reads samples in the same fixed order every epoch "
        f"({type(sampler).__name__}){sorted_note}",
        where="train loader",
        evidence=evidence,
        fix="Pass `shuffle=True` to the training DataLoader.",
    )


def _first_indices(sampler: Any) -> list[int] | None:
    """The first dataset indices a sampler (or batch sampler) yields, flattened."""
    order: list[int] = []
    try:
        for item in sampler:
            order.extend(int(i) for i in (item if isinstance(item, (list, tuple)) else [item]))
            if len(order) >= ORDER_WINDOW:
                break
    except Exception:
        return None
    return order[:ORDER_WINDOW] or None


def _labels_at(ctx: StaticContext, order: Any) -> torch.Tensor | None:
    """Class labels of the given dataset indices, read without loading more than needed."""
    order = list(order)
    dataset, sample = ctx.setup.train_dataset, ctx.train_sample
    whole = sample.dataset_size == len(sample) and isinstance(sample.targets, torch.Tensor)
    if whole and not isinstance(dataset, TensorDataset):
        y = sample.targets[order]  # the sample holds the whole set in index order
        return None if torch.is_floating_point(y) or y.dim() != 1 else y
    return class_labels_at(dataset, ctx.setup.split_batch, order)


def _first_labels_in_stream(ctx: StaticContext) -> torch.Tensor | None:
    y = ctx.train_sample.targets
    if not isinstance(y, torch.Tensor) or torch.is_floating_point(y) or y.dim() != 1:
        return None
    return y[:ORDER_WINDOW]


def _runs(labels: torch.Tensor | None) -> tuple[int, float] | None:
    """(label changes observed, changes expected in a random order); None when not judgeable."""
    if labels is None or len(labels) < 8:
        return None
    changes = int((labels[1:] != labels[:-1]).sum())
    p = torch.bincount(labels - labels.min()).float() / len(labels)
    expected = (len(labels) - 1) * float(1 - (p**2).sum())
    if expected < 4:  # (nearly) a single class: order says nothing
        return None
    return changes, expected


def _sorted_stream(ctx: StaticContext, labels: torch.Tensor | None, loader: Any) -> Iterator[Hit]:
    runs = _runs(labels)
    if runs is None or runs[0] >= SORTED_RUNS_FRACTION * runs[1]:
        return
    yield Hit(
        f"the training stream is grouped by label: {runs[0]} label changes in its first "
        f"{len(labels)} samples where a random order gives about {runs[1]:.0f}",
        where="train dataset",
        evidence={"label_changes": runs[0], "expected": runs[1], "window": len(labels)},
        fix="Shuffle the stream (e.g. a shuffle buffer, or shuffle the shard list each epoch).",
    )


@rule(
    "tiny-validation",
    severity="warning",
    category="data",
    summary=f"The validation set has under {MIN_VAL} samples: its score is mostly noise",
    why=(
        "An accuracy measured on n samples has a 95% margin of about 1.96 * sqrt(p(1-p)/n): "
        "with 50 samples that is up to 14 points, so two models (or two epochs) cannot be told "
        "apart. About 9,600 samples pin an accuracy down to +-1 point, 2,400 to +-2."
    ),
    fix="Move samples from training to validation (or use k-fold cross-validation on a small "
    "dataset); the finding gives the size for a +-1 point margin.",
    example=(
        "train, val = random_split(ds, [len(ds) - 40, 40])\n\n"
        "train, val = random_split(ds, [0.8, 0.2])    # or k-fold for small sets"
    ),
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (fast.ai: a validation set large enough to trust).",
)
def tiny_validation(ctx: StaticContext) -> Iterator[Hit]:
    val = ctx.val_sample
    if val is None:
        train = ctx.train_sample.dataset_size
        hold_out = f" (e.g. {min(max(train // 5, 1), 10_000):,} of the {train:,})" if train else ""
        yield Hit(
            "no validation set: overfitting and model choices cannot be measured",
            where="val dataset",
            evidence={"val_samples": 0},
            fix=f"Hold out part of the training data{hold_out} and pass it as `Setup(val=...)`.",
            severity="info",
        )
        return
    n = val.dataset_size or len(val)
    if n >= MIN_VAL:
        return
    margin = Z95 * math.sqrt(0.25 / n)  # worst case p = 0.5
    needed = {f"+-{int(m * 100)}%": math.ceil(Z95**2 * 0.25 / m**2) for m in (0.01, 0.02, 0.05)}
    yield Hit(
        f"the validation set has {n} samples: an accuracy measured on it is uncertain by up to "
        f"+-{margin:.0%} (95%)",
        where="val dataset",
        evidence={"val_samples": n, "margin_95": margin, "samples_needed": needed},
        fix=f"Use at least {needed['+-5%']} validation samples for +-5 points, "
        f"{needed['+-1%']} for +-1 point (or k-fold cross-validation).",
    )
