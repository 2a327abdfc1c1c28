"""The declared signals: every key the watch writes is declared, rules read only declared
signals through a read-only view, and the record draws what the declarations say."""

import ast
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw
from trainwise import signals
from trainwise.rules.inflight import Detector
from trainwise.rules.registry import in_flight_rules, rules_of
from trainwise.signals import ALL, Draw, declared

SRC = Path(tw.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (inside functions and TYPE_CHECKING too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_signals_is_a_leaf_of_the_standard_library():
    imported = {name.split(".")[0] for name in _imports(SRC / "signals.py")}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_inflight_rules_never_import_the_watch():
    for path in (SRC / "rules" / "inflight").glob("*.py"):
        imported = _imports(path)
        assert not {"trainwise.watch", "trainwise.judging"} & imported, path.name


def test_every_inflight_rule_is_a_detector_reading_declared_signals():
    assert len(rules_of("in-flight")) == 23
    rules = in_flight_rules()  # + the static/protocol rules also judged in flight
    assert {r.slug for r in rules} - {r.slug for r in rules_of("in-flight")} == {
        "frozen-parameters",
        "train-eval-mismatch",
    }
    for rule in rules:
        detector = rule.check if rule.category == "in-flight" else rule.in_flight
        assert isinstance(detector, type) and issubclass(detector, Detector), rule.slug
        assert detector.reads, f"{rule.slug} declares no signal it reads"
        assert set(detector.reads) <= set(ALL), rule.slug


def _train(watch, model, optimizer, steps=25):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    for i in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[i % 4 * 16 :][:16]), y[i % 4 * 16 :][:16])
        loss.backward()
        optimizer.step()
        watch.log(loss=loss, acc=0.5)
    watch.log_val(loss=1.0)


def test_every_key_the_watch_writes_is_declared(tmp_path):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with tw.watch(model, optimizer, preset="full", log_dir=tmp_path, verbose=False) as watch:
        _train(watch, model, optimizer)
    keys = list(watch.signals.to_dict())
    assert {"train/loss", "train/acc", "grad_norm", "update_ratio/0.weight"} <= set(keys)
    assert [k for k in keys if declared(k, ALL) is None] == []


def test_the_record_draws_what_the_declarations_say(tmp_path):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tw.watch(model, optimizer, every=5, log_dir=tmp_path, verbose=False) as watch:
        _train(watch, model, optimizer)
    path = watch.record_path
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    written = {k for row in rows for k in row} - {"step", "t"}
    # every column is a declared curve; the rules' bookkeeping (stepped, ...) is not written
    assert all(declared(k).draw is Draw.CURVE for k in written), written
    assert "stepped" not in written and "backward_passes" not in written
    assert {"train/loss", "lr", "grad_norm", "val/loss"} <= written
    layers = [json.loads(line) for line in (path / "layers.jsonl").read_text().splitlines()]
    assert {row["signal"] for row in layers} == {"grad_norm", "update_ratio"}
    assert {s.family for s in ALL if s.draw is Draw.HEATMAP} == {"grad_norm", "update_ratio"}


@pytest.mark.parametrize(
    ("key", "panel", "draw"),
    [
        ("train/loss", "loss", Draw.CURVE),
        ("val/loss", "loss", Draw.CURVE),
        ("valid/acc", "acc", Draw.CURVE),
        ("lr/group1", "lr/group1", Draw.CURVE),
        ("my_metric", "my_metric", Draw.CURVE),
    ],
)
def test_the_report_panel_of_a_metric_comes_from_its_declaration(key, panel, draw):
    signal = declared(key, signals.METRICS)
    assert signal.draw is draw and signal.panel(key) == panel
