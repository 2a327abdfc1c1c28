"""`trainwise compress`: narrowing against a plain PyTorch reference, the method names, a real
fit run compressed through the CLI (the JSON contract, every variant loading back to its
recorded metric, the report's plot), and unusable input (exit 2 naming what is wrong)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import trainwise as tw
from trainwise.cli import main
from trainwise.compress.measure import evaluate
from trainwise.compress.methods import parse
from trainwise.compress.narrow import CannotNarrow, narrower
from trainwise.compress.shallow import shallower
from trainwise.report import html

SETUP_FILE = """
import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw


def model():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 4))


def setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > 0).long() + 2 * (x[:, 0, :, :4].mean((1, 2)) > 0).long()
    return tw.Setup(model=model, train=TensorDataset(x[:256], y[:256]),
                    val=TensorDataset(x[256:], y[256:]), loss=nn.CrossEntropyLoss())


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = x * 2
        return self.head(self.conv(x).flatten(1))


def branchy():
    s = setup()
    return tw.Setup(model=Branchy, train=s.train, val=s.val, loss=s.loss)
"""
METHODS = ["dynamic-int8", "static-int8", "prune:0.5", "prune-channels:0.5", "distill:half-width",
           "prune-channels:0.5+static-int8"]  # fmt: skip


def test_narrowing_keeps_the_largest_units_as_zeroing_the_others_would():
    """Reference: the model with the dropped hidden units' weights zeroed in plain PyTorch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.randn(5, 6)
    narrow = narrower(model, 0.5, lambda m: m(x), copy_weights=True)
    kept = model[0].weight.norm(dim=1).topk(4).indices
    dropped = torch.ones(8, dtype=torch.bool)
    dropped[kept] = False
    with torch.no_grad():
        model[0].weight[dropped] = 0
        model[0].bias[dropped] = 0
        assert narrow[0].weight.shape == (4, 6) and narrow[2].weight.shape == (3, 4)
        torch.testing.assert_close(narrow(x), model(x))


@pytest.mark.parametrize("build, x", [
    (lambda: nn.Sequential(nn.Conv1d(1, 6, 3), nn.BatchNorm1d(6), nn.ReLU(), nn.Flatten(),
                           nn.Linear(6 * 8, 3)), torch.randn(4, 1, 10)),
    (lambda: nn.Sequential(nn.GRU(3, 8, num_layers=2, batch_first=True), ), None),
])  # fmt: skip
def test_narrowing_everything_kept_is_the_same_model(build, x):
    torch.manual_seed(0)
    if x is None:  # an RNN, then a head: the GRU's units flow into the Linear
        gru = nn.GRU(3, 8, num_layers=2, batch_first=True)
        head = nn.Linear(8, 2)

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.gru, self.head = gru, head

            def forward(self, seq):
                return self.head(self.gru(seq)[0][:, -1])

        model, x = Model().eval(), torch.randn(4, 5, 3)
    else:
        model = build().eval()
    same = narrower(model, 1.0, lambda m: m(x), copy_weights=True)
    torch.testing.assert_close(same(x), model(x))
    half = narrower(model, 0.5, lambda m: m(x), copy_weights=True)
    assert half(x).shape == model(x).shape
    assert sum(p.numel() for p in half.parameters()) < sum(p.numel() for p in model.parameters())


def test_a_residual_model_is_not_narrowed():
    class Sum(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(x + self.a(x))

    with pytest.raises(CannotNarrow, match="not one plain chain"):
        narrower(Sum().eval(), 0.5, lambda m: m(torch.randn(2, 4)), copy_weights=True)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))

    def forward(self, x):
        return x + self.a(x)


def test_a_half_depth_student_drops_every_other_shape_keeping_block_and_rnn_layer():
    torch.manual_seed(0)
    x = torch.randn(3, 4)
    model = nn.Sequential(nn.Linear(4, 8), *[Residual() for _ in range(4)], nn.Linear(8, 3))
    student = shallower(model, 0.5, lambda m: m(x))
    kinds = [type(m).__name__ for m in student]
    assert kinds == ["Linear", "Residual", "Identity", "Residual", "Identity", "Linear"]
    assert student(x).shape == (3, 3)
    again = shallower(model, 0.5, lambda m: m(x))  # the same structure: a saved one loads
    again.load_state_dict(student.state_dict())
    gru = nn.Sequential(nn.GRU(4, 6, num_layers=4, batch_first=True))
    seq = torch.randn(2, 5, 4)
    assert shallower(gru, 0.5, lambda m: m(seq)[0])[0].num_layers == 2
    with pytest.raises(CannotNarrow, match="no depth to remove"):
        shallower(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), 0.5, lambda m: m(x))


def test_method_names():
    assert parse("prune:0.3").steps[0].amount == 0.3
    assert parse("distill:half-width").steps[0].amount == 0.5
    assert parse("distill:half-depth").steps[0].depth and parse("distill:depth-0.25").steps[0].amount == 0.25
    assert [s.kind for s in parse("prune-channels:0.5+dynamic-int8").steps] == [
        "prune-channels", "dynamic-int8"]  # fmt: skip
    for bad, says in (("prune:2", "a fraction in (0, 1)"), ("distill:wide", "half-width"),
                      ("dynamic-int8+prune:0.5", "put the training methods first"),
                      ("int4", "the methods: dynamic-int8")):  # fmt: skip
        with pytest.raises(tw.SetupError, match=r".*") as caught:
            parse(bad)
        assert says in str(caught.value)


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    """(folder, runs folder, run folder) of `trainwise fit my_setup.py`, run in this process."""
    folder = tmp_path_factory.mktemp("compress_cli")
    (folder / "my_setup.py").write_text(SETUP_FILE)
    argv = ["fit", "my_setup.py", "--epochs", "3", "--lr", "0.01", "--runs-dir", "runs", "--quiet"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(sys, "argv", ["trainwise", *argv])
        patch.setattr(html, "write_html_report", lambda path: Path(path, "report.html").touch())
        result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    (run,) = (folder / "runs").iterdir()
    return folder, folder / "runs", run


def cli(*args):
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["compress", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output + result.stderr


def test_compress_a_fit_run_every_variant_loads_back_to_its_metric(fit_run):
    folder, runs, run = fit_run
    args = [a for m in METHODS for a in ("--method", m)]
    code, out = cli(run, *args, "--finetune-epochs", "1", "--distill-epochs", "1", "--json",
                    folder / "out.json")  # fmt: skip
    assert code == 0, out
    data = json.loads((folder / "out.json").read_text())
    keys = {"method", "size_bytes", "params", "latency_ms_b1", "latency_ms_batch",
            "metric_name", "metric", "delta", "path"}  # fmt: skip
    assert keys <= set(data["original"]) and data["skipped"] == []
    assert [v["method"] for v in data["variants"]] == METHODS
    original = data["original"]
    assert original["metric_name"] == "accuracy" and data["batch_size"] == 32
    from trainwise.loader import load_setup

    setup = load_setup(str(folder / "my_setup.py"))
    cpu = dataclasses.replace(setup, device="cpu")
    for row in data["variants"]:
        assert keys <= set(row)
        assert row["delta"] == pytest.approx(row["metric"] - original["metric"])
        model = tw.load_variant(setup, row["path"])
        assert evaluate(cpu, model, "classification", 4)["accuracy"] == row["metric"], row
    by = {v["method"]: v for v in data["variants"]}
    assert by["static-int8"]["size_bytes"] * 2.5 < original["size_bytes"]  # int8 weights
    assert by["prune:0.5"]["nonzero_params"] < 0.51 * original["params"]  # biases kept
    assert by["prune-channels:0.5"]["params"] < original["params"] // 2
    page = (run / "compress" / "compress.html").read_text()
    assert '<section id="trade-off">' in page and "data:image/png;base64" in page
    assert "static-int8" in out and "smaller" in out


def test_a_method_that_does_not_apply_is_skipped_with_the_reason(fit_run, tmp_path):
    folder, _, run = fit_run
    code, out = cli(f"{folder / 'my_setup.py'}:branchy", "--checkpoint", tmp_path / "b.pt")
    assert code == 2 and "b.pt" in out  # no such file: named
    from trainwise.loader import load_setup

    setup = load_setup(f"{folder / 'my_setup.py'}:branchy")
    result = tw.compress(setup, model=setup.build_model(), methods=["static-int8",
                         "distill:half-depth"], folder=tmp_path)  # fmt: skip
    assert result.variants == []
    static, depth = result.skipped
    assert static["method"] == "static-int8" and "torch.fx cannot trace" in static["reason"]
    assert depth["method"] == "distill:half-depth" and "no depth to remove" in depth["reason"]


def test_bad_input_exits_2_naming_it(fit_run, tmp_path):
    folder, runs, run = fit_run
    code, out = cli(run, "--method", "int4")
    assert code == 2 and "unknown method 'int4'" in out and "prune-channels:F" in out
    wrong = tmp_path / "wrong.pt"
    torch.save({"0.weight": torch.zeros(8, 1, 3, 3), "head.weight": torch.zeros(4, 32)}, wrong)
    code, out = cli(folder / "my_setup.py", "--checkpoint", wrong, "--method", "dynamic-int8")
    assert code == 2 and "missing keys: 0.bias" in out and "unexpected keys: head.weight" in out
    best = run / "checkpoints" / "best.pt"
    best.rename(tmp_path / "kept.pt")
    try:
        code, out = cli(run, "--method", "dynamic-int8")
    finally:
        (tmp_path / "kept.pt").rename(best)
    assert code == 2 and "has no best checkpoint" in out
