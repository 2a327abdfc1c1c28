"""What an LR range test (`tw.lr_find`, `trainwise lr-find`) writes into its run record: the
loss at each step, the curve with the suggestion marked, and the lr-too-high / lr-too-low
findings for the configured LR. lr_find opens the record before the sweep, so a crash still
leaves one."""

from __future__ import annotations

import logging
from typing import Any

from trainwise.rules.lr import judge
from trainwise.runs.record import Run

log = logging.getLogger("trainwise")


def write_result(run: Run, result: Any) -> None:
    """Per-step loss and LR, the curve with its marks, the suggestion, and the findings.
    Problems only warn: the range test's answer comes first."""
    try:
        _write(run, result)
    except Exception as exc:  # noqa: BLE001
        log.warning("trainwise: lr_find record incomplete: %s: %s", type(exc).__name__, exc)


def _write(run: Run, result: Any) -> None:
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
    # A blocked test (no sweep) keeps the static finding that blocked it, as `check` would
    run.log_findings(list(result.findings) if result.findings else judge(result))
