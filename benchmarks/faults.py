"""The fault suite: run `trainwise check` on every broken and healthy setup under faults/.

A case is a setup file `faults/<family>/<case>.py` defining `setup()` and a module-level
`EXPECT`: the slugs that must fire (a broken case), or `[]` for a healthy case, which must raise
no error and no warning. Prints recall (broken cases whose expected slugs all fired), false
alarms (error/warning findings on healthy cases) and the per-case table.

    python benchmarks/faults.py            # the full protocol on every case
    python benchmarks/faults.py --quick    # the quick form (tests/test_faults.py runs the
                                           # cases in a form the machine's speed cannot change)
    python benchmarks/faults.py -k static  # only cases whose path contains "static"
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import trainwise as tw
from trainwise.loader import load_setup

FAULTS = Path(__file__).parent / "faults"


@dataclass
class CaseResult:
    case: str
    expected: list[str]
    fired: list[str]  # slugs of error/warning/info findings
    alarms: list[str]  # error/warning findings on a healthy case
    seconds: float
    crashed: str = ""
    roots: tuple[str, ...] = ()  # slugs of the root causes (trainwise.causes)
    n_findings: int = 0
    n_roots: int = 0  # findings no other finding explains

    @property
    def healthy(self) -> bool:
        return not self.expected

    @property
    def ok(self) -> bool:
        if self.crashed:
            return False
        if self.healthy:
            return not self.alarms
        return set(self.expected) <= set(self.fired)


def expected_slugs(path: Path) -> list[str]:
    spec = importlib.util.spec_from_file_location(f"fault_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "EXPECT"):
        raise ValueError(
            f"{path}: a fault case must define EXPECT (a list of slugs, [] if healthy)"
        )
    return list(module.EXPECT)


def run_case(path: Path, quick: bool, stages: Callable[[], list] | None = None) -> CaseResult:
    """Check one case; `stages` makes the protocol to run (default: the whole one)."""
    name = str(path.relative_to(FAULTS).with_suffix(""))
    expected = expected_slugs(path)
    t0 = time.perf_counter()
    # Cases build their data and models when loaded: seed first, so two runs of the suite (before
    # and after a change) compare the same setups.
    torch.manual_seed(0)
    try:
        chosen = stages() if stages is not None else None
        report = tw.check(load_setup(str(path)), quick=quick, record=False, stages=chosen)
    except Exception as exc:  # an unusable case is a defect of the suite: show it, go on
        return CaseResult(
            name, expected, [], [], time.perf_counter() - t0, crashed=f"{type(exc).__name__}: {exc}"
        )
    fired = sorted({f.rule for f in report.findings})
    alarms = sorted({f.rule for f in report.findings if f.severity in ("error", "warning")})
    crashed = "; ".join(f"{s.name}: {s.summary}" for s in report.stages if s.status == "crashed")
    roots = tuple(sorted({f.rule for f in report.findings if f.caused_by is None}))
    return CaseResult(
        name, expected, fired, alarms if not expected else [], time.perf_counter() - t0, crashed,
        roots, len(report.findings), sum(f.caused_by is None for f in report.findings),
    )  # fmt: skip


def case_paths(only: str = "") -> list[Path]:
    # Files starting with "_" are shared helpers (data, models), not cases.
    paths = sorted(
        p
        for p in FAULTS.rglob("*.py")
        if not p.name.startswith("_") and only in str(p.relative_to(FAULTS))
    )
    return paths


def run_suite(quick: bool = False, only: str = "") -> list[CaseResult]:
    return [run_case(p, quick) for p in case_paths(only)]


def summarize(results: list[CaseResult]) -> tuple[float, int]:
    """(recall over broken cases, number of false alarms over healthy cases)."""
    broken = [r for r in results if not r.healthy]
    recall = sum(r.ok for r in broken) / len(broken) if broken else 1.0
    false_alarms = sum(len(r.alarms) + bool(r.crashed) for r in results if r.healthy)
    return recall, false_alarms


def print_results(results: list[CaseResult], console: Console) -> None:
    recall, false_alarms = summarize(results)
    broken = sum(not r.healthy for r in results)
    console.print(
        f"recall: {recall:.0%} of {broken} broken cases   "
        f"false alarms: {false_alarms} on {len(results) - broken} healthy cases"
    )
    table = Table()
    for col in ("case", "expected", "root causes", "findings (roots)", "ok", "time"):
        table.add_column(col)
    for r in results:
        fired = ", ".join(r.roots) or "-"
        if r.crashed:
            fired = f"[magenta]crashed: {r.crashed}"
        table.add_row(
            r.case,
            ", ".join(r.expected) or "(healthy)",
            fired,
            f"{r.n_findings} ({r.n_roots})",
            "[green]yes" if r.ok else "[bold red]NO",
            f"{r.seconds:.1f}s",
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-k", dest="only", default="")
    args = parser.parse_args()
    results = run_suite(args.quick, args.only)
    print_results(results, Console())
    recall, false_alarms = summarize(results)
    return 0 if recall == 1.0 and false_alarms == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
