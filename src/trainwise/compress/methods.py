"""The compression methods a user names (`--method`), parsed into `Method`s.

    dynamic-int8        int8 weights, activations quantized per batch (Linear, LSTM, GRU)
    static-int8         int8 weights and activations, calibrated on training batches (FX)
    prune:F             zero the fraction F of Linear/Conv weights of least magnitude (global
                        L1, torch.nn.utils.prune), fine-tuned with fit, the masks kept
    prune-channels:F    remove the fraction F of each hidden layer's channels (least L2 norm),
                        fine-tuned with fit: a smaller dense model
    distill:W           a student of width W (0 < W < 1; half-width = 0.5, quarter-width =
                        0.25) trained with fit on tw.DistillationLoss from the original
    distill:depth-D     a student of depth D (half-depth = depth-0.5): fewer stacked RNN
                        layers and shape-keeping blocks (compress/shallow.py)
    A+B                 B applied to A's result, e.g. prune-channels:0.5+dynamic-int8 (the
                        training methods first: a quantized model does not train)
"""

from __future__ import annotations

from dataclasses import dataclass

from trainwise.errors import SetupError

WIDTHS = {"half-width": 0.5, "quarter-width": 0.25}
DEPTHS = {"half-depth": 0.5}
METHODS = {
    "dynamic-int8": "int8 weights, activations quantized per batch (Linear, LSTM, GRU)",
    "static-int8": "int8 weights and activations, calibrated on training batches",
    "prune:F": "zero the fraction F (0 < F < 1) of weights of least magnitude, then fine-tune",
    "prune-channels:F": "remove the fraction F of each hidden layer's channels, then fine-tune",
    "distill:W": "a student of width W (0.5, half-width, quarter-width) distilled from the model",
    "distill:depth-D": "a student of depth D (half-depth, depth-0.5) distilled from the model",
}
DEFAULT = ("dynamic-int8", "static-int8", "prune:0.5", "prune-channels:0.5", "distill:half-width")


@dataclass(frozen=True)
class Step:
    """One method of a variant."""

    spec: str  # as the user wrote it
    kind: str  # dynamic-int8, static-int8, prune, prune-channels, distill
    amount: float | None = None  # the pruned fraction, or the student's width or depth
    depth: bool = False  # a distillation student of fewer layers (else narrower)

    @property
    def trains(self) -> bool:
        return self.kind in ("prune", "prune-channels", "distill")


@dataclass(frozen=True)
class Method:
    """A variant's recipe: one step, or several applied in turn (A+B)."""

    spec: str
    steps: tuple[Step, ...]

    @property
    def slug(self) -> str:
        """A file name for the variant: prune-0.5, distill-half-width."""
        return self.spec.replace(":", "-")


def parse(spec: str) -> Method:
    steps = tuple(_step(part) for part in spec.strip().split("+"))
    for before, after in zip(steps, steps[1:], strict=False):
        if not before.trains and after.trains:
            raise SetupError(f"--method {spec}: {after.spec} after {before.spec}; a quantized "
                             "model does not train: put the training methods first")  # fmt: skip
        if not before.trains and not after.trains:
            raise SetupError(f"--method {spec}: two quantizations ({before.spec}, {after.spec})")
    return Method("+".join(s.spec for s in steps), steps)


def _step(spec: str) -> Step:
    kind, sep, value = spec.strip().partition(":")
    spec = spec.strip()
    if kind in ("dynamic-int8", "static-int8") and not sep:
        return Step(spec, kind)
    if kind in ("prune", "prune-channels", "distill") and sep:
        depth = kind == "distill" and (value in DEPTHS or value.startswith("depth-"))
        amount = (DEPTHS.get(value) if depth else WIDTHS.get(value)) if kind == "distill" else None
        if amount is None:
            try:
                amount = float(value.removeprefix("depth-") if depth else value)
            except ValueError:
                amount = None
        if amount is not None and 0 < amount < 1:
            return Step(spec, kind, amount, depth)
        what = ("a width in (0, 1), half-width, quarter-width, half-depth or depth-D"
                if kind == "distill" else "a fraction in (0, 1)")  # fmt: skip
        raise SetupError(f"--method {spec}: expected {kind}:{'W' if kind == 'distill' else 'F'} "
                         f"with {what}")  # fmt: skip
    known = "; ".join(f"{name} ({what})" for name, what in METHODS.items())
    raise SetupError(f"unknown method {spec!r}; the methods: {known}")


def parse_all(specs: list[str] | tuple[str, ...]) -> list[Method]:
    methods = [parse(s) for s in specs]
    seen = set()
    for m in methods:
        if m.slug in seen:
            raise SetupError(f"--method {m.spec} is given twice")
        seen.add(m.slug)
    return methods
