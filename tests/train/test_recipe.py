"""tw.Recipe: the tips as one frozen, validated, serialisable record."""

import dataclasses
import json

import pytest

import trainwise as tw
from trainwise.errors import SetupError

DEFAULTS = {
    "lr": "auto", "schedule": "one-cycle", "weight_decay": 0.01, "clip": "auto",
    "label_smoothing": 0.1, "output_bias": True, "precision": "auto", "optimizer": "adamw",
}  # fmt: skip
PLAIN = {
    "lr": None, "schedule": "constant", "weight_decay": 0.0, "clip": None,
    "label_smoothing": 0.0, "output_bias": False, "precision": "fp32", "optimizer": "setup",
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
    ],
)
def test_a_bad_tip_is_a_setup_error_naming_the_field(changes, field):
    (value,) = changes.values()
    with pytest.raises(SetupError, match=rf"^Recipe\({field}={value!r}\): expected"):
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
    ],
    ids=["default", "plain", "custom"],
)  # fmt: skip
def test_to_dict_round_trips_through_json(recipe):
    data = json.loads(json.dumps(recipe.to_dict()))
    assert tw.Recipe(**data) == recipe
