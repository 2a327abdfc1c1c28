"""`tw.check(setup)`: run the preflight stages on a Setup, record the run, return the Report."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from trainwise.data import DEFAULT_SAMPLE
from trainwise.errors import SetupError
from trainwise.report.model import Report
from trainwise.runs.describe import describe_setup
from trainwise.runs.record import recording
from trainwise.spec import Setup
from trainwise.stages.base import CheckRun, Stage
from trainwise.stages.protocol import default_stages, run_protocol
from trainwise.state import preserved_rng

log = logging.getLogger("trainwise")


def check(
    setup: Setup,
    *,
    quick: bool = False,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    stages: Sequence[Stage] | None = None,
    progress: bool = False,
    record: bool = True,
    runs_dir: str | os.PathLike | None = None,
    mlflow: str | None = None,
    devices: int = 1,
    target: str | None = None,
) -> Report:
    """Examine a setup: static checks, then short experiments. Nothing the user owns changes.

    quick:    shorter experiments (seconds instead of about a minute)
    sample:   how many samples per dataset the data rules read
    stages:   run only these stages (default: the whole protocol)
    progress: show rich progress bars on stderr
    record:   keep a run record (run.json, findings, report.json, report.html) in runs_dir
              (default $TRAINWISE_RUNS_DIR, else ./trainwise-runs); `report.record_path`
    mlflow:   also copy the record to this MLflow tracking URI when the check ends
    devices:  N >= 2 adds the multi-device stage: N processes under DistributedDataParallel
              (torchrun; gloo on CPU when there are fewer GPUs) against one process
    target:   the setup file ("my_setup.py" or "my_setup.py:function") each of those processes
              loads; the CLI passes it
    """
    if not isinstance(setup, Setup):
        raise SetupError(f"check() expects a trainwise.Setup, got {type(setup).__name__}")
    if not isinstance(devices, int) or devices < 1:
        raise SetupError(f"check(devices={devices!r}): expected a positive int")
    run = CheckRun(setup, quick=quick, sample=sample, seed=seed, devices=devices, target=target)
    # Checking must not shift the user's random streams (torch, CUDA, numpy, Python): not by
    # the fresh model the record's optimizer settings are read from, nor by the stages.
    with preserved_rng():
        config = _setup_config(setup) if record else {}
    config["check"] = {"quick": quick, "sample": sample, "devices": devices}
    with recording(
        "check",
        record,
        name=setup.name,
        config=config,
        seed=seed,
        device=str(setup.torch_device),
        root=runs_dir,
        mlflow=mlflow,
    ) as recorded:
        with preserved_rng():
            stages = stages or default_stages(quick, devices)
            report = run_protocol(run, stages, show_progress=progress)
        if recorded is not None:
            recorded.log_report(report)
            report.record_path = recorded.path
    return report


def _setup_config(setup: Setup) -> dict[str, Any]:
    """The setup's settings, with the optimizer's (built on a fresh model: it is what the
    optimizer factory gives, and nothing the user owns is touched)."""
    try:
        optimizer = setup.build_optimizer(setup.build_model())
        return describe_setup(setup, optimizer)
    except Exception as exc:  # the check itself reports a broken factory; keep the record
        log.debug("trainwise: optimizer settings unavailable: %s", exc)
        return describe_setup(setup)
