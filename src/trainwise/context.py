"""StaticContext: what static rules read. Everything is computed lazily, once, on demand.

The model is a fresh copy traced on one real batch; the data are samples read without mutation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import cached_property
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trainwise.data import (
    DEFAULT_SAMPLE,
    EXPECTED_TENSORS,
    DataSample,
    first_rows,
    sample_dataset,
    shape_of,
    to_device,
)
from trainwise.errors import SetupError
from trainwise.loss_kinds import (
    BCE,
    BCE_LOGITS,
    BINARY,
    CLASS_INDEX,
    CROSS_ENTROPY,
    IGNORE_INDEX,
    L1,
    MSE,
    NLL,
    OTHER,
    LossKind,
)
from trainwise.spec import Setup, without_target
from trainwise.steps import TrainingStep
from trainwise.tracing import ForwardError, Trace, trace_model

_LOSS_CLASSES: dict[type, LossKind] = {
    nn.CrossEntropyLoss: CROSS_ENTROPY,
    nn.NLLLoss: NLL,
    nn.BCEWithLogitsLoss: BCE_LOGITS,
    nn.BCELoss: BCE,
    nn.MSELoss: MSE,
    nn.L1Loss: L1,
    nn.SmoothL1Loss: L1,
    nn.HuberLoss: L1,
}
_LOSS_FUNCTIONS: dict[Any, LossKind] = {
    F.cross_entropy: CROSS_ENTROPY,
    F.nll_loss: NLL,
    F.binary_cross_entropy_with_logits: BCE_LOGITS,
    F.binary_cross_entropy: BCE,
    F.mse_loss: MSE,
    F.l1_loss: L1,
}


class StaticContext:
    def __init__(self, setup: Setup, sample: int = DEFAULT_SAMPLE, seed: int = 0) -> None:
        self.setup = setup
        self.sample_limit = sample
        self.seed = seed

    # -- data -------------------------------------------------------------------------------

    @cached_property
    def train_sample(self) -> DataSample:
        return sample_dataset(
            self.setup.train_dataset,
            self.setup.collate_fn("train"),
            self.sample_limit,
            self.seed,
            where="train",
            split=self.setup.split_batch,
        )

    @cached_property
    def val_sample(self) -> DataSample | None:
        if self.setup.val_dataset is None:
            return None
        return sample_dataset(
            self.setup.val_dataset,
            self.setup.collate_fn("val"),
            self.sample_limit,
            self.seed,
            where="val",
            split=self.setup.split_batch,
        )

    @cached_property
    def batch(self) -> tuple[Any, Any]:
        """One batch of the configured size, on the setup's device: (inputs, targets)."""
        x, y = first_rows(self.train_sample, self.setup.effective_batch_size)
        return to_device(x, self.setup.torch_device), to_device(y, self.setup.torch_device)

    # -- model ------------------------------------------------------------------------------

    @cached_property
    def model(self) -> nn.Module:
        return self.setup.build_model().eval()

    @cached_property
    def trace(self) -> Trace:
        """The model traced on the batch's input, without the target a model computing its
        own loss takes (labels out of range would crash that loss before any rule runs)."""
        return trace_model(self.model, without_target(self.batch[0]), call=self.setup.call_model)

    @cached_property
    def output(self) -> Any:
        """The prediction the rules judge: the model's output, or the logits of a ModelOutput
        (or the part Setup(output=...) names)."""
        return self.setup.batch_format.prediction(self.trace.output)

    @cached_property
    def named_modules(self) -> dict[str, nn.Module]:
        return dict(self.model.named_modules())

    @cached_property
    def parameter_names(self) -> dict[int, str]:
        """id(parameter) -> qualified name, for the fresh model (and for the user's own module
        when Setup got an nn.Module: an optimizer factory that ignores its argument and closes
        over that module holds the user's tensors, which map onto the copy by name)."""
        names = {id(p): n for n, p in self.model.named_parameters()}
        if isinstance(self.setup.model, nn.Module):
            for n, p in self.setup.model.named_parameters():
                names.setdefault(id(p), n)
        return names

    @cached_property
    def optimizer(self) -> torch.optim.Optimizer:
        """The user's optimizer built over the fresh model's parameters (built, never stepped)."""
        return self.setup.build_optimizer(self.model)

    @cached_property
    def optimizer_param_names(self) -> tuple[set[str], int]:
        """(names of the model's parameters the optimizer holds, count of foreign tensors)."""
        held, foreign = set(), 0
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                name = self.parameter_names.get(id(p))
                if name is None:
                    foreign += 1
                else:
                    held.add(name)
        return held, foreign

    @cached_property
    def class_labels(self) -> torch.Tensor | None:
        """Train-sample class indices (N,) for single-label classification, else None."""
        y = self.train_sample.targets
        if self.task != "classification" or not isinstance(y, torch.Tensor):
            return None
        if torch.is_floating_point(y) or y.dim() != 1:
            return None
        return y[y != IGNORE_INDEX]

    # -- what the targets and outputs say ---------------------------------------------------

    @cached_property
    def loss_kind(self) -> LossKind:
        loss = self.setup.loss
        for cls, kind in _LOSS_CLASSES.items():
            if isinstance(loss, cls):
                return kind
        if loss in _LOSS_FUNCTIONS:
            return _LOSS_FUNCTIONS[loss]
        return self.loss_match[0]

    @cached_property
    def loss_match(self) -> tuple[LossKind, str]:
        """(kind, what the loss does to the prediction first: "", "softmax" or "squeeze") of a loss
        trainwise cannot read by its type (a lambda, a wrapper, the model's own loss, a
        Lightning training_step): its value on the batch matched against the known losses."""
        kind, applied, _ = self._matched_loss
        return kind, applied

    @cached_property
    def _matched_loss(self) -> tuple[LossKind, str, Callable[[Any, Any], torch.Tensor] | None]:
        """(kind, applied, the known loss function that gives the same value on the batch).

        Tried on the prediction itself; on its softmax (a softmax applied twice); and, for one
        output per sample (N, 1) against targets (N,), on the squeezed prediction (HF's
        regression loss squeezes)."""
        out, y, value = self.output, self.batch[1], self.setup_loss_value
        if not isinstance(out, torch.Tensor) or not isinstance(y, torch.Tensor) or value is None:
            return OTHER, "", None
        candidates = [(fn, kind, "") for fn, kind in _LOSS_FUNCTIONS.items()]
        if out.dim() >= 2 and out.shape[1] > 1 and torch.is_floating_point(out):
            candidates.append((_softmax_then_cross_entropy, CROSS_ENTROPY, "softmax"))
        if out.dim() == y.dim() + 1 and out.shape[-1] == 1 and torch.is_floating_point(y):
            candidates += [(_squeezed(fn), kind, "squeeze") for fn, kind in _LOSS_FUNCTIONS.items()]
        for fn, kind, applied in candidates:
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    ref = float(fn(out, y))
            except Exception:
                continue
            if abs(ref - value) <= 1e-5 * max(1.0, abs(ref)):
                return kind, applied, fn
        return OTHER, "", None

    @cached_property
    def setup_loss_value(self) -> float | None:
        """The setup's loss on the batch, computed the way training computes it; None when
        it fails (check_loss_accepts_output reports why) or cannot be computed: with labels
        that index past the output it is never tried (on a GPU the loss's indexing would raise
        a device-side assert, which ends every later CUDA call of the process, the user's too)."""
        if _labels_index_past(self.output, self.batch[1]):
            return None
        try:
            return float(self._setup_loss())
        except Exception:
            return None

    def _setup_loss(self) -> torch.Tensor:
        x, y = self.batch
        with torch.no_grad(), warnings.catch_warnings():
            # torch warns before it fails on broadcastable-looking shapes; the error says more.
            warnings.simplefilter("ignore", UserWarning)
            if self.setup.loss is None or isinstance(self.setup.loss, TrainingStep):
                return self.setup.batch_loss(self.model, x, y)
            return self.setup.loss_from_output(self.trace.output, y)

    @cached_property
    def prediction_loss(self) -> Callable[[Any, Any], torch.Tensor] | None:
        """The loss of a prediction alone (a trivial baseline's, a mean of dropout passes):
        the setup's loss function, or the known loss a model's own loss matches; None when
        it matches none."""
        loss = self.setup.loss
        if loss is not None and not isinstance(loss, TrainingStep):
            return loss
        return self._matched_loss[2]

    @cached_property
    def task(self) -> str:
        if self.setup.task is not None:
            return self.setup.task
        out, y = self.output, self.batch[1]
        if not isinstance(out, torch.Tensor) or not isinstance(y, torch.Tensor):
            return "classification" if self.loss_kind in CLASS_INDEX else "regression"
        integer = not torch.is_floating_point(y)
        if integer and y.dim() == out.dim() - 1:
            return "segmentation" if out.dim() == 4 else "classification"
        if self.loss_kind in BINARY or (
            y.shape == out.shape
            and out.dim() == 2
            and out.shape[1] > 1
            and _is_binary(y)
            and bool(((y > 0).sum(dim=1) > 1).any())
        ):
            return "multilabel"
        if self.loss_kind in CLASS_INDEX:
            return "classification"
        return "regression"

    @cached_property
    def num_classes(self) -> int | None:
        if self.setup.num_classes is not None:
            return self.setup.num_classes
        out = self.output
        if (
            self.task in ("classification", "segmentation", "multilabel")
            and isinstance(out, torch.Tensor)
            and out.dim() >= 2
        ):
            return int(out.shape[1])
        return None

    @cached_property
    def output_form(self) -> str:
        """What the values along the class dimension (dim 1) look like.

        "probabilities" (non-negative, sum to 1), "log-probabilities" (logsumexp 0),
        "unit-interval" (all in [0, 1]), or "raw". Random logits practically never sum to 1
        across classes, so the first two are reliable evidence of a softmax already applied.
        """
        out = self.output
        if not isinstance(out, torch.Tensor) or not torch.is_floating_point(out) or out.dim() < 2:
            return "raw"
        out = out.detach().float()
        if out.shape[1] > 1:
            if bool((out >= 0).all()) and torch.allclose(out.sum(dim=1), torch.ones(()), atol=1e-3):
                return "probabilities"
            if bool((out <= 0).all()) and torch.allclose(
                out.logsumexp(dim=1), torch.zeros(()), atol=1e-3
            ):
                return "log-probabilities"
        if bool((out >= 0).all()) and bool((out <= 1).all()):
            return "unit-interval"
        return "raw"

    def give_outputs(self, n: int) -> str:
        """How a fix says "make the model output n classes": the last layer, or for a
        Hugging Face model the `num_labels` of its config (which sizes that layer)."""
        config = getattr(self.model, "config", None)
        if isinstance(getattr(config, "num_labels", None), int):
            return f"build the model with num_labels={n} in its config"
        return f"give the last layer {n} outputs"

    # -- validation of the setup as a whole -------------------------------------------------

    def labels_in_range(self) -> bool:
        y, c = self.batch[1], self.num_classes
        if c is None or not isinstance(y, torch.Tensor) or torch.is_floating_point(y):
            return True
        valid = y[y != IGNORE_INDEX]
        return bool(((valid >= 0) & (valid < c)).all())

    def check_loss_accepts_output(self) -> None:
        """Run the model, then the loss on its output; a failure is unusable input (SetupError).

        When the training data hold something that is no tensor (a string...) and the model or
        the loss fails, the message names that sample and its type: the layer that raised is
        only where the cause surfaced."""
        try:
            self._check_loss_accepts_output()
        except SetupError as exc:
            failed = "model" if isinstance(exc, ForwardError) else "loss"
            found = self.train_sample.non_tensor
            # The model reads the inputs, the loss the targets.
            if found is None or found[0] != ("input" if failed == "model" else "target"):
                raise
            cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "an error"
            raise SetupError(
                f"{found[1]}, and the {failed} raised {cause} on it; {EXPECTED_TENSORS}"
            ) from exc

    def _check_loss_accepts_output(self) -> None:
        out, y = self.output, self.batch[1]
        if not self.labels_in_range():
            return  # the loss would crash on the labels; labels-out-of-range reports it
        try:
            value = self._setup_loss()
        except SetupError:
            raise
        except Exception as exc:
            what = (
                f"the loss {self.setup.loss_name} rejected the model output"
                if callable(self.setup.loss) and not isinstance(self.setup.loss, TrainingStep)
                else f"{self.setup.loss_name} failed"
            )
            raise SetupError(
                f"{what}: output {shape_of(out)}, target {shape_of(y)}: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise SetupError(
                f"the loss {self.setup.loss_name} returned {shape_of(value)}; expected a scalar "
                "tensor (use reduction='mean')"
            )


def _labels_index_past(out: Any, y: Any) -> bool:
    """Whether integer targets hold a label no cross-entropy over `out` can index: negative
    (other than the ignore index) or not below any of the output's non-batch sizes. Judged
    on the shapes alone, before the loss kind is known (which class dimension it uses, 1 for
    (N, C, ...) or the last for (N, T, C), is learned by computing the loss)."""
    if not isinstance(out, torch.Tensor) or not isinstance(y, torch.Tensor) or out.dim() < 2:
        return False
    widest = max(out.shape[1:])
    if widest < 2:  # one output per sample: a binary or regression head; a loss of the
        return False  # user's own may well turn integer targets into floats for it
    if torch.is_floating_point(y) or y.dtype == torch.bool or y.numel() == 0:
        return False
    valid = y[y != IGNORE_INDEX]
    return bool(valid.numel()) and bool((valid.min() < 0) | (valid.max() >= widest))


def _squeezed(fn: Callable[[Any, Any], torch.Tensor]) -> Callable[[Any, Any], torch.Tensor]:
    """fn on (N, 1) predictions squeezed to the (N,) targets' shape."""
    return lambda out, y: fn(out.squeeze(-1), y)


def _softmax_then_cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of probabilities: what a loss computes when a softmax came first."""
    return F.cross_entropy(out.softmax(dim=1), y)


def _is_binary(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())
