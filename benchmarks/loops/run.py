"""The broken-loop suite: real training loops with `trainwise.watch` attached.

A case is `loops/broken/<name>.py` (a loop with one mistake, as a person makes it) or
`loops/healthy/<name>.py`, defining `EXPECT` (the slugs that must fire; `[]` for a healthy loop,
which must raise no error and no warning) and `main(quick, verbose) -> list[Finding]`.
Prints the per-case table, recall (broken loops whose expected slugs fired) and false alarms
(error/warning findings on healthy loops).

    python benchmarks/loops/run.py            # every case
    python benchmarks/loops/run.py -k healthy  # only cases whose path contains "healthy"
    python benchmarks/loops/run.py --no-ddp    # skip the 2-process torchrun case
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from dataclasses import dataclass
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


def cases(keyword: str = "", ddp: bool = True) -> list[Path]:
    paths = sorted(LOOPS.glob("broken/*.py")) + sorted(LOOPS.glob("healthy/*.py"))
    return [p for p in paths if keyword in str(p) and (ddp or "ddp" not in p.stem)]


def run_case(path: Path, quick: bool = True) -> CaseResult:
    name = str(path.relative_to(LOOPS).with_suffix(""))
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
    except Exception as exc:  # a broken case is a defect of the suite: show it, go on
        return CaseResult(
            name, expected, [], [], time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"
        )
    finally:
        torch.set_num_threads(threads)
    fired = sorted({f.rule for f in findings})
    alarms = sorted({f.rule for f in findings if f.severity in ("error", "warning")})
    return CaseResult(
        name, expected, fired, alarms if not expected else [], time.perf_counter() - t0
    )


def run_suite(quick: bool = True, keyword: str = "", ddp: bool = True) -> list[CaseResult]:
    return [run_case(p, quick) for p in cases(keyword, ddp)]


def print_results(results: list[CaseResult], console: Console) -> None:
    table = Table(title="trainwise.watch: broken-loop suite")
    for col in ("case", "expected", "fired", "ok", "s"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.case,
            ", ".join(r.expected) or "(healthy)",
            r.crashed or ", ".join(r.fired),
            "yes" if r.ok else "NO",
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
    parser.add_argument("-k", default="", help="only cases whose path contains this")
    parser.add_argument("--no-ddp", action="store_true", help="skip the torchrun case")
    args = parser.parse_args()
    results = run_suite(keyword=args.k, ddp=not args.no_ddp)
    print_results(results, Console())
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
