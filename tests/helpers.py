"""Assertions shared by the rule tests, the protocol as tests run it, and a fit run made in
the test process for the commands that read one (interpret, compress)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from trainwise.findings import Finding
from trainwise.report.model import Report


def _findings(found: Report | list[Finding]) -> list[Finding]:
    return found.findings if isinstance(found, Report) else list(found)


def assert_fires(found: Report | list[Finding], slug: str, where=None, severity=None) -> Finding:
    """The rule fired (at `where`, with `severity`, when given); returns its finding."""
    hits = [f for f in _findings(found) if f.rule == slug]
    assert hits, f"{slug} did not fire; found {[f.rule for f in _findings(found)]}"
    if where is not None:
        assert any(f.where == where for f in hits), (
            f"{slug} fired at {[f.where for f in hits]}, not {where!r}"
        )
        hits = [f for f in hits if f.where == where]
    if severity is not None:
        assert hits[0].severity == severity, f"{slug} has severity {hits[0].severity}"
    return hits[0]


def assert_silent(found: Report | list[Finding], slug: str) -> None:
    hits = [f for f in _findings(found) if f.rule == slug]
    assert not hits, f"{slug} fired on a healthy setup: {[f.message for f in hits]}"


def assert_clean(found: Report | list[Finding]) -> None:
    """No error or warning at all (infos allowed)."""
    bad = [f"{f.rule}: {f.message}" for f in _findings(found) if f.severity in ("error", "warning")]
    assert not bad, "healthy setup raised:\n" + "\n".join(bad)


def speed_unjudged(quick: bool = True) -> list:
    """The protocol with slow-step's limit lifted (the step is still measured): how fast, or
    how loaded, the machine is decides neither a finding nor which experiments --quick skips.
    slow-step's own tests set the limit against the measured step."""
    from trainwise.stages.protocol import default_stages
    from trainwise.stages.speed import SpeedStage

    return [
        SpeedStage(slow_step_seconds=math.inf) if stage.name == "speed" else stage
        for stage in default_stages(quick=quick)
    ]


def fit_run_in(folder: Path, setup_text: str, epochs: int) -> tuple[Path, Path, Path]:
    """(folder, runs folder, run folder) of `trainwise fit my_setup.py --epochs N` run in
    this process (a subprocess would spend seconds importing torch again), with its setup
    file written in `folder`: the record keeps the command line and the folder it ran in,
    which `trainwise interpret RUN` and `trainwise compress RUN` read the setup file from.
    The run's HTML report is left empty: its own tests draw it."""
    import pytest
    from click.testing import CliRunner

    from trainwise.cli import main
    from trainwise.report import html

    (folder / "my_setup.py").write_text(setup_text)
    argv = ["fit", "my_setup.py", "--epochs", str(epochs), "--lr", "0.01", "--runs-dir", "runs",
            "--quiet"]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(sys, "argv", ["trainwise", *argv])
        patch.setattr(html, "write_html_report", lambda path: Path(path, "report.html").touch())
        result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    (run,) = (folder / "runs").iterdir()
    return folder, folder / "runs", run
