"""Setup: the user's model, data, loss and optimizer bundle (a public, stable contract)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from trainwise.batches import BatchFormat, own_loss
from trainwise.data import Inputs, to_device
from trainwise.errors import SetupError
from trainwise.steps import ModuleOptimizer, TrainingStep

TASKS = ("classification", "multilabel", "regression", "segmentation")
DEFAULT_BATCH_SIZE = 32
DEFAULT_LR = 1e-3  # AdamW's own default, used when the setup names no optimizer


@dataclass
class Setup:
    """Everything trainwise needs to examine a training setup.

    model:       zero-arg callable returning a fresh nn.Module (preferred), or an nn.Module,
                 which is deep-copied for every experiment so the user's own is never touched
    train:       torch Dataset or DataLoader yielding batches of any common shape: (input,
                 target), ((input_a, input_b), target), dicts (the target under "labels" by
                 the Hugging Face convention), BatchEncodings, dataclasses
    loss:        callable(output, target) -> scalar tensor, e.g. nn.CrossEntropyLoss(); None
                 when the model computes its own loss (HF: called with labels=, its
                 `output.loss` used); or a TrainingStep (a loss from whole batches)
    val:         Dataset or DataLoader, optional
    optimizer:   callable(params) -> torch.optim.Optimizer; default AdamW(lr=1e-3)
    task:        "classification" | "multilabel" | "regression" | "segmentation"; inferred if None
    batch_size:  from the DataLoader when one is given, else 32
    num_classes: inferred from the model output and the labels when None
    device:      default cuda when available, else cpu
    inputs:      the dict keys that go to the model (by name when forward takes those names,
                 else by position in this order); default: every key but the target's
    target:      the target's dict key, or its position in a tuple (-1 for (a, b, target))
    split:       callable(batch) -> (model_args, model_kwargs, target), for any other shape
    output:      where the prediction is in the model's output: a key ("logits"), an index,
                 or a callable; default the output itself, or the "logits" of a dict-like one
    """

    model: Callable[[], nn.Module] | nn.Module
    train: Dataset | DataLoader
    loss: Callable[[Any, Any], torch.Tensor] | TrainingStep | None = None
    val: Dataset | DataLoader | None = None
    optimizer: Callable[[Any], torch.optim.Optimizer] | None = None
    task: str | None = None
    batch_size: int | None = None
    num_classes: int | None = None
    device: str | torch.device | None = None
    name: str = "setup"  # shown in reports; the setup file sets it from the file name
    inputs: str | tuple[str, ...] | list[str] | None = None
    target: str | int | None = None
    split: Callable[[Any], tuple[Any, Any, Any]] | None = None
    output: str | int | Callable[[Any], Any] | None = None
    batch_format: BatchFormat = field(init=False, repr=False, compare=False)

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
        if self.loss is not None and not (
            callable(self.loss) or isinstance(self.loss, TrainingStep)
        ):
            raise SetupError(
                f"Setup(loss=...) must be callable(output, target) -> scalar tensor (or None "
                f"when the model computes its own loss), got {type(self.loss).__name__}"
            )
        self.batch_format = self._batch_format()
        if isinstance(self.optimizer, torch.optim.Optimizer):
            raise SetupError(
                "Setup(optimizer=...) got an optimizer instance; pass a factory instead, e.g. "
                "`optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3)`, so every "
                "experiment starts from a fresh optimizer"
            )
        if self.optimizer is not None and not (
            callable(self.optimizer) or isinstance(self.optimizer, ModuleOptimizer)
        ):
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

    @classmethod
    def from_lightning(
        cls,
        module: nn.Module,
        datamodule: Any = None,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        **options: Any,
    ) -> Setup:
        """A Setup from a LightningModule: its training_step's loss, its configure_optimizers,
        the DataModule's (or the given) loaders. `options` override any Setup field."""
        from trainwise.integrations.lightning import setup_fields

        fields = setup_fields(module, datamodule, train_dataloaders, val_dataloaders)
        return cls(**{**fields, **options})

    @classmethod
    def from_hf(
        cls,
        model: Callable[[], nn.Module] | nn.Module,
        train_dataset: Any,
        eval_dataset: Any = None,
        data_collator: Any = None,
        args: Any = None,
        **options: Any,
    ) -> Setup:
        """A Setup from what a transformers Trainer is given: the model computes its own loss
        (labels=), batches come from the collator, the optimizer is the Trainer's, built
        from `args` (TrainingArguments). `options` override any Setup field."""
        from trainwise.integrations.transformers import setup_fields

        fields = setup_fields(model, train_dataset, eval_dataset, data_collator, args)
        return cls(**{**fields, **options})

    def _batch_format(self) -> BatchFormat:
        inputs = (self.inputs,) if isinstance(self.inputs, str) else self.inputs
        if inputs is not None and not (
            isinstance(inputs, (tuple, list)) and inputs and all(isinstance(k, str) for k in inputs)
        ):
            raise SetupError(
                f"Setup(inputs={self.inputs!r}): expected a dict key or a tuple of keys"
            )
        if self.target is not None and not isinstance(self.target, (str, int)):
            raise SetupError(
                f"Setup(target={self.target!r}): expected a dict key (str) or a tuple position"
            )
        if self.split is not None and not callable(self.split):
            raise SetupError(
                "Setup(split=...) must be callable(batch) -> (model_args, model_kwargs, target)"
            )
        if self.split is not None and (self.inputs is not None or self.target is not None):
            raise SetupError("Setup: give either split=... or inputs=/target=, not both")
        if self.split is not None and isinstance(self.loss, TrainingStep):
            raise SetupError(
                f"Setup: the training step {self.loss.name} takes whole batches, which a "
                "split=... cannot put back together; name the keys with inputs=/target= instead"
            )
        return BatchFormat(
            tuple(inputs) if inputs else None, self.target, self.split, self.output,
            own_loss=self.loss is None,
        )  # fmt: skip

    # -- batches, the model's call, the loss -------------------------------------------------

    def split_batch(self, batch: Any, index: int, where: str) -> tuple[Any, Any]:
        """(model input, target) of a batch or dataset item; `where` and `index` name it in
        the error when it has neither."""
        return self.batch_format.split(batch, index, where)

    def batch_on_device(self, batch: Any, index: int, where: str,
                        device: torch.device | None = None) -> tuple[Any, Any]:  # fmt: skip
        """(model input, target) of a loader's batch, moved to the setup's device (`device`: that
        device resolved once by a loop that calls this per batch; resolving it asks CUDA)."""
        x, y = self.split_batch(batch, index, where)
        device = device or self.torch_device
        return to_device(x, device), to_device(y, device)

    def call_model(self, model: nn.Module, x: Any) -> Any:
        """The model's raw output on an input `split_batch` made."""
        return self.batch_format.call(model, x)

    def predict(self, model: nn.Module, x: Any) -> Any:
        """The prediction the rules judge (the logits of a ModelOutput, ...), without the
        target, so that a model computing its own loss does not compute it."""
        return self.batch_format.prediction(self.call_model(model, without_target(x)))

    def loss_from_output(self, output: Any, y: Any) -> torch.Tensor:
        """The training loss of a raw model output (not for a TrainingStep: see batch_loss)."""
        if self.loss is None:
            return own_loss(output, "the model (Setup(loss=None): it computes its own loss)")
        return self.loss(self.batch_format.loss_input(output), y)

    def step_loss(self, model: nn.Module, x: Any, y: Any) -> torch.Tensor:
        """A TrainingStep's loss on the batch (x, y) put back together."""
        assert isinstance(self.loss, TrainingStep)
        batch = self.batch_format.join(x, y)
        return own_loss(self.loss.fn(model, batch), f"the training step {self.loss.name}")

    def batch_loss(self, model: nn.Module, x: Any, y: Any) -> torch.Tensor:
        """The training loss of the model on (x, y), however the setup computes it."""
        if isinstance(self.loss, TrainingStep):
            return self.step_loss(model, x, y)
        return self.loss_from_output(self.call_model(model, x), y)

    @property
    def loss_name(self) -> str:
        """How messages name the loss."""
        if self.loss is None:
            return "the model's own loss"
        if isinstance(self.loss, TrainingStep):
            return f"the training step {self.loss.name}"
        if isinstance(self.loss, nn.Module):
            return type(self.loss).__name__ + "()"
        return getattr(self.loss, "__qualname__", type(self.loss).__name__)

    # -- model and optimizer ------------------------------------------------------------------

    @property
    def torch_device(self) -> torch.device:
        if self.device is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda":
            _check_gpu_exists(device)
        return device

    def build_model(self) -> nn.Module:
        """A fresh model on the setup's device; the user's own module is never handed out."""
        if isinstance(self.model, nn.Module):
            model = model_copy(self.model)
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
        return compact_rnn_weights(model.to(self.torch_device))

    def build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The setup's optimizer over `model`'s parameters (a ModuleOptimizer gets the model
        itself, e.g. Lightning's configure_optimizers)."""
        if self.optimizer is None:
            return torch.optim.AdamW(model.parameters(), lr=DEFAULT_LR)
        try:
            if isinstance(self.optimizer, ModuleOptimizer):
                optimizer = self.optimizer.fn(model)
            else:
                optimizer = self.optimizer(model.parameters())
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


def without_target(x: Any) -> Any:
    """The model input without the target a model computing its own loss takes as a keyword:
    a forward for predictions only (the target may be what is wrong, e.g. out of range)."""
    if not isinstance(x, Inputs) or x.target_key is None:
        return x
    kwargs = {k: v for k, v in x.kwargs.items() if k != x.target_key}
    return Inputs(x.args, kwargs, None, x.layout)


def _check_gpu_exists(device: torch.device) -> None:
    """Setup(device="cuda...") on a machine without that GPU: a SetupError that says so, not
    torch's "Torch not compiled with CUDA enabled" from deep inside the first .to()."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise SetupError(
            f"Setup(device={str(device)!r}): this machine has no CUDA GPU that torch "
            f"{torch.__version__} can use; leave device unset (the CPU here) or run on a GPU "
            f"machine"
        )
    if device.index is not None and device.index >= count:
        raise SetupError(
            f"Setup(device={str(device)!r}): this machine has {count} GPU(s), cuda:0 to "
            f"cuda:{count - 1}"
        )


def model_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` whose RNN weights are compacted again (below)."""
    return compact_rnn_weights(copy.deepcopy(model))


def compact_rnn_weights(model: nn.Module) -> nn.Module:
    """cuDNN runs an RNN (GRU, LSTM) from one contiguous block of its weights; a deep copy of
    a model on the GPU has them apart, and cuDNN then warns and compacts them again at every
    call (seen on an H200 in the check's experiments on a GRU). flatten_parameters puts them
    back in one block; it does nothing on the CPU."""
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            module.flatten_parameters()
    return model
