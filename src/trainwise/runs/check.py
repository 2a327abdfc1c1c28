"""The run record of a `trainwise check`: opened before the check runs (so a crash still
leaves a record), closed with the report logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from trainwise.runs.describe import describe_setup
from trainwise.runs.record import Run, start

log = logging.getLogger("trainwise")


@contextmanager
def recorded_check(
    setup: Any,
    enabled: bool,
    root: str | None,
    mlflow: str | None,
    quick: bool,
    sample: int,
    seed: int,
) -> Iterator[Run | None]:
    """Yields the open Run (None when recording is off); its status follows the block's end."""
    if not enabled:
        yield None
        return
    config = {**_setup_config(setup), "check": {"quick": quick, "sample": sample}}
    try:
        run = start(
            "check",
            name=setup.name,
            config=config,
            seed=seed,
            device=str(setup.torch_device),
            root=root,
            mlflow=mlflow,
        )
    except OSError as exc:  # an unwritable runs folder must not stop the check itself
        log.warning("trainwise: no run record (%s); the check goes on without one", exc)
        yield None
        return
    with run:
        yield run


def _setup_config(setup: Any) -> dict[str, Any]:
    """The setup's settings, with the optimizer's (built on a fresh model: it is what the
    optimizer factory gives, and nothing the user owns is touched)."""
    try:
        optimizer = setup.build_optimizer(setup.build_model().parameters())
    except Exception as exc:  # the check itself reports a broken factory; keep the record
        log.debug("trainwise: optimizer settings unavailable: %s", exc)
        return describe_setup(setup)
    return describe_setup(setup, optimizer)
