"""End to end through the real `trainwise` command: a subprocess, as a user runs it, where the
process matters (exit codes, what is imported, the console script); the matrix of unusable
inputs through the same click command in this process (a subprocess per case would spend most
of its time importing torch)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainwise.runs import list_runs

SETUPS = Path(__file__).parent / "fixtures" / "setups"


def trainwise(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "trainwise", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_check_a_setup_file_outside_the_repository(tmp_path):
    # A user's own file in their own folder, with a neighbour module it imports.
    (tmp_path / "mydata.py").write_text((SETUPS / "healthy_mlp.py").read_text())
    (tmp_path / "my_setup.py").write_text("from mydata import setup, broken  # noqa: F401\n")
    out = tmp_path / "report.json"
    clean = trainwise("check", "my_setup.py", "--json", str(out), "--quick", cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(out.read_text())["verdict"] == "ready to train"

    dirty = trainwise("check", "my_setup.py:broken", "--json", str(out), "--quick", cwd=tmp_path)
    assert dirty.returncode == 1, dirty.stdout + dirty.stderr
    report = json.loads(out.read_text())
    assert report["verdict"] == "fix these first"
    rules = {f["rule"] for f in report["findings"]}
    assert {"labels-out-of-range", "inputs-not-normalized"} <= rules
    finding = report["findings"][0]
    assert set(finding) == {
        "rule", "severity", "message", "where", "evidence", "fix", "step", "caused_by", "explains"
    }  # fmt: skip
    assert report["stages"][0]["name"] == "static"
    assert "labels-out-of-range" in dirty.stdout  # the terminal report names it too


@pytest.mark.parametrize(
    "target, expected",
    [
        ("no_such_file.py", "no_such_file.py: no such file"),
        (f"{SETUPS / 'bad_inputs.py'}", "no function `setup()`"),
        (f"{SETUPS / 'bad_inputs.py'}:not_a_function",
         "`not_a_function` is of type int; expected `def not_a_function()"),
        (f"{SETUPS / 'bad_inputs.py'}:raises", "raises() raised KeyError"),
        (f"{SETUPS / 'bad_inputs.py'}:not_a_setup", "returned Linear; expected a trainwise.Setup"),
        (
            f"{SETUPS / 'bad_inputs.py'}:triples",
            "train item 0 is a tuple of 3 elements; expected a pair",
        ),
        (
            f"{SETUPS / 'bad_inputs.py'}:strings",
            "train sample 0 is not made of tensors: its input is a str ('review number 0: a "
            "fine film'), and the model raised TypeError on it; expected a tensor",
        ),
        (
            f"{SETUPS / 'bad_inputs.py'}:loss_rejects_shape",
            "output (32, 2) float32, target (32, 3) float32",
        ),
        (
            f"{SETUPS / 'bad_inputs.py'}:forward_crashes",
            # The stage tag in square brackets is printed, not read as rich markup.
            "error: [static] the model raised RuntimeError in layer '2' (Linear) on an input of "
            "shape (32, 10)",
        ),
        (
            f"{SETUPS / 'bad_inputs.py'}:model_factory_returns_none",
            "returned NoneType; expected an nn.Module",
        ),
        (f"{SETUPS / 'import_error.py'}", "line 3: x = 1 / 0"),
    ],
    ids=[
        "missing-file",
        "no-setup",
        "not-callable",
        "setup-raises",
        "not-a-setup",
        "not-pairs",
        "strings",
        "loss-rejects",
        "forward-crashes",
        "factory-none",
        "import-error",
    ],
)
def test_unusable_input_gets_a_clear_message_and_exit_2(target, expected):
    from click.testing import CliRunner

    from trainwise.cli import main

    result = CliRunner().invoke(main, ["check", target])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback: a message and exit code 2
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert expected in message
    assert "no function" not in expected or "raises" in message  # lists the functions found


@pytest.mark.parametrize(
    "args, expected",
    [
        (["check", "missing.py"], "missing.py: no such file"),
        (["check", "missing.py:other"], "missing.py: no such file"),
        (["lr-find", "missing.py"], "missing.py: no such file"),
        (["lr-find", "setup.py", "--plot", "curve.pdf"], "--plot curve.pdf: expected a .png"),
    ],
)
def test_argument_errors_are_reported_before_torch_is_imported(tmp_path, args, expected):
    (tmp_path / "setup.py").write_text("def setup(): ...\n")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "trainwise", *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    # -X importtime writes one "import time: self | cumulative | module" line per import.
    imported = {
        line.rpartition("|")[2].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "trainwise.cli" in imported  # the command ran
    assert "torch" not in imported
    message = " ".join(line for line in result.stderr.splitlines() if "import time:" not in line)
    assert f"error: {expected}" in " ".join(message.split())


def test_demo_shows_a_clean_and_a_broken_setup():
    result = trainwise("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "digits (healthy)" in out and "digits (broken)" in out
    for slug in ("softmax-before-loss", "labels-out-of-range", "inputs-not-normalized"):
        assert slug in out
    assert "ready to train" in out and "fix these first" in out
    # The preflight experiments: passing on the healthy setup, catching the third one.
    assert "digits (cannot learn)" in out and "overfit-batch" in out
    for slug in ("cannot-overfit-batch", "cannot-overfit-few", "no-better-than-baseline"):
        assert slug in out
    # The broken setup's labels skip 8 experiments for one reason: it is said once.
    assert out.count("skipped: labels span 1..10") == 1
    assert out.count("skipped: same reason as init-loss") == 7


def test_rules_and_explain():
    from click.testing import CliRunner

    from trainwise.cli import main

    listed = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["rules"])
    assert listed.exit_code == 0 and "softmax-before-loss" in listed.stdout
    explained = CliRunner().invoke(main, ["explain", "labels-out-of-range"])
    assert explained.exit_code == 0 and "Why" in explained.stdout
    out = explained.stdout
    assert out.index("The mistake:") < out.index("The repair:") < out.index("Source")
    assert "TIPS.md" not in out and "seed 00" not in out
    typo = CliRunner().invoke(main, ["explain", "labels-out-of-rang"])
    assert typo.exit_code == 2 and "Did you mean: labels-out-of-range" in typo.stderr


def test_console_script_is_installed():
    exe = shutil.which("trainwise") or str(Path(sys.executable).parent / "trainwise")
    result = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "check" in result.stdout


def test_lr_find_command_prints_the_suggestion_and_draws_the_plot(tmp_path):
    plot, data = tmp_path / "lr.svg", tmp_path / "lr.json"
    done = trainwise(
        "lr-find", str(SETUPS / "healthy_mlp.py"), "--num-iter", "60",
        "--plot", str(plot), "--json", str(data),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "suggested LR" in done.stdout and "good range" in done.stdout
    assert "<svg" in plot.read_text()[:500]
    curve = json.loads(data.read_text())
    assert len(curve["lrs"]) == len(curve["losses"]) > 10
    assert curve["suggested_lr"] > 0
    (record,) = list_runs(os.environ["TRAINWISE_RUNS_DIR"])  # the lr-find run record
    assert record.meta["kind"] == "lr_find" and record.status == "finished"
    assert f"run record: {record.path}" in done.stdout.replace("\n", "")
    assert record.curves["lr_find"]["marks"]["suggested lr"] == curve["suggested_lr"]
    assert (record.path / "report.html").exists()

    wrong = trainwise("lr-find", str(SETUPS / "healthy_mlp.py"), "--plot", str(tmp_path / "x.jpg"))
    assert wrong.returncode == 2 and ".png or .svg" in wrong.stderr


def test_lr_find_refuses_a_setup_with_blocking_static_errors_as_check_does(tmp_path):
    plot = tmp_path / "lr.png"
    done = trainwise("lr-find", f"{SETUPS / 'healthy_mlp.py'}:broken", "--plot", str(plot))
    assert done.returncode == 1, done.stdout + done.stderr  # check's exit code for errors
    out = done.stdout.replace("\n", " ")
    assert "no range test: not run" in out and "labels-out-of-range" in out
    assert "labels span 1..2 but the model has 2 outputs" in out
    assert "fix:" in out and not plot.exists()


def test_lr_find_with_trial_steps_trains_candidates_and_records_the_pick(tmp_path):
    data = tmp_path / "lr.json"
    done = trainwise(
        "lr-find", str(SETUPS / "healthy_mlp.py"), "--num-iter", "40", "--trial-steps", "20",
        "--no-plot", "--json", str(data),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trial runs (20 steps each" in done.stdout and "fitted through the best" in done.stdout
    result = json.loads(data.read_text())
    assert result["suggested_lr"] == result["trials"]["lr"] != result["range_test_lr"]
    (record,) = list_runs(os.environ["TRAINWISE_RUNS_DIR"])
    assert record.curves["lr_find"]["marks"]["trial pick"] == result["trials"]["lr"]
    assert "replaces it as the answer" in (record.path / "report.html").read_text()

    few = trainwise("lr-find", str(SETUPS / "healthy_mlp.py"), "--trial-steps", "5")
    assert few.returncode == 2 and "--trial-steps" in few.stderr


def test_the_demo_table_shows_every_slug_whole_in_a_narrow_terminal():
    """A slug is what `trainwise explain` takes: the demo's table never cuts one to fit."""
    from rich.console import Console

    from trainwise.demo.run import _difference
    from trainwise.findings import Finding
    from trainwise.report.model import Report, StageResult

    slugs = ["weight-decay-on-norm-and-bias", "cannot-overfit-batch", "no-better-than-baseline"]
    found = [Finding(rule=slug, severity="error", message="m", fix="f") for slug in slugs]
    reports = [Report(f"digits ({kind})", [StageResult("static", "Static", "fail", 0.1,
                                                       findings=found)])  # fmt: skip
               for kind in ("healthy", "broken", "cannot learn")]  # fmt: skip
    console = Console(width=72, record=True)
    console.print(_difference(*reports))
    text = console.export_text()
    for slug in slugs:
        assert slug in text, text
