"""tw.ablate / `trainwise ablate`: the runs it trains (shared where the recipe is the same), the
paired differences and their bootstrap interval recomputed by hand, the verdicts, tips that do
not apply, and the CLI contract."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw
from train.fitkit import blob_setup, fast, run_json
from train.test_fit_cli import SETUP_FILE
from trainwise.cli import main
from trainwise.errors import SetupError
from trainwise.train.ablate import (
    HELPS,
    HURTS,
    ONE_SEED,
    TIPS,
    UNCLEAR,
    bootstrap_interval,
    verdict,
)


def test_bootstrap_interval_is_the_percentiles_of_resampled_means():
    diffs = np.array([0.02, 0.05, -0.01])
    lo, hi = bootstrap_interval(diffs, seed=3)
    rng = np.random.default_rng(3)
    means = [diffs[rng.integers(0, 3, size=3)].mean() for _ in range(10_000)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(means, [5, 95])), abs=2e-3)
    assert diffs.min() <= lo < diffs.mean() < hi <= diffs.max()
    assert bootstrap_interval(np.array([0.3, 0.3, 0.3])) == pytest.approx((0.3, 0.3))


@pytest.mark.parametrize(
    ("interval", "higher_is_better", "expected"),
    [
        ((0.01, 0.04), True, HELPS),  # accuracy up on every resample
        ((-0.04, -0.01), True, HURTS),
        ((-0.01, 0.03), True, UNCLEAR),
        ((-0.2, -0.05), False, HELPS),  # a loss down
        ((0.05, 0.2), False, HURTS),
    ],
)
def test_the_verdict_reads_the_interval_in_the_metrics_direction(
    interval, higher_is_better, expected
):
    assert verdict(interval, higher_is_better, n_seeds=3) == expected
    assert verdict(interval, higher_is_better, n_seeds=1) == ONE_SEED


def test_each_tip_is_switched_off_against_the_full_recipe_with_paired_seeds(tmp_path):
    recipe = fast()  # every tip on, a fixed LR (no range test)
    seen = []
    result = tw.ablate(
        blob_setup(), ["output-bias", "weight-decay"], epochs=1, recipe=recipe, seeds=2,
        runs_dir=tmp_path, on_run=lambda *run: seen.append(run),
    )  # fmt: skip
    # The full recipe runs once per seed and serves both tips: 2 + 2 x 2 runs, not 8.
    assert len(result.records) == 6 and len(seen) == 6
    assert [(t, on) for t, on, _, _ in seen].count(("all tips", True)) == 2
    bias = result.tips[0]
    assert bias.tip == "output-bias" and set(bias.per_seed) == {0, 1}
    # Each number is a fit run's own: seed 1 without the output-bias init, trained again here.
    again = tw.fit(blob_setup(), epochs=1, recipe=recipe.replace(output_bias=False), seed=1,
                   record=False, verbose=False)  # fmt: skip
    assert bias.per_seed[1][1] == pytest.approx(again.metrics["val_accuracy"])
    with_, without = np.array(list(bias.per_seed.values())).T
    assert bias.diff == pytest.approx(float((with_ - without).mean()))
    assert bias.with_ == pytest.approx(with_.mean()) and bias.without == pytest.approx(
        without.mean()
    )
    assert bias.verdict in (HELPS, HURTS, UNCLEAR)
    # The records: each run says what it was; the table is a record of its own.
    meta = run_json(result.records[-1])
    assert meta["config"]["ablate"] == {"tip": "weight-decay", "on": False, "seed": 1}
    assert meta["config"]["recipe"]["weight_decay"] == 0.0
    table = json.loads((result.record_path / "artifacts" / "ablation.json").read_text())
    assert table["metric"] == "val_accuracy" and [t["tip"] for t in table["tips"]] == [
        "output-bias", "weight-decay"]  # fmt: skip
    assert run_json(result.record_path)["kind"] == "ablate"
    # ... for its report as it was measured (tests/runs/test_html.py draws tables).
    tables = json.loads((result.record_path / "tables.json").read_text())
    assert tables["ablation"]["rows"] == json.loads(json.dumps(result.rows()))


def test_a_tip_the_recipe_lacks_is_switched_on_for_the_comparison():
    plain = tw.Recipe.plain()
    smoothing = TIPS["label-smoothing"]
    assert smoothing.turned(plain, True).label_smoothing == 0.1
    assert smoothing.turned(plain, False) == plain and not smoothing.is_on(plain)
    assert TIPS["one-cycle"].turned(plain, True).schedule == "one-cycle"
    kept = tw.Recipe(label_smoothing=0.2)  # the user's own value is the "on" one
    assert smoothing.turned(kept, True) == kept and smoothing.is_on(kept)


def _regression_setup() -> tw.Setup:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 4, generator=g)
    y = x.sum(1, keepdim=True)
    return tw.Setup(model=lambda: nn.Linear(4, 1), train=TensorDataset(x[:128], y[:128]),
                    val=TensorDataset(x[128:], y[128:]), loss=nn.MSELoss())  # fmt: skip


def test_a_tip_that_does_not_apply_is_skipped_with_the_reason_and_nothing_trained():
    result = tw.ablate(_regression_setup(), ["label-smoothing"], epochs=1, recipe=fast(),
                       seeds=2, record=False)  # fmt: skip
    (effect,) = result.tips
    assert "regression" in effect.skipped and effect.verdict == "" and result.records == []
    assert result.metric == "val_loss"  # no accuracy on a regression


def test_unknown_tips_and_metrics_are_refused_with_what_exists():
    with pytest.raises(SetupError, match="no tip 'mixup'.*label-smoothing"):
        tw.ablate(blob_setup(), ["mixup"], epochs=1)
    with pytest.raises(SetupError, match="metric='val_auc'; expected one of .*val_accuracy"):
        tw.ablate(blob_setup(), ["clipping"], epochs=1, metric="val_auc")


def ablate_cli(*args):
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["ablate", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output + result.stderr


def test_the_cli_writes_the_json_contract(tmp_path):
    setup_file = tmp_path / "my_setup.py"
    setup_file.write_text(SETUP_FILE)
    out = tmp_path / "ablate.json"
    code, text = ablate_cli(setup_file, "--tip", "clipping", "--epochs", "1", "--seeds", "2",
                            "--lr", "1e-2", "--json", out, "--runs-dir", tmp_path / "runs")  # fmt: skip
    assert code == 0, text
    data = json.loads(out.read_text())
    assert set(data) >= {"metric", "tips", "records"} and len(data["records"]) == 4
    (tip,) = data["tips"]
    assert set(tip) >= {"tip", "with", "without", "diff", "interval", "verdict"}
    assert tip["tip"] == "clipping" and len(tip["interval"]) == 2
    assert "clipping" in text and tip["verdict"] in text


def test_the_cli_lists_the_tips_and_refuses_unknown_ones(tmp_path):
    code, text = ablate_cli("--list")
    assert code == 0 and all(slug in text for slug in TIPS)
    setup_file = tmp_path / "my_setup.py"
    setup_file.write_text(SETUP_FILE)
    code, text = ablate_cli(setup_file, "--tip", "mixup", "--epochs", "1")
    assert code == 2 and "no tip 'mixup'" in text and "label-smoothing" in text
    code, text = ablate_cli(setup_file, "--tip", "clipping")
    assert code == 2 and "--epochs N or --steps N" in text
