"""Recipe: the training tips `fit` applies, as one frozen, printable, serialisable record.

Each field is one tip with its default from the seeds (../shared/TIPS.md):
- lr "auto": the LR of trainwise's own range test (lr_find), fastai's habit of measuring it;
- schedule "one-cycle" (Smith & Topin, super-convergence), or torch's cosine, cosine with warm
  restarts, step decay, constant;
- clip "auto": gradient clipping at the 90th percentile of the norms of the first steps;
- output_bias: the last layer's bias at the log class prior / the target mean (Karpathy,
  "init well");
- label_smoothing 0.1 on single-label cross-entropy (Szegedy et al. 2016; Müller et al. 2019);
- precision "auto": bf16 autocast on GPUs that support it, fp16 with a GradScaler on older
  ones, fp32 on CPU (where autocast rarely pays);
- weight_decay 0.01 on weight matrices only (AdamW, decoupled; none on biases and norms).

`Recipe.plain()` is the Setup as written: its own optimizer and LR, constant, nothing added.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from trainwise.errors import SetupError

SCHEDULES = ("one-cycle", "cosine", "cosine-restarts", "step", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "setup")  # AdamW over tw.param_groups, or the Setup's own factory


@dataclass(frozen=True)
class Recipe:
    """The tips `tw.fit` applies (see the module doc). Every field has the seeds' default."""

    lr: float | str | None = "auto"  # "auto" (range test), a number, or None: the optimizer's own
    schedule: str = "one-cycle"
    weight_decay: float = 0.01
    clip: float | str | None = "auto"  # "auto", a max gradient norm, or None (no clipping)
    label_smoothing: float = 0.1
    output_bias: bool = True
    precision: str = "auto"
    optimizer: str = "adamw"

    def __post_init__(self) -> None:
        if not (self.lr in ("auto", None) or _positive(self.lr)):
            raise SetupError(f"Recipe(lr={self.lr!r}): expected 'auto', a positive number or None")
        if self.schedule not in SCHEDULES:
            raise SetupError(f"Recipe(schedule={self.schedule!r}): expected one of {SCHEDULES}")
        if not (self.clip in ("auto", None) or _positive(self.clip)):
            raise SetupError(f"Recipe(clip={self.clip!r}): expected 'auto', a max norm or None")
        if not (isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1):
            raise SetupError(
                f"Recipe(label_smoothing={self.label_smoothing!r}): expected a number in [0, 1)"
            )
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise SetupError(f"Recipe(weight_decay={self.weight_decay!r}): expected a number >= 0")
        if self.precision not in PRECISIONS:
            raise SetupError(f"Recipe(precision={self.precision!r}): expected one of {PRECISIONS}")
        if self.optimizer not in OPTIMIZERS:
            raise SetupError(f"Recipe(optimizer={self.optimizer!r}): expected one of {OPTIMIZERS}")

    @classmethod
    def plain(cls) -> Recipe:
        """No tips: the Setup's optimizer at its own LR, constant, no clipping, no smoothing,
        no bias init, fp32."""
        return cls(
            lr=None, schedule="constant", weight_decay=0.0, clip=None, label_smoothing=0.0,
            output_bias=False, precision="fp32", optimizer="setup",
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some tips changed (None values are left as they are: unset options)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise SetupError(f"Recipe has no tip {unknown[0]!r}; its tips: {self.tips()}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def tips(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def describe(self) -> str:
        """One line: lr auto, one-cycle, clip auto, ..."""
        shown = (f"{v:.3g}" if isinstance(v, float) else str(v) for v in self.to_dict().values())
        return ", ".join(f"{k} {v}" for k, v in zip(self.tips(), shown, strict=True))


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
