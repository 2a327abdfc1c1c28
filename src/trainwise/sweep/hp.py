"""The sampled values a trial hands out: Recipe fields to the Recipe, the rest to `setup(hp)`.

`HyperParams` is the dict `setup(hp)` receives. It remembers which names were read, so a
parameter the setup never reads (a typo, a knob not wired in) is reported after the first
trial instead of silently wasting the sweep.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from trainwise.train.recipe import Recipe


class HyperParams(dict):
    """A plain dict of the sampled values that records every name read from it."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(key)  # type: ignore[arg-type]
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:  # **hp, dict(hp), for k in hp: every name is seen
        self.read.update(self.keys())
        return super().__iter__()

    def items(self):  # type: ignore[override]
        self.read.update(self.keys())
        return super().items()

    def values(self):  # type: ignore[override]
        self.read.update(self.keys())
        return super().values()

    def copy(self) -> dict[str, Any]:
        self.read.update(self.keys())
        return dict(super().items())

    def unread(self) -> list[str]:
        return sorted(set(self.keys()) - self.read)


def split_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Recipe fields, the others): lr, schedule, label_smoothing ... go to the Recipe."""
    tips = set(Recipe.tips())
    recipe = {k: v for k, v in params.items() if k in tips}
    return recipe, {k: v for k, v in params.items() if k not in tips}
