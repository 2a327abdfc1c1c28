"""How tw.freeze & co mark what they froze, read by the frozen-parameters rule (static and in
flight) to tell a deliberate freeze from an accident. A module of its own so that the rules and
the watch read the mark without importing the helpers (and their integrations)."""

from __future__ import annotations

from torch import nn

FROZEN_BY = "_trainwise_frozen_by"  # attribute on a module frozen by the helpers: the reasons


def frozen_on_purpose(model: nn.Module) -> set[int]:
    """ids of the parameters the helpers froze (and have not unfrozen since)."""
    return {
        id(p)
        for module in model.modules()
        if getattr(module, FROZEN_BY, None)
        for p in module.parameters(recurse=False)
        if not p.requires_grad
    }
