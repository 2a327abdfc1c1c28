"""Run a model once with forward hooks on every module and record what each call did.

Hooks see every module call wherever it sits (inside Sequentials, custom blocks, residual
paths); a TorchFunctionMode records the functional calls made between modules (F.softmax,
torch.tanh, `x + skip`, torch.cat) even where torch.fx cannot trace the model; torch.fx adds
the graph where it traces. Every call keeps the ids of the tensors it read and returned, so
rules can follow the data flow: which call produced the input of a BatchNorm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from trainwise.data import shape_of
from trainwise.errors import SetupError


@dataclass
class ModuleCall:
    """One call of one module during the traced forward pass (post-order: children first)."""

    name: str  # qualified name in the model, "" for the model itself
    module: nn.Module
    input_shapes: str
    output_shape: str
    is_leaf: bool
    output_id: int  # id() of the output tensor, to find which call produced a given tensor
    input_ids: tuple[int, ...] = ()  # id() of each tensor argument
    start: int = 0  # event counter when the call began and when it returned (the flow order)
    end: int = 0

    @property
    def output_ids(self) -> tuple[int, ...]:
        return (self.output_id,)


@dataclass
class FunctionCall:
    """A torch function or tensor method called outside any leaf module (F.softmax, x + y)."""

    name: str  # e.g. "softmax", "tanh", "__add__", "cat"
    inside: str  # qualified name of the innermost module whose forward made the call
    input_ids: tuple[int, ...]
    input_shapes: tuple[tuple[int, ...], ...]  # shapes of the tensor arguments
    output_ids: tuple[int, ...]
    start: int = 0
    end: int = 0
    parameter_input: bool = False  # one argument is an nn.Parameter (a learned bias/embedding)


@dataclass
class Trace:
    calls: list[ModuleCall] = field(default_factory=list)
    output: Any = None
    # The fx graph of the model, when symbolic tracing works on it (it fails on data-dependent
    # control flow; hooks still cover those models).
    graph: torch.fx.Graph | None = None

    functions: list[FunctionCall] = field(default_factory=list)

    @property
    def leaf_calls(self) -> list[ModuleCall]:
        return [c for c in self.calls if c.is_leaf]

    @property
    def ops(self) -> list[ModuleCall | FunctionCall]:
        """Leaf module calls and functional calls, in the order they returned."""
        return self._flow()[0]

    def _flow(self) -> tuple[list, dict[int, list]]:
        """(ops in return order, id of a returned tensor -> the ops that returned it), built
        once the pass is over."""
        key = (len(self.calls), len(self.functions))
        if getattr(self, "_flow_key", None) != key:
            ops = sorted([*self.leaf_calls, *self.functions], key=lambda op: op.end)
            by_output: dict[int, list] = {}
            for op in ops:
                for out in op.output_ids:
                    by_output.setdefault(out, []).append(op)
            self._flow_cache, self._flow_key = (ops, by_output), key
        return self._flow_cache

    def producer(
        self, op: ModuleCall | FunctionCall, arg: int = 0
    ) -> ModuleCall | FunctionCall | None:
        """The leaf call or functional call that returned `op`'s argument `arg` (None: an input
        of the model, or a tensor made inside a leaf module)."""
        if arg >= len(op.input_ids):
            return None
        # The latest call that returned this very tensor before `op` began; in-place modules
        # (ReLU(inplace=True), Dropout in eval) return their input, so the latest one wins.
        best = None
        for cand in self._flow()[1].get(op.input_ids[arg], []):
            if cand.end < op.start:
                best = cand
        return best

    def consumers(self, op: ModuleCall | FunctionCall) -> list[ModuleCall | FunctionCall]:
        """The calls that read one of `op`'s outputs after it returned."""
        outs = set(op.output_ids)
        return [c for c in self.ops if c.start > op.end and outs & set(c.input_ids)]

    def producer_of(self, tensor: torch.Tensor) -> ModuleCall | None:
        """The innermost module call that returned this very tensor (None: a functional op)."""
        for call in self.calls:  # post-order, so the innermost call comes first
            if call.output_id == id(tensor):
                return call
        return None

    def output_function(self) -> str | None:
        """Name of the functional op producing the model output, read from the fx graph."""
        if self.graph is None:
            return None
        out_node = next((n for n in self.graph.nodes if n.op == "output"), None)
        if out_node is None or not out_node.args or not isinstance(out_node.args[0], torch.fx.Node):
            return None
        node = out_node.args[0]
        if node.op == "call_function":
            return getattr(node.target, "__name__", str(node.target))
        if node.op == "call_method":
            return str(node.target)
        return None


class ForwardError(SetupError):
    """The user's model raised during forward; the message names the layer and the input shape."""


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in an argument list or an output, one level of nesting deep."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _tensors(item) if isinstance(v, torch.Tensor)]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, torch.Tensor)]
    return []


class _Clock:
    """Counts call begin/return events, giving every call a (start, end) in flow order."""

    def __init__(self) -> None:
        self.now = 0

    def tick(self) -> int:
        self.now += 1
        return self.now


class _FunctionRecorder(TorchFunctionMode):
    """Records torch functions called outside leaf modules while the forward runs."""

    def __init__(self, trace: Trace, stack: list[tuple[str, bool]], clock: _Clock, keep: list):
        super().__init__()
        self.trace, self.stack, self.clock, self.keep = trace, stack, clock, keep

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.stack and self.stack[-1][1]:  # inside a leaf module: its own business
            return func(*args, **kwargs)
        start = self.clock.tick()
        out = func(*args, **kwargs)
        try:
            self._record(func, args, kwargs, out, start)
        except Exception:  # recording must never break the user's forward (lazy modules ...)
            pass
        return out

    def _record(self, func: Any, args: Any, kwargs: dict, out: Any, start: int) -> None:
        outs = _tensors(out)
        if not outs:
            return
        ins = [
            t
            for t in _tensors(list(args)) + _tensors(kwargs)
            if not isinstance(t, nn.parameter.UninitializedTensorMixin)
        ]
        self.keep.append(out)  # ids stay unique while the pass runs
        self.trace.functions.append(
            FunctionCall(
                name=getattr(func, "__name__", str(func)),
                inside=self.stack[-1][0] if self.stack else "",
                input_ids=tuple(id(t) for t in ins),
                input_shapes=tuple(tuple(t.shape) for t in ins),
                output_ids=tuple(id(t) for t in outs),
                start=start,
                end=self.clock.tick(),
                parameter_input=any(isinstance(t, nn.Parameter) for t in ins),
            )
        )


@contextmanager
def _hooks(
    model: nn.Module, trace: Trace, stack: list[str], record_functions: bool = False
) -> Iterator[None]:
    names = {id(m): n for n, m in model.named_modules()}
    keep_alive: list[Any] = []  # outputs stay referenced during the pass so ids stay unique
    clock = _Clock()
    frames: list[tuple[str, bool]] = []  # (name, is_leaf) of the modules now running
    begun: list[tuple[int, tuple[int, ...]]] = []  # (start, input ids) per running module

    def pre(module: nn.Module, args: Any) -> None:
        name = names.get(id(module), "?")
        stack.append(name)
        frames.append((name, not any(True for _ in module.children())))
        begun.append((clock.tick(), tuple(id(t) for t in _tensors(args))))

    def post(module: nn.Module, args: Any, output: Any) -> None:
        name = names.get(id(module), "?")
        if stack:
            stack.pop()
        if frames:
            frames.pop()
        start, input_ids = begun.pop() if begun else (0, ())
        keep_alive.append(output)
        trace.calls.append(
            ModuleCall(
                name=name,
                module=module,
                input_shapes=shape_of(args),
                output_shape=shape_of(output),
                is_leaf=not any(True for _ in module.children()),
                output_id=id(output),
                input_ids=input_ids,
                start=start,
                end=clock.tick(),
            )
        )

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    recorder = _FunctionRecorder(trace, frames, clock, keep_alive) if record_functions else None
    try:
        if recorder is not None:
            with recorder:
                yield
        else:
            yield
    finally:
        for h in handles:
            h.remove()


# How the model is called on an input: model(inputs) by default; a Setup's call_model for
# inputs of several parts (trainwise.batches).
Call = Callable[[nn.Module, Any], Any]


def _plain_call(model: nn.Module, inputs: Any) -> Any:
    return model(inputs)


def run_forward(
    model: nn.Module, inputs: Any, stage: str = "static", call: Call = _plain_call
) -> Any:
    """call(model, inputs), turning a crash in the user's model into a message naming the layer."""
    trace = Trace()
    return _forward(model, inputs, trace, stage, call=call)


def _forward(
    model: nn.Module,
    inputs: Any,
    trace: Trace,
    stage: str,
    record_functions: bool = False,
    call: Call = _plain_call,
) -> Any:
    stack: list[str] = []
    with _hooks(model, trace, stack, record_functions):
        try:
            return call(model, inputs)
        except Exception as exc:
            layer = stack[-1] if stack else ""
            module = dict(model.named_modules()).get(layer, model)
            label = (
                f"layer '{layer}' ({type(module).__name__})"
                if layer
                else (f"{type(model).__name__}.forward")
            )
            raise ForwardError(
                f"[{stage}] the model raised {type(exc).__name__} in {label} on an input of "
                f"shape {shape_of(inputs)}: {exc}"
            ) from exc


def trace_model(
    model: nn.Module, inputs: Any, stage: str = "static", call: Call = _plain_call
) -> Trace:
    """Forward once (no grad) with hooks; the output is kept in trace.output."""
    trace = Trace()
    with torch.no_grad():
        try:
            trace.output = _forward(model, inputs, trace, stage, True, call)
        except ForwardError:
            # Retry without the function recorder, so a model that cannot run under a
            # TorchFunctionMode (compiled code, a mode of its own) is still traced by hooks;
            # a real error in the model raises again here, naming the layer.
            trace = Trace()
            trace.output = _forward(model, inputs, trace, stage, False, call)
    try:
        trace.graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # data-dependent control flow etc.: hooks alone will do
        trace.graph = None
    return trace
