"""tw.Recipe: the tips as one frozen, validated, serialisable record."""

import dataclasses
import json
import re

import pytest

import trainwise as tw
from trainwise.errors import SetupError

HELPER_TIPS_OFF = {
    "finetune": False, "finetune_ratio": 3.0, "freeze_batchnorm": False, "tta": None,
    "distill_from": None, "distill_temperature": 4.0, "distill_alpha": 0.9,
    "progressive_resize": None, "y_range": None, "final_fit": False,
}  # fmt: skip
DEFAULTS = {
    "lr": "auto", "schedule": "one-cycle", "weight_decay": 0.01, "clip": "auto",
    "label_smoothing": 0.1, "output_bias": True, "precision": "auto", "optimizer": "adamw",
    **HELPER_TIPS_OFF,
}  # fmt: skip
PLAIN = {
    "lr": None, "schedule": "constant", "weight_decay": 0.0, "clip": None,
    "label_smoothing": 0.0, "output_bias": False, "precision": "fp32", "optimizer": "setup",
    **HELPER_TIPS_OFF,
}  # fmt: skip


def test_the_default_recipe_is_the_seeds_tips():
    recipe = tw.Recipe()
    assert recipe.to_dict() == DEFAULTS
    assert tw.Recipe.tips() == list(DEFAULTS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.lr = 1e-3
    line = recipe.describe()
    assert line.startswith("lr auto, schedule one-cycle, weight_decay 0.01, clip auto")
    assert "label_smoothing 0.1" in line
    assert line.endswith("finetune off, freeze_batchnorm off, tta off, distill_from off, "
                         "progressive_resize off, y_range off, final_fit off")  # fmt: skip


def test_describe_shows_each_helper_tip_with_its_settings():
    recipe = tw.Recipe(finetune=True, finetune_ratio=10, freeze_batchnorm=True, tta="flip",
                       distill_from="runs/teacher", distill_temperature=2, distill_alpha=0.5,
                       progressive_resize=[0.5, 1], y_range=[0, 5.5], final_fit=True)  # fmt: skip
    assert recipe.describe().endswith(
        "finetune ratio 10, freeze_batchnorm on, tta flip, distill from runs/teacher (T 2, "
        "alpha 0.5), progressive_resize [0.5, 1], y_range [0, 5.5], final_fit on"
    )
    assert recipe.progressive_resize == (0.5, 1.0) and recipe.y_range == (0.0, 5.5)  # tuples


def test_finetune_needs_adamw_and_says_what_to_do_with_ones_own_optimizer():
    with pytest.raises(SetupError, match=r"tw.discriminative_lrs\(model, lr\)"):
        tw.Recipe.plain().replace(finetune=True)


def test_plain_is_the_setup_as_written():
    assert tw.Recipe.plain().to_dict() == PLAIN


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"schedule": "linear"}, "schedule"),
        ({"schedule": "onecycle"}, "schedule"),
        ({"lr": -1}, "lr"),
        ({"lr": 0}, "lr"),
        ({"lr": "fast"}, "lr"),
        ({"lr": True}, "lr"),
        ({"label_smoothing": 1}, "label_smoothing"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"clip": 0}, "clip"),
        ({"clip": "none"}, "clip"),
        ({"weight_decay": -0.01}, "weight_decay"),
        ({"precision": "fp8"}, "precision"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"finetune": "yes"}, "finetune"),
        ({"finetune_ratio": 0.5}, "finetune_ratio"),
        ({"tta": "rotate"}, "tta"),
        ({"distill_from": ""}, "distill_from"),
        ({"distill_temperature": 0}, "distill_temperature"),
        ({"distill_alpha": 1.5}, "distill_alpha"),
        ({"progressive_resize": (0.5, 0.75)}, "progressive_resize"),
        ({"progressive_resize": (1.0, 0.5, 1.0)}, "progressive_resize"),
        ({"y_range": (5, 1)}, "y_range"),
        ({"y_range": "wide"}, "y_range"),
        ({"final_fit": 1}, "final_fit"),
    ],
)
def test_a_bad_tip_is_a_setup_error_naming_the_field(changes, field):
    (value,) = changes.values()
    with pytest.raises(SetupError, match=rf"^Recipe\({field}={re.escape(repr(value))}\): expected"):
        tw.Recipe(**changes)
    with pytest.raises(SetupError, match=rf"^Recipe\({field}="):  # replace() validates too
        tw.Recipe().replace(**changes)


def test_replace_changes_the_named_tips_only():
    recipe = tw.Recipe()
    changed = recipe.replace(lr=3e-3, clip=None, schedule="cosine")
    assert changed.to_dict() == {**DEFAULTS, "lr": 3e-3, "clip": None, "schedule": "cosine"}
    assert recipe.to_dict() == DEFAULTS  # the original stays as it was


def test_replace_with_an_unknown_tip_names_it_and_lists_the_tips():
    with pytest.raises(SetupError) as info:
        tw.Recipe().replace(lr=1e-3, label_smothing=0.0)
    message = str(info.value)
    assert "'label_smothing'" in message
    assert all(tip in message for tip in DEFAULTS)


@pytest.mark.parametrize(
    "recipe",
    [
        tw.Recipe(),
        tw.Recipe.plain(),
        tw.Recipe(lr=3e-3, schedule="cosine-restarts", clip=1.5, label_smoothing=0.0,
                  output_bias=False, precision="bf16", weight_decay=0.05),
        tw.Recipe(finetune=True, tta="auto", distill_from="runs/t", progressive_resize=(0.5, 1),
                  y_range=(-1, 1), final_fit=True, freeze_batchnorm=True),
    ],
    ids=["default", "plain", "custom", "helper-tips"],
)  # fmt: skip
def test_to_dict_round_trips_through_json(recipe):
    data = json.loads(json.dumps(recipe.to_dict()))
    assert tw.Recipe(**data) == recipe
