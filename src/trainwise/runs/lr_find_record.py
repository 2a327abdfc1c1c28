"""The run record of an LR range test (`tw.lr_find`, `trainwise lr-find`): its settings, the
loss at each step, the curve with the suggestion marked, and the lr-too-high / lr-too-low
findings for the configured LR. Opened before the sweep, so a crash still leaves a record."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainwise.runs.record import Run, start

log = logging.getLogger("trainwise")


def recorded(
    test: Callable[[], Any],
    enabled: bool,
    root: str | Path | None,
    name: str,
    optimizer: Any,
    seed: int,
    device: Any,
) -> Any:
    """Runs `test()` (the range test) inside a record when enabled; returns its LRFindResult
    with `record_path` set. Recording problems only warn: the range test's answer comes first."""
    if not enabled:
        return test()
    settings = test.keywords  # start_lr, end_lr, num_iter, seed, device
    config = {"lr_find": {k: settings[k] for k in ("start_lr", "end_lr", "num_iter")}}
    try:
        run = start(
            "lr_find",
            name=name,
            config=config,
            optimizer=optimizer,
            seed=seed,
            device=str(device) if device is not None else None,
            root=root,
        )
    except Exception as exc:  # noqa: BLE001 - an unwritable runs folder must not stop the test
        log.warning("trainwise: no run record for lr_find (%s); the range test goes on", exc)
        return test()
    with run:
        result = test()
        try:
            write_result(run, result)
        except Exception as exc:  # noqa: BLE001
            log.warning("trainwise: lr_find record incomplete: %s: %s", type(exc).__name__, exc)
    result.record_path = run.path
    return result


def write_result(run: Run, result: Any) -> None:
    """Per-step loss and LR, the curve with its marks, the suggestion, and the findings."""
    from trainwise.rules.lr import judge

    for i, (lr, loss) in enumerate(zip(result.lrs.tolist(), result.losses.tolist(), strict=True)):
        run.log_metrics(i, {"lr": lr, "train/loss": loss})
    s = result.suggestion
    marks = {"suggested lr": s.lr} if s.lr is not None else {}
    if result.trials is not None and result.trials.lr is not None:
        marks["trial pick"] = result.trials.lr
    if result.configured_lr:
        marks["configured lr"] = result.configured_lr
    run.log_curve(
        "lr_find",
        result.lrs.tolist(),
        result.losses.tolist(),
        xlabel="learning rate",
        ylabel="loss",
        xscale="log",
        marks=marks,
        kind="lr_find",
    )
    summary = result.to_dict()
    del summary["lrs"], summary["losses"]  # already in metrics.jsonl and curves.json
    run.meta["summary"]["lr_find"] = summary  # the suggestion, shown by `trainwise runs show`
    run.log_findings(judge(result))
