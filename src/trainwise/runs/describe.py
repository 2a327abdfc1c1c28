"""Plain, JSON-ready descriptions of what a run used: software versions, the machine, the
optimizer's settings, a Setup's configuration."""

from __future__ import annotations

import math
import platform
import socket
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: reading records needs none
    import torch


def versions() -> dict[str, Any]:
    import numpy
    import torch

    from trainwise.version import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,  # None on a CPU build
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy": numpy.__version__,
        "trainwise": __version__,
    }


def host() -> dict[str, Any]:
    import torch

    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else [],
    }


def count_parameters(params: Any) -> int:
    """Elements of the parameters, those of lazy modules not yet initialized counted as 0
    (their numel() raises until the first forward)."""
    from torch.nn.parameter import is_lazy

    return sum(0 if is_lazy(p) else p.numel() for p in params)


def describe_optimizer(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's class and each parameter group's settings (lr, betas, weight decay...),
    with the parameters themselves replaced by their count."""
    groups = []
    for group in optimizer.param_groups:
        settings = {k: plain(v) for k, v in group.items() if k != "params"}
        settings["num_params"] = count_parameters(group["params"])
        groups.append(settings)
    return {"class": type(optimizer).__name__, "param_groups": groups}


def describe_setup(setup: Any, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """The settings of a trainwise.Setup worth comparing between runs."""
    loss = setup.loss
    config: dict[str, Any] = {
        "setup": setup.name,
        "task": setup.task,
        "batch_size": setup.effective_batch_size,
        "num_classes": setup.num_classes,
        # F.* name or class; "the model's own loss", "the training step M.training_step"
        "loss": (getattr(loss, "__name__", None) or type(loss).__name__)
        if callable(loss)
        else setup.loss_name,
        "device": str(setup.torch_device),
        "train_size": _len(setup.train_dataset),
        "val_size": _len(setup.val_dataset) if setup.val_dataset is not None else None,
    }
    if optimizer is not None:
        config["optimizer"] = describe_optimizer(optimizer)
    return config


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"param_groups": [{"lr": 0.1}]}} -> {"optimizer.param_groups.0.lr": 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)) and any(isinstance(v, Mapping) for v in value):
            flat.update(flatten({str(i): v for i, v in enumerate(value)}, name + "."))
        else:
            flat[name] = value
    return flat


def plain(value: Any) -> Any:
    """A JSON-ready copy: tensors and numpy scalars to numbers, tuples to lists, objects to
    their repr, non-finite floats to strings (JSON has no NaN)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if type(value).__name__ in ("Tensor", "Parameter") and hasattr(value, "numel"):  # torch
        return plain(value.item()) if value.numel() == 1 else plain(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return plain(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist"):  # numpy arrays
        return plain(value.tolist())
    return repr(value)


def _len(dataset: Any) -> int | None:
    try:
        return len(dataset)
    except TypeError:
        return None
