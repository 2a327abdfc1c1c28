"""--resume: a fit killed with SIGKILL goes on from its last checkpoint to the same final
weights, bit for bit, as a run that was never interrupted (deterministic CPU)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import trainwise as tw

SRC = Path(tw.__file__).parents[1]  # the trainwise under test, for the subprocess

SETUP_FILE = """
import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw


def setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 16, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return tw.Setup(  # dropout: the RNG must go on where it stopped, not only the data order
        model=lambda: nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.2),
                                    nn.Linear(32, 4)),
        train=TensorDataset(x[:256], y[:256]),
        val=TensorDataset(x[256:], y[256:]),
        loss=nn.CrossEntropyLoss(),
        batch_size=32,
    )


RECIPE = tw.Recipe(lr=1e-2)  # every other tip: one-cycle, clip auto (20 steps), smoothing
EPOCHS = 3  # 8 steps each
"""

# Trains until on_progress reports step KILL_AT (its last.pt written), says so, and waits
# there to be killed.
KILLED_RUN = """
import sys, time
import torch
torch.set_num_threads(1)
import trainwise as tw
import trainwise.report.html as html
html.write_html_report = lambda path: None  # seconds of matplotlib the test does not need
sys.path.insert(0, {folder!r})
from fit_setup import EPOCHS, RECIPE, setup

def wait_at(status):
    if status.step == {kill_at}:
        open({ready!r}, "w").write("ready")
        time.sleep(600)

tw.fit(setup(), epochs=EPOCHS, recipe=RECIPE, seed=0, runs_dir={runs!r}, verbose=False,
       on_progress=wait_at)
"""


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed run: the same kernels, the same sums
    yield
    torch.set_num_threads(threads)


def _killed_run(tmp_path: Path, kill_at: int) -> Path:
    """A fit run folder whose process was SIGKILLed after step `kill_at`."""
    runs, ready = tmp_path / "runs", tmp_path / "ready"
    script = KILLED_RUN.format(folder=str(tmp_path), kill_at=kill_at, ready=str(ready),
                               runs=str(runs))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path)]),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not ready.exists():
            if process.poll() is not None:
                pytest.fail(f"the run ended before step {kill_at}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the run did not reach step {kill_at} in 240 s")
            time.sleep(0.05)
        (folder,) = runs.iterdir()
        state = torch.load(folder / "checkpoints" / "last.pt", weights_only=True)
        assert state["step"] == kill_at
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return folder


def _load_setup_file(tmp_path: Path):
    (tmp_path / "fit_setup.py").write_text(textwrap.dedent(SETUP_FILE))
    sys.path.insert(0, str(tmp_path))
    try:
        sys.modules.pop("fit_setup", None)
        import fit_setup
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("fit_setup", None)
    return fit_setup


def _assert_same_run(resumed, whole, folder, at: int) -> None:
    assert f"resumed from {folder} at step {at}" in resumed.notes
    assert resumed.steps == whole.steps == 24 and resumed.stopped == whole.stopped == ""
    assert resumed.recipe == whole.recipe
    mine, theirs = resumed.model.state_dict(), whole.model.state_dict()
    unequal = [k for k in theirs if not torch.equal(mine[k], theirs[k])]
    assert not unequal, f"weights differ after resuming at step {at}: {unequal}"
    assert resumed.metrics == whole.metrics
    assert resumed.best == whole.best


def test_a_killed_run_resumes_to_the_same_final_weights(tmp_path, one_thread):
    # Step 10: mid-epoch (batch 2 of epoch 2), clipping still measuring, dropout's RNG mid-way.
    kit = _load_setup_file(tmp_path)
    folder = _killed_run(tmp_path, kill_at=10)
    resumed = tw.fit(kit.setup(), resume=folder, runs_dir=tmp_path / "resumed", verbose=False)
    whole = tw.fit(kit.setup(), epochs=kit.EPOCHS, recipe=kit.RECIPE, seed=0,
                   runs_dir=tmp_path / "whole", verbose=False)  # fmt: skip
    _assert_same_run(resumed, whole, folder, 10)


class Interrupted(Exception):
    pass


def _stop_at(step: int):
    def check(status) -> None:
        if status.step == step:  # after last.pt was written for this step
            raise Interrupted

    return check


@pytest.mark.parametrize("at", [1, 8, 16, 21, 23], ids=lambda at: f"step{at}")
def test_an_interrupted_run_resumes_to_the_same_final_weights_from_any_step(tmp_path, at):
    # The same state on disk as a kill leaves (last.pt is written before on_progress), in
    # this process: the first step, the last batch of an epoch before its end (8, 16), past
    # the 20 measuring steps of clip auto (21), the step before the last (23).
    kit = _load_setup_file(tmp_path)
    runs = tmp_path / "killed"
    with pytest.raises(Interrupted):
        tw.fit(kit.setup(), epochs=kit.EPOCHS, recipe=kit.RECIPE, runs_dir=runs, verbose=False,
               on_progress=_stop_at(at))  # fmt: skip
    (folder,) = runs.iterdir()
    assert torch.load(folder / "checkpoints" / "last.pt", weights_only=True)["step"] == at
    resumed = tw.fit(kit.setup(), resume=folder, runs_dir=tmp_path / "resumed", verbose=False)
    whole = tw.fit(kit.setup(), epochs=kit.EPOCHS, recipe=kit.RECIPE, record=False,
                   verbose=False)  # fmt: skip
    _assert_same_run(resumed, whole, folder, at)
