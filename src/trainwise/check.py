"""`tw.check(setup)`: run the preflight stages on a Setup and return the Report."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainwise.data import DEFAULT_SAMPLE
from trainwise.errors import SetupError
from trainwise.report.model import Report
from trainwise.runs.record import owned_by
from trainwise.spec import Setup
from trainwise.stages.base import CheckRun, Stage
from trainwise.stages.protocol import default_stages, run_protocol


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
    with _user_rng_preserved(), owned_by("check"):  # its stages open no records of their own
        return run_protocol(run, stages or default_stages(quick), show_progress=progress)


class _user_rng_preserved:
    """Restore torch's global RNG afterwards: checking must not shift the user's random stream."""

    def __enter__(self) -> None:
        self.state = torch.random.get_rng_state()

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self.state)
