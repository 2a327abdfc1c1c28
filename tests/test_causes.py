"""Root causes and their consequences (trainwise.causes): every declared relation attributes an
effect to its cause when the cause was seen first and the evidence holds, and never otherwise;
the outputs (JSON, terminal, HTML, the live watch line) show the cause first."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from trainwise.causes import RELATIONS, attribute, fold
from trainwise.findings import Finding
from trainwise.report.model import Report, StageResult
from trainwise.report.terminal import render_report

# Evidence that makes each evidence-tested relation hold (cause, effect) or not.
HOLDS = {
    "softmax-before-loss": ({"loss_floor": 1.46}, {"final_loss": 1.47}),
    "initial-loss-off": ({"loss": 2.6e7, "expected": 8.1e5}, {}),
    "dead-relu": ({"largest_update_ratio": 0.99}, {}),
}
FAILS = {  # cause: (its evidence, the effect's evidence, the effect)
    "softmax-before-loss": ({"loss_floor": 1.46}, {"final_loss": 2.3}, "cannot-overfit-batch"),
    "initial-loss-off": ({"loss": 3.0, "expected": 2.3}, {}, "lr-too-low"),  # not the scale
    "dead-relu": ({"largest_update_ratio": 0.01}, {}, "loss-oscillating"),  # small steps
}
PAIRS = [(r.cause, effect) for r in RELATIONS for effect in r.effects]


def _finding(rule: str, step: int | None, evidence=None, severity="warning") -> Finding:
    return Finding(rule, severity, f"{rule} fired", evidence=evidence or {}, step=step)


def _steps(cause: str, effect: str) -> tuple[int | None, int | None]:
    """Static/protocol pairs have no step; in-flight ones fire at steps."""
    return (10, 20) if _in_flight(cause) else (None, None)


def _in_flight(slug: str) -> bool:
    from trainwise.rules import CATALOGUE

    return CATALOGUE[slug].category == "in-flight"


def test_every_relation_names_registered_rules():
    from trainwise.rules import CATALOGUE

    for cause, effect in PAIRS:
        assert cause in CATALOGUE and effect in CATALOGUE, (cause, effect)


@pytest.mark.parametrize(("cause", "effect"), PAIRS)
def test_an_effect_after_its_cause_is_its_consequence(cause, effect):
    c_step, e_step = _steps(cause, effect)
    c_ev, e_ev = HOLDS.get(cause, ({}, {}))
    found = attribute([_finding(effect, e_step, e_ev), _finding(cause, c_step, c_ev)])
    assert found[0].caused_by == cause
    assert found[1].caused_by is None or found[1].caused_by != effect
    assert effect in found[1].explains


@pytest.mark.parametrize(("cause", "effect"), PAIRS)
def test_an_effect_alone_or_before_its_cause_is_a_root(cause, effect):
    assert attribute([_finding(effect, 20)])[0].caused_by is None
    if _in_flight(cause) and _in_flight(effect):
        # the cause fired only after the effect: it cannot have produced it
        found = attribute([_finding(effect, 5), _finding(cause, 30)])
        assert found[0].caused_by is None


@pytest.mark.parametrize("cause", sorted(FAILS))
def test_the_evidence_must_hold(cause):
    c_ev, e_ev, effect = FAILS[cause]
    c_step, e_step = _steps(cause, effect)
    found = attribute([_finding(cause, c_step, c_ev), _finding(effect, e_step, e_ev, "error")])
    assert found[1].caused_by is None


def test_a_chain_folds_under_its_first_cause():
    found = [
        _finding("loss-oscillating", 40),
        _finding("update-ratio-high", 20),
        _finding("missing-zero-grad", 10, severity="error"),
    ]
    (group,) = fold(found)
    assert group.root.rule == "missing-zero-grad"
    assert {c.rule for c in group.consequences} == {"update-ratio-high", "loss-oscillating"}
    assert "zero_grad" in group.why


def test_in_one_step_the_cause_wins_over_its_effects_whatever_the_order_they_fired_in():
    # one judging round at step 10: the gradient family reports before the loop family
    found = attribute(
        [_finding("exploding-gradients", 10), _finding("missing-zero-grad", 10, severity="error")]
    )
    assert found[0].caused_by == "missing-zero-grad" and found[1].caused_by is None


def test_json_carries_the_cause_and_the_verdict_is_unchanged():
    stage = StageResult(
        "static",
        "Static checks",
        "fail",
        0.1,
        findings=[
            _finding("cannot-overfit-batch", None, {"final_loss": 1.47}, "error"),
            _finding("softmax-before-loss", None, {"loss_floor": 1.46}, "error"),
        ],
    )
    report = Report("setup.py", [stage])
    data = report.to_dict()
    assert [f["rule"] for f in data["findings"]] == ["softmax-before-loss", "cannot-overfit-batch"]
    assert data["findings"][1]["caused_by"] == "softmax-before-loss"
    assert data["findings"][0]["explains"] == ["cannot-overfit-batch"]
    assert report.count("error") == 2 and report.exit_code == 1  # nothing hidden from the verdict
    out = io.StringIO()
    render_report(report, Console(file=out, width=120, color_system=None))
    text = out.getvalue()
    assert text.index("softmax-before-loss") < text.index("+ 1 consequence")
    assert text.index("+ 1 consequence") < text.index("cannot-overfit-batch")
    assert "fix:" in text and text.count("fix:") == 1  # only the cause's advice


# -- end to end: the cascades a new user met (issue 13) -----------------------------------------
def test_a_loop_without_zero_grad_reports_one_root_and_folds_the_rest(capsys, caplog):
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from torch import nn

    import trainwise as tw

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with tw.watch(model, optimizer, record=False, verbose=True) as watch:
        for step in range(200):
            i = step * 32 % (len(x) - 32)
            loss = F.cross_entropy(model(x[i : i + 32]), y[i : i + 32])
            loss.backward()  # no optimizer.zero_grad(): every step adds to all the past grads
            optimizer.step()
            watch.log(loss=loss)
    found = watch.findings
    assert len(found) > 1  # the cascade happens ...
    roots = [f for f in found if f.caused_by is None]
    assert [f.rule for f in roots] == ["missing-zero-grad"]  # ... and is folded under its cause
    assert all(f.caused_by for f in found if f.rule != "missing-zero-grad")
    printed = caplog.text + capsys.readouterr().err  # live lines go through logging here
    assert "fix: Call optimizer.zero_grad()" in printed  # the live line says what to do
    assert "a consequence of `missing-zero-grad`" in printed
    assert "consequence(s), fix this first" in printed  # the summary folds them


@pytest.mark.parametrize(
    ("case", "root", "folded"),
    [
        ("static/softmax_then_cross_entropy", "softmax-before-loss",
         {"cannot-overfit-batch", "cannot-overfit-few"}),
        ("protocol/unscaled_price_targets", "initial-loss-off",
         {"cannot-overfit-batch", "lr-too-low"}),
    ],
)  # fmt: skip
def test_check_folds_failed_experiments_under_the_setup_mistake(case, root, folded):
    import sys
    from pathlib import Path

    import trainwise as tw
    from helpers import speed_unjudged
    from trainwise.loader import load_setup

    faults = Path(__file__).parents[1] / "benchmarks" / "faults"
    sys.path.insert(0, str(faults))
    setup = load_setup(str(faults / f"{case}.py"))
    report = tw.check(setup, quick=True, record=False, stages=speed_unjudged())
    by_rule = {f.rule: f for f in report.findings}
    assert by_rule[root].caused_by is None
    for slug in folded:
        assert by_rule[slug].caused_by == root, (slug, by_rule[slug].caused_by)
    assert report.findings[0].rule == root  # the cause is shown first


# -- advice that follows the evidence ------------------------------------------------------------
def _spike_at_the_end(loss):
    from test_inflight_trends import judge

    return judge(
        "exploding-gradients", 200, loss,
        extra=lambda t: [("grad_norm", 1.87 if t == 199 else 0.133)],
    )  # fmt: skip


def test_a_late_gradient_spike_in_a_converged_run_is_only_noted():
    import math

    finding = _spike_at_the_end(lambda t: 2.3 * math.exp(-t / 20) + 0.003)
    assert finding.severity == "info" and "converged" in finding.message


def test_a_gradient_spike_while_the_loss_is_still_high_warns():
    assert _spike_at_the_end(lambda t: 1.0).severity == "warning"


def test_the_html_report_folds_consequences_under_their_cause(tmp_path):
    from trainwise.report.html import write_html_report
    from trainwise.runs import start

    with start("watch", root=tmp_path, tensorboard=False) as run:
        run.log_findings(
            [
                Finding("update-ratio-high", "warning", "each step changes 0.weight by 0.2",
                        fix="Lower the LR", step=20),
                Finding("missing-zero-grad", "error", "gradients were not reset",
                        fix="Call optimizer.zero_grad()", step=10),
            ]
        )  # fmt: skip
    html = write_html_report(run.path).read_text()
    root = html.index("missing-zero-grad")
    folded = html.index("+ 1 consequence(s)")
    assert root < folded < html.index("update-ratio-high", folded)
    assert "Lower the LR" not in html  # the consequence's own advice would contradict the cause


def test_before_training_every_cause_is_declared_before_the_causes_it_explains():
    # static and protocol findings have no step: the declaration order alone decides which
    # is seen first, so a cause declared after one of its effects could never explain it
    from trainwise.causes import _RANK

    for cause, effect in PAIRS:
        if not (_in_flight(cause) or _in_flight(effect)) and effect in _RANK:
            assert _RANK[cause] < _RANK[effect], (cause, effect)
