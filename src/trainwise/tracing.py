"""Run a model once with forward hooks on every module and record what each call did.

Hooks see every module call wherever it sits (inside Sequentials, custom blocks, residual
paths); torch.fx adds the functional calls inside `forward` (F.softmax ...) where it traces.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

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


@dataclass
class Trace:
    calls: list[ModuleCall] = field(default_factory=list)
    output: Any = None
    # The fx graph of the model, when symbolic tracing works on it (it fails on data-dependent
    # control flow; hooks still cover those models).
    graph: torch.fx.Graph | None = None

    @property
    def leaf_calls(self) -> list[ModuleCall]:
        return [c for c in self.calls if c.is_leaf]

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


@contextmanager
def _hooks(model: nn.Module, trace: Trace, stack: list[str]) -> Iterator[None]:
    names = {id(m): n for n, m in model.named_modules()}
    keep_alive: list[Any] = []  # outputs stay referenced during the pass so ids stay unique

    def pre(module: nn.Module, args: Any) -> None:
        stack.append(names.get(id(module), "?"))

    def post(module: nn.Module, args: Any, output: Any) -> None:
        name = names.get(id(module), "?")
        if stack:
            stack.pop()
        keep_alive.append(output)
        trace.calls.append(
            ModuleCall(
                name=name,
                module=module,
                input_shapes=shape_of(args),
                output_shape=shape_of(output),
                is_leaf=not any(True for _ in module.children()),
                output_id=id(output),
            )
        )

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def run_forward(model: nn.Module, inputs: Any, stage: str = "static") -> Any:
    """model(inputs), turning a crash in the user's model into a message naming the layer."""
    trace = Trace()
    return _forward(model, inputs, trace, stage)


def _forward(model: nn.Module, inputs: Any, trace: Trace, stage: str) -> Any:
    stack: list[str] = []
    with _hooks(model, trace, stack):
        try:
            return model(inputs)
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


def trace_model(model: nn.Module, inputs: Any, stage: str = "static") -> Trace:
    """Forward once (no grad) with hooks; the output is kept in trace.output."""
    trace = Trace()
    with torch.no_grad():
        trace.output = _forward(model, inputs, trace, stage)
    try:
        trace.graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # data-dependent control flow etc.: hooks alone will do
        trace.graph = None
    return trace
