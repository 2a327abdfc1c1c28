"""What the sweep tests share: the setup files and a recipe without a range test."""

from pathlib import Path

import trainwise as tw

HERE = Path(__file__).parent
BLOBS = str(HERE / "blobs_setup.py")
SLOW = str(HERE / "slow_setup.py")
BARRIER = str(HERE / "barrier_setup.py")


def quick_recipe() -> tw.Recipe:
    """A fixed LR and a constant schedule: no range test per trial, progress from step 1."""
    return tw.Recipe(lr=3e-2, schedule="constant", clip=None, label_smoothing=0.0,
                     output_bias=False, precision="fp32")  # fmt: skip
