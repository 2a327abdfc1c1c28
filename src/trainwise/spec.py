"""Setup: the user's model, data, loss and optimizer bundle (a public, stable contract)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from trainwise.errors import SetupError

TASKS = ("classification", "multilabel", "regression", "segmentation")
DEFAULT_BATCH_SIZE = 32
DEFAULT_LR = 1e-3  # AdamW's own default, used when the setup names no optimizer


@dataclass
class Setup:
    """Everything trainwise needs to examine a training setup.

    model:       zero-arg callable returning a fresh nn.Module (preferred), or an nn.Module,
                 which is deep-copied for every experiment so the user's own is never touched
    train:       torch Dataset or DataLoader yielding (input, target)
    loss:        callable(output, target) -> scalar tensor, e.g. nn.CrossEntropyLoss()
    val:         Dataset or DataLoader, optional
    optimizer:   callable(params) -> torch.optim.Optimizer; default AdamW(lr=1e-3)
    task:        "classification" | "multilabel" | "regression" | "segmentation"; inferred if None
    batch_size:  from the DataLoader when one is given, else 32
    num_classes: inferred from the model output and the labels when None
    device:      default cuda when available, else cpu
    """

    model: Callable[[], nn.Module] | nn.Module
    train: Dataset | DataLoader
    loss: Callable[[Any, Any], torch.Tensor]
    val: Dataset | DataLoader | None = None
    optimizer: Callable[[Any], torch.optim.Optimizer] | None = None
    task: str | None = None
    batch_size: int | None = None
    num_classes: int | None = None
    device: str | torch.device | None = None
    name: str = "setup"  # shown in reports; the setup file sets it from the file name

    def __post_init__(self) -> None:
        if not (isinstance(self.model, nn.Module) or callable(self.model)):
            raise SetupError(
                f"Setup(model=...) must be an nn.Module or a zero-argument function returning "
                f"one, got {type(self.model).__name__}"
            )
        for field_name in ("train", "val"):
            value = getattr(self, field_name)
            if value is None and field_name == "val":
                continue
            if not isinstance(value, (Dataset, DataLoader)):
                raise SetupError(
                    f"Setup({field_name}=...) must be a torch Dataset or DataLoader yielding "
                    f"(input, target), got {type(value).__name__}"
                )
        if not callable(self.loss):
            raise SetupError(
                f"Setup(loss=...) must be callable(output, target) -> scalar tensor, "
                f"got {type(self.loss).__name__}"
            )
        if isinstance(self.optimizer, torch.optim.Optimizer):
            raise SetupError(
                "Setup(optimizer=...) got an optimizer instance; pass a factory instead, e.g. "
                "`optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3)`, so every "
                "experiment starts from a fresh optimizer"
            )
        if self.optimizer is not None and not callable(self.optimizer):
            raise SetupError(
                "Setup(optimizer=...) must be a callable(params) -> torch.optim.Optimizer, e.g. "
                "`lambda p: torch.optim.SGD(p, lr=0.1)`; got an object of type "
                f"{type(self.optimizer).__name__}"
            )
        if self.task is not None and self.task not in TASKS:
            raise SetupError(f"Setup(task={self.task!r}): expected one of {', '.join(TASKS)}")
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise SetupError(f"Setup(batch_size={self.batch_size!r}): expected a positive int")
        if self.num_classes is not None and (
            not isinstance(self.num_classes, int) or self.num_classes < 1
        ):
            raise SetupError(f"Setup(num_classes={self.num_classes!r}): expected a positive int")

    # -- model and optimizer ------------------------------------------------------------------

    @property
    def torch_device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def build_model(self) -> nn.Module:
        """A fresh model on the setup's device; the user's own module is never handed out."""
        if isinstance(self.model, nn.Module):
            model = copy.deepcopy(self.model)
        else:
            try:
                model = self.model()
            except Exception as exc:
                name = getattr(self.model, "__qualname__", repr(self.model))
                raise SetupError(
                    f"the model factory {name}() raised {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(model, nn.Module):
                name = getattr(self.model, "__qualname__", repr(self.model))
                raise SetupError(
                    f"the model factory {name}() returned {type(model).__name__}; "
                    "expected an nn.Module"
                )
        return model.to(self.torch_device)

    def build_optimizer(self, params: Any) -> torch.optim.Optimizer:
        if self.optimizer is None:
            return torch.optim.AdamW(params, lr=DEFAULT_LR)
        try:
            optimizer = self.optimizer(params)
        except Exception as exc:
            raise SetupError(
                f"the optimizer factory raised {type(exc).__name__}: {exc}; expected "
                "callable(params) -> torch.optim.Optimizer"
            ) from exc
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise SetupError(
                f"the optimizer factory returned {type(optimizer).__name__}; expected a "
                "torch.optim.Optimizer"
            )
        return optimizer

    # -- data ---------------------------------------------------------------------------------

    @property
    def train_dataset(self) -> Dataset:
        return self.train.dataset if isinstance(self.train, DataLoader) else self.train

    @property
    def val_dataset(self) -> Dataset | None:
        if self.val is None:
            return None
        return self.val.dataset if isinstance(self.val, DataLoader) else self.val

    @property
    def effective_batch_size(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        if isinstance(self.train, DataLoader) and self.train.batch_size is not None:
            return self.train.batch_size
        return DEFAULT_BATCH_SIZE

    def collate_fn(self, which: str = "train") -> Callable[[list], Any]:
        source = self.train if which == "train" else self.val
        if isinstance(source, DataLoader):
            return source.collate_fn
        return torch.utils.data.default_collate

    def train_loader(self, batch_size: int | None = None, shuffle: bool = True) -> DataLoader:
        """A loader over the training set for trainwise's own experiments (single process).

        The user's DataLoader itself is used only where its settings matter (the speed profile).
        """
        dataset = self.train_dataset
        return DataLoader(
            dataset,
            batch_size=batch_size or self.effective_batch_size,
            shuffle=shuffle and not isinstance(dataset, IterableDataset),
            collate_fn=self.collate_fn("train"),
        )

    def val_loader(self, batch_size: int | None = None) -> DataLoader | None:
        """A loader over the validation set in order (single process); None without one."""
        dataset = self.val_dataset
        if dataset is None:
            return None
        return DataLoader(
            dataset,
            batch_size=batch_size or self.effective_batch_size,
            shuffle=False,
            collate_fn=self.collate_fn("val"),
        )
