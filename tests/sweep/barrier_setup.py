"""The blobs of blobs_setup.py behind a barrier: each process's first setup(hp) waits until
$SWEEP_BARRIER (a folder) holds a mark from 2 processes, so the tests of several workers know
each of them trains a trial of the shared study, however fast each one started."""

import os
import time
from pathlib import Path

from blobs_setup import SPACE  # noqa: F401 - SPACE: the same space
from blobs_setup import setup as blobs_setup

PARTIES = 2
WAIT_S = 240  # then go on: the test's assertion says what went wrong


def setup(hp):
    folder = Path(os.environ["SWEEP_BARRIER"])
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + WAIT_S
    while len(list(folder.iterdir())) < PARTIES and time.monotonic() < deadline:
        time.sleep(0.05)
    return blobs_setup(hp)
