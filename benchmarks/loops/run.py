"""The broken-loop suite: real training loops with `trainwise.watch` attached.

A case is `loops/broken/<name>.py` (a loop with one mistake, as a person makes it),
`loops/reported/<name>.py` (a silent bug reported in public, with its source: the watch must
learn to catch these, issue 12), `loops/healthy/<name>.py`, or `loops/examples/<name>.py` (an
official PyTorch example adapted to small offline data, or a clean loop validated at some
cadence: healthy too), defining `EXPECT` (the slugs that must fire; `[]` for a
healthy loop, which must raise no error and no warning) and `main(quick, verbose) ->
list[Finding]`.
Prints the per-case table, recall (broken loops whose expected slugs fired) and false alarms
(error/warning findings on healthy loops).

    python benchmarks/loops/run.py            # every case
    python benchmarks/loops/run.py -k healthy  # only cases whose name contains "healthy"
    python benchmarks/loops/run.py -k examples/vae  # names are "<folder>/<file stem>"
    python benchmarks/loops/run.py --no-ddp    # skip the 2-process torchrun case
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

LOOPS = Path(__file__).parent


@dataclass
class CaseResult:
    case: str
    expected: list[str]
    fired: list[str]
    alarms: list[str]  # error/warning findings on a healthy loop
    seconds: float
    crashed: str = ""
    findings: list = field(default_factory=list)  # every Finding, for --findings

    @property
    def roots(self) -> list[str]:
        """Slugs of the root causes (findings no other finding explains, trainwise.causes)."""
        return sorted({f.rule for f in self.findings if f.caused_by is None})

    @property
    def cause_first(self) -> bool:
        """A broken loop's expected slugs fired as root causes, not as consequences."""
        return set(self.expected) <= set(self.roots)

    @property
    def healthy(self) -> bool:
        return not self.expected

    @property
    def ok(self) -> bool:
        if self.crashed:
            return False
        return not self.alarms if self.healthy else set(self.expected) <= set(self.fired)


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"loop_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# broken: the bugs the watch catches today (tests/test_watch_loops.py runs them in CI);
# reported: silent bugs reported in public that it must learn to catch (issue 12);
# healthy and examples: clean loops (EXPECT = []), examples from the official PyTorch examples.
FOLDERS = ("broken", "reported", "healthy", "examples")


def case_name(path: Path) -> str:
    """The name, e.g. "examples/vae": what the table shows and -k matches (not the absolute path,
    whose folders, e.g. a worktree named "...-real", would match every case)."""
    return path.relative_to(LOOPS).with_suffix("").as_posix()


def cases(keyword: str = "", ddp: bool = True) -> list[Path]:
    paths = [p for folder in FOLDERS for p in sorted(LOOPS.glob(f"{folder}/*.py"))]
    return [p for p in paths if keyword in case_name(p) and (ddp or "ddp" not in p.stem)]


def run_case(path: Path, quick: bool = True) -> CaseResult:
    name = case_name(path)
    module = load(path)
    expected = list(module.EXPECT)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one thread is fastest and steadiest
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            findings = module.main(quick=quick)
    except Exception as exc:  # a crash: in the suite, or the watch breaking training
        where = traceback.extract_tb(exc.__traceback__)[-1]  # the innermost frame raising it
        at = f" (at {Path(where.filename).name}:{where.lineno})"
        return CaseResult(
            name, expected, [], [], time.perf_counter() - t0, f"{type(exc).__name__}: {exc}{at}"
        )
    finally:
        torch.set_num_threads(threads)
    fired = sorted({f.rule for f in findings})
    alarms = sorted({f.rule for f in findings if f.severity in ("error", "warning")})
    return CaseResult(
        name,
        expected,
        fired,
        alarms if not expected else [],
        time.perf_counter() - t0,
        findings=list(findings),
    )


def run_suite(quick: bool = True, keyword: str = "", ddp: bool = True) -> list[CaseResult]:
    return [run_case(p, quick) for p in cases(keyword, ddp)]


def print_findings(results: list[CaseResult], console: Console) -> None:
    """Every finding of every case: severity, slug, where, message (the step is in it)."""
    for r in results:
        for f in r.findings:
            cause = f" (caused by {f.caused_by})" if f.caused_by else ""
            console.print(
                f"{r.case}: {f.severity} [{f.rule}]{cause} {f.where or ''}: {f.message}",
                markup=False,
                highlight=False,
            )


def print_results(results: list[CaseResult], console: Console) -> None:
    table = Table(title="trainwise.watch: broken-loop suite")
    for col in ("case", "expected", "root causes", "findings (roots)", "ok", "s"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.case,
            ", ".join(r.expected) or "(healthy)",
            r.crashed or ", ".join(r.roots),
            f"{len(r.findings)} ({sum(f.caused_by is None for f in r.findings)})",
            ("yes" if r.ok else "NO") + ("" if r.healthy or r.cause_first or not r.ok else ", not as root"),
            f"{r.seconds:.1f}",
        )
    console.print(table)
    broken = [r for r in results if not r.healthy]
    healthy = [r for r in results if r.healthy]
    caught = sum(r.ok for r in broken)
    alarms = sum(bool(r.alarms) or bool(r.crashed) for r in healthy)
    console.print(
        f"recall: {caught}/{len(broken)} broken loops caught ({caught / max(len(broken), 1):.0%})"
    )
    console.print(f"false alarms: {alarms}/{len(healthy)} healthy loops raised an error or warning")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    parser.add_argument("--no-ddp", action="store_true", help="skip the torchrun case")
    parser.add_argument("--findings", action="store_true", help="print every finding too")
    args = parser.parse_args()
    results = run_suite(keyword=args.k, ddp=not args.no_ddp)
    console = Console(width=200)
    print_results(results, console)
    if args.findings:
        print_findings(results, console)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
