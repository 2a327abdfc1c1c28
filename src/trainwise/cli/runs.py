"""`trainwise runs`, `trainwise runs show`, `trainwise runs diff`, `trainwise report`: thin
commands over the record reader; registered on the main command group in cli/__init__.py."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from trainwise.errors import SetupError
from trainwise.runs.describe import flatten
from trainwise.runs.layout import RUNS_DIR_ENV
from trainwise.runs.table import COLUMNS, display_row, fmt, table_rows, to_csv, to_markdown

console = Console()
err_console = Console(stderr=True)

ROOT_OPTION = click.option(
    "--root",
    type=click.Path(file_okay=False),
    default=None,
    help=f"The runs folder (default: ${RUNS_DIR_ENV}, else ./trainwise-runs).",
)
# `trainwise runs show -1` (the latest run): a negative number is an argument, not an option.
NEGATIVE_NUMBERS = {"ignore_unknown_options": True}
STATUS_STYLE = {"finished": "green", "running": "cyan", "killed": "red", "failed": "red",
                "interrupted": "yellow"}  # fmt: skip


def _fail(exc: SetupError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    sys.exit(2)


@click.group("runs", invoke_without_command=True)
@ROOT_OPTION
@click.option("--csv", "as_csv", is_flag=True, help="Print the table as CSV (every column).")
@click.option("--markdown", "as_markdown", is_flag=True, help="Print the table as markdown.")
@click.option("--kind", help="Only runs of this kind (check, watch, lr_find).")
@click.option("--last", type=int, help="Only the last N runs.")
@click.option("--sweep", "sweep_name", help="The sheet of a sweep's study: its trials.")
@click.option("--storage", help="With --sweep: the study's storage URL, when the runs folder "
              "has no record of the sweep (another machine's) or it has a password.")
@click.pass_context
def runs_group(
    ctx: click.Context,
    root: str | None,
    as_csv: bool,
    as_markdown: bool,
    kind: str | None,
    last: int | None,
    sweep_name: str | None,
    storage: str | None,
) -> None:
    """The table of your runs: commit, what changed, best validation metric, findings."""
    ctx.ensure_object(dict)["root"] = root
    if ctx.invoked_subcommand is not None:
        return
    if sweep_name is not None:
        _sweep_sheet(sweep_name, storage, root, as_csv, as_markdown)
        return
    from trainwise.runs.layout import runs_root
    from trainwise.runs.store import list_runs

    runs = list_runs(root)
    rows = table_rows(runs)  # "changed" compares with the previous run of a kind: before filters
    if kind:
        rows = [r for r in rows if r["kind"] == kind]
    if last:
        rows = rows[-last:]
    if as_csv:
        click.echo(to_csv(rows), nl=False)
        return
    if as_markdown:
        click.echo(to_markdown(rows), nl=False)
        return
    if not rows:
        console.print(f"No runs in {runs_root(root)}. `trainwise check` records one.")
        return
    console.print(runs_table(rows, f"runs in {runs_root(root)}", console.width))
    console.print("[dim]`trainwise runs show N`, `trainwise runs diff A B`, `trainwise report N`")


def _sweep_sheet(name: str, storage: str | None, root: str | None, as_csv: bool,
                 as_markdown: bool) -> None:  # fmt: skip
    """`trainwise runs --sweep NAME`: the study's trials, read from its storage (the one in
    the sweep's record, --storage, or the runs folder's default SQLite file)."""
    from trainwise.sweep.sheet import open_sheet, to_csv, to_markdown

    try:
        rows, where = open_sheet(name, storage, root)
    except SetupError as exc:
        _fail(exc)
    if as_csv:
        click.echo(to_csv(rows), nl=False)
        return
    if as_markdown:
        click.echo(to_markdown(rows), nl=False)
        return
    from trainwise.cli.sweep import trials_table

    table = trials_table(rows)
    table.title = f"sweep {name} in {where}"
    console.print(table)


# The table in a terminal of `width` columns. Words are never split across lines: columns are
# dropped (least useful first) until the rest fits, and the free-text columns are cut with an
# ellipsis instead of wrapping; `--csv` keeps every column in full.
NUMERIC = ("#", "train loss")
DROPPED_WHEN_NARROW = ("commit", "train loss", "kind", "date")  # in this order
# Free text, with its narrowest useful width; what is left goes to them in this order.
FLEXIBLE = {"result": 12, "run": 10, "changed": 10}
RULES_AND_PADDING = 3  # per column: a space either side and a rule (plus one outer rule)


def runs_table(rows: list[dict[str, Any]], title: str, width: int) -> Table:
    shown = [display_row(r) for r in rows]
    columns = list(COLUMNS)

    def natural(c: str) -> int:
        return max([len(c), *(len(r[c]) for r in shown)])

    def narrowest(c: str) -> int:
        return min(natural(c), FLEXIBLE[c]) if c in FLEXIBLE else natural(c)

    def fits() -> bool:
        return sum(narrowest(c) + RULES_AND_PADDING for c in columns) + 1 <= width

    for drop in DROPPED_WHEN_NARROW:
        if fits():
            break
        if drop == "date":  # first without the year: "2026-05-04 13:09" -> "05-04 13:09"
            for r in shown:
                r["date"] = r["date"][5:]
            if fits():
                break
        columns.remove(drop)
    widths = _allot(columns, natural, narrowest, width)
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(
            c,
            justify="right" if c in NUMERIC else "left",
            width=widths[c],
            no_wrap=True,
            overflow="ellipsis",
        )
    for row, cells in zip(rows, shown, strict=True):
        style = STATUS_STYLE.get(row["status"], "white")
        table.add_row(
            *[
                f"[{style}]{escape(cells[c])}" if c == "status" else escape(cells[c])
                for c in columns
            ]
        )
    return table


def _allot(columns: list[str], natural, narrowest, width: int) -> dict[str, int]:
    """Column widths: the fixed columns as wide as their widest cell; the free-text ones start
    at their header's width and grow, the result first, to their narrowest useful width, then
    to their widest cell, while room is left."""
    widths = {c: natural(c) for c in columns}
    flexible = [c for c in FLEXIBLE if c in columns]
    fixed = sum(widths[c] for c in columns if c not in FLEXIBLE)
    room = width - 1 - RULES_AND_PADDING * len(columns) - fixed
    for c in flexible:
        widths[c] = len(c)
        room -= len(c)
    for target in (narrowest, natural):
        for c in flexible:
            grow = max(0, min(room, target(c) - widths[c]))
            widths[c] += grow
            room -= grow
    return widths


@runs_group.command("show", context_settings=NEGATIVE_NUMBERS)
@click.argument("run")
@click.pass_context
def show(ctx: click.Context, run: str) -> None:
    """One run: what ran, on which code, with which settings, and what it found.

    RUN is a number from the table (-1 = the latest), an id, a unique prefix, or a folder."""
    from trainwise.runs.store import find_run

    try:
        rec = find_run(run, ctx.obj["root"])
    except SetupError as exc:
        _fail(exc)
    meta = rec.meta
    git = meta.get("git") or {}
    info = Table.grid(padding=(0, 2))
    info.add_column(style="dim")
    info.add_column()
    commit = (git.get("commit") or "")[:12] or "not in a git repository"
    if git.get("branch"):
        commit += f" on {git['branch']}"
    if git.get("dirty"):
        commit += " [yellow](+ uncommitted changes: diff.patch)"
    status = rec.status + (f": {meta['error']}" if meta.get("error") else "")
    versions = meta.get("versions") or {}
    for label, value in (
        ("kind", meta.get("kind")),
        ("status", f"[{STATUS_STYLE.get(rec.status, 'white')}]{escape(status)}"),
        ("started", meta.get("started")),
        ("ended", meta.get("ended") or "-"),
        ("command", escape(" ".join(meta.get("command") or []))),
        ("commit", commit),
        ("host", (meta.get("host") or {}).get("hostname")),
        ("device", meta.get("device")),
        ("seed", meta.get("seed")),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
        ("folder", str(rec.path)),
    ):
        info.add_row(label, str(value))
    console.print(f"[bold]{escape(rec.id)}")
    console.print(info)
    config = flatten(meta.get("config") or {})
    if config:
        table = Table(title="settings", title_justify="left")
        table.add_column("setting", style="dim")
        table.add_column("value")
        for k, v in config.items():
            table.add_row(escape(k), escape(fmt(v)))
        console.print(table)
    summary = rec.summary
    results = Table(title="results", title_justify="left")
    results.add_column("metric")
    results.add_column("value", justify="right")
    results.add_column("step", justify="right")
    for k, b in (summary.get("best") or {}).items():
        results.add_row(f"best {escape(k)}", fmt(b["value"]), str(b["step"]))
    for k, v in (summary.get("final") or {}).items():
        results.add_row(f"final {escape(k)}", fmt(v), str(summary.get("last_step", "")))
    if results.row_count:
        console.print(results)
    if summary.get("verdict"):
        console.print(f"verdict: [bold]{summary['verdict']}")
    for f in rec.findings:
        where = f"  at {f['where']}" if f.get("where") is not None else ""
        style = {"error": "bold red", "warning": "yellow"}.get(f.get("severity"), "cyan")
        console.print(
            f"[{style}]{f.get('severity')}[/] [bold]{escape(str(f.get('rule')))}[/]"
            f"[dim]{escape(where)}[/]: {escape(str(f.get('message')))}"
        )
    console.print(f"[dim]files: {', '.join(rec.files)}")


@runs_group.command("diff", context_settings=NEGATIVE_NUMBERS)
@click.argument("a")
@click.argument("b")
@click.option("--code/--no-code", default=True, help="Show the code diff (default: on).")
@click.pass_context
def diff(ctx: click.Context, a: str, b: str, code: bool) -> None:
    """What changed from run A to run B: settings, code (commits and uncommitted patches),
    environment, and results."""
    from trainwise.runs.compare import diff_runs
    from trainwise.runs.store import find_run

    try:
        ra, rb = find_run(a, ctx.obj["root"]), find_run(b, ctx.obj["root"])
    except SetupError as exc:
        _fail(exc)
    d = diff_runs(ra, rb)
    console.print(f"[bold]{escape(ra.id)}[/]  ->  [bold]{escape(rb.id)}")
    _triples("settings", d.settings, "no setting changed")
    _triples("environment", d.environment, "same seed, device and versions")
    _triples("results", d.metrics, "no results", numeric=True)
    console.print(f"[bold]code:[/] {escape(d.commit_note)}")
    if code and d.commit_diff:
        console.print(Syntax(d.commit_diff, "diff", theme="ansi_dark", word_wrap=True))
    if not ra.patch and not rb.patch:
        console.print("uncommitted changes: none in either run")
    elif d.patch_diff:
        console.print("[bold]uncommitted changes differ[/] (a diff of the two diff.patch files):")
        if code:
            console.print(Syntax(d.patch_diff, "diff", theme="ansi_dark", word_wrap=True))
    else:
        console.print("uncommitted changes: the same patch in both runs")


def _triples(
    title: str, rows: list[tuple[str, Any, Any]], empty: str, numeric: bool = False
) -> None:
    if not rows:
        console.print(f"[bold]{title}:[/] {empty}")
        return
    table = Table(title=title, title_justify="left")
    table.add_column("")
    table.add_column("A", justify="right")
    table.add_column("B", justify="right")
    if numeric:
        table.add_column("B - A", justify="right")
    for key, va, vb in rows:
        cells = [escape(key), escape(fmt(va)), escape(fmt(vb))]
        if numeric:
            both = all(isinstance(v, (int, float)) for v in (va, vb))
            cells.append(fmt(vb - va) if both else "")
        table.add_row(*cells)
    console.print(table)


@click.command("report", context_settings=NEGATIVE_NUMBERS)
@click.argument("run")
@ROOT_OPTION
def report_command(run: str, root: str | None) -> None:
    """(Re)build RUN's self-contained report.html and print its path.

    RUN is a number from `trainwise runs` (-1 = the latest), an id, a prefix, or a folder."""
    from trainwise.report.html import write_html_report
    from trainwise.runs.store import find_run

    try:
        rec = find_run(run, root)
    except SetupError as exc:
        _fail(exc)
    path = write_html_report(rec.path)
    console.print(f"report written to {path}")
