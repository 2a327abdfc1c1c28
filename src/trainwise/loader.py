"""Load a setup file: a Python file defining `setup()` that returns a trainwise.Setup, or
`setup(hp)` taking a sweep's sampled values (a dict), or simply `setup = trainwise.Setup(...)`;
and optionally a sweep's `SPACE = {...}`.

Only the standard library is imported at the top: the command line finds a missing file
(`setup_file`) before it pays for importing torch, which alone takes seconds.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwise.errors import SetupError

if TYPE_CHECKING:
    from trainwise.spec import Setup

DEFAULT_FUNCTION = "setup"
SPACE_NAME = "SPACE"  # a sweep's search space, declared in the setup file


def split_target(target: str) -> tuple[Path, str]:
    """ "path/to/file.py:name" -> (path, name); the function defaults to `setup`."""
    path, sep, name = target.rpartition(":")
    if sep and name.isidentifier() and path:
        return Path(path), name
    return Path(target), DEFAULT_FUNCTION


def setup_file(target: str) -> Path:
    """The file `target` names, or a SetupError naming it when there is no such file."""
    path, _ = split_target(target)
    if not path.is_file():
        hint = " (a setup file is a .py file)" if path.suffix != ".py" else ""
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise SetupError(f"{path}: {what}{hint}")
    return path


def load_setup(target: str, hp: Mapping[str, Any] | None = None) -> Setup:
    """The Setup of a setup file; `hp` (a sweep's sampled values) goes to a function that
    takes one parameter, `def setup(hp):`."""
    return SetupFile.open(target).build(hp)


@dataclass(frozen=True)
class SetupFile:
    """A setup file imported once (a sweep builds one Setup per trial from it)."""

    path: Path
    function: str
    module: Any

    @classmethod
    def open(cls, target: str) -> SetupFile:
        path = setup_file(target)
        _, function = split_target(target)
        return cls(path, function, _import_file(path))

    @property
    def space(self) -> Any:
        """The file's `SPACE = {...}` (a sweep's search space), or None."""
        return getattr(self.module, SPACE_NAME, None)

    def build(self, hp: Mapping[str, Any] | None = None) -> Setup:
        """Call the function (with `hp` when it takes a parameter) and check it returned a
        Setup."""
        from trainwise.spec import Setup  # torch: only once the file is known to exist

        path, function = self.path, self.function
        factory = self._factory()
        if isinstance(factory, Setup):  # `setup = tw.Setup(...)`: the object itself
            if hp:
                raise SetupError(
                    f"{path}: `{function}` is a Setup object, but the sweep has values for it "
                    f"({', '.join(sorted(hp))}); write `def {function}(hp): return "
                    f"trainwise.Setup(...)` and read them as hp[{sorted(hp)[0]!r}]"
                )
            return self._named(factory)
        wants_hp = takes_hp(factory)
        if hp and not wants_hp:
            raise SetupError(
                f"{path}: {function}() takes no parameter, but the sweep has values for it "
                f"({', '.join(sorted(hp))}); write `def {function}(hp):` and read them as "
                f"hp[{sorted(hp)[0]!r}]"
            )
        try:
            setup = factory({} if hp is None else hp) if wants_hp else factory()
        except SetupError as exc:
            raise SetupError(f"{path}: {function}() failed: {exc}") from exc
        except Exception as exc:
            raise SetupError(
                f"{path}: {function}() raised {type(exc).__name__}: {exc}{_where(exc, path)}"
            ) from exc
        if not isinstance(setup, Setup):
            raise SetupError(
                f"{path}: {function}() returned {type(setup).__name__}; expected a trainwise.Setup"
            )
        return self._named(setup)

    def _named(self, setup: Setup) -> Setup:
        """A Setup left with the default name takes the file's (and the function's)."""
        if setup.name == "setup":
            path, function = self.path, self.function
            setup.name = path.stem if function == DEFAULT_FUNCTION else f"{path.stem}:{function}"
        return setup

    def _factory(self) -> Any:
        """What the file names `function`: a function, or a Setup object."""
        from trainwise.spec import Setup  # torch: only once the file is known to exist

        path, function, module = self.path, self.function, self.module
        factory = getattr(module, function, None)
        if factory is None:
            found = [
                n
                for n, v in vars(module).items()
                if (inspect.isfunction(v) and v.__module__ == module.__name__)
                or isinstance(v, Setup)
            ]
            listed = f"; functions and Setups in the file: {', '.join(found)}" if found else ""
            raise SetupError(
                f"{path}: no function `{function}()`; expected `def {function}(): return "
                f"trainwise.Setup(...)`{listed}. Pick another with {path}:NAME"
            )
        if not callable(factory) and not isinstance(factory, Setup):
            raise SetupError(
                f"{path}: `{function}` is of type {type(factory).__name__}; expected "
                f"`def {function}(): return trainwise.Setup(...)` or "
                f"`{function} = trainwise.Setup(...)`"
            )
        return factory


def takes_hp(factory: Any) -> bool:
    """Whether a setup function takes the sampled values: `def setup(hp)` (one positional
    parameter; `def setup()` takes none)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: called without arguments
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.VAR_POSITIONAL)  # fmt: skip
    return any(p.kind in positional for p in parameters)


def _import_file(path: Path):
    module_name = f"trainwise_setup_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SetupError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    # The file's own folder goes on the path so it can import its neighbours.
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise SetupError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        raise SetupError(
            f"{path}: importing the file raised {type(exc).__name__}: {exc}{_where(exc, path)}"
        ) from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _where(exc: BaseException, path: Path) -> str:
    """ " (line N: code)" for the deepest frame of the exception inside the setup file."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if Path(f.filename) == path.resolve() or Path(f.filename) == path
    ]
    if not frames:
        return ""
    f = frames[-1]
    return f" (at line {f.lineno}: {f.line.strip()})" if f.line else f" (at line {f.lineno})"
