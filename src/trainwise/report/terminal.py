"""Draw a Report in the terminal with rich."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from trainwise.causes import fold
from trainwise.findings import Finding
from trainwise.report.model import READY, Report

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLE = {
    "pass": "green",
    "warn": "yellow",
    "fail": "bold red",
    "skipped": "dim",
    "crashed": "magenta",
}


def render_report(report: Report, console: Console) -> None:
    console.print(_stage_table(report))
    for group in fold(report.findings):
        console.print(_finding_panel(group.root, group.consequences, group.why))
    console.print(_verdict_line(report))


def _stage_table(report: Report) -> Table:
    table = Table(
        title=f"trainwise check: {escape(report.setup_name)}", title_justify="left", expand=False
    )
    table.add_column("stage")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("summary")
    first_skipped: dict[str, str] = {}  # a skip reason -> the first stage skipped for it
    for s in report.stages:
        summary = escape(s.summary)
        if s.status == "skipped":
            # Blocking data skips every experiment for one reason: said once, then referred to.
            if s.summary in first_skipped:
                summary = f"[dim]skipped: same reason as {escape(first_skipped[s.summary])}"
            first_skipped.setdefault(s.summary, s.name)
        table.add_row(
            s.name, Text(s.status, style=STATUS_STYLE[s.status]), f"{s.seconds:.1f}s", summary
        )
    return table


def _finding_panel(f: Finding, consequences=(), why: str = "") -> Panel:
    """A root cause with its fix; the findings it explains folded into a few lines under it
    (their own advice would contradict the cause's: fix the cause first)."""
    style = SEVERITY_STYLE[f.severity]
    title = Text.assemble((f"{f.severity} ", style), (f.rule, "bold"))
    if f.where is not None:
        title.append(f"  at {f.where}", style="dim")
    parts = [Text(f.message), Text.assemble(("fix: ", "bold green"), f.fix)]
    if consequences:
        parts.append(Text(f"+ {len(consequences)} consequence(s) ({why}):", style="dim"))
        for c in consequences:
            parts.append(Text(f"  {c.severity} {c.rule}: {_first_sentence(c.message)}", style="dim"))
    body = Group(*parts)
    return Panel(body, title=title, title_align="left", border_style=style.split()[-1])


def _first_sentence(text: str, limit: int = 110) -> str:
    head = text.split(". ")[0]
    return head if len(head) <= limit else head[: limit - 1] + "…"


def _verdict_line(report: Report) -> Text:
    counts = ", ".join(_plural(report.count(s), s) for s in ("error", "warning", "info"))
    style = "bold green" if report.verdict == READY else "bold red"
    return Text.assemble(
        ("Verdict: ", "bold"), (report.verdict, style), f"  ({counts}; {report.seconds:.1f}s)"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def finding_panel(f: Finding) -> Panel:
    """One finding as the check draws it (lr-find prints the static findings that block it)."""
    return _finding_panel(f)
