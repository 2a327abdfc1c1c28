"""`trainwise fit`: the contract through the real command in a subprocess (exit code, --json,
the run record), the options and unusable inputs through the same click command in this
process (a subprocess each would spend its time importing torch)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import trainwise as tw
from trainwise.cli import main
from trainwise.cli.fit import _metric_text, recipe_from, recipe_options

SRC = Path(tw.__file__).parents[1]  # the trainwise under test
# What precision "auto" resolves to here (a fit's recipe as applied says it)
AUTO = "fp32" if not torch.cuda.is_available() else "bf16" if torch.cuda.is_bf16_supported() else "fp16"

SETUP_FILE = """
import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw


def setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4)),
        train=TensorDataset(x[:192], y[:192]),
        val=TensorDataset(x[192:], y[192:]),
        loss=nn.CrossEntropyLoss(),
    )


def diverging():
    s = setup()
    s.optimizer = lambda params: torch.optim.SGD(params, lr=1e4)
    return s
"""

KEYS = {"record", "checkpoint", "recipe", "metrics", "best", "findings"}


@pytest.fixture
def setup_file(tmp_path):
    path = tmp_path / "my_setup.py"
    path.write_text(SETUP_FILE)
    return path


def fit_cli(*args):
    """In this process: (exit code, the --json result or None, stdout + stderr)."""
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["fit", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output + result.stderr


def test_fit_command_trains_and_writes_the_json_contract(tmp_path, setup_file):
    out, runs = tmp_path / "out.json", tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "trainwise", "fit", setup_file.name, "--epochs", "2",
         "--json", str(out), "--runs-dir", str(runs)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    assert KEYS <= set(data)
    record = Path(data["record"])
    assert record.parent == runs and (record / "run.json").is_file()
    assert Path(data["checkpoint"]) == record / "checkpoints" / "best.pt"
    assert Path(data["checkpoint"]).is_file()
    # as applied: lr and precision "auto" resolved to what ran
    assert {**data["recipe"], "lr": "auto"} == {**tw.Recipe().to_dict(), "precision": AUTO}
    assert isinstance(data["recipe"]["lr"], float)  # auto, resolved by the range test
    assert set(data["metrics"]) == {"val_loss", "val_accuracy", "val_f1", "val_ece"}
    assert data["best"]["epoch"] in (1, 2) and "val_loss" in data["best"]
    assert data["findings"] == [] and data["stopped"] == ""
    assert json.loads((record / "run.json").read_text())["kind"] == "fit"
    report = (record / "report.html").read_text()
    assert "<html" in report[:500] and len(report) > 10_000  # the real report, with its curves
    assert "val/loss" in report and "one-cycle" in report  # the curves and the recipe
    shown = " ".join(done.stdout.split())
    assert f"run record: {record}" in shown and "val_accuracy" in shown


def _json_of(tmp_path, setup_file, *args):
    out = tmp_path / "out.json"
    code, output = fit_cli(setup_file, "--epochs", "1", "--json", out, "--no-record", "--quiet",
                           *args)  # fmt: skip
    assert code == 0, output
    return json.loads(out.read_text())


def test_recipe_plain_is_the_setup_as_written(tmp_path, setup_file):
    data = _json_of(tmp_path, setup_file, "--recipe", "plain")
    assert data["recipe"] == tw.Recipe.plain().to_dict()
    assert data["record"] is None and data["checkpoint"] is None  # --no-record


def test_recipe_options_land_in_the_recipe(tmp_path, setup_file):
    data = _json_of(tmp_path, setup_file, "--lr", "3e-3", "--schedule", "cosine", "--clip",
                    "none", "--label-smoothing", "0")  # fmt: skip
    expected = {**tw.Recipe().to_dict(), "lr": 3e-3, "schedule": "cosine", "clip": None,
                "label_smoothing": 0.0, "precision": AUTO}  # fmt: skip
    assert data["recipe"] == expected
    assert not any("label smoothing" in note for note in data["notes"])


def test_more_recipe_options_and_the_sample(tmp_path, setup_file):
    data = _json_of(tmp_path, setup_file, "--recipe", "plain", "--lr", "0.01", "--clip", "2.5",
                    "--weight-decay", "0.1", "--no-output-bias", "--precision", "fp32",
                    "--optimizer", "adamw", "--sample", "0.5")  # fmt: skip
    expected = {**tw.Recipe.plain().to_dict(), "lr": 0.01, "clip": 2.5, "weight_decay": 0.1,
                "optimizer": "adamw"}  # fmt: skip
    assert data["recipe"] == expected
    assert data["notes"][0] == (
        "trained on a sample (stratified by class): train 96 of 192, validation 32 of 64"
    )


def test_a_diverging_setup_exits_1_with_the_finding(tmp_path, setup_file):
    out = tmp_path / "out.json"
    code, output = fit_cli(f"{setup_file}:diverging", "--epochs", "3", "--recipe", "plain",
                           "--json", out, "--no-record", "--quiet")  # fmt: skip
    assert code == 1, output
    data = json.loads(out.read_text())
    assert data["stopped"].startswith("error: ")
    assert data["stopped"].removeprefix("error: ") in {f["rule"] for f in data["findings"]}
    assert "stopped" in output


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "error: trainwise fit: give --epochs N or --steps N"),
        (["--epochs", "2", "--steps", "5"], "give --epochs N or --steps N"),
        (["--epochs", "0"], "0 is not in the range x>=1"),
        (["--epochs", "1", "--lr", "-1"], "expected a positive number"),
        (["--epochs", "1", "--clip", "sometimes"], "expected auto | none or a number"),
        (["--epochs", "1", "--sample", "1.5"], "expected a count >= 1 or a fraction in (0, 1)"),
        (["--epochs", "1", "--monitor", "val_acc"], "monitor='val_acc'; expected one of"),
        (["--epochs", "1", "--schedule", "linear"], "'linear' is not one of"),
    ],
    ids=["no-length", "both-lengths", "zero-epochs", "bad-lr", "bad-clip", "bad-sample",
         "bad-monitor", "bad-schedule"],
)  # fmt: skip
def test_unusable_input_exits_2_with_a_message(setup_file, args, message):
    code, output = fit_cli(setup_file, "--quiet", "--no-record", *args)
    assert code == 2, output
    assert message in " ".join(output.split())


def test_resume_from_a_folder_without_a_checkpoint_exits_2_naming_it(tmp_path, setup_file):
    code, output = fit_cli(setup_file, "--resume", tmp_path, "--quiet")
    assert code == 2, output
    assert f"no checkpoint at {tmp_path / 'checkpoints' / 'last.pt'}" in " ".join(output.split())


def test_the_setup_files_own_errors_exit_2(tmp_path):
    code, output = fit_cli(tmp_path / "missing.py", "--epochs", "1")
    assert code == 2 and "missing.py: no such file" in output


# -- the helper tips' options (shared with ablate through recipe_options) -------------------------


@click.command()
@recipe_options
def _recipe_echo(recipe_name, **tips):
    click.echo(json.dumps(recipe_from(recipe_name, tips).to_dict()))


def test_each_helper_tip_is_settable_from_the_recipe_options():
    args = ["--finetune", "--finetune-ratio", "2", "--freeze-bn", "--tta", "flip+shift",
            "--distill-from", "runs/teacher", "--distill-temperature", "2", "--distill-alpha",
            "0.5", "--progressive-resize", "0.5,0.75,1", "--y-range=-1,2.5",
            "--final-fit-on-train-val"]  # fmt: skip
    result = CliRunner().invoke(_recipe_echo, args)
    assert result.exit_code == 0, result.output
    assert tw.Recipe(**json.loads(result.output)) == tw.Recipe(
        finetune=True, finetune_ratio=2, freeze_batchnorm=True, tta="flip+shift",
        distill_from="runs/teacher", distill_temperature=2, distill_alpha=0.5,
        progressive_resize=(0.5, 0.75, 1), y_range=(-1, 2.5), final_fit=True,
    )  # fmt: skip
    off = CliRunner().invoke(_recipe_echo, ["--tta", "none", "--y-range", "none"])
    assert json.loads(off.output) == tw.Recipe().to_dict()


def test_fit_final_fit_and_tips_that_do_not_apply_through_the_command(tmp_path, setup_file):
    out, runs = tmp_path / "out.json", tmp_path / "runs"
    code, output = fit_cli(setup_file, "--epochs", "1", "--lr", "0.01", "--json", out,
                           "--runs-dir", runs, "--quiet", "--final-fit-on-train-val", "--tta",
                           "auto", "--y-range", "auto")  # fmt: skip
    assert code == 0, output
    data = json.loads(out.read_text())
    assert data["recipe"]["final_fit"] is True and data["recipe"]["tta"] is None
    assert Path(data["checkpoint"]).name == "final.pt"
    notes = " ".join(data["notes"])
    assert "tta not applied: tta has no transforms for table inputs" in notes
    assert "y_range not applied" in notes and "final fit: trained again" in notes
    config = json.loads((Path(data["record"]) / "run.json").read_text())["config"]
    assert config["setup"] == f"{setup_file.resolve()}:setup"  # what --distill-from builds
    assert config["final_fit"]["epochs"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--y-range", "1"], "expected auto | none or 2 numbers separated by commas"),
        (["--progressive-resize", "0.5,0.7"], "Recipe(progressive_resize=(0.5, 0.7)): expected"),
        (["--tta", "rotate"], "'rotate' is not one of"),
        (["--finetune", "--optimizer", "setup"], "Recipe(finetune=True, optimizer='setup')"),
        (["--distill-from", "nowhere"], "distill_from nowhere: no checkpoint at nowhere"),
        (["--finetune-ratio", "0.5"], "0.5 is not in the range x>=1"),
    ],
    ids=["y-range", "resize", "tta", "finetune-optimizer", "distill", "ratio"],
)  # fmt: skip
def test_bad_helper_tip_options_exit_2_with_a_message(setup_file, args, message):
    code, output = fit_cli(setup_file, "--epochs", "1", "--quiet", "--no-record", *args)
    assert code == 2, output
    assert message in " ".join(output.split())


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1.000"), (0.97421, "0.9742"), (0.0167, "0.01670"), (1234.56, "1235"),
     (2.5e-5, "2.500e-05"), (float("nan"), "nan")],
)  # fmt: skip
def test_metric_values_keep_four_digits(value, text):
    """A perfect accuracy reads 1.000 beside 0.9742 in the result table, not a bare 1."""
    assert _metric_text(value) == text
