"""The LR range test: the sweep, the suggestion, the plot, and the user's state left untouched."""

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

import trainwise as tw
from builders import blobs, loader, mlp, setup
from trainwise.lr_find import smooth_log_axis, suggest


def _bn_model():
    return nn.Sequential(
        nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4)
    )


def _snapshot(model, opt):
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "ptrs": {k: v.data_ptr() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "flags": [p.requires_grad for p in model.parameters()],
        "opt": _clone(opt.state_dict()),
    }


def _clone(value):
    if torch.is_tensor(value):
        return value.clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    ],
    ids=["adamw", "sgd-momentum"],
)
def test_nothing_the_user_owns_changes_bit_for_bit(make_opt):
    x, y = blobs(n=256)
    model = _bn_model()
    opt = make_opt(model.parameters())
    loss = nn.CrossEntropyLoss()
    for _ in range(3):  # the optimizer has momentum / moments, BN has running statistics
        opt.zero_grad()
        loss(model(x[:32]), y[:32]).backward()
        opt.step()
    model[4].eval()  # a mixed train/eval state
    model[0].bias.requires_grad_(False)
    before = _snapshot(model, opt)

    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)

    result = tw.lr_find(model, loader(x, y, batch_size=32, shuffle=True), loss, opt, num_iter=60)

    after = _snapshot(model, opt)
    assert len(result.lrs) > 20
    for part in ("tensors", "ptrs", "grads", "modes", "flags", "opt"):
        assert _same(before[part], after[part]), f"{part} changed"
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_the_sweep_is_exponential_and_stops_on_divergence():
    x, _ = blobs()
    y = x[:, :1] * 2 - x[:, 1:2]  # a regression: SGD on MSE blows up once the LR is too big
    model = mlp(classes=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    r = tw.lr_find(model, loader(x, y, batch_size=32), nn.MSELoss(), opt, start_lr=1e-5, end_lr=1e3)
    ratios = r.lrs[1:] / r.lrs[:-1]
    assert np.allclose(ratios, ratios[0])  # one constant factor per step
    assert math.isclose(r.lrs[0], 1e-5)
    assert r.stopped_early and len(r.lrs) < 100  # SGD at LR 1e3 diverges long before the end
    assert r.lrs[-1] < 1e3
    assert r.configured_lr == 0.1
    s = r.suggestion
    assert s.lr is not None and s.low < s.lr < s.high
    assert s.lr < s.lr_div  # below the onset of divergence
    assert s.interval is not None and s.interval[0] <= s.interval[1]


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-3)
    return x[:1400], torch.tensor(y[:1400]), x[1400:], torch.tensor(y[1400:])


def test_the_best_lr_of_a_grid_is_within_a_decade_of_the_suggestion():
    x, y, xv, yv = _digits()
    s = setup(lambda: mlp(64, 10, 64), x, y)
    lr = tw.lr_find(s, seed=0).suggested_lr

    def val_loss(rate: float) -> float:
        torch.manual_seed(0)
        model = mlp(64, 10, 64)
        opt = torch.optim.AdamW(model.parameters(), lr=rate)
        for _ in range(2):
            for xb, yb in loader(x, y, batch_size=32, shuffle=True):
                opt.zero_grad()
                nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(xv), yv))

    factors = (1 / 100, 1 / 30, 1 / 10, 1 / 3, 1, 3, 30)
    losses = {f: val_loss(lr * f) for f in factors}
    best = min(losses, key=losses.get)
    # Measured here: the best is at 1/10 (a 2-epoch budget favours lower LRs than the onset
    # margin was chosen for); the benchmark reports the same bias on several tasks.
    assert 1 / 10 <= best <= 10, losses
    assert losses[1] < losses[1 / 100] and losses[1] < losses[30], losses


def test_same_answer_on_another_seed_and_sweep_length():
    x, y, _, _ = _digits()
    s = setup(lambda: mlp(64, 10, 64), x, y)
    runs = [
        tw.lr_find(s, seed=seed, num_iter=n).suggested_lr
        for seed, n in ((0, 100), (1, 100), (0, 300))
    ]
    spread = np.ptp(np.log10(runs))
    assert spread < 0.5, runs


def test_param_groups_keep_their_ratio_and_their_lrs():
    x, y = blobs()
    model = mlp()
    opt = torch.optim.AdamW(
        [{"params": model[0].parameters(), "lr": 1e-4}, {"params": model[2].parameters()}],
        lr=1e-3,
    )
    r = tw.lr_find(model, loader(x, y, batch_size=32), nn.CrossEntropyLoss(), opt, num_iter=30)
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-3]
    assert r.configured_lr == 1e-4  # quoted for group 0


def test_smoothing_ignores_a_single_bad_batch():
    lrs = np.logspace(-6, 0, 120)
    clean = 2.0 - np.tanh(np.log10(lrs) + 3)  # falls around 1e-3
    spiked = clean.copy()
    spiked[60] = 50.0
    a, b = smooth_log_axis(lrs, clean), smooth_log_axis(lrs, spiked)
    assert np.max(np.abs(a - b)) < 0.05


def test_a_flat_curve_gets_no_suggestion_and_says_why():
    lrs = np.logspace(-6, 0, 80)
    s = suggest(lrs, np.full(80, 2.3) + 1e-4 * np.random.default_rng(0).standard_normal(80))
    assert s.lr is None and "neither fell nor rose" in s.reason


def test_plot_and_summary(tmp_path):
    x, y = blobs()
    r = tw.lr_find(setup(mlp, x, y), num_iter=60)
    for name in ("lr.png", "lr.svg"):
        r.plot(tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000
    assert "<svg" in (tmp_path / "lr.svg").read_text()[:500]
    text = r.summary()
    assert "suggested LR" in text and "good range" in text and "configured" in text
    assert r.to_dict()["suggested_lr"] == r.suggested_lr


def test_bad_arguments_get_clear_errors():
    x, y = blobs()
    with pytest.raises(tw.SetupError, match="missing loader, loss, optimizer"):
        tw.lr_find(mlp())
    with pytest.raises(tw.SetupError, match="expects a trainwise.Setup"):
        tw.lr_find("model.pt")
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(tw.SetupError, match="start_lr < end_lr"):
        tw.lr_find(model, loader(x, y), nn.CrossEntropyLoss(), opt, start_lr=1, end_lr=0.1)
    with pytest.raises(tw.SetupError, match="pair"):
        tw.lr_find(model, [x[:8]] * 3, nn.CrossEntropyLoss(), opt)


def _digits_cnn_setup(**kw):
    """The issue's setup: a digits CNN with GroupNorm under AdamW (a noisy, short sweep)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16

    def cnn():
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.GroupNorm(4, 32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
        )  # fmt: skip

    return setup(cnn, x[:1400], torch.tensor(y[:1400]),
                 optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3), **kw)  # fmt: skip


@pytest.mark.slow  # determinism also checked by test_same_answer_on_another_seed_and_sweep_length
def test_two_calls_on_one_setup_give_the_same_answer():
    # Before: the Setup's model was built from the global RNG, so four calls suggested 9.2e-2,
    # 1.7e-2, 6.4e-2 and 5.3e-2 on this kind of setup; now `seed` (0) fixes init and data order.
    s = _digits_cnn_setup()
    a, b = (tw.lr_find(s, record=False) for _ in range(2))
    assert a.suggested_lr == b.suggested_lr and a.suggestion.interval == b.suggestion.interval
    assert np.array_equal(a.losses, b.losses)
    other = tw.lr_find(s, seed=1, record=False)
    assert not np.array_equal(a.losses, other.losses)  # `seed=` varies it


@pytest.mark.slow  # 12 range tests (~20 s): the band property, run with -m slow
def test_the_uncertainty_band_holds_the_suggestion():
    # Before: the bootstrap's 10-90% left the suggestion outside on seed 1 of this CNN (2.3e-1
    # with band ..1.6e-1), and the summary printed the band at fewer digits than the suggestion.
    setups = [(_digits_cnn_setup(), 60), (setup(mlp, *blobs()), 60), (setup(mlp, *blobs()), 100)]
    for s, n in setups:
        for seed in range(4):
            sg = tw.lr_find(s, seed=seed, num_iter=n, record=False).suggestion
            assert sg.lr is not None and sg.interval is not None
            assert sg.interval[0] <= sg.lr <= sg.interval[1], (seed, n, sg)
            text = f"{sg.interval[0]:.2e} .. {sg.interval[1]:.2e}"
            assert float(text.split()[0]) <= float(f"{sg.lr:.2e}") <= float(text.split()[-1])


def test_seeds_report_the_spread_and_call_out_a_wide_one():
    s = _digits_cnn_setup()
    r = tw.lr_find(s, seeds=3, record=False)
    per_seed = r.seed_suggestions
    assert list(per_seed) == [0, 1, 2] and all(v for v in per_seed.values())
    assert r.suggestion.lr == sorted(per_seed.values())[1]  # the median seed's answer
    assert r.spread == pytest.approx(np.ptp(np.log10(list(per_seed.values()))))
    text = r.summary()
    assert "3 seeds suggested" in text and f"{r.spread:.2f} decade" in text
    # Measured: 8.2e-3 .. 5.3e-2 on seeds 0..2 of this CNN, 0.8 decade: called out
    assert r.spread > 0.5 and "too noisy to trust one seed" in text
    assert r.to_dict()["spread_decades"] == r.spread
    with pytest.raises(tw.SetupError, match="seeds=0"):
        tw.lr_find(s, seeds=0, record=False)


def test_a_setup_check_refuses_is_refused_with_the_same_finding(tmp_path):
    x, y = blobs()
    s = setup(mlp, x, y + 1)  # labels 1..4 for a 4-way head: labels-out-of-range
    r = tw.lr_find(s, runs_dir=tmp_path)
    assert r.suggested_lr is None and len(r.lrs) == 0
    assert [f.rule for f in r.findings] == ["labels-out-of-range"]
    assert r.findings[0].severity == "error"
    report = tw.check(s, record=False, quick=True)
    (stage,) = [st for st in report.stages if st.name == "overfit-batch"]
    assert stage.summary.removeprefix("skipped: ") in r.suggestion.reason  # check's own words
    assert "labels span 1..4" in r.summary()
    from trainwise.runs import list_runs

    (record,) = list_runs(tmp_path)
    assert [f["rule"] for f in record.findings] == ["labels-out-of-range"]


def test_lr_find_on_a_sample_of_the_setups_data_says_so(tmp_path):
    import json

    x, y = blobs(n=400)
    result = tw.lr_find(setup(mlp, x, y), sample=0.25, num_iter=30, runs_dir=tmp_path)
    run = json.loads((result.record_path / "run.json").read_text())
    assert "train 100 of 400" in run["config"]["lr_find"]["data"]
    with pytest.raises(tw.SetupError, match="give a Setup"):
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        tw.lr_find(model, loader(x, y), nn.CrossEntropyLoss(), opt, sample=0.5)
