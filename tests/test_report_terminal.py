"""The terminal report: what `trainwise check` and `trainwise demo` print."""

from rich.console import Console

from trainwise.report.model import Report, StageResult
from trainwise.report.terminal import render_report

LABELS = "skipped: labels span 1..10 but the model has 10 outputs (labels-out-of-range)"
LR = "skipped: the static checks found errors (labels-out-of-range)"


def _printed(report: Report) -> str:
    console = Console(width=200, record=True, color_system=None)
    render_report(report, console)
    return console.export_text()


def test_a_skip_reason_shared_by_stages_is_said_once():
    stages = [StageResult("static", "Static checks", "fail", 0.1, summary="30 rules [static]")]
    for name in ("init-loss", "speed", "lr-range", "overfit-batch", "baselines"):
        reason = LR if name == "lr-range" else LABELS
        stages.append(StageResult(name, name, "skipped", 0.0, summary=reason))
    out = _printed(Report("broken", stages))
    assert out.count(LABELS) == 1 and out.count(LR) == 1
    assert out.count("skipped: same reason as init-loss") == 3
    assert "30 rules [static]" in out  # summaries are text, not rich markup


def test_different_skip_reasons_are_each_shown():
    stages = [
        StageResult("overfit-batch", "o", "skipped", 0.0, summary="skipped: one reason"),
        StageResult("baselines", "b", "skipped", 0.0, summary="skipped: another reason"),
    ]
    out = _printed(Report("s", stages))
    assert "one reason" in out and "another reason" in out and "same reason" not in out
