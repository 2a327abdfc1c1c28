"""trainwise: make deep-learning training go right the first time.

The public API lives here and nowhere else.
"""

from trainwise import runs  # run records: tw.runs.start(...), tw.runs.list_runs()
from trainwise.check import check
from trainwise.errors import SetupError, TrainwiseError
from trainwise.findings import Finding
from trainwise.helpers import class_weights, convert_batchnorm, param_groups
from trainwise.lr_find import LRFindResult, lr_find
from trainwise.report.model import Report, StageResult
from trainwise.rules import CATALOGUE
from trainwise.spec import Setup
from trainwise.watch import Watch, watch

__version__ = "0.1.0"

__all__ = [
    "CATALOGUE",
    "Finding",
    "Report",
    "Setup",
    "SetupError",
    "StageResult",
    "TrainwiseError",
    "check",
    "runs",
    "LRFindResult",
    "lr_find",
    "Watch",
    "watch",
    "__version__",
    "class_weights",
    "convert_batchnorm",
    "param_groups",
]
