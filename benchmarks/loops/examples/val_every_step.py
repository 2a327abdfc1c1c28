"""Healthy: a slowly, steadily improving MLP on digits, validated every step on a random
validation batch (the same loop as the other val_every_* cases; only the cadence differs)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from _cadence import cadence_loop  # noqa: E402

EXPECT = []


def main(quick: bool = False, verbose: bool = False):
    return cadence_loop(val_every=1, verbose=verbose)


if __name__ == "__main__":
    main(verbose=True)
