import dataclasses

import pytest

from trainwise.stages import experiment


@pytest.fixture(autouse=True)
def _no_time_budgets(monkeypatch):
    """Bound the experiments by their step counts only: on a busy CI machine a time budget
    would turn a firing stage into an "inconclusive" one. (The budgets have their own test.)"""
    for name in ("QUICK", "FULL"):
        budgets = getattr(experiment, name)
        monkeypatch.setattr(
            experiment,
            name,
            dataclasses.replace(budgets, overfit_seconds=600.0, train_seconds=600.0),
        )
