"""The interpretation report on every healthy example (issue 16, "done when"): each setup of
healthy_setups.py trained briefly by tw.fit (2 epochs, lr 3e-3, no range test), interpreted on
its validation set, its report written; prints the sections each report shows.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/interpret_healthy.py [--out DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from healthy_setups import HEALTHY  # noqa: E402

import trainwise as tw  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="interpret-")))
    args = parser.parse_args()
    for name, build in HEALTHY.items():
        start = time.perf_counter()
        setup = build()
        result = tw.fit(setup, epochs=2, recipe=tw.Recipe(lr=3e-3), record=False, verbose=False)
        interp = tw.interpret(result, setup=setup)
        page = interp.write_report(args.out / name).read_text()
        sections = re.findall(r'<section id="([a-z-]+)"', page)
        print(f"{name:20} {interp.task:15} drawn as {interp.form:8} "
              f"{time.perf_counter() - start:5.1f} s  {', '.join(sections)}", flush=True)  # fmt: skip
        for note in interp.notes:
            print(f"{'':20} note: {note}")
    print(f"reports in {args.out}")


if __name__ == "__main__":
    main()
