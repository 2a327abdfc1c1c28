"""`tw.check(setup)`: run the preflight stages on a Setup and return the Report."""

from __future__ import annotations

from collections.abc import Sequence

from trainwise.data import DEFAULT_SAMPLE
from trainwise.errors import SetupError
from trainwise.report.model import Report
from trainwise.runs.record import owned_by
from trainwise.spec import Setup
from trainwise.stages.base import CheckRun, Stage
from trainwise.stages.protocol import default_stages, run_protocol
from trainwise.state import preserved_rng


def check(
    setup: Setup,
    *,
    quick: bool = False,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    stages: Sequence[Stage] | None = None,
    progress: bool = False,
) -> Report:
    """Examine a setup: static checks, then short experiments. Nothing the user owns changes.

    quick:    shorter experiments (seconds instead of about a minute)
    sample:   how many samples per dataset the data rules read
    stages:   run only these stages (default: the whole protocol)
    progress: show rich progress bars on stderr
    """
    if not isinstance(setup, Setup):
        raise SetupError(f"check() expects a trainwise.Setup, got {type(setup).__name__}")
    run = CheckRun(setup, quick=quick, sample=sample, seed=seed)
    # Checking must not shift the user's random streams (torch, CUDA, numpy, Python); its
    # stages open no run records of their own.
    with preserved_rng(), owned_by("check"):
        return run_protocol(run, stages or default_stages(quick), show_progress=progress)
