"""What a variant costs and gives, measured on this machine: size on disk, parameters, CPU
latency at batch 1 and at the setup's batch size, and the validation metric.

Latency: every model is called in turn (A B C A B C ...: the machine's drift and other
processes' load fall on all of them alike), after warm-up calls, and the per-call times'
median and interquartile range are reported. One call per sample: perf_counter has sub-µs
resolution, far below a call's time.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwise.spec import Setup

WARMUP = 10  # calls per model before timing: the allocator, oneDNN/fbgemm's first-call setup
ROUNDS = (30, 300)  # timed calls per model: at least, at most
BUDGET_S = 2.0  # seconds of timed calls per model and batch size (after the minimum)
# torchmetrics' names, and which way is better, for the metric each task reports
METRIC = {"classification": "accuracy", "multilabel": "accuracy", "segmentation": "iou",
          "regression": "mae"}  # fmt: skip
LOWER_IS_BETTER = {"mae", "loss"}


@dataclass
class Latency:
    median_ms: float
    q25_ms: float
    q75_ms: float
    calls: int


def size_bytes(path: Path) -> int:
    return path.stat().st_size


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(weights stored, nonzero among them): floating-point parameters, and for quantized
    modules the int8 weights and biases their state dict holds (they have no parameters)."""
    total = nonzero = 0
    for tensor in _weights(model):
        total += tensor.numel()
        nonzero += int(torch.count_nonzero(tensor.int_repr() if tensor.is_quantized else tensor))
    return total, nonzero


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """Float parameters, and the weights and biases quantized modules return from their
    `_weight_bias()`: a (weight, bias) pair (Linear, Conv) or {"weight": {..}, "bias": {..}}
    (dynamic GRU/LSTM)."""
    params = [p.detach() for p in model.parameters()]
    for module in model.modules():
        if type(module).__name__ == "LinearPackedParams":
            continue  # held by a quantized Linear, counted there
        where = type(module).__module__  # torch.ao.nn.quantized..., ao.nn.intrinsic.quantized...
        if where.startswith("torch.ao.nn.") and ".quantized" in where and callable(
            getattr(module, "_weight_bias", None)
        ):
            params += _tensors(module._weight_bias())
    return params


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value.detach()]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def latencies(models: dict[str, nn.Module], inputs: Any, call: Callable[[nn.Module, Any], Any]
              ) -> dict[str, Latency]:  # fmt: skip
    """Per-call CPU latency of each model on `inputs`, interleaved, in eval mode, no grad."""
    for model in models.values():
        model.eval()
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            for _ in range(WARMUP):
                call(model, inputs)
        started = time.perf_counter()
        budget = BUDGET_S * len(models)
        while True:
            for name, model in models.items():
                begin = time.perf_counter()
                call(model, inputs)
                times[name].append(time.perf_counter() - begin)
            done = len(next(iter(times.values())))
            if done >= ROUNDS[1] or (done >= ROUNDS[0] and time.perf_counter() - started > budget):
                break
    return {name: _summary(t) for name, t in times.items()}


def _summary(seconds: list[float]) -> Latency:
    q25, median, q75 = statistics.quantiles(seconds, n=4)
    return Latency(median * 1e3, q25 * 1e3, q75 * 1e3, len(seconds))


def evaluate(setup: Setup, model: nn.Module, task: str, num_classes: int | None
             ) -> dict[str, float]:  # fmt: skip
    """Loss and metrics on the whole validation set, as fit computes them (torchmetrics)."""
    from trainwise.train.loop import _evaluate, _on_device
    from trainwise.train.metrics import TaskMetrics

    batches = (_on_device(setup, b, i, "val") for i, b in enumerate(setup.val_loader()))
    metrics = TaskMetrics(task, num_classes, torch.device("cpu"))
    return _evaluate(setup, model, batches, contextlib.nullcontext, metrics)


def metric_of(task: str) -> str:
    return METRIC.get(task, "loss")
