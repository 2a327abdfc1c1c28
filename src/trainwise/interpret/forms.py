"""How a sample is drawn: in the data's own form. Read once from one sample's input (a
documented rule, overridable with `interpret(..., form=...)`), then declared in the
interpretation so that the report draws by the declaration, not by guessing."""

from __future__ import annotations

from typing import Any

import torch

FORMS = ("image", "signal", "sequence", "table", "tokens", "segmentation", "other")
SIGNAL_LENGTH = 32  # a 1D input at least this long is a signal (MNIST-1D's 40); shorter: a row
MAX_CHANNELS = 4  # (C, H, W) with C <= 4 is an image: gray, RGB, RGBA
MAX_SIGNAL_CHANNELS = 8


def input_form(x: Any, task: str) -> str:
    """image: (C<=4, H, W) or (H, W) floats; signal: (L>=32,) or (C<=8, L) floats; sequence:
    (T, F<=8) floats with T > 8 (time first, as recurrent models take it); table: a short row
    (F<32,); tokens: integer ids; segmentation: any input of a segmentation task; other:
    anything else (several inputs, strings, ...)."""
    if task == "segmentation":
        return "segmentation"
    if not isinstance(x, torch.Tensor):
        return "other"
    if not x.is_floating_point():
        return "tokens" if x.dim() <= 2 else "other"
    shape = tuple(x.shape)
    if len(shape) == 3 and shape[0] <= MAX_CHANNELS and min(shape[1:]) >= 4:
        return "image"
    if len(shape) == 2 and min(shape) >= 8 and shape[0] > MAX_SIGNAL_CHANNELS:
        return "image"
    if len(shape) == 2 and shape[0] <= MAX_SIGNAL_CHANNELS:
        return "signal"
    if len(shape) == 2 and shape[1] <= MAX_SIGNAL_CHANNELS:
        return "sequence"
    if len(shape) == 1:
        return "signal" if shape[0] >= SIGNAL_LENGTH else "table"
    return "other"
