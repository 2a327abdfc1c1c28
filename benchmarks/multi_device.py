"""Benchmark: `trainwise check --devices 2` on every healthy case of the fault suite.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/multi_device.py [-k mlp] [--reps 3]

For each healthy setup under faults/healthy/ the multi-device stage alone (after the static
stage it needs): 2 processes under torchrun (gloo on CPU) against one process at the same
global batch. Printed per case: the outcome (pass, or the findings of multi-device-broken),
the measured replica spread, the gap to the one-process weights (relative to how far they
moved), and the stage's wall time (median of --reps runs; the target is under 30 s on the
digits MLP). Results: benchmarks/results/multi_device.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import trainwise as tw
from trainwise.loader import load_setup
from trainwise.stages.multi_device import MultiDeviceStage
from trainwise.stages.static import StaticStage

HEALTHY = Path(__file__).parent / "faults" / "healthy"
TARGET_SECONDS = 30.0  # the target for the digits MLP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="match", default="")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(HEALTHY.parent))  # the cases import their shared modules
    print(f"# multi_device  torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{args.reps} runs per case, 2 processes\n")  # fmt: skip
    print(f"{'case':22} {'outcome':10} {'spread':>8} {'gap':>9} {'steps':>5} {'median s':>9}  runs")
    for path in sorted(HEALTHY.glob("*.py")):
        if args.match not in path.stem:
            continue
        target = str(path)
        setup = load_setup(target)
        seconds, stage, found = [], None, []
        for _ in range(args.reps):
            started = time.perf_counter()
            report = tw.check(setup, devices=2, target=target, record=False,
                              stages=[StaticStage(), MultiDeviceStage()])  # fmt: skip
            seconds.append(time.perf_counter() - started)
            stage = next(s for s in report.stages if s.name == "multi-device")
            found = [f for f in report.findings if f.rule == "multi-device-broken"]
        m = stage.metrics
        outcome = stage.status if not found else "; ".join(f.message[:60] for f in found)
        spread, gap = m.get("spread"), m.get("param_gap")
        print(
            f"{path.stem:22} {outcome:10} {_num(spread):>8} {_num(gap):>9} {m.get('steps', '-'):>5} "
            f"{statistics.median(seconds):>9.1f}  {', '.join(f'{s:.1f}' for s in seconds)}",
            flush=True,
        )
        if stage.status == "skipped":
            print(f"{'':22} {stage.summary}")
        if path.stem == "mlp_digits":
            met = statistics.median(seconds) <= TARGET_SECONDS
            print(f"{'':22} target <= {TARGET_SECONDS:.0f} s on the digits MLP: "
                  f"{'met' if met else 'not met'}")  # fmt: skip


def _num(value) -> str:
    return "-" if value is None else f"{value:.1e}"


if __name__ == "__main__":
    main()
