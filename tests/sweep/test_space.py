"""The search space: every --param form, SPACE dicts, and malformed input naming the forms."""

import math

import pytest

from trainwise.errors import SetupError
from trainwise.sweep.hp import HyperParams, split_params
from trainwise.sweep.space import FORMS, Param, build_space, parse_param


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lr=log:1e-4:1e-1", Param("lr", "log", 1e-4, 1e-1)),
        ("dropout=float:0:0.5", Param("dropout", "float", 0.0, 0.5)),
        ("width=int:16:128", Param("width", "int", 16, 128)),
        ("label_smoothing=choice:0,0.1", Param("label_smoothing", "choice", choices=(0, 0.1))),
        ("act=choice:relu,gelu", Param("act", "choice", choices=("relu", "gelu"))),
        ("bias=choice:true,false,none", Param("bias", "choice", choices=(True, False, None))),
        (" width = int:1:2 ", Param("width", "int", 1, 2)),
    ],
)
def test_every_form_parses(text, expected):
    assert parse_param(text) == expected


@pytest.mark.parametrize(
    "text",
    ["lr", "lr=", "=log:1:2", "2lr=log:1e-4:1", "lr=exp:1:2", "lr=log:1e-4", "lr=log:a:b",
     "lr=log:0:1", "lr=log:1:1e-4", "w=int:1.5:4", "w=int:1:2:3", "a=choice:", "a=choice:x,,y",
     "a=choice:x,x", "d=float:nan:1"],
)  # fmt: skip
def test_malformed_param_names_the_accepted_forms(text):
    with pytest.raises(SetupError) as err:
        parse_param(text)
    message = str(err.value)
    assert repr(text) in message
    if "LO < HI" not in message and "0 < LO" not in message and "twice" not in message:
        assert FORMS in message


def test_space_dict_lists_are_choices_and_params_override_it():
    space = build_space(["lr=log:1e-3:1e-1"], {"lr": "float:0.1:0.2", "act": ["relu", "gelu"]})
    assert space["lr"] == Param("lr", "log", 1e-3, 1e-1)
    assert space["act"] == Param("act", "choice", choices=("relu", "gelu"))
    with pytest.raises(SetupError, match=r"SPACE\['x'\] = 3"):
        build_space([], {"x": 3})
    with pytest.raises(SetupError, match="no parameters to search"):
        build_space([], {})


def test_grid_values_cover_each_axis():
    assert Param("w", "int", 2, 4).grid() == [2, 3, 4]
    assert Param("a", "choice", choices=("x", "y")).grid() == ["x", "y"]
    logs = Param("lr", "log", 1e-4, 1e-0).grid()
    assert [round(math.log10(v), 6) for v in logs] == [-4, -3, -2, -1, 0]


def test_recipe_fields_go_to_the_recipe_the_rest_to_setup():
    recipe, setup = split_params({"lr": 0.1, "label_smoothing": 0.0, "width": 8, "act": "relu"})
    assert recipe == {"lr": 0.1, "label_smoothing": 0.0}
    assert setup == {"width": 8, "act": "relu"}


def test_hyperparams_record_what_was_read():
    hp = HyperParams({"width": 8, "depth": 2, "act": "relu", "unused": 1})
    hp["width"], hp.get("depth"), "act" in hp  # noqa: B018 - reads are what is tested
    assert hp.unread() == ["unused"]
    splat = HyperParams({"a": 1, "b": 2})
    dict(**splat)
    assert splat.unread() == []
    assert isinstance(hp, dict) and hp == {"width": 8, "depth": 2, "act": "relu", "unused": 1}
