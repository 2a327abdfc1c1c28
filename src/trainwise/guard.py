"""Runs trainwise's own code inside the user's training: a piece that raises is switched off
with one warning and training goes on."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from trainwise.errors import SetupError


class Guard:
    def __init__(self) -> None:
        self.disabled: set[str] = set()

    def __call__(self, piece: str, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), or None once `piece` has raised (it is then switched off for good)."""
        if piece in self.disabled:
            return None
        try:
            return fn(*args)
        except SetupError:
            raise  # the user's own mistake (a non-scalar metric): say so
        except Exception as exc:  # noqa: BLE001 - trainwise must never stop the user's training
            self.switch_off(piece, exc)
            return None

    def wrap(self, piece: str, fn: Callable[..., Any]) -> Callable[..., None]:
        """fn as a hook that runs guarded, as `self(piece, fn, *args)` does but one call
        shorter: a hook PyTorch calls at every step pays for each frame. Returns None (a hook
        that returns a value replaces its module's inputs or outputs)."""
        disabled = self.disabled

        def run(*args: Any) -> None:
            if piece in disabled:
                return
            try:
                fn(*args)
            except SetupError:
                raise
            except Exception as exc:  # noqa: BLE001 - as __call__
                self.switch_off(piece, exc)

        return run

    def switch_off(self, piece: str, exc: Exception) -> None:
        """Switches `piece` off for good, with one warning (for hot hooks that catch their own
        exceptions rather than pay a call through the guard on every module)."""
        if piece in self.disabled:
            return
        self.disabled.add(piece)
        warnings.warn(
            f"trainwise.watch: the {piece} raised {type(exc).__name__}: {exc}. "
            "It is switched off; training goes on.",
            RuntimeWarning,
            stacklevel=4,
        )
