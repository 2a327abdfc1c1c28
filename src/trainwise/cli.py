"""The command line: parse, call the API, render. Exit codes: 0 clean, 1 error findings,
2 unusable input."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from trainwise.errors import SetupError

console = Console()
err_console = Console(stderr=True)

EXIT_CLEAN, EXIT_FINDINGS, EXIT_UNUSABLE = 0, 1, 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trainwise")
def main() -> None:
    """trainwise: checks that a PyTorch training setup can learn, before and while it trains."""


@main.command()
@click.argument("target", metavar="FILE[.py][:FUNCTION]")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write the report as JSON here."
)
@click.option("--quick", is_flag=True, help="Shorter experiments: seconds instead of a minute.")
@click.option(
    "--sample", default=2000, show_default=True, help="Samples per dataset the data rules read."
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--record/--no-record",
    default=True,
    show_default=True,
    help="Keep a run record (run.json, findings, report.html) under the runs folder.",
)
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False),
    help="The runs folder (default: $TRAINWISE_RUNS_DIR, else ./trainwise-runs).",
)
@click.option("--mlflow", "mlflow_uri", help="Also log the record to this MLflow tracking URI.")
def check(
    target: str,
    json_path: str | None,
    quick: bool,
    sample: int,
    seed: int,
    record: bool,
    runs_dir: str | None,
    mlflow_uri: str | None,
) -> None:
    """Examine the Setup returned by setup() in FILE (or FILE:FUNCTION)."""
    from trainwise.check import check as run_check
    from trainwise.loader import load_setup
    from trainwise.report.terminal import render_report
    from trainwise.runs.check import recorded_check

    try:
        setup = load_setup(target)
        with recorded_check(setup, record, runs_dir, mlflow_uri, quick, sample, seed) as run:
            report = run_check(setup, quick=quick, sample=sample, seed=seed, progress=True)
            if run is not None:
                run.log_report(report)
    except SetupError as exc:
        _fail_unusable(exc)
    render_report(report, console)
    if run is not None:
        console.print(f"[dim]run record: {run.path}  (`trainwise runs` lists your runs)")
    if json_path:
        Path(json_path).write_text(report.to_json())
        console.print(f"JSON report written to {json_path}")
    sys.exit(report.exit_code)


@main.command()
def demo() -> None:
    """Check a healthy and a broken small CNN on scikit-learn's digits, side by side."""
    from trainwise.demo.run import run_demo

    run_demo(console)


@main.command()
@click.option("--category", type=click.Choice(["model", "data", "protocol", "in-flight"]))
def rules(category: str | None) -> None:
    """List every rule trainwise knows."""
    from trainwise.rules import CATALOGUE

    table = Table(title="trainwise rules", title_justify="left")
    for col in ("slug", "severity", "category", "summary"):
        table.add_column(col)
    for r in CATALOGUE.values():
        if category is None or r.category == category:
            table.add_row(r.slug, r.severity, r.category, r.summary)
    console.print(table)
    console.print("`trainwise explain SLUG` prints a rule's documentation.")


@main.command()
@click.argument("slug")
def explain(slug: str) -> None:
    """Print a rule's documentation: why it matters, the fix, an example, the source."""
    from trainwise.rules import CATALOGUE

    rule = CATALOGUE.get(slug)
    if rule is None:
        close = difflib.get_close_matches(slug, list(CATALOGUE), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        _fail_unusable(SetupError(f"no rule named {slug!r}.{hint} `trainwise rules` lists them."))
    doc = [f"# {rule.slug}", f"*{rule.severity}, {rule.category}*: {rule.summary}", ""]
    for title, text in rule.doc_sections().items():
        body = f"```python\n{text}\n```" if title == "Example" else text
        doc += [f"## {title}", body, ""]
    console.print(Markdown("\n".join(doc)))


def _fail_unusable(exc: SetupError) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    sys.exit(EXIT_UNUSABLE)


# Run records: `trainwise runs [show|diff]` and `trainwise report RUN` (runs/cli.py).
from trainwise.runs.cli import report_command, runs_group  # noqa: E402

main.add_command(runs_group)
main.add_command(report_command)


if __name__ == "__main__":
    main()
