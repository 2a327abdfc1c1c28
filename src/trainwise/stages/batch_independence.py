"""Batch independence: in eval mode, sample i's output must not depend on input j != i.

Measured exactly with autograd: the gradient of a random projection of output row i with
respect to every input row. The first layer whose output mixes rows is named. Judged by
`batch-mixing` (rules/protocol.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainwise.data import Inputs, input_parts, shape_of
from trainwise.measurements import BatchLeak
from trainwise.rules.protocol import LEAK
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome

BATCH_SIZES = (5, 7, 11, 13)  # a batch size no other dimension shares, so dim 0 is the batch
MAX_LAYERS = 200


class BatchIndependenceStage:
    name = "batch-independence"
    title = "Batch independence (eval mode)"

    def run(self, run: CheckRun) -> StageOutcome:
        if (reason := ex.blocking_reason(run)) is not None:
            return ex.skipped(reason)
        sample = run.context.train_sample
        x0 = ex.first_tensor(sample.inputs)
        if x0 is None:  # no tensor among the inputs: nothing to perturb
            return ex.skipped("needs at least 5 samples in a tensor input")
        sizes = [b for b in BATCH_SIZES if b <= len(sample) and b not in tuple(x0.shape[1:])]
        if not sizes:
            return ex.skipped("needs at least 5 samples in a tensor input")
        b = sizes[0]
        x, _ = ex.rows(sample, b, run)
        with ex.isolated(run):
            model, _ = ex.fresh(run)
            model.eval()
            calls: list[tuple[str, nn.Module, Any, torch.Tensor]] = []
            # cuDNN's RNN kernels have no backward in eval mode ("cudnn RNN backward can only
            # be called in training mode"; on an H200 the stage lost its measurement on a
            # GRU): the graph is recorded with torch's own kernels, whose backward works in
            # either mode.
            cudnn_off = torch.backends.cudnn.flags(enabled=False)
            with _recorded(model, calls), torch.enable_grad(), cudnn_off:
                x = _with_grad(x)
                out = ex.first_tensor(ex.forward(run, model, x, self.name))
            root = _root(x, calls, b)
            if out is None or out.dim() == 0 or out.shape[0] != b or root is None:
                return ex.skipped(
                    f"the output {shape_of(out)} or the input has no batch dimension first"
                )
            leak = _leak(out, root)
            if leak <= LEAK:
                return StageOutcome(
                    metrics={"batch": b, "leak": leak},
                    summary=(
                        f"output rows depend only on their own input (batch of {b}, max "
                        f"relative cross-sample gradient {leak:.1e})"
                    ),
                    measurement=BatchLeak(b, leak, shape_of(x)),
                )
            where = _first_mixing(calls, root, b)
        return StageOutcome(
            metrics={"batch": b, "leak": leak},
            summary=f"outputs mix samples of the batch ({where})",
            measurement=BatchLeak(b, leak, shape_of(x), where),
        )


class _recorded:
    """Forward hooks recording (name, module, first input, first output) of every module call,
    in completion order: a layer comes before the block that contains it. Containers count too,
    since some layers (nn.MultiheadAttention) compute without calling their children."""

    def __init__(self, model: nn.Module, calls: list) -> None:
        self.model, self.calls, self.handles = model, calls, []

    def __enter__(self) -> None:
        for name, module in self.model.named_modules():
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if len(self.calls) < MAX_LAYERS:
                out = ex.first_tensor(output)
                if out is not None:
                    self.calls.append((name, module, ex.first_tensor(args), out))

        return hook

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()


def _with_grad(x: Any) -> Any:
    """The input with its float tensors requiring grad (every input of several; never the
    target a model computing its own loss takes as a keyword)."""
    if isinstance(x, torch.Tensor) and torch.is_floating_point(x):
        return x.clone().requires_grad_(True)
    if isinstance(x, Inputs):
        kwargs = {k: v if k == x.target_key else _with_grad(v) for k, v in x.kwargs.items()}
        return Inputs(tuple(_with_grad(a) for a in x.args), kwargs, x.target_key, x.layout)
    return x


def _root(x: Any, calls: list, b: int) -> torch.Tensor | None:
    """The tensor to differentiate against: the (first float) input, or for token ids the
    first layer's output (an embedding cannot mix samples)."""
    for _, part in input_parts(x):
        if isinstance(part, torch.Tensor) and part.requires_grad:
            return part
    for _, _, _, out in calls:
        if out.requires_grad and out.dim() >= 1 and out.shape[0] == b:
            return out
    return None


def _leak(out: torch.Tensor, inp: torch.Tensor) -> float:
    """Max over i in {first, last} of |d out_i / d inp_j| (j != i) relative to |d out_i/d inp_i|.

    Both ends: a recurrence run across the batch only leaks forward (row 0 sees nobody).
    """
    if not out.requires_grad:
        return 0.0
    g = torch.Generator().manual_seed(0)
    # A random projection: a plain sum is blind to a softmax output (its rows sum to 1).
    w = torch.randn(out.shape[1:], generator=g).to(out.device, out.dtype)
    worst = 0.0
    for i in (0, out.shape[0] - 1):
        (grad,) = torch.autograd.grad((out[i] * w).sum(), inp, retain_graph=True, allow_unused=True)
        if grad is None:
            continue
        per_row = grad.detach().abs().flatten(1).amax(dim=1)  # (B,)
        own = float(per_row[i])
        others = float(torch.cat([per_row[:i], per_row[i + 1 :]]).max())
        worst = max(worst, others / own if own > 0 else (float("inf") if others > 0 else 0.0))
    return worst


def _first_mixing(calls: list, root: torch.Tensor, b: int) -> str:
    previous = "the input"
    for name, module, inp, out in calls:
        if not out.requires_grad or out.dim() == 0 or out.shape[0] != b:
            continue
        label = f"layer '{name}' ({type(module).__name__})" if name else "the model output"
        if _leak(out, root) > LEAK:
            local = (
                inp is not None
                and inp.requires_grad
                and inp.dim() >= 1
                and inp.shape[0] == b
                and _leak(out, inp) > LEAK
            )
            if local:
                hint = _hint(module)
                return label + (f": {hint}" if hint else "")
            return (
                f"the forward code between {previous} and {label} (a view/reshape or "
                "reduction across the batch dimension)"
            )
        previous = label
    return "the forward code after the last layer (a view/reshape or reduction across the batch)"


def _hint(module: nn.Module) -> str:
    if isinstance(
        module,
        (nn.RNNBase, nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer),
    ) and not getattr(module, "batch_first", True):
        return (
            f"{type(module).__name__} without batch_first=True reads (B, T, F) inputs as "
            "(T, B, F) and runs across the batch"
        )
    return ""
