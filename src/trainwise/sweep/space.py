"""The search space: one declared parameter per name, parsed from `--param NAME=FORM` or from a
setup file's `SPACE = {...}`, and sampled through Optuna's own `trial.suggest_*` calls.

Forms (the same on the command line and in SPACE):
    log:LO:HI      a float drawn log-uniformly (learning rates, weight decay)
    float:LO:HI    a float drawn uniformly
    int:LO:HI      an int in [LO, HI], both included
    choice:A,B,..  one of the listed values (numbers are read as numbers)
In SPACE a list or tuple is a choice: {"act": ["relu", "gelu"]}.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from trainwise.errors import SetupError

FORMS = "log:LO:HI | float:LO:HI | int:LO:HI | choice:A,B,..."
GRID_POINTS = 5  # values per float axis when the grid sampler needs a finite grid


@dataclass(frozen=True)
class Param:
    """One searched parameter. kind: "log", "float", "int" or "choice"."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value of this parameter for an Optuna trial (its sampler decides)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "log")

    def grid(self) -> list[Any]:
        """The values a grid search tries: every choice or int; GRID_POINTS evenly spaced
        floats (on a log scale for log)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        lo, hi = (math.log(self.low), math.log(self.high)) if self.kind == "log" else (
            self.low, self.high)  # fmt: skip
        points = [lo + (hi - lo) * i / (GRID_POINTS - 1) for i in range(GRID_POINTS)]
        return [math.exp(p) for p in points] if self.kind == "log" else points

    def describe(self) -> str:
        """The form it was given in: "log:0.0001:0.1"."""
        if self.kind == "choice":
            return "choice:" + ",".join(str(c) for c in self.choices)
        return f"{self.kind}:{self.low:g}:{self.high:g}"


def parse_param(text: str) -> Param:
    """ "lr=log:1e-4:1e-1" -> Param("lr", "log", 1e-4, 1e-1); a SetupError naming the forms
    otherwise."""
    name, sep, form = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise SetupError(f"--param {text!r}: expected NAME=FORM, FORM one of {FORMS}")
    return parse_form(name, form.strip(), where=f"--param {text!r}")


def parse_form(name: str, form: str, where: str) -> Param:
    kind, _, rest = form.partition(":")
    if kind == "choice":
        values = [v.strip() for v in rest.split(",")]
        if not rest or any(v == "" for v in values):
            raise SetupError(f"{where}: choice needs values A,B,...; the accepted forms: {FORMS}")
        return _checked(Param(name, "choice", choices=tuple(_value(v) for v in values)), where)
    if kind not in ("log", "float", "int"):
        raise SetupError(f"{where}: unknown form {kind!r}; the accepted forms: {FORMS}")
    bounds = rest.split(":")
    number = int if kind == "int" else float
    try:
        low, high = (number(b) for b in bounds)
    except ValueError:  # wrong count, or not numbers
        what = "ints" if kind == "int" else "numbers"
        raise SetupError(
            f"{where}: {kind} needs two {what} LO:HI; the accepted forms: {FORMS}"
        ) from None
    return _checked(Param(name, kind, low, high), where)


def _checked(param: Param, where: str) -> Param:
    if param.kind == "choice":
        if not param.choices:
            raise SetupError(f"{where}: a choice needs at least one value")
        if len(set(map(repr, param.choices))) != len(param.choices):
            raise SetupError(f"{where}: a choice lists a value twice")
        return param
    if not (math.isfinite(param.low) and math.isfinite(param.high)) or param.low >= param.high:
        raise SetupError(f"{where}: expected LO < HI, got {param.low:g} and {param.high:g}")
    if param.kind == "log" and param.low <= 0:
        raise SetupError(f"{where}: log needs 0 < LO < HI, got LO={param.low:g}")
    return param


def _value(text: str) -> Any:
    """A choice's value: an int, else a float, else true/false/none, else the text."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def build_space(
    params: Iterable[str | Param] = (), declared: Mapping[str, Any] | None = None,
    where: str = "SPACE",
) -> dict[str, Param]:  # fmt: skip
    """The search space: `declared` (a setup file's SPACE: name -> FORM string, list of
    choices, or Param) extended and overridden by `params` ("NAME=FORM" or Param)."""
    space: dict[str, Param] = {}
    for name, spec in (declared or {}).items():
        space[name] = _declared(str(name), spec, where)
    for p in params:
        param = p if isinstance(p, Param) else parse_param(p)
        space[param.name] = param
    if not space:
        raise SetupError(
            "sweep: no parameters to search; give --param NAME=FORM (FORM one of "
            f"{FORMS}) or a SPACE = {{...}} dict in the setup file"
        )
    return space


def _declared(name: str, spec: Any, where: str) -> Param:
    if not name.isidentifier():
        raise SetupError(f"{where}[{name!r}]: a parameter name must be an identifier")
    if isinstance(spec, Param):
        return spec
    if isinstance(spec, (list, tuple)):
        return _checked(Param(name, "choice", choices=tuple(spec)), f"{where}[{name!r}]")
    if isinstance(spec, str):
        return parse_form(name, spec, f"{where}[{name!r}]")
    raise SetupError(
        f"{where}[{name!r}] = {spec!r}: expected a string of the form {FORMS}, or a list of "
        "choices"
    )


def suggest_all(trial: Any, space: Mapping[str, Param]) -> dict[str, Any]:
    return {name: param.suggest(trial) for name, param in space.items()}
