import dataclasses
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

# `make test` runs two pytest-xdist workers on a 2-core machine: one torch thread each.
torch.set_num_threads(1 if "PYTEST_XDIST_WORKER" in os.environ else min(2, torch.get_num_threads()))
# The CLI's rich consoles take their width from COLUMNS when they are created (at the first
# import of trainwise.cli, in whichever test comes first) and otherwise use 80: tables and
# messages that hold temporary paths would wrap differently with the test order and the
# length of pytest's folder names. Every test, and every CLI subprocess, gets one wide width.
os.environ["COLUMNS"] = "200"
# On a GPU, float32 matmuls and convolutions may run in TF32 (10-bit mantissa): the tests that
# compare fit's metrics with a recomputation to 1e-6 would see 3e-4. Full float32 everywhere.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _runs_outside_the_repository(monkeypatch, tmp_path_factory):
    # `trainwise check` keeps a run record by default; tests (and the CLI subprocesses they
    # start, which inherit the environment) write it to a temporary folder, never the repo.
    monkeypatch.setenv("TRAINWISE_RUNS_DIR", str(tmp_path_factory.mktemp("trainwise-runs")))


@pytest.fixture(autouse=True)
def _no_time_budgets(monkeypatch):
    """Bound the check's experiments by their step counts only: on a busy machine their CPU
    time budgets would turn a firing or passing stage into a skipped, "inconclusive" one, and
    a test would depend on the machine's speed (a BERT overfit on a loaded CI runner did)."""
    from trainwise.stages import experiment

    for name in ("QUICK", "FULL"):
        budgets = getattr(experiment, name)
        lifted = dataclasses.replace(budgets, overfit_seconds=600.0, train_seconds=600.0)
        monkeypatch.setattr(experiment, name, lifted)
