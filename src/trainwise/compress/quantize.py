"""int8 quantization with PyTorch's eager/FX quantization (torch.ao.quantization).

Why torch.ao and not torchao: trainwise measures CPU latency of the model as it runs in eager
mode. torch.ao's quantized modules run on fbgemm/x86 int8 kernels; torchao 0.18's
`quantize_` (its replacement, which torch.ao's deprecation warning points to) runs its int8
tensor subclasses through generic ops unless the model goes through torch.compile, and was
6.8x slower than float32 on a 64-256-256-10 MLP at batch 64 (int8 dynamic; weight-only: 1.6x
slower), where torch.ao's dynamic int8 was on par (docs/notes/issue19.md). torch.ao's
deprecation warnings are silenced inside these functions only.

dynamic_int8   weights int8 ahead of time, activations quantized on the fly per batch:
               Linear, LSTM, GRU (torch.ao.quantization.quantize_dynamic)
static_int8    weights and activations int8, activation ranges calibrated on training
               batches (FX graph mode: prepare_fx, calibrate, convert_fx); needs a model
               torch.fx can trace, and ops the quantized backend has
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

DYNAMIC_TYPES = (nn.Linear, nn.LSTM, nn.GRU)


class NotApplicable(Exception):
    """The method does not apply to this model; the message says why (shown, not raised)."""


@contextlib.contextmanager
def quiet() -> Any:
    """torch.ao.quantization's deprecation and observer warnings, silenced here only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def backend() -> str:
    """The quantized engine the int8 kernels run on (x86 / fbgemm on Intel and AMD, qnnpack on
    ARM): torch's current one."""
    return torch.backends.quantized.engine


def dynamic_int8(model: nn.Module) -> nn.Module:
    found = {type(m) for m in model.modules() if isinstance(m, DYNAMIC_TYPES)}
    if not found:
        raise NotApplicable("no Linear, LSTM or GRU layer (dynamic int8 quantizes only those)")
    with quiet():
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).cpu().eval(), set(DYNAMIC_TYPES), dtype=torch.qint8
        )


def static_int8(model: nn.Module, example: tuple, calibrate: Callable[[nn.Module], None]
                ) -> nn.Module:  # fmt: skip
    """The model's int8 version: traced, observed over `calibrate(prepared)` (which runs it on
    training batches), converted. `example`: positional inputs for the trace."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with quiet():
        try:
            prepared = prepare_fx(copy.deepcopy(model).cpu().eval(),
                                  get_default_qconfig_mapping(backend()), example)  # fmt: skip
        except Exception as exc:  # torch.fx cannot trace data-dependent control flow
            raise NotApplicable(f"torch.fx cannot trace the model ({_first_line(exc)})") from exc
        with torch.no_grad():
            calibrate(prepared)
        converted = convert_fx(prepared)
    if not any(_is_quantized(m) for m in converted.modules()):
        raise NotApplicable("no layer the static int8 backend quantizes (Conv, Linear)")
    return converted


def static_structure(model: nn.Module, example: tuple) -> nn.Module:
    """The converted graph of `model` without calibration, for loading a saved static int8
    state dict into (its scales and zero points are in the state dict)."""
    return static_int8(model, example, lambda prepared: prepared(*example))


def _is_quantized(module: nn.Module) -> bool:
    where = type(module).__module__  # torch.ao.nn.quantized..., torch.ao.nn.intrinsic.quantized...
    return where.startswith("torch.ao.nn.") and ".quantized" in where


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def calibration(batches: Iterable[Any], run: Callable[[nn.Module, Any], Any]
                ) -> Callable[[nn.Module], None]:  # fmt: skip
    """`calibrate(prepared)` for static_int8: runs the prepared model over `batches`."""

    def calibrate(prepared: nn.Module) -> None:
        for x in batches:
            run(prepared, x)

    return calibrate
