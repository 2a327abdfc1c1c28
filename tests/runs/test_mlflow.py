"""The MLflow copy of a record, in a real local MLflow store (sqlite), read back with
MLflow's own client. Skipped only where the mlflow extra is not installed."""

from __future__ import annotations

import pytest

from trainwise.runs import RunRecord, start

mlflow = pytest.importorskip("mlflow", reason='needs the extra: pip install "trainwise[mlflow]"')


@pytest.mark.filterwarnings("ignore:.*noload.*")  # inside MLflow's own SQLAlchemy store
def test_params_metrics_tags_and_artifacts_reach_mlflow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow puts a sqlite store's artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with start("watch", name="to-mlflow", config={"lr": 0.01, "model": {"width": 64}},
               seed=3, root=tmp_path / "runs", tensorboard=False, mlflow=uri) as run:  # fmt: skip
        for step in range(4):
            run.log_metrics(step, {"train/loss": 1.0 / (step + 1), "val/acc": 0.2 * step})
        run.log_layers(0, "grad_norm", {"fc.weight": 0.5})
        run.attach("notes.txt", "tried a wider model")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("trainwise")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED"
    assert found.data.params == {"lr": "0.01", "model.width": "64", "seed": "3"}
    assert found.data.tags["trainwise.kind"] == "watch"
    assert found.data.tags["mlflow.runName"] == run.id
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(4)]
    assert client.get_metric_history(found.info.run_id, "grad_norm/fc.weight")[0].value == 0.5
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"run.json", "metrics.jsonl", "report.html", "artifacts"} <= artifacts
    assert RunRecord.load(run.path).status == "finished"
