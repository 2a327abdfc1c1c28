"""TensorBoard events, read back with tensorboard's own reader."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from trainwise.runs import RunRecord


@pytest.fixture(scope="module")
def events(sample_run):
    acc = EventAccumulator(
        str(sample_run), size_guidance={"histograms": 0, "scalars": 0, "tensors": 0}
    )
    acc.Reload()
    return acc


def test_scalars_match_the_record(sample_run, events):
    record = RunRecord.load(sample_run)
    logged = [(r["step"], r["train/loss"]) for r in record.metrics if "train/loss" in r]
    read = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert read == [(s, pytest.approx(v, rel=1e-6)) for s, v in logged]
    tags = set(events.Tags()["scalars"])
    assert {"lr", "val/loss", "val/acc", "grad_norm/1.weight", "update_ratio/7.weight"} <= tags
    assert "lr_find/loss" in tags  # the LR range test curve, one point per step


def test_histograms_at_the_sampled_steps(sample_run, events):
    record = RunRecord.load(sample_run)
    names = {h["name"] for h in record.histograms}
    assert names and names <= set(events.Tags()["histograms"])
    name = sorted(names)[0]
    logged = [h for h in record.histograms if h["name"] == name]
    read = events.Histograms(name)
    assert [h.step for h in read] == [h["step"] for h in logged] == [0, 20, 40, 60, 80]
    assert read[0].histogram_value.num == logged[0]["num"]
    assert list(read[0].histogram_value.bucket) == logged[0]["counts"]


def test_hparams_with_final_metrics_in_the_same_run(sample_run, events):
    # One event file: hparams live beside the scalars, not in a separate run folder.
    assert len(list(sample_run.glob("events.out.tfevents.*"))) == 1
    assert not [p for p in sample_run.iterdir() if p.is_dir() and p.name != "artifacts"]
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["batch_size"].number_value == 64
    assert hparams["optimizer.class"].string_value == "AdamW"
    assert hparams["kind"].string_value == "watch"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"final/train/loss", "best/val/acc", "findings/warning"} <= metric_tags
    record = RunRecord.load(sample_run)
    best = events.Scalars("best/val/acc")[-1].value
    assert best == pytest.approx(record.summary["best"]["val/acc"]["value"], rel=1e-6)


def test_findings_as_text(sample_run, events):
    (text,) = events.Tensors("findings/text_summary")
    table = text.tensor_proto.string_val[0].decode()
    assert "inputs-not-normalized" in table and table.startswith("| severity |")
