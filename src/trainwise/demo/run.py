"""`trainwise demo`: check the healthy and the broken digits setups and show the difference.

The preflight experiments run in their --quick form, so the demo takes seconds.
"""

from __future__ import annotations

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from trainwise.check import check
from trainwise.demo.digits import broken, cannot_learn, healthy
from trainwise.report.model import Report
from trainwise.report.terminal import render_report


def run_demo(console: Console) -> tuple[Report, ...]:
    reports = []
    for make in (healthy, broken, cannot_learn):
        setup = make()
        console.print(Rule(f"[bold]{setup.name}"))
        report = check(setup, quick=True, progress=console.is_terminal, record=False)
        render_report(report, console)
        reports.append(report)
    console.print(Rule("[bold]the difference"))
    console.print(_difference(*reports))
    return tuple(reports)


def _difference(*reports: Report) -> Table:
    table = Table(title="what trainwise found", title_justify="left")
    rules = dict.fromkeys(f.rule for r in reports for f in r.findings)
    # A slug is what `trainwise explain` takes: shown whole, never cut to fit a narrow terminal
    table.add_column("rule", no_wrap=True, min_width=max(map(len, rules), default=4))
    for report in reports:
        table.add_column(report.setup_name)
    for rule in rules:
        marks = [
            ", ".join(sorted({f.severity for f in r.findings if f.rule == rule})) or "clean"
            for r in reports
        ]
        table.add_row(rule, *marks)
    table.add_row("[bold]verdict", *(r.verdict for r in reports))
    return table
