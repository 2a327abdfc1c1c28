"""The rule catalogue: importing this package registers every rule family module in it."""

import importlib
import pkgutil

from trainwise.rules.registry import (
    CATALOGUE,
    Hit,
    Rule,
    get,
    judge,
    register,
    rule,
    rules_of,
    static_rules,
)

# Each family module (model.py, data.py, ...) registers its rules on import; adding a family
# is adding a module, with no list to keep in sync.
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("registry",) and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "CATALOGUE",
    "Hit",
    "Rule",
    "get",
    "judge",
    "register",
    "rule",
    "rules_of",
    "static_rules",
]
