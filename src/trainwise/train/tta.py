"""tw.tta: test-time augmentation, predictions averaged over transformed copies of each batch.

Each batch is predicted as it is and through every given transform (a horizontal flip, a small
shift: callables on the input batch), and the predictions are averaged, in probability space
for a classifier (averaging logits would let one confident view outweigh the others). fastai's
`learn.tta` does this with its training augmentations; here the transforms are whatever the
user passes, so the gain can be measured against the plain prediction on the user's own data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from trainwise.errors import SetupError

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "softmax": lambda out: out.softmax(dim=1),  # single-label classification: (N, C) or (N, C, ...)
    "sigmoid": torch.sigmoid,  # multilabel / binary with one logit per label
}


def tta(
    model: nn.Module,
    loader: Any,
    transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    activation: str | Callable[[torch.Tensor], torch.Tensor] | None = "softmax",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(predictions, targets) over `loader`: the mean of activation(model(t(x))) over the
    identity and each of `transforms`, in eval mode without gradients, on the model's device
    (the model's train/eval mode is restored afterwards). Returned on the CPU, concatenated in
    the loader's order; targets is None when the loader yields inputs alone.

    loader: any iterable of input tensors or of (input, target) pairs (a DataLoader).
    activation: "softmax" (probabilities, the default), "sigmoid", None (raw outputs, for
    regression) or a callable on the output batch.
    """
    if isinstance(transforms, Callable) or not all(callable(t) for t in transforms):
        raise SetupError(
            "tta(transforms=...): expected a list of callables on an input batch, e.g. "
            "[lambda x: x.flip(-1)]"
        )
    act = _activation(activation)
    views = [_identity, *transforms]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    predictions, targets = [], []
    model.eval()
    try:
        with torch.no_grad():
            for index, batch in enumerate(loader):
                x, y = _split(batch, index)
                x = x.to(device)
                outs = [act(model(view(x))) for view in views]  # each (N, ...) alike
                _check_shapes(outs, views, index)
                predictions.append(torch.stack(outs).mean(dim=0).cpu())
                if y is not None:
                    targets.append(y.cpu() if isinstance(y, torch.Tensor) else torch.as_tensor(y))
    finally:
        model.train(was_training)
    if not predictions:
        raise SetupError("tta(loader=...): the loader yielded no batches")
    return torch.cat(predictions), torch.cat(targets) if targets else None


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _activation(activation: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    if activation is None:
        return _identity
    if callable(activation):
        return activation
    if activation in ACTIVATIONS:
        return ACTIVATIONS[activation]
    raise SetupError(
        f"tta(activation={activation!r}): expected 'softmax', 'sigmoid', None or a callable"
    )


def _split(batch: Any, index: int) -> tuple[torch.Tensor, Any]:
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor):
        return batch[0], batch[1]
    raise SetupError(
        f"tta: batch {index} is a {type(batch).__name__}; expected an input tensor or an "
        "(input, target) pair (map other batches to that form first)"
    )


def _check_shapes(outs: list[torch.Tensor], views: list[Callable], index: int) -> None:
    for out, view in zip(outs[1:], views[1:], strict=True):
        if out.shape != outs[0].shape:
            name = getattr(view, "__qualname__", type(view).__name__)
            raise SetupError(
                f"tta: on batch {index} the transform {name} gives predictions of shape "
                f"{tuple(out.shape)}, the plain input {tuple(outs[0].shape)}; every view must "
                "give predictions of the same shape"
            )
