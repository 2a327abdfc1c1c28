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

The helper tips (train/recipe_tips.py applies them), off by default: each is a choice about
the user's model or data that a recipe cannot make blindly:
- finetune: discriminative LRs over 3 layer groups (head at lr, each earlier group
  finetune_ratio times lower; ULMFiT, Howard & Ruder 2018) and gradual unfreezing (the head
  alone in epoch 0, one more group each epoch). Ratio 3, not fastai's 10, and BatchNorm not
  frozen: benchmarks/finetune.py measured both (docs/notes/issue17-helpers.md);
- freeze_batchnorm: every BatchNorm layer's statistics and affine fixed (tw.freeze_batchnorm);
- tta: test-time augmentation of the final validation ("auto": by input kind, see TTA_SETS);
- distill_from: a fit run (or a state-dict file) whose model teaches this one (Hinton et al.
  2015) at distill_temperature and distill_alpha;
- progressive_resize: image/signal sizes per epoch, as fractions of the full size (fastai);
- y_range: "auto" or (lo, hi): a regression's outputs bounded by tw.YRange;
- final_fit: once trained, train again on train + validation data for the best epoch count.

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
# tta: "auto" picks by input kind (recipe_tips.tta_transforms); the others name transforms
TTA_SETS = ("auto", "flip", "shift", "flip+shift")


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
    # the helper tips, off by default (module doc)
    finetune: bool = False
    finetune_ratio: float = 3.0
    freeze_batchnorm: bool = False
    tta: str | None = None
    distill_from: str | None = None  # a fit run folder, or a state-dict file of the teacher
    distill_temperature: float = 4.0
    distill_alpha: float = 0.9
    progressive_resize: tuple[float, ...] | None = None  # e.g. (0.5, 0.75, 1.0)
    y_range: tuple[float, float] | str | None = None  # "auto" or (lo, hi)
    final_fit: bool = False

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
        self._check_helper_tips()

    def _check_helper_tips(self) -> None:
        for name in ("finetune", "freeze_batchnorm", "final_fit"):
            if not isinstance(getattr(self, name), bool):
                raise SetupError(f"Recipe({name}={getattr(self, name)!r}): expected True or False")
        if not (_positive(self.finetune_ratio) and self.finetune_ratio >= 1):
            raise SetupError(
                f"Recipe(finetune_ratio={self.finetune_ratio!r}): expected a number >= 1 (3 to 10)"
            )
        if self.finetune and self.optimizer != "adamw":
            raise SetupError(
                "Recipe(finetune=True, optimizer='setup'): finetune gives each layer group its "
                "own LR on AdamW; with your own optimizer, build it over "
                "tw.discriminative_lrs(model, lr) in the Setup's optimizer factory instead"
            )
        if self.tta not in (None, *TTA_SETS):
            raise SetupError(f"Recipe(tta={self.tta!r}): expected None or one of {TTA_SETS}")
        if self.distill_from is not None and not (
            isinstance(self.distill_from, str) and self.distill_from
        ):
            raise SetupError(
                f"Recipe(distill_from={self.distill_from!r}): expected a fit run folder or None"
            )
        if not _positive(self.distill_temperature):
            raise SetupError(
                f"Recipe(distill_temperature={self.distill_temperature!r}): expected a positive number"
            )
        if not (_number(self.distill_alpha) and 0 <= self.distill_alpha <= 1):
            raise SetupError(
                f"Recipe(distill_alpha={self.distill_alpha!r}): expected a number in [0, 1]"
            )
        self._check_progressive_resize()
        self._check_y_range()

    def _check_progressive_resize(self) -> None:
        sizes = self.progressive_resize
        if sizes is None:
            return
        ok = (
            isinstance(sizes, (tuple, list)) and len(sizes) >= 1
            and all(_positive(s) and s <= 1 for s in sizes)
            and list(sizes) == sorted(sizes) and sizes[-1] == 1
        )  # fmt: skip
        if not ok:
            raise SetupError(
                f"Recipe(progressive_resize={sizes!r}): expected increasing fractions of the "
                "full input size ending at 1, e.g. (0.5, 0.75, 1)"
            )
        object.__setattr__(self, "progressive_resize", tuple(float(s) for s in sizes))

    def _check_y_range(self) -> None:
        bounds = self.y_range
        if bounds is None or bounds == "auto":
            return
        ok = (
            isinstance(bounds, (tuple, list)) and len(bounds) == 2
            and all(_number(b) for b in bounds) and bounds[0] < bounds[1]
        )  # fmt: skip
        if not ok:
            raise SetupError(
                f"Recipe(y_range={bounds!r}): expected 'auto', None or (lo, hi) with lo < hi"
            )
        object.__setattr__(self, "y_range", (float(bounds[0]), float(bounds[1])))

    @classmethod
    def plain(cls) -> Recipe:
        """No tips: the Setup's optimizer at its own LR, constant, no clipping, no smoothing,
        no bias init, fp32."""
        return cls(
            lr=None, schedule="constant", weight_decay=0.0, clip=None, label_smoothing=0.0,
            output_bias=False, precision="fp32", optimizer="setup",
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Every field (tuples as lists once through JSON: Recipe(**d) turns them back)."""
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
        """One line: lr auto, one-cycle, clip auto, ...; each helper tip "off" or its settings
        (finetune's ratio, distillation's teacher, T and alpha in one item each)."""
        values = self.to_dict()
        helper = [f.name for f in dataclasses.fields(self)][len(BASE_TIPS) :]
        items = [f"{k} {_shown(values[k])}" for k in BASE_TIPS]
        for name in helper:
            value = values[name]
            if name in ("finetune_ratio", "distill_temperature", "distill_alpha"):
                continue  # shown with the tip they belong to
            if name == "finetune" and value:
                items.append(f"finetune ratio {_shown(self.finetune_ratio)}")
            elif name == "distill_from" and value:
                items.append(f"distill from {value} (T {_shown(self.distill_temperature)}, "
                             f"alpha {_shown(self.distill_alpha)})")  # fmt: skip
            elif value in (None, False):
                items.append(f"{name} off")
            else:
                items.append(f"{name} {'on' if value is True else _shown(value)}")
        return ", ".join(items)


BASE_TIPS = ("lr", "schedule", "weight_decay", "clip", "label_smoothing", "output_bias",
             "precision", "optimizer")  # fmt: skip


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0
