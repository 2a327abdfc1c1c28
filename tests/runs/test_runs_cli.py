"""`trainwise runs`, `runs show`, `runs diff`, `report`, and the record `trainwise check` keeps:
through the real command, as a user runs it."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from trainwise.runs import list_runs, start

SETUPS = Path(__file__).parent.parent / "fixtures" / "setups"


def runs_cli(*args):
    """The real command line, parsed by click in this process (a subprocess per call would
    spend most of its time importing torch)."""
    from click.testing import CliRunner

    from trainwise.cli import main

    return CliRunner(env={"COLUMNS": "200"}).invoke(main, list(args), catch_exceptions=False)


def trainwise(*args, cwd=None, env_root=None):
    """The real `trainwise` executable in a subprocess, as a user runs it."""
    import os

    env = dict(os.environ)
    if env_root is not None:
        env["TRAINWISE_RUNS_DIR"] = str(env_root)
    env["COLUMNS"] = "200"  # a wide table, as in a terminal
    return subprocess.run(
        [sys.executable, "-m", "trainwise", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )  # fmt: skip


def git(cwd, *args):
    out = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return out.stdout.strip()


@pytest.fixture
def two_runs(tmp_path):
    """Two watch runs on two commits of a small repository; the second with an uncommitted
    change and a higher learning rate."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "train.py").write_text("depth = 2\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    root = tmp_path / "runs"
    for i, lr in enumerate((1e-3, 3e-3)):
        if i == 1:
            (repo / "train.py").write_text("depth = 3\n")
            git(repo, "commit", "-qam", "deeper")
            (repo / "augment.py").write_text("flip = True\n")  # untracked, uncommitted
        with start("watch", name=f"lr{lr}", config={"lr": lr, "batch_size": 32}, root=root,
                   code_dir=repo, tensorboard=False) as run:  # fmt: skip
            for step in range(3):
                run.log_metrics(step, {"train/loss": (1 - i * 0.3) / (step + 1),
                                       "val/acc": 0.5 + 0.1 * step + 0.05 * i})  # fmt: skip
            run.log_findings([{"rule": "loss-plateau", "severity": "warning", "message": "flat",
                               "where": 2, "evidence": {}, "fix": "schedule"}] * i)  # fmt: skip
    return root, repo


def test_table_has_the_columns_and_the_changed_setting(two_runs):
    root, repo = two_runs
    done = runs_cli("runs", "--root", str(root))
    assert done.exit_code == 0, done.output
    out = done.output
    for column in (
        "run",
        "date",
        "kind",
        "commit",
        "changed",
        "result",
        "train loss",
        "found",
        "status",
    ):
        assert column in out
    head = git(repo, "rev-parse", "--short=7", "HEAD")
    assert f"{head}*" in out  # the second run: dirty mark
    assert "lr=0.003" in out  # the setting that differs from the run before
    assert "val/acc 0.75" in out and "1 warn" in out and "finished" in out


def _lr_find_run(root):
    """A real LR range test's record: SGD at lr=8 diverges at the end of the sweep."""
    import torch
    from torch import nn

    import trainwise as tw

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 8, generator=g), torch.randint(0, 3, (256,), generator=g)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=8.0)
    loader = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    return tw.lr_find(model, loader, nn.functional.cross_entropy, opt, num_iter=60,
                      runs_dir=root)  # fmt: skip


def test_an_lr_find_row_shows_the_suggested_lr_not_the_diverged_sweep_loss(two_runs):
    root, _ = two_runs
    result = _lr_find_run(root)
    assert result.suggested_lr is not None
    last_sweep_loss = float(result.losses[-1])
    rows = list(csv.DictReader(io.StringIO(runs_cli("runs", "--csv", "--root", str(root)).output)))
    assert rows[-1]["kind"] == "lr_find"
    assert float(rows[-1]["suggested_lr"]) == pytest.approx(result.suggested_lr)
    assert rows[-1]["train_loss"] == ""  # the sweep's end is not a training loss
    out = runs_cli("runs", "--root", str(root)).output
    assert f"lr {result.suggested_lr:.2g} (suggested)" in out
    assert f"{last_sweep_loss:.4g}" not in out


@pytest.mark.parametrize("width", [200, 100, 80, 60])
def test_the_table_fits_the_terminal_without_splitting_a_word(two_runs, width):
    from rich.console import Console

    from trainwise.cli.runs import runs_table
    from trainwise.runs.table import COLUMNS, table_rows

    root, _ = two_runs
    _lr_find_run(root)  # a row of another kind, with a result of its own
    console = Console(width=width, record=True, color_system=None)
    console.print(runs_table(table_rows(list_runs(root)), "runs", width))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    header = next(line for line in lines if "#" in line and "run" in line)
    cells = [c.strip() for c in header.strip("┃│ ").replace("┃", "│").split("│")]
    assert set(cells) <= set(COLUMNS)  # every header whole on one line: none split or cut
    assert {"#", "run", "changed", "result", "found", "status"} <= set(cells)
    # Each run is one line: no cell wraps onto a second.
    body = [line for line in lines if line.lstrip("│ ")[:1].isdigit()]
    assert len(body) == len(list_runs(root))
    if width >= 160:
        assert set(cells) == set(COLUMNS)


def test_csv_and_markdown_exports(two_runs):
    root, _ = two_runs
    done = runs_cli("runs", "--csv", "--root", str(root))
    rows = list(csv.DictReader(io.StringIO(done.output)))
    assert len(rows) == 2
    assert rows[1]["changed"] == "lr: 0.001 -> 0.003"
    assert float(rows[1]["best_val"]) == pytest.approx(0.75)
    assert float(rows[1]["train_loss"]) == pytest.approx(0.7 / 3)
    assert (rows[0]["warnings"], rows[1]["warnings"]) == ("0", "1")
    assert rows[1]["dirty"] == "True" and rows[0]["dirty"] == "False"
    md = runs_cli("runs", "--markdown", "--root", str(root)).output.splitlines()
    assert md[0].startswith("| # | run | date | kind | commit | changed |")
    assert len(md) == 4 and "lr=0.003" in md[3]


def test_show_a_run(two_runs):
    root, _ = two_runs
    done = runs_cli("runs", "--root", str(root), "show", "-1")
    assert done.exit_code == 0, done.output
    assert "uncommitted changes" in done.output and "loss-plateau" in done.output
    assert "best val/acc" in done.output and "diff.patch" in done.output


def test_diff_two_runs_settings_code_and_results(two_runs):
    root, _ = two_runs
    done = runs_cli("runs", "--root", str(root), "diff", "1", "2")
    assert done.exit_code == 0, done.output
    out = done.output
    assert "lr" in out and "0.001" in out and "0.003" in out  # settings
    assert "-depth = 2" in out and "+depth = 3" in out  # the commits' diff
    assert "+flip = True" in out  # the second run's uncommitted (untracked) file
    assert "best val/acc" in out and "warning findings" in out  # results


def test_unknown_run_is_a_clear_error(two_runs):
    root, _ = two_runs
    done = trainwise("runs", "--root", str(root), "show", "nope")
    assert done.returncode == 2 and "no run 'nope'" in done.stderr


def test_check_keeps_a_record_by_default_and_not_with_no_record(tmp_path):
    root = tmp_path / "records"
    target = f"{SETUPS / 'healthy_mlp.py'}:broken"
    done = trainwise("check", target, cwd=tmp_path, env_root=root)
    assert done.returncode == 1, done.stderr
    (record,) = list_runs(root)
    meta = record.meta
    assert meta["kind"] == "check" and meta["status"] == "finished"
    assert meta["config"]["optimizer"]["class"] == "AdamW"
    assert meta["summary"]["verdict"] == "fix these first"
    assert {f["rule"] for f in record.findings} >= {"labels-out-of-range"}
    assert record.report["stages"][0]["metrics"]["data"]["class_counts"]
    assert (record.path / "report.html").stat().st_size > 1000
    assert str(record.path) in done.stdout.replace("\n", "")
    runs_cli("check", target, "--no-record", "--runs-dir", str(root))
    assert len(list_runs(root)) == 1
    runs_cli("check", target, "--runs-dir", str(tmp_path / "elsewhere"))
    assert len(list_runs(tmp_path / "elsewhere")) == 1


def test_report_command_rebuilds_the_html(two_runs):
    root, _ = two_runs
    (latest,) = list_runs(root)[-1:]
    (latest.path / "report.html").unlink()
    done = runs_cli("report", "-1", "--root", str(root))
    assert done.exit_code == 0, done.output
    assert "<html" in (latest.path / "report.html").read_text()


def test_empty_runs_folder(tmp_path):
    done = runs_cli("runs", "--root", str(tmp_path / "none"))
    assert done.exit_code == 0 and "No runs" in done.output


def test_an_unwritable_runs_folder_does_not_stop_the_check(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = runs_cli("check", f"{SETUPS / 'healthy_mlp.py'}", "--runs-dir", str(blocker / "runs"))
    assert done.exit_code == 0 and "Verdict" in done.output
    assert "no run record" in caplog.text
