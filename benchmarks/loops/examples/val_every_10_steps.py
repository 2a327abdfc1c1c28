"""Healthy: a slowly, steadily improving MLP on digits, validated every 10 steps (the same loop as
the other val_every_* cases; only the validation cadence differs)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from _cadence import cadence_loop  # noqa: E402

EXPECT = []


def main(quick: bool = False, verbose: bool = False):
    return cadence_loop(val_every=10, verbose=verbose)


if __name__ == "__main__":
    main(verbose=True)
