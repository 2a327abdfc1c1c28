"""tw.ProgressiveResize: train on small images first, then larger ones (fastai's progressive
resizing, Howard's DAWNBench ImageNet runs; also EfficientNetV2's progressive learning).

Early epochs on small images are cheaper, and learn the coarse features; the last epochs at the
full size adapt to the resolution the model is evaluated at. The schedule gives the size of
each epoch; the object resizes a batch of images to it with torch.nn.functional.interpolate
(bilinear for 2-D images, antialiased when shrinking, so that a downscale averages pixels
rather than dropping them).

    resize = tw.ProgressiveResize(sizes=[64, 128, 224], epochs=[2, 2, 4])
    for epoch in range(8):
        resize.on_epoch_start(epoch)
        for x, y in loader:
            x = resize(x)                   # (N, C, H, W) -> (N, C, size, size)
    # or DataLoader(..., collate_fn=resize.collate): resizes the inputs of (input, target) batches

Only the inputs are resized: a segmentation mask needs nearest-neighbour resizing of its own.
With `collate_fn=resize.collate`, use num_workers=0 or non-persistent workers: a persistent
worker keeps the copy of the schedule it was started with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from trainwise.errors import SetupError

Size = int | tuple[int, ...]
_MODES = {3: "linear", 4: "bilinear", 5: "trilinear"}  # by input dims: (N, C, L), (N, C, H, W), ...


class ProgressiveResize:
    """sizes: the input sizes in order (an int for square images, or a tuple of spatial
    sizes); epochs: how many epochs each size lasts (a list as long as sizes), or the total
    number of epochs (split evenly, the remainder going to the last, full size)."""

    def __init__(self, sizes: Sequence[Size], epochs: int | Sequence[int]) -> None:
        if not sizes or not all(_valid_size(s) for s in sizes):
            raise SetupError(
                f"ProgressiveResize(sizes={sizes!r}): expected a list of positive ints or tuples "
                "of them, e.g. [64, 128, 224]"
            )
        self.sizes = list(sizes)
        self.epochs = _epochs_per_size(epochs, len(self.sizes))
        self.epoch = 0

    def size_at(self, epoch: int) -> Size:
        """The size for `epoch` (0-based); the last size after the schedule ends."""
        end = 0
        for size, count in zip(self.sizes, self.epochs, strict=True):
            end += count
            if epoch < end:
                return size
        return self.sizes[-1]

    @property
    def size(self) -> Size:
        return self.size_at(self.epoch)

    def on_epoch_start(self, epoch: int) -> Size:
        """Set the current epoch (0-based); returns its size."""
        self.epoch = epoch
        return self.size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A batch (N, C, *spatial) resized to the current size; unchanged if it has it."""
        if not isinstance(x, torch.Tensor) or x.dim() not in _MODES:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise SetupError(
                f"ProgressiveResize: expected a batch of images (N, C, H, W) (or (N, C, L), "
                f"(N, C, D, H, W)), got {shape}"
            )
        spatial = x.dim() - 2
        size = self.size
        target = (size,) * spatial if isinstance(size, int) else tuple(size)
        if len(target) != spatial:
            raise SetupError(
                f"ProgressiveResize: size {size} has {len(target)} dimensions, the batch "
                f"{tuple(x.shape)} has {spatial} spatial ones"
            )
        if tuple(x.shape[2:]) == target:
            return x
        shrinking = all(t <= s for t, s in zip(target, x.shape[2:], strict=True))
        mode = _MODES[x.dim()]
        antialias = shrinking and mode == "bilinear"  # interpolate antialiases 2-D modes only
        out = F.interpolate(
            x.float() if not torch.is_floating_point(x) else x,
            size=target, mode=mode, align_corners=False, antialias=antialias,
        )  # fmt: skip
        return out

    def collate(self, items: list[Any]) -> Any:
        """A collate_fn: default_collate, then the input (the batch itself, or the first
        element of an (input, target, ...) batch) resized."""
        batch = default_collate(items)
        if isinstance(batch, torch.Tensor):
            return self(batch)
        if isinstance(batch, (list, tuple)) and batch:
            return type(batch)([self(batch[0]), *batch[1:]])
        raise SetupError(
            f"ProgressiveResize.collate: batches are {type(batch).__name__}; expected a tensor "
            "or (input, target) items (resize dict batches with resize(x) in your loop)"
        )


def _valid_size(size: Any) -> bool:
    if isinstance(size, int) and not isinstance(size, bool):
        return size > 0
    return isinstance(size, tuple) and bool(size) and all(_valid_size(s) for s in size)


def _epochs_per_size(epochs: Any, n: int) -> list[int]:
    if isinstance(epochs, int) and not isinstance(epochs, bool):
        if epochs < n:
            raise SetupError(
                f"ProgressiveResize(epochs={epochs}): fewer epochs than sizes ({n}); give at "
                "least one epoch per size"
            )
        return [epochs // n] * (n - 1) + [epochs - (epochs // n) * (n - 1)]
    if (
        isinstance(epochs, Sequence)
        and len(epochs) == n
        and all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in epochs)
    ):
        return list(epochs)
    raise SetupError(
        f"ProgressiveResize(epochs={epochs!r}): expected the total number of epochs or one "
        f"positive int per size ({n})"
    )
