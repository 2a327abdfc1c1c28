"""Reading samples from the user's datasets: validated, sampled, never mutated."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, TensorDataset

from trainwise.errors import SetupError

DEFAULT_SAMPLE = 2000  # enough for per-channel statistics and label counts; cheap to read


@dataclass(frozen=True)
class Inputs:
    """The model's arguments for one batch when they are more than one value: the model is
    called as model(*args, **kwargs). Every tensor holds one row per sample on dim 0.

    target_key: the keyword under which kwargs also carries the target, for a model that
    computes its own loss (the Hugging Face `labels=`); the rules leave it out of the inputs.
    layout: how the batch held the target, to put it back (`trainwise.batches.join`): a dict
    key, or the position in a tuple.
    """

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    target_key: str | None = None
    layout: str | int | None = None

    def map(self, fn: Callable[[Any], Any]) -> Inputs:
        return Inputs(
            tuple(fn(a) for a in self.args),
            {k: fn(v) for k, v in self.kwargs.items()},
            self.target_key,
            self.layout,
        )

    def parts(self) -> list[tuple[str, Any]]:
        """(name, value) of each input, the target left out: names are the dict keys, or
        "input[i]" for positional arguments."""
        named = [(f"input[{i}]", a) for i, a in enumerate(self.args)]
        return named + [(k, v) for k, v in self.kwargs.items() if k != self.target_key]


def as_pair(item: Any, index: int, where: str) -> tuple[Any, Any]:
    """Check that a dataset item (or a batch) is (input, target), naming the sample otherwise."""
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    if isinstance(item, dict):
        got = f"a dict with keys {sorted(item)[:6]}"
    elif isinstance(item, (tuple, list)):
        got = f"a {type(item).__name__} of {len(item)} elements"
    else:
        got = type(item).__name__
    raise SetupError(
        f"{where} item {index} is {got}; expected a pair (input, target). Wrap the dataset so "
        "that __getitem__ returns `(x, y)`."
    )


# What a sample's input and target may be made of: tensors and arrays, or plain numbers (the
# default collate turns those into tensors), inside tuples, lists and dicts.
TENSOR_LIKE = (torch.Tensor, np.ndarray, np.generic, bool, int, float, complex)
EXPECTED_TENSORS = (
    "expected a tensor (or a tuple/dict of tensors): convert it in the dataset's __getitem__ "
    "or the DataLoader's collate_fn (e.g. tokenize text into token ids, "
    "transforms.ToTensor() for images)"
)


def first_non_tensor(items: list, indices: list[int], where: str) -> tuple[str, str] | None:
    """("input", "train sample 3 is not made of tensors: its input is a str ('a fine film')")
    for the first sample with a part that is no tensor (a string, an image object...)."""
    for index, item in zip(indices, items, strict=True):
        for part, value in zip(("input", "target"), item, strict=True):
            if (found := _not_tensor(value, f"its {part}")) is not None:
                path, bad = found
                shown = repr(bad) if len(repr(bad)) <= 40 else repr(bad)[:37] + "..."
                return part, (
                    f"{where} sample {index} is not made of tensors: {path} is a "
                    f"{type(bad).__name__} ({shown})"
                )
    return None


def _not_tensor(value: Any, path: str) -> tuple[str, Any] | None:
    """(where, value) of the first part of `value` that is not tensor-like, else None."""
    if isinstance(value, TENSOR_LIKE):
        return None
    if isinstance(value, Inputs):
        return _not_tensor(dict(value.parts()), path)
    if isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            if (found := _not_tensor(v, f"{path}[{i}]")) is not None:
                return found
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if (found := _not_tensor(v, f"{path}[{k!r}]")) is not None:
                return found
        return None
    return path, value


# Splits a batch (or one item) into (model input, target), naming item `index` of `where` when
# it cannot: `Setup.split_batch` (trainwise.batches), or `as_pair` for plain (x, y) data.
Split = Callable[[Any, int, str], tuple[Any, Any]]


def class_labels_at(dataset: Dataset, split: Split, indices: Any) -> torch.Tensor | None:
    """The class labels (N,) of the items at `indices`: a TensorDataset's own label tensor, else
    each item read and split. None when they are not single-label class indices (floats,
    several per item) or cannot be read."""
    indices = list(indices)
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        y = dataset.tensors[1][indices]
    else:
        try:
            y = torch.as_tensor([split(dataset[i], i, "train")[1] for i in indices])
        except Exception:
            return None
    if torch.is_floating_point(y) or y.dim() != 1:
        return None
    return y


def dataset_len(dataset: Dataset) -> int | None:
    if isinstance(dataset, IterableDataset):
        return None
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return None


@dataclass
class DataSample:
    """A sample of a dataset, collated into tensors: inputs (N, ...), targets (N, ...)."""

    indices: list[int]  # dataset index of each row (position in iteration order if iterable)
    inputs: Any
    targets: Any
    dataset_size: int | None
    # (the part, "input" or "target", and a sentence naming the sample) where the sample holds
    # something that is no tensor (a string...); None when it is all tensors.
    non_tensor: tuple[str, str] | None = None

    def __len__(self) -> int:
        return len(self.indices)


def sample_dataset(
    dataset: Dataset,
    collate: Callable[[list], Any],
    limit: int = DEFAULT_SAMPLE,
    seed: int = 0,
    where: str = "train",
    split: Split = as_pair,
) -> DataSample:
    """Read up to `limit` samples (the whole set when smaller), chosen at random, in index order.

    Each item is split on its own first, so that a malformed one is named by its index; the
    raw items are then collated together (a collator may pad dict items) and the batch split.
    Uses its own generator so the user's RNG state is left alone.
    """
    size = dataset_len(dataset)
    if size is None:
        raw, indices = [], []
        for i, item in enumerate(dataset):  # iterable datasets: the first `limit` items
            if i >= limit:
                break
            raw.append(item)
            indices.append(i)
    else:
        if size == 0:
            raise SetupError(f"the {where} dataset is empty")
        if size <= limit:
            indices = list(range(size))
        else:
            rng = np.random.default_rng(seed)
            indices = sorted(rng.choice(size, size=limit, replace=False).tolist())
        raw = [_get(dataset, i, where) for i in indices]
    items = [split(item, i, where) for item, i in zip(raw, indices, strict=True)]
    try:
        batch = collate(raw)
    except Exception as exc:
        if (found := first_non_tensor(items, indices, where)) is not None:
            raise SetupError(f"{found[1]}; {EXPECTED_TENSORS}") from exc  # the cause, not collate
        raise SetupError(
            f"could not collate {where} samples into a batch ({type(exc).__name__}: {exc}); "
            "items must be (tensor-like input, tensor-like target) of equal shapes, or the "
            "DataLoader must have a collate_fn that pads them"
        ) from exc
    inputs, targets = split(batch, 0, f"{where} (collated)")
    # Kept, not raised: a model may take strings (and tokenize them itself). When the model or
    # the loss fails on such a batch, this names the sample instead of the layer.
    non_tensor = None
    for part, value in (("input", inputs), ("target", targets)):
        if non_tensor is None and _not_tensor(value, "") is not None:
            non_tensor = first_non_tensor(items, indices, where) or (
                part,
                f"the collated {where} batch is not made of tensors: its {part} is "
                f"{shape_of(value)}",
            )
    return DataSample(indices, inputs, targets, size, non_tensor)


def _get(dataset: Dataset, index: int, where: str) -> Any:
    try:
        return dataset[index]
    except Exception as exc:
        raise SetupError(
            f"reading {where} sample {index} raised {type(exc).__name__}: {exc}"
        ) from exc


def first_rows(sample: DataSample, n: int) -> tuple[Any, Any]:
    """The first n rows of a collated sample (a batch to run the model on)."""
    return take(sample.inputs, slice(0, n)), take(sample.targets, slice(0, n))


def take(value: Any, index: torch.Tensor | slice) -> Any:
    """Rows `index` of a collated batch (a tensor, or tuples/dicts of them)."""
    if isinstance(value, torch.Tensor):
        return value[index]
    if (
        isinstance(value, (tuple, list))
        and value
        and all(isinstance(v, (str, bytes)) for v in value)
    ):
        # The default collate keeps strings as a sequence with one per row (for a model that
        # tokenizes its input itself): rows, not parts.
        rows = index.tolist() if isinstance(index, torch.Tensor) else range(len(value))[index]
        return type(value)(value[i] for i in rows)
    if isinstance(value, Inputs):
        return value.map(lambda v: take(v, index))
    if isinstance(value, (tuple, list)):
        return type(value)(take(v, index) for v in value)
    if isinstance(value, dict):
        return {k: take(v, index) for k, v in value.items()}
    return value


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor of a collated value (a tensor, or tuples/dicts of them), else None."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            found = first_tensor(v)
            if found is not None:
                return found
    if isinstance(value, dict):
        return first_tensor(list(value.values()))
    if isinstance(value, Inputs):
        return first_tensor([v for _, v in value.parts()])
    return None


def input_parts(value: Any) -> list[tuple[str, Any]]:
    """(name, value) of each of a model's inputs: [("", x)] for a single input; the keys of
    Inputs or a dict, or "input[i]" for a tuple of inputs (strings are one input, not parts)."""
    if isinstance(value, Inputs):
        return value.parts()
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, (tuple, list)) and not any(isinstance(v, (str, bytes)) for v in value):
        return [(f"input[{i}]", v) for i, v in enumerate(value)]
    return [("", value)]


def sole_input(value: Any) -> Any:
    """The model's input when it takes one (the value itself, or the one part of Inputs, e.g.
    {"x": ...} passed by keyword); None when it takes several. Rules written for a single
    input tensor read this."""
    parts = input_parts(value) if isinstance(value, Inputs) else [("", value)]
    return parts[0][1] if len(parts) == 1 else None


def _pinned(value: torch.Tensor) -> torch.Tensor:
    """A CPU tensor in page-locked memory, for a copy to the GPU that is queued rather than
    waited for: from pageable memory the copy waits until the GPU has finished its queued work
    (a host sync per tensor per batch: 4.4 per training step of fit, counted on an H200). A
    loader with pin_memory=True has done it already; any other (the Setup's own DataLoader,
    trainwise's) is pinned here. Not for tensors already on the GPU (a dataset kept there),
    which DataLoader(pin_memory=True) would refuse. Where page-locked memory is refused (a
    container's limit), batches are copied as they are from then on: slower, never broken."""
    global _pinning
    if not _pinning or value.is_pinned():
        return value
    try:
        return value.pin_memory()
    except RuntimeError:
        _pinning = False
        return value


_pinning = True  # False once the system refused page-locked memory


def part_label(name: str) -> str:
    """How messages name an input part of input_parts: "inputs" (the only one), "input[0]",
    "input 'meta'"."""
    if not name:
        return "inputs"
    return name if name.startswith("input[") else f"input '{name}'"


def to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        if device.type == "cuda" and value.device.type == "cpu" and value.layout == torch.strided:
            return _pinned(value).to(device, non_blocking=True)
        return value.to(device)
    if isinstance(value, Inputs):
        return value.map(lambda v: to_device(v, device))
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def shape_of(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "(" + ", ".join(shape_of(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shape_of(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Inputs):
        return "(" + ", ".join(f"{k}={shape_of(v)}" for k, v in value.parts()) + ")"
    return type(value).__name__


def summarize_sample(sample: DataSample, task: str | None = None) -> dict[str, Any]:
    """What the report's data section shows: class counts and input statistics of a sample.

    Inputs (N, C, ...) get per-channel mean/std; (N, F) inputs get per-feature values when
    F <= 16, else one overall value. Non-tensor inputs or targets are left out.
    """
    summary: dict[str, Any] = {"samples": len(sample), "dataset_size": sample.dataset_size}
    x, y = sole_input(sample.inputs), sample.targets
    if isinstance(x, torch.Tensor) and x.numel() and x.dtype != torch.bool:
        xf = x.detach().float()
        summary["input_shape"] = list(x.shape[1:])
        if xf.dim() >= 3 or (xf.dim() == 2 and xf.shape[1] <= 16):
            dims = [d for d in range(xf.dim()) if d != 1]  # all but the channel/feature dim
            summary["input_mean"] = xf.mean(dim=dims).tolist()
            summary["input_std"] = xf.std(dim=dims).tolist()
        else:
            summary["input_mean"], summary["input_std"] = xf.mean().item(), xf.std().item()
        summary["input_min"], summary["input_max"] = xf.min().item(), xf.max().item()
    if (
        task in (None, "classification")
        and isinstance(y, torch.Tensor)
        and y.dim() == 1
        and not y.is_floating_point()
    ):
        labels, counts = torch.unique(y, return_counts=True)
        pairs = zip(labels.tolist(), counts.tolist(), strict=True)
        summary["class_counts"] = {str(k): int(c) for k, c in pairs}
    return summary
