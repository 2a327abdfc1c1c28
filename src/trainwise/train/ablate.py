"""`tw.ablate`: each tip of a recipe switched off in turn, on several seeds, and what it did.

The seeds state tips as beliefs ("label smoothing helps", "one-cycle trains faster"); an
ablation measures each one on the user's own setup:

- Leave one out of the recipe the user would train with (`Recipe()` by default): per seed, one
  run with every tip of the recipe on, and one run per tip with that tip off (or on, when the
  recipe had it off), all of the same length. Runs that share a seed share the initial weights,
  the data order and dropout, so each seed gives one paired difference, `with - without`.
- The effect is the mean paired difference; its 90% interval is a percentile bootstrap of that
  mean over the seeds (resampled with replacement). With three seeds the interval is coarse:
  it says whether the seeds agree, not how large the effect is to the decimal.
- The verdict reads the interval: "helps" when all of it lies on the better side of zero,
  "hurts" when all of it lies on the worse side, else "no measurable effect" (one seed: "one
  seed: not judged").
- A tip that does not apply to the task (label smoothing on a regression) is skipped, with the
  reason; nothing is trained for it.

Every run is a fit run record (config "ablate": the tip, on or off, the seed); the table itself
is a record of kind "ablate" (its table in tables.json, drawn in report.html; ablation.json and
ablation.md among its artifacts).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainwise.context import StaticContext
from trainwise.errors import SetupError
from trainwise.loss_kinds import CROSS_ENTROPY
from trainwise.spec import Setup
from trainwise.train import recipe_tips
from trainwise.train.checkpoints import HIGHER_IS_BETTER, LOWER_IS_BETTER
from trainwise.train.recipe import Recipe

CONFIDENCE = 0.90  # the interval's coverage
BOOTSTRAP = 10_000  # resamples of the seeds
HELPS, HURTS, UNCLEAR, ONE_SEED = "helps", "hurts", "no measurable effect", "one seed: not judged"


@dataclass(frozen=True)
class Tip:
    """One tip as a switch on a Recipe. `turned(recipe, on)`: the recipe with the tip on or off;
    `not_for(ctx, recipe)`: why the tip does not apply to this setup and recipe ("" when it
    does)."""

    slug: str
    does: str  # what it does, one line
    belief: str  # what the seeds claim, and where
    turned: Callable[[Recipe, bool], Recipe]
    not_for: Callable[[StaticContext, Recipe], str] = lambda ctx, recipe: ""

    def is_on(self, recipe: Recipe) -> bool:
        return self.turned(recipe, True) == recipe


def _field(name: str, on: Any, off: Any) -> Callable[[Recipe, bool], Recipe]:
    """A tip that is one Recipe field: `on` when switched on (unless the recipe already has
    some other non-off value, e.g. label smoothing 0.2, which is kept), `off` when off."""

    def turned(recipe: Recipe, switch: bool) -> Recipe:
        current = getattr(recipe, name)
        if not switch:
            return recipe.replace(**{name: off})
        return recipe if current != off else recipe.replace(**{name: on})

    return turned


def _single_label_cross_entropy(ctx: StaticContext, recipe: Recipe) -> str:
    if ctx.task == "classification" and ctx.loss_kind == CROSS_ENTROPY:
        return ""
    return f"label smoothing is for single-label cross-entropy; this setup is {ctx.task}"


def _finetune_not_for(ctx: StaticContext, recipe: Recipe) -> str:
    if recipe.optimizer != "adamw":
        return "finetune's per-group LRs are AdamW's; this recipe keeps the Setup's optimizer"
    return recipe_tips.finetune_not_for(ctx.model)


def _distill_not_for(ctx: StaticContext, recipe: Recipe) -> str:
    if not recipe.distill_from:
        return "no teacher: give the recipe one (--distill-from RUN, a fit run of the teacher)"
    return recipe_tips.distill_not_for(ctx)


def _final_fit_not_for(ctx: StaticContext, recipe: Recipe) -> str:
    return ("a final fit trains on the validation data, so nothing is left to measure it on; "
            "compare it on a test set of your own")  # fmt: skip


TIPS: dict[str, Tip] = {
    tip.slug: tip
    for tip in (
        Tip("lr-range-test", "the LR from trainwise's range test instead of AdamW's 1e-3",
            "pick the LR with a range test, not by guessing (Smith 2015, 'Cyclical Learning Rates')",
            _field("lr", "auto", None)),
        Tip("one-cycle", "one-cycle LR schedule instead of a constant LR",
            "an annealed or one-cycle LR ends better than a fixed one (Smith & Topin 2018)",
            _field("schedule", "one-cycle", "constant")),
        Tip("clipping", "gradient clipping at the 90th percentile of the first norms",
            "clipping keeps rare large gradients from wrecking the run (Pascanu et al. 2013)",
            _field("clip", "auto", None)),
        Tip("output-bias", "last bias at the log class prior / the target mean",
            "start the last layer at the prior: a sane first loss (Karpathy 2019, 'A recipe')",
            _field("output_bias", True, False)),
        Tip("label-smoothing", "label smoothing 0.1",
            "label smoothing generalises and calibrates better (Szegedy et al. 2016; Müller et al. 2019)",
            _field("label_smoothing", 0.1, 0.0), _single_label_cross_entropy),
        Tip("weight-decay", "decoupled weight decay 0.01 on weight matrices",
            "a little decoupled weight decay regularises (Loshchilov & Hutter 2019)",
            _field("weight_decay", 0.01, 0.0)),
        Tip("finetune", "discriminative LRs (ratio 3, 3 groups) and gradual unfreezing",
            "fine-tune with lower LRs for earlier layers, unfreezing from the head (Howard & Ruder 2018, ULMFiT)",
            _field("finetune", True, False), _finetune_not_for),
        Tip("freeze-batchnorm", "BatchNorm statistics and affine fixed",
            "freeze BatchNorm when fine-tuning: keep the pretrained statistics (the seeds' fine-tuning advice)",
            _field("freeze_batchnorm", True, False),
            lambda ctx, recipe: recipe_tips.batchnorm_not_for(ctx.model)),
        Tip("tta", "test-time augmentation of the final validation (auto transforms)",
            "averaging predictions over flips and shifts increases accuracy (Krizhevsky et al. 2012; fastai's learn.tta)",
            _field("tta", "auto", None), lambda ctx, recipe: recipe_tips.tta_not_for(ctx, "auto")),
        Tip("distill", "the recipe's teacher (distill_from) as soft targets",
            "a student learns more from a teacher's soft targets than from labels (Hinton et al. 2015)",
            _field("distill_from", None, None), _distill_not_for),
        Tip("progressive-resize", "inputs at 1/2, 3/4, then the full size over the epochs",
            "small images first train faster at the same accuracy (fastai DAWNBench; Tan & Le 2021, EfficientNetV2)",
            _field("progressive_resize", recipe_tips.PROGRESSIVE_RESIZE, None),
            lambda ctx, recipe: recipe_tips.resize_not_for(ctx)),
        Tip("y-range", "a regression's outputs bounded to the targets' range (sigmoid)",
            "a sigmoid y_range makes bounded regression easier to learn (fastai's y_range)",
            _field("y_range", "auto", None), lambda ctx, recipe: recipe_tips.y_range_not_for(ctx)),
        Tip("final-fit", "a last run on train + validation data",
            "retrain on train+val at the end: more data, a better model (common Kaggle practice)",
            _field("final_fit", True, False), _final_fit_not_for),
    )
}  # fmt: skip


@dataclass
class TipEffect:
    """One tip's measured effect. with_/without: the metric's mean over the seeds; diff:
    the mean of the paired differences (with - without); interval: its bootstrap 90% interval."""

    tip: str
    with_: float | None = None
    without: float | None = None
    diff: float | None = None
    interval: tuple[float, float] | None = None
    verdict: str = ""
    skipped: str = ""  # why the tip was not measured ("" when it was)
    per_seed: dict[int, tuple[float, float]] = field(default_factory=dict)  # seed: (with, without)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tip": self.tip, "with": self.with_, "without": self.without, "diff": self.diff,
            "interval": list(self.interval) if self.interval else None,
            "verdict": self.verdict or None, "skipped": self.skipped or None,
            "per_seed": {str(s): list(v) for s, v in self.per_seed.items()},
        }  # fmt: skip


@dataclass
class AblationResult:
    metric: str
    recipe: Recipe  # the recipe the tips were switched in
    seeds: list[int]
    tips: list[TipEffect]
    records: list[Path]  # every fit run's record
    record_path: Path | None = None  # the ablation's own record (the table)

    def to_dict(self) -> dict[str, Any]:
        """The --json contract: metric, tips [{tip, with, without, diff, interval, verdict}],
        records."""
        return {
            "metric": self.metric,
            "recipe": self.recipe.to_dict(),
            "seeds": self.seeds,
            "tips": [t.to_dict() for t in self.tips],
            "records": [str(p) for p in self.records],
            "record": str(self.record_path) if self.record_path else None,
        }

    COLUMNS = ("tip", "with", "without", "with - without", "90% interval", "verdict")

    def rows(self) -> list[list[Any]]:
        """The table's rows (COLUMNS): the metric with and without each tip, the difference,
        its interval, the verdict; a skipped tip has only its reason."""
        rows = []
        for t in self.tips:
            if t.skipped:
                rows.append([t.tip, None, None, None, None, f"skipped: {t.skipped}"])
                continue
            lo, hi = t.interval
            rows.append([t.tip, t.with_, t.without, t.diff, f"[{lo:+.3g}, {hi:+.3g}]", t.verdict])
        return rows

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.COLUMNS) + " |", "|---" * len(self.COLUMNS) + "|"]
        for row in self.rows():
            cells = ["" if v is None else f"{v:+.4g}" if i == 3 else f"{v:.4g}"
                     if isinstance(v, float) else str(v) for i, v in enumerate(row)]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def resolve_tips(names: list[str] | None) -> list[Tip]:
    """The tips asked for (all when none), refused with the list when one is unknown."""
    if not names:
        return list(TIPS.values())
    unknown = [n for n in names if n not in TIPS]
    if unknown:
        raise SetupError(
            f"ablate: no tip {unknown[0]!r}; the tips: {', '.join(TIPS)} (trainwise ablate --list)"
        )
    return [TIPS[n] for n in dict.fromkeys(names)]


def default_metric(ctx: StaticContext) -> str:
    """Accuracy for classification-like tasks, the validation loss otherwise."""
    return (
        "val_accuracy"
        if ctx.task in ("classification", "multilabel", "segmentation")
        else "val_loss"
    )


def ablate(
    setup: Setup,
    tips: list[str] | None = None,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    recipe: Recipe | None = None,
    seeds: int = 3,
    metric: str | None = None,
    sample: float | int | None = None,
    record: bool = True,
    runs_dir: str | Path | None = None,
    on_run: Callable[[str, bool, int, float], None] | None = None,
) -> AblationResult:
    """Train `recipe` (default Recipe()) with and without each tip, on `seeds` seeds.

    tips:    tip slugs (TIPS; default: all); a tip that does not apply is skipped, with why
    metric:  the validation metric compared ("val_accuracy", "val_loss", "val_f1", "val_r2",
             ...; default: accuracy for classification, the loss otherwise)
    on_run:  called after each run as on_run(tip or "all tips", on, seed, value)
    """
    from trainwise.train.loop import fit

    if not isinstance(seeds, int) or seeds < 1:
        raise SetupError(f"ablate: seeds={seeds!r}; expected a positive int")
    recipe = recipe or Recipe()
    chosen = resolve_tips(tips)
    ctx = StaticContext(setup, seed=0)
    metric = metric or default_metric(ctx)
    if metric not in LOWER_IS_BETTER + HIGHER_IS_BETTER:
        raise SetupError(
            f"ablate: metric={metric!r}; expected one of {', '.join(LOWER_IS_BETTER + HIGHER_IS_BETTER)}"
        )
    seed_list = list(range(seeds))
    values: dict[tuple[Recipe, int], float] = {}  # runs shared between tips: the full recipe
    records: list[Path] = []

    def value_of(variant: Recipe, seed: int, label: str, on: bool) -> float:
        if (variant, seed) not in values:
            result = fit(
                setup, epochs=epochs, steps=steps, recipe=variant, seed=seed, sample=sample,
                record=record, runs_dir=runs_dir, verbose=False,
                name=f"{setup.name}-{label}-{'on' if on else 'off'}-s{seed}",
                record_info={"ablate": {"tip": label, "on": on, "seed": seed}},
            )  # fmt: skip
            values[(variant, seed)] = _metric_value(result.metrics, metric, label)
            records.extend([result.record_path] if result.record_path else [])
            if on_run is not None:
                on_run(label, on, seed, values[(variant, seed)])
        return values[(variant, seed)]

    effects = []
    for tip in chosen:
        reason = tip.not_for(ctx, recipe)
        if reason:
            effects.append(TipEffect(tip.slug, skipped=reason))
            continue
        with_recipe, without_recipe = tip.turned(recipe, True), tip.turned(recipe, False)
        label = "all tips" if with_recipe == recipe else tip.slug
        pairs = {
            seed: (value_of(with_recipe, seed, label, True),
                   value_of(without_recipe, seed, tip.slug, False))
            for seed in seed_list
        }  # fmt: skip
        effects.append(_effect(tip.slug, pairs, metric in HIGHER_IS_BETTER))
    result = AblationResult(metric, recipe, seed_list, effects, records)
    if record:
        result.record_path = _record(result, setup.name, runs_dir)
    return result


def _metric_value(metrics: dict[str, float], metric: str, tip: str) -> float:
    if metric not in metrics:
        raise SetupError(
            f"ablate: the fit runs report {', '.join(sorted(metrics))}, not {metric!r} (tip {tip})"
        )
    return float(metrics[metric])


def _effect(slug: str, pairs: dict[int, tuple[float, float]], higher_is_better: bool) -> TipEffect:
    with_, without = (
        np.array([p[0] for p in pairs.values()]),
        np.array([p[1] for p in pairs.values()]),
    )
    diffs = with_ - without
    interval = bootstrap_interval(diffs)
    return TipEffect(
        slug, float(with_.mean()), float(without.mean()), float(diffs.mean()), interval,
        verdict(interval, higher_is_better, len(diffs)), per_seed=pairs,
    )  # fmt: skip


def bootstrap_interval(diffs: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CONFIDENCE interval of the mean of `diffs` (resampling them)."""
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(BOOTSTRAP, len(diffs)))].mean(axis=1)
    tail = 100 * (1 - CONFIDENCE) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def verdict(interval: tuple[float, float], higher_is_better: bool, n_seeds: int) -> str:
    if n_seeds < 2:
        return ONE_SEED
    lo, hi = interval if higher_is_better else (-interval[1], -interval[0])
    if lo > 0:
        return HELPS
    if hi < 0:
        return HURTS
    return UNCLEAR


def _record(result: AblationResult, name: str, runs_dir: str | Path | None) -> Path | None:
    """The table as a record of kind "ablate": ablation.json and ablation.md beside run.json."""
    from trainwise.runs.record import start

    config = {"metric": result.metric, "recipe": result.recipe.to_dict(), "seeds": result.seeds,
              "tips": [t.tip for t in result.tips]}  # fmt: skip
    with start("ablate", name=name, config=config, root=runs_dir, tensorboard=False) as run:
        caption = f"{result.metric}, {len(result.seeds)} seeds; recipe: {result.recipe.describe()}"
        run.log_table("ablation", result.COLUMNS, result.rows(), caption)
        run.attach("ablation.json", json.dumps(result.to_dict(), indent=1))
        run.attach("ablation.md", result.markdown() + "\n")
        return run.path
