"""`trainwise check --quick` end to end: the protocol's stages in the table, the JSON and the
verdict, through the real command."""

import json
import subprocess
import sys
from pathlib import Path

SETUPS = Path(__file__).parents[1] / "fixtures" / "setups"
STAGES = ["static", "init-loss", "speed", "lr-range", "overfit-batch", "overfit-few", "input-dependence",
          "batch-independence", "baselines", "train-eval"]  # fmt: skip


def test_quick_check_runs_every_stage_and_reports_its_numbers(tmp_path):
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "trainwise", "check", str(SETUPS / "healthy_mlp.py"), "--quick",
         "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["verdict"] == "ready to train"
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages)[: len(STAGES)] == STAGES
    assert stages["overfit-batch"]["status"] == "pass"
    assert (
        stages["overfit-batch"]["metrics"]["final_loss"]
        <= stages["overfit-batch"]["metrics"]["target"]
    )
    baselines = stages["baselines"]["metrics"]
    assert baselines["curve"][-1]["val_accuracy"] > baselines["trivial"]["val_accuracy"]
    for name in STAGES:
        assert name in result.stdout  # the summary table
    assert "Verdict: ready to train" in " ".join(result.stdout.split())
