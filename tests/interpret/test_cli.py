"""`trainwise interpret`: a real fit run read back through the command in a subprocess (the
JSON contract and the HTML report's sections), and unusable input through the same click
command in this process (exit 2 with a message naming what is wrong)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import trainwise as tw
from helpers import fit_run_in
from trainwise.cli import main

SRC = Path(tw.__file__).parents[1]  # the trainwise under test

SETUP_FILE = """
import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw


def model():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 4))


def setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > 0).long() + 2 * (x[:, 0, :, :4].mean((1, 2)) > 0).long()
    return tw.Setup(model=model, train=TensorDataset(x[:192], y[:192]),
                    val=TensorDataset(x[192:], y[192:]), loss=nn.CrossEntropyLoss())


def regression():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=g)
    y = x.sum(1, keepdim=True)
    return tw.Setup(model=lambda: nn.Linear(6, 1), train=TensorDataset(x[:96], y[:96]),
                    val=TensorDataset(x[96:], y[96:]), loss=nn.MSELoss())
"""

SECTIONS = ("top-losses", "attributions", "confusion", "per-class", "calibration", "weights",
            "activations", "max-activating")  # fmt: skip


def _run(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "trainwise", *map(str, args)], cwd=cwd, capture_output=True,
        text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    return fit_run_in(tmp_path_factory.mktemp("interpret_cli"), SETUP_FILE, epochs=2)


def test_interpret_a_fit_run_writes_the_json_contract_and_the_report(fit_run):
    folder, runs, run = fit_run
    done = _run(["interpret", "-1", "--runs-dir", runs, "--json", "out.json", "--top", "5"], folder)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((folder / "out.json").read_text())
    assert {"top_losses", "confusion", "most_confused", "per_class", "calibration",
            "label_issues"} <= set(data)  # fmt: skip
    assert len(data["top_losses"]) == 5 and data["samples"] == 64 and data["split"] == "val"
    assert set(data["top_losses"][0]) == {"index", "label", "pred", "prob", "loss"}
    assert len(data["confusion"]) == 4 and sum(map(sum, data["confusion"])) == 64
    assert set(data["calibration"]) == {"ece", "bins"}
    assert data["source"].startswith(f"run {run.name}")
    assert "top losses" in done.stdout and "expected calibration error" in done.stdout
    page = (run / "interpret.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page, section
    assert page.count("data:image/png;base64") >= 7


def test_the_run_is_read_back_as_its_setup_file_and_best_checkpoint(fit_run):
    """interpret_run finds the setup file through the recorded command line and folder."""
    from trainwise.interpret import interpret_run
    from trainwise.loader import load_setup

    folder, _, run = fit_run
    setup = load_setup(str(folder / "my_setup.py"))
    direct = tw.interpret(setup, checkpoint=run / "checkpoints" / "best.pt")
    via_run = interpret_run(str(run))
    assert via_run.confusion() == direct.confusion()
    assert [t.index for t in via_run.top_losses()] == [t.index for t in direct.top_losses()]
    assert via_run.subject.epochs == 2 and via_run.subject.recipe.lr == 0.01
    assert via_run.subject.folder == run


def cli(*args):
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["interpret", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output + result.stderr


def test_a_checkpoint_of_another_model_names_the_keys(fit_run, tmp_path):
    folder, _, _ = fit_run
    wrong = tmp_path / "wrong.pt"
    torch.save({"0.weight": torch.zeros(4, 1, 3, 3), "head.weight": torch.zeros(4, 256)}, wrong)
    code, out = cli(folder / "my_setup.py", "--checkpoint", wrong, "--no-report")
    assert code == 2
    assert "missing keys: 0.bias, 3.weight, 3.bias" in out and "unexpected keys: head.weight" in out


def test_an_unknown_layer_lists_the_layers(fit_run):
    folder, _, run = fit_run
    code, out = cli(folder / "my_setup.py", "--checkpoint", run / "checkpoints" / "best.pt",
                    "--layer", "conv9", "--out", run / "elsewhere")  # fmt: skip
    assert code == 2 and "no layer named 'conv9'" in out and "0, 1, 2, 3" in out


def test_regression_says_residuals_instead_of_a_confusion_matrix(fit_run, tmp_path):
    folder, _, _ = fit_run
    code, out = cli(f"{folder / 'my_setup.py'}:regression", "--out", tmp_path, "--json",
                    tmp_path / "r.json")  # fmt: skip
    assert code == 0, out
    assert "residuals (prediction - target)" in out and "no classes" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["confusion"] is None and data["residuals"]["count"] == 32
    page = (tmp_path / "interpret.html").read_text()
    assert '<section id="residuals">' in page and '<section id="confusion">' not in page


def test_unusable_targets(tmp_path):
    code, out = cli(tmp_path / "nope.py")
    assert code == 2 and "no such file" in out
    code, out = cli("no-such-run", "--runs-dir", tmp_path)
    assert code == 2 and "no runs in" in out
