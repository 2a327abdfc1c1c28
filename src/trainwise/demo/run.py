"""`trainwise demo`: check the healthy and the broken digits setups and show the difference."""

from __future__ import annotations

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from trainwise.check import check
from trainwise.demo.digits import broken, healthy
from trainwise.report.model import Report
from trainwise.report.terminal import render_report


def run_demo(console: Console) -> tuple[Report, Report]:
    reports = []
    for make in (healthy, broken):
        setup = make()
        console.print(Rule(f"[bold]{setup.name}"))
        report = check(setup, progress=console.is_terminal)
        render_report(report, console)
        reports.append(report)
    console.print(Rule("[bold]the difference"))
    console.print(_difference(*reports))
    return reports[0], reports[1]


def _difference(good: Report, bad: Report) -> Table:
    table = Table(title="what trainwise found", title_justify="left")
    table.add_column("rule")
    table.add_column(good.setup_name)
    table.add_column(bad.setup_name)
    rules = dict.fromkeys(f.rule for f in good.findings + bad.findings)
    for rule in rules:
        marks = [
            ", ".join(sorted({f.severity for f in r.findings if f.rule == rule})) or "clean"
            for r in (good, bad)
        ]
        table.add_row(rule, *marks)
    table.add_row("[bold]verdict", good.verdict, bad.verdict)
    return table
