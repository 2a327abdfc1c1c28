"""trainwise.watch: the probes against plain PyTorch references, and the reliability contract."""

import gc
import importlib
import math
import types
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw
from helpers import assert_fires, assert_silent
from trainwise.errors import SetupError

watch_module = importlib.import_module("trainwise.watch")  # the module, not tw.watch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mlp():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def train(model, optimizer, steps, watch=None, clip=None, batch=16):
    x, y = data()
    for step in range(steps):
        i = slice((step * batch) % len(x), (step * batch) % len(x) + batch)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[i]), y[i])
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if watch is not None:
            watch.log(loss=loss)
    return loss


# -- probes against references ----------------------------------------------------------------
def test_grad_norms_are_measured_before_clipping_and_match_pytorch():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    watch = tw.watch(model, optimizer, verbose=False)
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    expected = {n: p.grad.norm().item() for n, p in model.named_parameters()}
    total = math.sqrt(sum(v**2 for v in expected.values()))
    clipped_to = total / 10
    torch.nn.utils.clip_grad_norm_(model.parameters(), clipped_to)
    optimizer.step()
    watch.log(loss=1.0)
    assert watch.signals.get("grad_norm").values[0] == pytest.approx(total, rel=1e-5)
    assert watch.signals.get("grad_norm_applied").values[0] == pytest.approx(clipped_to, rel=1e-4)
    for name, norm in expected.items():
        assert watch.signals.get(f"grad_norm/{name}").values[0] == pytest.approx(norm, rel=1e-5)
    watch.close()


def test_update_ratio_weight_norm_lr_and_timing_match_references():
    model = mlp()
    optimizer = torch.optim.Adam(
        [{"params": model[0].parameters(), "lr": 1e-2}, {"params": model[2].parameters()}], lr=1e-3
    )
    watch = tw.watch(model, optimizer, preset="full", verbose=False)
    x, y = data()
    before = model[0].weight.detach().clone()
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    watch.log(loss=loss)
    ratio = ((model[0].weight - before).norm() / model[0].weight.norm()).item()
    assert watch.signals.get("update_ratio/0.weight").values[0] == pytest.approx(ratio, rel=1e-4)
    assert watch.signals.get("weight_norm/0.weight").values[0] == pytest.approx(
        model[0].weight.norm().item(), rel=1e-5
    )
    assert list(watch.signals.get("lr/group0").values) == [1e-2]
    assert list(watch.signals.get("lr/group1").values) == [1e-3]
    assert watch.signals.get("train/loss").values[0] == pytest.approx(loss.item())
    train(model, optimizer, 3, watch)
    assert len(watch.signals.get("compute_s")) >= 3  # timed from the second step on
    assert all(v >= 0 for v in watch.signals.get("data_wait_s").values)
    watch.close()


def test_activation_stats_match_a_plain_computation():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    x, y = data()
    watch = tw.watch(model, optimizer, preset="full", verbose=False)
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    watch.log()
    h = F.relu(model[0](x)).detach()[:8]  # (8, 16): the probe samples the first 8 rows
    assert watch.signals.get("act_mean/1").values[0] == pytest.approx(h.mean().item(), rel=1e-5)
    assert watch.signals.get("act_std/1").values[0] == pytest.approx(h.std().item(), rel=1e-5)
    assert watch.signals.get("act_zero_frac/1").values[0] == pytest.approx(
        (h == 0).float().mean().item()
    )
    dead = (h.amax(0) <= 0).float().mean().item()
    assert watch.signals.get("act_dead_frac/1").values[0] == pytest.approx(dead)
    assert math.isnan(watch.signals.get("act_sat_frac/1").values[0])  # not a sigmoid/tanh
    assert math.isnan(watch.signals.get("act_dead_frac/0").values[0])  # not a ReLU
    watch.close()


def test_one_device_read_out_per_step(monkeypatch):
    reads = []
    original = watch_module.Pending.read

    def counting(self):
        reads.append(1)
        return original(self)

    monkeypatch.setattr(watch_module.Pending, "read", counting)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tw.watch(model, optimizer, preset="full", verbose=False) as watch:
        train(model, optimizer, 7, watch)
        assert len(reads) == 7
    assert len(reads) == 7  # close() had nothing left to read


def test_steps_are_closed_without_watch_log():
    # A loop that never calls watch.log still gets its steps recorded (at the next forward).
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    watch = tw.watch(model, optimizer, verbose=False)
    train(model, optimizer, 5)
    watch.close()
    assert len(watch.signals.get("grad_norm")) == 5
    assert watch.step == 5


# -- watching never changes training -----------------------------------------------------------
def test_watching_leaves_training_bit_identical():
    def run(watched):
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3)
        )
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        watch = tw.watch(model, optimizer, preset="full", verbose=False) if watched else None
        train(model, optimizer, 25, watch, clip=1.0)
        if watch:
            watch.close()
        return [t.detach().clone() for t in model.state_dict().values()]

    for a, b in zip(run(False), run(True), strict=True):
        assert torch.equal(a, b)


# -- loops of every shape ----------------------------------------------------------------------
@pytest.mark.silent("missing-zero-grad")
def test_gradient_accumulation_counts_backward_passes_and_is_not_missing_zero_grad():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    with tw.watch(model, optimizer, verbose=False) as watch:
        for _ in range(12):
            optimizer.zero_grad()
            for k in range(4):
                F.cross_entropy(
                    model(x[k * 16 : (k + 1) * 16]), y[k * 16 : (k + 1) * 16]
                ).backward()
            optimizer.step()
            watch.log()
    assert set(watch.signals.get("backward_passes").values) == {4.0}
    assert set(watch.signals.get("grads_kept").values) == {0.0}
    assert_silent(watch.findings, "missing-zero-grad")


@pytest.mark.fires("missing-zero-grad")
def test_missing_zero_grad_with_accumulation_is_still_caught():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = data()
    with tw.watch(model, optimizer, verbose=False) as watch:
        for _ in range(8):
            for k in range(2):  # accumulates 2 micro-batches but never resets
                F.cross_entropy(
                    model(x[k * 16 : (k + 1) * 16]), y[k * 16 : (k + 1) * 16]
                ).backward()
            optimizer.step()
            watch.log()
    finding = assert_fires(watch.findings, "missing-zero-grad")
    assert finding.evidence["backward_per_step"] == 2


@pytest.mark.silent("nonfinite-gradient")
def test_gradscaler_skipped_steps_are_recorded_not_reported():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # overflows until it backs off
    x, y = data()
    with tw.watch(model, optimizer, scaler=scaler, verbose=False) as watch:
        for _ in range(10):
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            loss = F.cross_entropy(out.float(), y, reduction="sum")  # x scale: inf at first
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            watch.log(loss=loss)
    skipped = len(watch.signals.get("skipped_nonfinite"))
    assert 1 <= skipped < 10 and watch.step == 10 - skipped
    assert_silent(watch.findings, "nonfinite-gradient")
    # after the skips, the recorded norms are unscaled: close to a plain fp32 computation
    finite = [v for v in watch.signals.get("grad_norm").values if math.isfinite(v)]
    assert finite and max(finite) < 1e4


def test_compiled_module_is_watched():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    compiled = torch.compile(model, backend="eager")
    with tw.watch(compiled, optimizer, verbose=False) as watch:
        train(compiled, optimizer, 5, watch)
    assert len(watch.signals.get("grad_norm")) == 5
    assert "grad_norm/0.weight" in watch.signals  # the _orig_mod. prefix is dropped
    assert watch.findings == []


@pytest.mark.silent("weights-not-updating")
def test_shared_frozen_and_gradless_parameters():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.frozen = nn.Linear(8, 8)
            self.frozen.requires_grad_(False)
            self.spare = nn.Linear(8, 8)  # requires grad, never used in forward
            self.head = nn.Linear(8, 10, bias=False)
            self.head.weight = self.embed.weight  # shared

        def forward(self, idx):
            return self.head(torch.relu(self.frozen(self.embed(idx))))

    model = Tied()
    trainable = [p for p in model.parameters() if p.requires_grad and p is not model.spare.weight]
    trainable = [p for p in trainable if p is not model.spare.bias]
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    idx = torch.randint(0, 10, (32,))
    with tw.watch(model, optimizer, preset="full", verbose=False) as watch:
        for _ in range(30):
            optimizer.zero_grad()
            F.cross_entropy(model(idx), idx).backward()
            optimizer.step()
            watch.log()
    assert "grad_norm/embed.weight" in watch.signals
    assert_silent(watch.findings, "weights-not-updating")
    assert all(f.severity == "info" for f in watch.findings), watch.findings


@pytest.mark.fires("weights-not-updating")
def test_zero_learning_rate_means_nothing_updates():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with tw.watch(model, optimizer, every=2, verbose=False) as watch:
        train(model, optimizer, 12, watch)
    finding = assert_fires(watch.findings, "weights-not-updating", where="(all parameters)")
    assert finding.evidence["lr"] == [0.0]


@pytest.mark.silent("eval-mode-during-training")
def test_frozen_batchnorm_for_finetuning_is_not_eval_mode_during_training():
    model = nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3)
    )
    model[1].eval()  # deliberate BN freeze; dropout still trains
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with tw.watch(model, optimizer, verbose=False) as watch:
        for _ in range(10):
            x, y = data()
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            model[1].eval()
            watch.log()
    assert_silent(watch.findings, "eval-mode-during-training")


@pytest.mark.silent("train-mode-during-eval")
def test_validation_in_eval_mode_is_silent():
    model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    with tw.watch(model, optimizer, verbose=False) as watch:
        train(model, optimizer, 5, watch)
        model.eval()
        with torch.no_grad():
            watch.log_val(loss=F.cross_entropy(model(x), y))
        model.train()
    assert_silent(watch.findings, "train-mode-during-eval")


@pytest.mark.silent("lr-schedule-suspicious")
def test_cosine_schedule_reaching_zero_at_the_end_is_fine():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
    x, y = data()
    with tw.watch(model, optimizer, total_steps=100, verbose=False) as watch:
        for _ in range(100):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            scheduler.step()
            watch.log()
    assert_silent(watch.findings, "lr-schedule-suspicious")


@pytest.mark.silent("loss-weights-unbalanced")
def test_balanced_loss_terms_are_silent():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with tw.watch(model, optimizer, verbose=False) as watch:
        for step in range(20):
            watch.log(loss=2.0, loss_a=1.0 + 0.01 * step, loss_b=0.5)
    assert_silent(watch.findings, "loss-weights-unbalanced")
    watch2 = tw.watch(model, optimizer, verbose=False)
    for _ in range(20):
        watch2.log(loss=2.0, loss_a=300.0, loss_b=0.5)
    finding = assert_fires(watch2.close(), "loss-weights-unbalanced", where="loss_b")
    assert finding.evidence["weights"]["loss_b"] == pytest.approx(600.0)


@pytest.mark.silent("exploding-gradients", "overfitting", "underfitting", "loss-plateau")
def test_short_healthy_run_with_validation_is_clean():
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data(256)
    with tw.watch(model, optimizer, verbose=False) as watch:
        for _epoch in range(6):
            train(model, optimizer, 16, watch)
            model.eval()
            with torch.no_grad():
                watch.log_val(loss=F.cross_entropy(model(x), y))
            model.train()
    for slug in ("exploding-gradients", "overfitting", "underfitting", "loss-plateau"):
        assert_silent(watch.findings, slug)


# -- reliability ------------------------------------------------------------------------------
def test_a_failing_detector_is_switched_off_with_one_warning_and_training_goes_on(monkeypatch):
    from trainwise.rules import get

    calls = []

    def broken(self, w):
        calls.append(1)
        raise ZeroDivisionError("boom")

    # the rule's judge is its Detector class
    monkeypatch.setattr(get("exploding-gradients").check, "check", broken)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tw.watch(model, optimizer, every=2, verbose=False) as watch:
            train(model, optimizer, 12, watch)
    mine = [w for w in caught if "exploding-gradients" in str(w.message)]
    assert len(mine) == 1 and "switched off" in str(mine[0].message)
    assert len(calls) == 1
    assert_fires(watch.findings, "weights-not-updating")  # the other detectors still run


def test_a_failing_probe_is_switched_off_and_training_goes_on(monkeypatch):
    def broken(*args):
        raise RuntimeError("probe bug")

    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reference = mlp()
    reference.load_state_dict(model.state_dict())
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    watch = tw.watch(model, optimizer, preset="full", verbose=False)
    monkeypatch.setattr(watch._updates, "before_step", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model, optimizer, 5, watch)
        watch.close()
    assert sum("update probe" in str(w.message) for w in caught) == 1
    train(reference, ref_opt, 5)
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)
    assert len(watch.signals.get("grad_norm")) == 5  # the other probes kept measuring


def test_no_tensor_is_kept_and_memory_stays_flat_over_10k_steps():
    # Seeded, and counted from step 2500: the first finding (here loss-plateau, at step ~1800
    # once this fixed batch is learned) builds objects once (its record entry); unseeded, the
    # test passed or failed with the data.
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    watch = tw.watch(model, optimizer, verbose=False)

    def steps(n):
        for _ in range(n):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            watch.log(loss=loss)

    def live_objects():
        gc.collect()
        with warnings.catch_warnings():  # isinstance() pokes deprecated torch module attributes
            warnings.simplefilter("ignore")
            tensors = sum(isinstance(o, torch.Tensor) for o in gc.get_objects())
        return tensors, _reachable(watch, model, optimizer)

    steps(2500)
    tensors_before, objects_before = live_objects()
    steps(9500)
    tensors_after, objects_after = live_objects()
    assert tensors_after <= tensors_before
    # The history grows as compact arrays of plain numbers, which are no gc objects: what the
    # watch holds (and the model and optimizer it hooks) stays flat however long training
    # runs. Counted from those roots, not over the whole interpreter: other libraries loaded
    # in the same test process (MLflow's store) grow interpreter-wide caches meanwhile (the
    # isinstance caches of abstract base classes), which are not the watch's. The TensorBoard
    # sink is not walked: its queue holds whatever its writer thread has not written yet, more
    # on a loaded machine (the test failed once in the full suite on 2 busy cores, +287).
    assert objects_after - objects_before < 200, (objects_before, objects_after)
    watch.close()  # the steps since the last measured one come back at close
    assert len(watch.signals.get("train/loss")) == 12_000


def _reachable(*roots) -> int:
    """The gc-tracked objects reachable from `roots`, without walking into modules, classes
    or a function's globals (those lead to the whole interpreter), nor into the TensorBoard
    sink (its queue drains on its own thread, at the machine's pace)."""
    from trainwise.runs.tensorboard import TensorBoardSink

    seen, stack = set(), list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, TensorBoardSink)):
            continue
        seen.add(id(obj))
        if isinstance(obj, types.FunctionType):
            stack.extend(cell.cell_contents for cell in obj.__closure__ or () if _filled(cell))
            stack.extend(obj.__defaults__ or ())
            continue
        stack.extend(o for o in gc.get_referents(obj) if gc.is_tracked(o))
    return len(seen)


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


# -- the public surface ------------------------------------------------------------------------
def test_bad_arguments_get_clear_errors():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SetupError, match="nn.Module"):
        tw.watch("model", optimizer)
    with pytest.raises(SetupError, match="Optimizer"):
        tw.watch(model, None)
    with pytest.raises(SetupError, match="preset"):
        tw.watch(model, optimizer, preset="fast")
    watch = tw.watch(model, optimizer, verbose=False)
    with pytest.raises(SetupError, match=r"acc=.*scalar"):
        watch.log(loss=1.0, acc=torch.ones(3))
    watch.close()


def test_findings_print_once_and_close_is_idempotent(capsys, caplog):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    watch = tw.watch(model, optimizer, every=2, name="demo")
    train(model, optimizer, 30, watch)
    first = watch.close()
    assert watch.close() == first
    err = capsys.readouterr().err
    # Printed once when it fired: through logging when the user configured it (pytest does),
    # else with rich on stderr.
    shown = err.count("[weights-not-updating]") + sum(
        "[weights-not-updating]" in r.getMessage() for r in caplog.records
    )
    assert shown == 1
    assert "demo" in err  # the summary
    quiet = tw.watch(mlp(), torch.optim.SGD(mlp().parameters(), lr=0.0), verbose=False)
    quiet.close()
    assert capsys.readouterr().err == ""


def test_signals_are_plain_numbers_for_a_run_record(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tw.watch(model, optimizer, log_dir=tmp_path, verbose=False) as watch:
        train(model, optimizer, 3, watch)
    record = watch.signals.to_dict()
    assert record["train/loss"]["steps"] == [0, 1, 2]
    assert all(isinstance(v, float) for v in record["grad_norm"]["values"])


def test_an_error_inside_backward_switches_the_gradient_probe_off_not_training(monkeypatch):
    # The gradient probe's end-of-backward callback runs inside the autograd engine, outside
    # any try of the watch's: a failure there must not come out of loss.backward().
    from trainwise.probes.gradients import GradientProbe

    def fails(self):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(GradientProbe, "_backward_done", fails)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    watch = tw.watch(model, optimizer, verbose=False, record=False)
    x, y = torch.randn(8, 8), torch.randint(0, 3, (8,))
    with pytest.warns(RuntimeWarning, match="gradient probe raised RuntimeError: injected"):
        for _ in range(3):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            watch.log(loss=1.0)
    watch.close()


# -- measured steps and the steps between them ------------------------------------------------
def _loop_with_nan_inputs(watch, model, optimizer, steps, nan_at):
    """Full-batch steps; on the steps in `nan_at` the input holds a NaN and the step is skipped
    (grads dropped), so the NaN never reaches the weights: a one-off NaN loss."""
    x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
    for i in range(steps):
        optimizer.zero_grad()
        xb = x.clone()
        if i in nan_at:
            xb[0, 0] = math.nan
        loss = F.cross_entropy(model(xb), y)
        loss.backward()
        if i in nan_at:
            optimizer.zero_grad()
        optimizer.step()
        watch.log(loss=loss)


def test_a_nan_loss_between_measured_steps_is_found_then_every_step_is_checked():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    watch = tw.watch(model, optimizer, verbose=False, record=False)
    # 33: between the measured steps 30 and 40; it is read (and judged) with step 40
    _loop_with_nan_inputs(watch, model, optimizer, 41, nan_at={33})
    first = assert_fires(watch.findings, "nonfinite-loss")
    assert first.where == "loss" and "step 33" in first.message
    assert "between measured steps" in first.message  # not "the loss computation itself"
    assert watch.measure_every == 1  # every step is measured from now on
    _loop_with_nan_inputs(watch, model, optimizer, 10, nan_at={4})  # step 45
    findings = watch.close()
    named = [f for f in findings if f.rule == "nonfinite-loss" and f.where == "0"]
    assert named and "step 45" in named[0].message


def _healthy_signals(steps: int, budget: bool = True):
    """The signals of a seeded healthy loop of `steps` steps under the default preset."""
    torch.manual_seed(0)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with tw.watch(model, optimizer, verbose=False, record=False, budget=budget) as watch:
        _loop_with_nan_inputs(watch, model, optimizer, steps, nan_at=set())
    return watch.signals


def test_steps_between_measured_ones_keep_their_loss_lr_and_steps_but_not_grad_norms():
    signals = _healthy_signals(45)
    assert list(signals.get("train/loss").steps) == list(range(45))
    assert list(signals.get("lr/group0").steps) == list(range(45))
    assert list(signals.get("stepped").steps) == list(range(45))
    assert list(signals.get("grad_norm").steps) == [*range(20), 20, 30, 40]
    assert list(signals.get("output_checked").steps) == [*range(20), 20, 30, 40]


def test_gradscaler_skipping_every_step_is_reported_after_the_first_measured_steps():
    """From step 30 on every step overflows: the skips are seen on measured steps only (every
    10th by then), and 10 of the last 20 of those are enough."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    x, y = data()
    with tw.watch(model, optimizer, scaler=scaler, verbose=False) as watch:
        for i in range(140):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            scaled = scaler.scale(loss * (math.inf if i >= 30 else 1.0))  # from step 30 on
            scaled.backward()
            scaler.step(optimizer)
            scaler.update()
            watch.log(loss=loss)
    finding = assert_fires(watch.findings, "nonfinite-gradient", where="GradScaler")
    assert "measured steps" in finding.message
    assert_silent(watch.findings, "nonfinite-loss")  # the skipped steps never moved the weights


def test_after_the_dense_start_standard_measures_every_20th_step():
    """The preset's cadence (budget=False: on this tiny model the budget stretches it)."""
    signals = _healthy_signals(261, budget=False)
    measured = list(signals.get("grad_norm").steps)
    assert measured == [*range(20), *range(20, 200, 10), *range(200, 261, 20)]
    assert list(signals.get("train/loss").steps) == list(range(261))  # every loss kept


def test_validation_rules_judge_once_per_judging_period_and_the_mode_count_waits(monkeypatch):
    """A validation after every step (fit's random batch comes every 7-30) must not run the
    validation rules' trend fits at each one; a no-grad forward in train mode between two
    rounds is still counted, and judged at the next round."""
    from trainwise.rules.inflight.loss import Overfitting

    rounds = []
    detector = Overfitting.check  # the rule's detector class
    check = detector.check
    monkeypatch.setattr(detector, "check", lambda self, view: rounds.append(view.iteration)
                        or check(self, view))  # fmt: skip
    model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    with tw.watch(model, optimizer, verbose=False, record=False) as watch:
        for step in range(100):
            train(model, optimizer, 1, watch)
            if step != 3:  # step 3 validates with dropout still on
                model.eval()
            with torch.no_grad():
                watch.log_val(loss=F.cross_entropy(model(x), y))
            model.train()
            if step == 3:
                assert_silent(watch.findings, "train-mode-during-eval")  # no round at 4
    assert rounds == [1, 11, 21, 31, 41, 51, 61, 71, 81, 91, 100]  # the last one at close
    finding = assert_fires(watch.findings, "train-mode-during-eval")
    assert finding.step == 10  # the round after it
