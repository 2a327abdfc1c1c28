"""The run record on disk: fields, crash safety, git capture, and the writer's error contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import trainwise as tw
from trainwise.errors import SetupError
from trainwise.runs import RunRecord, find_run, list_runs, start
from trainwise.runs.gitinfo import git_state

RUN_FIELDS = {"format", "id", "name", "kind", "command", "cwd", "started", "ended", "status",
              "error", "pid", "host", "git", "config", "seed", "device", "versions", "summary"}  # fmt: skip


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A git repository with one commit, a tracked change, an untracked source file and an
    untracked data file."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    (root / "train.py").write_text("lr = 0.1\n")
    git(root, "add", "train.py")
    git(root, "commit", "-qm", "first")
    (root / "train.py").write_text("lr = 0.3\n")  # uncommitted change to a tracked file
    (root / "model.py").write_text("width = 64")  # untracked source, no final newline
    (root / "weights.bin").write_bytes(b"\0" * 100)  # untracked data: not source
    return root


def test_run_json_has_every_field_and_the_optimizer_settings(tmp_path):
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    with start("watch", name="my run/1", config={"batch_size": 32}, optimizer=opt, seed=7,
               device="cpu", root=tmp_path, code_dir=tmp_path) as run:  # fmt: skip
        run.log_metrics(0, {"train/loss": 2.0, "lr": torch.tensor(0.05)})
        run.log_metrics(1, {"train/loss": 1.5, "val/acc": 0.5, "val/loss": 1.9})
        run.log_metrics(2, {"train/loss": 1.2, "val/acc": 0.4, "val/loss": 1.7})
    assert run.path.parent == tmp_path
    assert run.id.endswith("-my-run-1") and len(run.id.split("-")[0]) == 8  # YYYYmmdd
    meta = json.loads((run.path / "run.json").read_text())
    assert RUN_FIELDS <= set(meta)
    assert meta["kind"] == "watch" and meta["status"] == "finished" and meta["ended"]
    assert meta["seed"] == 7 and meta["device"] == "cpu" and meta["pid"] == os.getpid()
    assert meta["versions"]["torch"] == torch.__version__ and meta["versions"]["python"]
    assert meta["host"]["hostname"]
    group = meta["config"]["optimizer"]["param_groups"][0]
    assert meta["config"]["optimizer"]["class"] == "SGD"
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.05, 0.9, 1e-4)
    assert group["num_params"] == 10
    summary = meta["summary"]
    assert summary["final"]["train/loss"] == 1.2
    assert summary["best"]["val/acc"] == {"value": 0.5, "step": 1}  # higher is better
    assert summary["best"]["val/loss"] == {"value": 1.7, "step": 2}  # lower is better
    assert meta["git"]["commit"] is None  # tmp_path is not in a git repository
    assert not (run.path / "diff.patch").exists()
    assert not list(run.path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_git_commit_branch_dirty_flag_and_a_patch_that_applies(repo, tmp_path):
    runs = repo / "trainwise-runs"  # inside the repository: must not end up in its own patch
    with start("check", root=runs, code_dir=repo) as run:
        pass
    meta = json.loads((run.path / "run.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    assert meta["git"]["commit"] == head.stdout.strip()
    assert meta["git"]["branch"] == "main" and meta["git"]["dirty"] is True
    assert meta["git"]["untracked"] == ["model.py"]
    patch = (run.path / "diff.patch").read_text()
    assert "+lr = 0.3" in patch and "+width = 64" in patch
    assert "weights.bin" not in patch and "trainwise-runs" not in patch
    # The recorded commit plus the patch rebuilds the working tree that ran.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "checkout", "-q", meta["git"]["commit"])
    git(clone, "apply", str(run.path / "diff.patch"))
    assert (clone / "train.py").read_text() == "lr = 0.3\n"
    assert (clone / "model.py").read_text() == "width = 64"


def test_a_clean_tree_is_not_dirty(repo):
    git(repo, "checkout", "-q", "train.py")
    (repo / "model.py").unlink()
    state, patch = git_state(repo)
    assert state.dirty is False and patch == ""


def test_metrics_are_on_disk_before_the_run_ends(tmp_path):
    run = start("watch", root=tmp_path, tensorboard=False)
    run.log_metrics(0, {"loss": 1.0})
    run.log_layers(0, "grad_norm", {"fc.weight": 0.5})
    run.log_histogram(0, "activations/fc", torch.arange(10.0))
    # Read by another reader while the run is still open: every line is already flushed.
    live = RunRecord.load(run.path)
    assert live.status == "running"
    assert live.metrics == [{"step": 0, "t": live.metrics[0]["t"], "loss": 1.0}]
    assert live.layers[0]["values"] == {"fc.weight": 0.5}
    hist = live.histograms[0]
    assert hist["counts"] and sum(hist["counts"]) == 10 and hist["min"] == 0 and hist["max"] == 9
    run.finish()
    assert RunRecord.load(run.path).status == "finished"


KILLED_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from trainwise.runs import start
    run = start("watch", name="doomed", config={"lr": 0.1}, root=sys.argv[1])
    for step in range(5):
        run.log_metrics(step, {"train/loss": 1.0 / (step + 1), "val/acc": step / 10})
    run.log_findings([{"rule": "loss-plateau", "severity": "warning", "message": "flat",
                       "where": 3, "evidence": {}, "fix": "lower the lr"}])
    print("ready", flush=True)
    time.sleep(120)
    """
)


def test_a_killed_process_leaves_a_readable_record_marked_not_finished(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: the record must hold
    finally:
        proc.kill()
        proc.wait(timeout=30)
    (record,) = list_runs(tmp_path)
    assert record.meta["status"] == "running" and record.meta["ended"] is None
    assert record.status == "killed" and not record.finished
    assert [row["step"] for row in record.metrics] == [0, 1, 2, 3, 4]
    summary = record.summary  # rebuilt from metrics.jsonl and findings.json
    assert summary["final"]["train/loss"] == pytest.approx(0.2)
    assert summary["best"]["val/acc"]["value"] == pytest.approx(0.4)
    assert summary["findings"]["warning"] == 1
    assert find_run("doomed", tmp_path).path == record.path


def test_exception_and_interrupt_set_the_status(tmp_path):
    with pytest.raises(ZeroDivisionError), start("watch", name="a", root=tmp_path) as failed:
        1 / 0  # noqa: B018
    with pytest.raises(KeyboardInterrupt), start("watch", name="b", root=tmp_path) as stopped:
        raise KeyboardInterrupt
    assert RunRecord.load(failed.path).meta["status"] == "failed"
    assert "ZeroDivisionError" in RunRecord.load(failed.path).meta["error"]
    assert RunRecord.load(stopped.path).meta["status"] == "interrupted"


def test_bad_values_get_a_clear_error_naming_them(tmp_path):
    with start("watch", root=tmp_path, tensorboard=False) as run:
        with pytest.raises(SetupError, match=r"'train/loss' is str 'high'.*expected a number"):
            run.log_metrics(0, {"train/loss": "high"})
        with pytest.raises(SetupError, match="x has 3 points, y has 2"):
            run.log_curve("lr_find", [1, 2, 3], [1, 2])
    with pytest.raises(SetupError, match="expected a word"):
        start("", root=tmp_path)
    with pytest.raises(SetupError, match="is finished"):
        run.log_metrics(1, {"loss": 1.0})


def test_a_failing_disk_write_warns_and_never_stops_training(tmp_path, caplog):
    with start("watch", root=tmp_path, tensorboard=False) as run:
        (run.path / "findings.json").mkdir()  # the rename onto it will fail
        finding = tw.Finding("loss-plateau", "warning", "flat for 100 steps", where=100)
        run.log_findings([finding])  # must not raise
        run.log_metrics(0, {"loss": 1.0})
    assert "could not write findings" in caplog.text
    assert RunRecord.load(run.path).meta["summary"]["findings"]["warning"] == 1


def test_same_second_same_name_gets_its_own_folder(tmp_path):
    with start("check", name="x", root=tmp_path, tensorboard=False) as a:
        pass
    with start("check", name="x", root=tmp_path, tensorboard=False) as b:
        pass
    assert a.path != b.path and len(list_runs(tmp_path)) == 2


def test_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINWISE_RUNS_DIR", str(tmp_path / "elsewhere"))
    with start("check", tensorboard=False) as run:
        pass
    assert run.path.parent == tmp_path / "elsewhere"


def test_find_run_by_number_prefix_and_name(tmp_path):
    ids = []
    for name in ("alpha", "beta"):
        with start("check", name=name, root=tmp_path, tensorboard=False) as run:
            ids.append(run.id)
        time.sleep(0.01)
    assert find_run("-1", tmp_path).id == ids[1]
    assert find_run("1", tmp_path).id == ids[0]
    assert find_run("beta", tmp_path).id == ids[1]
    assert find_run(ids[0], tmp_path).id == ids[0]
    with pytest.raises(SetupError, match="there are 2 runs"):
        find_run("5", tmp_path)
    with pytest.raises(SetupError, match="no run 'gamma'"):
        find_run("gamma", tmp_path)
