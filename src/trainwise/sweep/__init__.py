"""Sweeps: many fit runs over a search space, the unpromising ones pruned, on one machine or
many. Built on Optuna: its samplers (TPE, random, grid), pruners (successive halving, i.e.
ASHA; Hyperband; median) and storages (SQLite, journal file, PostgreSQL/MySQL) are used as
they are.

    space.py      the search space: --param NAME=FORM, a setup file's SPACE
    hp.py         the sampled values: Recipe fields vs setup(hp), and which ones were read
    storage.py    a storage URL -> Optuna's storage, heartbeat on RDBs, failing fast
    plan.py       a sweep's settings (picklable, for workers), samplers and pruners by name
    objective.py  one trial = one fit run: report, prune (StopFit), value
    worker.py     a process running trials until the study holds enough
    api.py        tw.sweep: create/join the study, run the workers, the live view
    result.py     TrialRow, SweepResult (the --json contract)
    sheet.py      the sheet (runs --sweep), its CSV/markdown, importances
    record.py     the sweep's own run record: sheet files and report.html
"""

from trainwise.sweep.api import sweep
from trainwise.sweep.result import SweepResult, TrialRow
from trainwise.sweep.space import Param, parse_param

__all__ = ["Param", "SweepResult", "TrialRow", "parse_param", "sweep"]
