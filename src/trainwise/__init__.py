"""trainwise: make deep-learning training go right the first time.

The public API lives here and nowhere else. Names are resolved on first use (PEP 562), so
commands that never touch a model (`trainwise runs`, `--help`) start without importing torch,
which alone takes 1-4 s.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any

from trainwise.version import __version__


def _import_rich_keeping_random() -> None:
    """rich draws once from Python's global `random` when rich.style is first imported (its
    link ids start at getrandbits(24)): the first trainwise check, watch or command in a
    process moved a user's seeded `random` stream (a training that draws its augmentations
    from it changed with the watch on). Imported here, once, with the stream put back."""
    import random

    state = random.getstate()
    import rich.style  # noqa: F401

    random.setstate(state)


_import_rich_keeping_random()

# Public name -> the module defining it (a module itself when the name is that module).
_EXPORTS = {
    "CATALOGUE": "trainwise.rules",
    "CompressResult": "trainwise.compress.core",
    "DistillationLoss": "trainwise.train.distill",
    "Finding": "trainwise.findings",
    "GradualUnfreezing": "trainwise.train.freezing",
    "LRFindResult": "trainwise.lr_find",
    "LayerGroup": "trainwise.train.layer_groups",
    "ModuleOptimizer": "trainwise.steps",
    "ProgressiveResize": "trainwise.train.resize",
    "Recipe": "trainwise.train.recipe",
    "Report": "trainwise.report.model",
    "Setup": "trainwise.spec",
    "SetupError": "trainwise.errors",
    "StageResult": "trainwise.report.model",
    "StopFit": "trainwise.train.loop",
    "SweepResult": "trainwise.sweep.result",
    "TrainingStep": "trainwise.steps",
    "TrainwiseError": "trainwise.errors",
    "Watch": "trainwise.watch",
    "YRange": "trainwise.train.heads",
    "ablate": "trainwise.train.ablate",
    "check": "trainwise.check",
    "compress": "trainwise.compress.core",
    "compress_run": "trainwise.compress.core",
    "class_weights": "trainwise.helpers",
    "convert_batchnorm": "trainwise.helpers",
    "discriminative_lrs": "trainwise.train.layer_groups",
    "fit": "trainwise.train.loop",
    "freeze": "trainwise.train.freezing",
    "freeze_batchnorm": "trainwise.train.freezing",
    "init_output_bias": "trainwise.train.init",
    "interpret": "trainwise.interpret.core",
    "kaiming_init_": "trainwise.train.init",
    "layer_groups": "trainwise.train.layer_groups",
    "load_variant": "trainwise.compress.core",
    "lr_find": "trainwise.lr_find",
    "param_groups": "trainwise.helpers",
    "runs": "trainwise.runs",  # run records: tw.runs.start(...), tw.runs.list_runs()
    "sweep": "trainwise.sweep",  # the function tw.sweep(setup, space, trials=...)
    "train_plus_val": "trainwise.train.final_fit",
    "tta": "trainwise.train.tta",
    "unfreeze": "trainwise.train.freezing",
    "watch": "trainwise.watch",
}
__all__ = [
    "CATALOGUE", "CompressResult", "DistillationLoss", "Finding", "GradualUnfreezing",
    "LRFindResult", "LayerGroup", "ModuleOptimizer", "ProgressiveResize", "Recipe", "Report",
    "Setup", "SetupError", "StageResult", "StopFit", "SweepResult", "TrainingStep",
    "TrainwiseError", "Watch", "YRange",
    "__version__",
    "ablate", "check", "class_weights", "compress", "compress_run", "convert_batchnorm",
    "discriminative_lrs", "fit", "freeze", "freeze_batchnorm", "init_output_bias", "interpret",
    "kaiming_init_", "layer_groups", "load_variant", "lr_find", "param_groups", "runs", "sweep",
    "train_plus_val", "tta", "unfreeze", "watch",
]  # = _EXPORTS + __version__, spelled out for tools that read it statically


class _PublicAPI(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        module_name = _EXPORTS.get(name)
        if module_name is None:
            raise AttributeError(f"module 'trainwise' has no attribute {name!r}")
        module = importlib.import_module(module_name)
        value = module if module_name == f"trainwise.{name}" and not hasattr(module, name) else (
            getattr(module, name)
        )
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing the submodules trainwise.check / .watch / .lr_find binds each module to the
        # package under the name of the function it exports; the function must win.
        if isinstance(value, types.ModuleType) and name in _EXPORTS and hasattr(value, name):
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(_EXPORTS))


import sys  # noqa: E402

sys.modules[__name__].__class__ = _PublicAPI

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from trainwise import runs
    from trainwise.check import check
    from trainwise.compress.core import CompressResult, compress, compress_run, load_variant
    from trainwise.errors import SetupError, TrainwiseError
    from trainwise.findings import Finding
    from trainwise.helpers import class_weights, convert_batchnorm, param_groups
    from trainwise.interpret.core import interpret
    from trainwise.lr_find import LRFindResult, lr_find
    from trainwise.report.model import Report, StageResult
    from trainwise.rules import CATALOGUE
    from trainwise.spec import Setup
    from trainwise.steps import ModuleOptimizer, TrainingStep
    from trainwise.sweep import sweep
    from trainwise.sweep.result import SweepResult
    from trainwise.train.ablate import ablate
    from trainwise.train.distill import DistillationLoss
    from trainwise.train.final_fit import train_plus_val
    from trainwise.train.freezing import GradualUnfreezing, freeze, freeze_batchnorm, unfreeze
    from trainwise.train.heads import YRange
    from trainwise.train.init import init_output_bias, kaiming_init_
    from trainwise.train.layer_groups import LayerGroup, discriminative_lrs, layer_groups
    from trainwise.train.loop import StopFit, fit
    from trainwise.train.recipe import Recipe
    from trainwise.train.resize import ProgressiveResize
    from trainwise.train.tta import tta
    from trainwise.watch import Watch, watch
