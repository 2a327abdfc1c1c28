"""How the user's batches reach their model, and what in its output is judged.

Projects hand batches over in many shapes: `(x, y)`, `((a, b), y)`, `(a, b, y)`, dicts with
the Hugging Face `labels` key, `BatchEncoding`s and dataclasses. `BatchFormat.split` turns any
of them into (model input, target): the input is left as the batch held it when it is one
value (`model(x)`, as every check was written for), and becomes `data.Inputs` (args, kwargs)
when it is several. `call` runs the model on it; `prediction` finds the tensor the rules judge
in whatever the model returns (a tensor, a tuple, a dict or a `ModelOutput`), and `own_loss`
the loss a model computes itself (`output.loss`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from trainwise.data import Inputs, first_tensor, shape_of
from trainwise.errors import SetupError

# The keys that hold the target when the setup names none, in order of preference: the
# Hugging Face convention first (its collators rename "label" to "labels").
TARGET_KEYS = ("labels", "label", "target", "targets", "y")
# Where a dict-like output holds the predictions when `Setup(output=...)` names nothing.
PREDICTION_KEYS = ("logits", "prediction", "predictions", "preds", "y_hat", "output", "out")
LOSS_KEY = "loss"  # where HF's ModelOutput and Lightning's step dicts hold the loss
# The keyword a model that computes its own loss takes the target as, for tuple batches.
LABELS_KEYWORD = "labels"


def as_mapping(value: Any) -> dict | None:
    """A dict-like batch or output (dict, Mapping such as BatchEncoding or ModelOutput, or a
    dataclass instance) as a plain dict; None for anything else."""
    if isinstance(value, Mapping):
        return dict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return None


@dataclasses.dataclass(frozen=True)
class BatchFormat:
    """How a setup's batches split into the model's input and the target (see the module doc).

    inputs:   dict keys passed to the model, in order (default: every key but the target's)
    target:   the target's dict key or tuple position (default: a key of TARGET_KEYS, or the
              second of a pair)
    split:    the user's own `split(batch) -> (model_args, model_kwargs, target)`
    output:   where the prediction is in the model's output: a key, an index or a callable
    own_loss: the model computes its own loss: the target also goes to it as a keyword
    """

    inputs: tuple[str, ...] | None = None
    target: str | int | None = None
    split_fn: Callable[[Any], Any] | None = None
    output: str | int | Callable[[Any], Any] | None = None
    own_loss: bool = False

    # -- batches -> (input, target) ------------------------------------------------------------

    def split(self, batch: Any, index: int, where: str) -> tuple[Any, Any]:
        if self.split_fn is not None:
            return self._split_by_user(batch, index, where)
        mapping = as_mapping(batch)
        if mapping is not None:
            return self._split_mapping(mapping, index, where)
        if isinstance(batch, (tuple, list)):
            return self._split_sequence(batch, index, where)
        raise SetupError(
            f"{where} item {index} is a {type(batch).__name__}; expected a pair (input, target), "
            "a dict with a 'labels' key, or a Setup(split=...) that takes it apart"
        )

    def _split_by_user(self, batch: Any, index: int, where: str) -> tuple[Any, Any]:
        name = getattr(self.split_fn, "__qualname__", "split")
        try:
            parts = self.split_fn(batch)
        except Exception as exc:
            raise SetupError(
                f"Setup(split={name}) raised {type(exc).__name__} on {where} item {index}: {exc}"
            ) from exc
        if not (
            isinstance(parts, tuple)
            and len(parts) == 3
            and isinstance(parts[0], (tuple, list))
            and isinstance(parts[1], Mapping)
        ):
            raise SetupError(
                f"Setup(split={name}) returned {shape_of(parts)} for {where} item {index}; "
                "expected (model_args: tuple, model_kwargs: dict, target)"
            )
        args, kwargs, target = parts
        return self._with_target(Inputs(tuple(args), dict(kwargs)), target), target

    def _split_mapping(self, batch: dict, index: int, where: str) -> tuple[Any, Any]:
        keys = list(batch)
        key = self.target if isinstance(self.target, str) else None
        if key is None:
            key = next((k for k in TARGET_KEYS if k in batch), None)
        if key is None or key not in batch:
            looked = f"'{key}' (Setup(target=...))" if key else ", ".join(map(repr, TARGET_KEYS))
            raise SetupError(
                f"{where} item {index} is a dict with keys {keys}; none holds the target "
                f"(looked for {looked}): name it with Setup(target='...')"
            )
        names = list(self.inputs) if self.inputs else [k for k in keys if k != key]
        missing = [k for k in names if k not in batch]
        if missing:
            raise SetupError(
                f"{where} item {index} has no key {missing[0]!r} named in Setup(inputs=...); "
                f"its keys are {keys}"
            )
        kwargs = {k: batch[k] for k in names}
        if self.own_loss:
            kwargs[key] = batch[key]
        return Inputs((), kwargs, key if self.own_loss else None, key), batch[key]

    def _split_sequence(self, batch: Sequence, index: int, where: str) -> tuple[Any, Any]:
        n = len(batch)
        if self.target is None or isinstance(self.target, str):
            if n != 2:
                raise SetupError(
                    f"{where} item {index} is a {type(batch).__name__} of {n} elements; expected "
                    "a pair (input, target). Name the target's position, e.g. "
                    "Setup(target=-1) for (input_a, input_b, target), or wrap the dataset so "
                    "that __getitem__ returns `(x, y)`"
                )
            if not self.own_loss:
                return batch[0], batch[1]  # the input as the batch holds it: model(x)
            position = 1
        else:
            if not -n <= self.target < n:
                raise SetupError(
                    f"Setup(target={self.target}) but {where} item {index} has {n} elements"
                )
            position = self.target % n
        args = tuple(v for i, v in enumerate(batch) if i != position)
        target = batch[position]
        return self._with_target(Inputs(args, {}, None, position), target), target

    def _with_target(self, inputs: Inputs, target: Any) -> Inputs:
        """The model computes its own loss: it also takes the target, as `labels=`."""
        if not self.own_loss:
            return inputs
        kwargs = {**inputs.kwargs, LABELS_KEYWORD: target}
        return Inputs(inputs.args, kwargs, LABELS_KEYWORD, inputs.layout)

    def join(self, x: Any, y: Any) -> Any:
        """The batch `split` took apart, put back together (for a TrainingStep, which takes
        whole batches): a dict, or a tuple with the target where it was."""
        if not isinstance(x, Inputs):
            return (x, y)
        if isinstance(x.layout, str):
            return {**{k: v for k, v in x.kwargs.items() if k != x.target_key}, x.layout: y}
        if isinstance(x.layout, int):
            parts = list(x.args)
            parts.insert(x.layout, y)
            return tuple(parts)
        raise SetupError(
            "a training step takes whole batches, and a Setup(split=...) cannot put them back "
            "together; leave split out and name the keys with inputs=/target="
        )

    # -- the model's call and its output --------------------------------------------------------

    def call(self, model: nn.Module, x: Any) -> Any:
        """The model's raw output on input `x` (as `split` made it)."""
        if isinstance(x, Inputs):
            args, kwargs = x.args, x.kwargs
            if x.target_key is not None and not _takes_keywords(model, (x.target_key,)):
                raise SetupError(_no_own_loss(model, x.target_key))
            named = [k for k in kwargs if k != x.target_key]
            if named and not args and not _takes_keywords(model, tuple(named)):
                # {"image": x} for forward(self, x), or inputs=("image", "meta") for
                # forward(self, img, meta): the values in order, by position.
                if len(named) > 1 and self.inputs is None:
                    raise SetupError(_keyword_mismatch(model, tuple(named)))
                target = {x.target_key: kwargs[x.target_key]} if x.target_key else {}
                return model(*(kwargs[k] for k in named), **target)
            return model(*args, **kwargs)
        if isinstance(x, (tuple, list)) and len(x) >= 2 and _positional_arity(model) == len(x):
            return model(*x)  # ((a, b), y) for forward(self, a, b)
        return model(x)

    def prediction(self, output: Any) -> Any:
        """What the rules judge in the model's output: the part `output=` names, else the
        tensor itself, else the logits of a dict / ModelOutput; a tuple stays as it is."""
        if self.output is not None:
            return self._named_output(output)
        mapping = as_mapping(output)
        if mapping is None:
            return output
        for key in PREDICTION_KEYS:
            if isinstance(mapping.get(key), torch.Tensor):
                return mapping[key]
        return first_tensor({k: v for k, v in mapping.items() if k != LOSS_KEY})

    def loss_input(self, output: Any) -> Any:
        """What a Setup's loss function receives: the prediction of a dict-like output (or of
        the part `output=` names); other outputs as the model returned them."""
        if self.output is not None or as_mapping(output) is not None:
            return self.prediction(output)
        return output

    def _named_output(self, output: Any) -> Any:
        chosen = self.output
        try:
            if callable(chosen):
                return chosen(output)
            mapping = as_mapping(output)
            if isinstance(chosen, str) and mapping is not None:
                return mapping[chosen]
            if isinstance(chosen, str):
                return getattr(output, chosen)
            return output[chosen]
        except Exception as exc:
            raise SetupError(
                f"Setup(output={chosen!r}) could not be read from the model's output "
                f"{shape_of(output)}: {type(exc).__name__}: {exc}"
            ) from exc


def own_loss(output: Any, where: str) -> torch.Tensor:
    """The loss a model (or a training step) returned: a scalar tensor, the "loss" of a
    dict / ModelOutput, or the first element of a tuple; `where` names its source."""
    mapping = as_mapping(output)
    if mapping is not None:
        value = mapping.get(LOSS_KEY)
    elif isinstance(output, (tuple, list)) and output:
        value = output[0]  # HF models with return_dict=False: (loss, logits, ...)
    else:
        value = output
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise SetupError(
            f"{where} returned {shape_of(output)}, with no loss in it; expected a scalar tensor "
            "or a dict/ModelOutput with a 'loss'. A model that does not compute its own loss "
            "needs a loss function: Setup(loss=nn.CrossEntropyLoss()), for example"
        )
    return value.reshape(())


# -- the model's signature ----------------------------------------------------------------------


def _parameters(model: nn.Module) -> list[inspect.Parameter] | None:
    """forward's parameters (self excluded); read once per forward function, since the
    experiments call the model hundreds of times."""
    forward = model.forward
    function, bound = getattr(forward, "__func__", forward), hasattr(forward, "__func__")
    try:
        return _signature(function, bound)
    except TypeError:  # an unhashable callable: read it every time
        return _signature.__wrapped__(function, bound)


@functools.lru_cache(maxsize=256)
def _signature(function: Callable, bound: bool) -> list[inspect.Parameter] | None:
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # builtins, some compiled modules: no signature to read
        return None
    return params[1:] if bound else params  # a method's own `self` is not an input


def _takes_keywords(model: nn.Module, keys: tuple[str, ...]) -> bool:
    params = _parameters(model)
    if params is None:
        return True  # cannot tell: let the call say
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return True
    named = {p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    return set(keys) <= named


def _positional_arity(model: nn.Module) -> int | None:
    """How many positional arguments forward requires (no default); None when it takes *args
    or has no signature to read."""
    params = _parameters(model)
    if params is None or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in positional and p.default is inspect.Parameter.empty)


def _no_own_loss(model: nn.Module, key: str) -> str:
    takes = ", ".join(p.name for p in _parameters(model) or [])
    return (
        f"Setup(loss=None) says the model computes its own loss, so it is called with the "
        f"target as `{key}=`, but {type(model).__name__}.forward({takes}) takes no such "
        "argument; give a loss function instead, e.g. Setup(loss=nn.CrossEntropyLoss())"
    )


def _keyword_mismatch(model: nn.Module, keys: tuple[str, ...]) -> str:
    params = _parameters(model) or []
    takes = ", ".join(p.name for p in params)
    named = {p.name for p in params}
    unknown = [k for k in keys if k not in named]
    return (
        f"{type(model).__name__}.forward({takes}) takes no argument named {unknown[0]!r}, and "
        f"the batch's input keys are {list(keys)}; name the keys that go to the model, in the "
        "order of its arguments, with Setup(inputs=(...)), or give Setup(split=...)"
    )
