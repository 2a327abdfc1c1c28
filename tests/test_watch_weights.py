"""Who moves the weights, in flight: tensors the optimizer holds but cannot train, writes outside
the optimizer, frozen tensors that still move, and grads kept across steps (issue 12, items 2
and 4). Each rule is shown firing on the mistake and silent on the deliberate pattern it looks
like."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw
from helpers import assert_fires, assert_silent
from trainwise.probes import writes

OUTSIDE = "weights-changed-outside-optimizer"
FROZEN_MOVING = "frozen-weights-changing"
FROZEN = "frozen-parameters"
ZERO_GRAD = "missing-zero-grad"
# A probe switched off by the watch's guard (it warns "trainwise.watch: ...") fails the test:
# freezing and unfreezing mid-run must not break a hook (the watch re-hooks between steps).
pytestmark = pytest.mark.filterwarnings("error:trainwise.watch")


@pytest.fixture(autouse=True, params=["host", "device"])
def fingerprint_path(request, monkeypatch):
    """Every test twice: with CPU tensors fingerprinted through memoryviews (what a CPU run
    uses) and through torch.cat, compared on the device (what a GPU run uses)."""
    if request.param == "device":
        monkeypatch.setattr(writes, "_host_views", lambda views: None)
    return request.param


def _data(i: int):
    g = torch.Generator().manual_seed(i)
    return torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def _step(model, optimizer, i, set_to_none=True):
    x, y = _data(i)
    optimizer.zero_grad(set_to_none=set_to_none)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def _validate(model):
    with torch.no_grad():
        x, y = _data(10_000)
        return F.cross_entropy(model(x), y)


def _train_with_ema(validate_with_ema, validate_after) -> list:
    """Trains 40 steps keeping an EMA of the weights; after each step in `validate_after`,
    `validate_with_ema(model, ema, watch)` validates (and swaps the EMA in and out as it
    likes). Returns the watch's findings."""
    model = _mlp()
    ema = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with tw.watch(model, optimizer, record=False, verbose=False) as watch:
        for i in range(40):
            watch.log(loss=_step(model, optimizer, i))
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                    e.lerp_(p, 0.1)
            if i in validate_after:
                validate_with_ema(model, ema, watch)
    return watch.findings


def _run_with_ema_validation(backup_of, validate_after=(9, 19, 29, 39)):
    """Validating with EMA weights loaded by state dict; `backup_of(model)` keeps the training
    weights to restore after validating."""

    def validate(model, ema, watch):
        backup = backup_of(model)
        model.load_state_dict(ema.state_dict())
        watch.log_val(loss=_validate(model))
        model.load_state_dict(backup)

    return _train_with_ema(validate, validate_after)


@pytest.mark.fires(OUTSIDE)
def test_ema_weights_left_in_the_model_after_validation():
    found = _run_with_ema_validation(lambda m: m.state_dict())  # references: restores nothing
    finding = assert_fires(found, OUTSIDE, where="0.weight", severity="warning")
    assert finding.evidence["after_validation"] is True
    assert finding.evidence["step"] == 10  # the first step after the first validation
    assert set(finding.evidence["params"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}


@pytest.mark.fires(OUTSIDE)
def test_ema_left_in_after_a_validation_before_a_step_between_measured_ones():
    # step 35 is no measured step (the first 20, then every 10th): its start is compared anyway
    found = _run_with_ema_validation(lambda m: m.state_dict(), validate_after=(34,))
    finding = assert_fires(found, OUTSIDE, where="0.weight", severity="warning")
    assert finding.evidence["after_validation"] is True and finding.evidence["step"] == 35


@pytest.mark.silent(OUTSIDE)
def test_ema_swapped_in_and_restored_from_a_copy():
    found = _run_with_ema_validation(lambda m: copy.deepcopy(m.state_dict()))
    assert_silent(found, OUTSIDE)


def _swap_in(style, model, ema):
    """An EMA swapped in for validation the ways EMA helpers do it (torch_ema and diffusers
    copy through `.data`; a common snippet replaces `.data`); returns the training tensors."""
    kept = []
    with torch.no_grad():
        for p, e in zip(model.parameters(), ema.parameters(), strict=True):
            kept.append(p.data if style == "data =" else p.detach().clone())
            if style == "data =":
                p.data = e.detach().clone()
            elif style == "data.copy_":
                p.data.copy_(e)
            else:
                p.copy_(e)
    return kept


@pytest.mark.parametrize("style", ["data =", "data.copy_", "copy_"])
@pytest.mark.parametrize("restored", [False, True])
def test_ema_swaps_of_every_style_are_seen_only_when_not_restored(style, restored):
    def validate(model, ema, watch):
        kept = _swap_in(style, model, ema)
        watch.log_val(loss=_validate(model))
        if restored:
            with torch.no_grad():
                for p, k in zip(model.parameters(), kept, strict=True):
                    p.copy_(k)

    found = _train_with_ema(validate, validate_after=(34,))  # before step 35, not measured
    if restored:
        assert_silent(found, OUTSIDE)
    else:
        finding = assert_fires(found, OUTSIDE, where="0.weight", severity="warning")
        assert finding.evidence["step"] == 35
        assert set(finding.evidence["params"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_a_load_into_channels_last_and_mixed_precision_tensors_is_seen():
    """The fingerprint samples a channels_last weight in memory order and keeps a bfloat16
    tensor in a group of its own: a load of other weights changes each one's samples."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))
    model[0].to(memory_format=torch.channels_last)
    model[2].bias.data = model[2].bias.data.bfloat16().float()  # same values, own storage
    model[2].register_parameter("scale", nn.Parameter(torch.ones(3, dtype=torch.bfloat16)))
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 6, 6), torch.randint(0, 3, (4,))
    with tw.watch(model, optimizer, record=False, verbose=False) as watch:
        for i in range(24):
            optimizer.zero_grad()
            F.cross_entropy(model(x) * model[2].scale.float(), y).backward()
            optimizer.step()
            watch.log()
            if i == 21:
                model.load_state_dict(other.state_dict())
                watch.log_val(loss=1.0)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    finding = assert_fires(watch.findings, OUTSIDE, where="0.weight")
    assert set(finding.evidence["params"]) == {"0.weight", "0.bias", "2.weight", "2.bias",
                                               "2.scale"}  # fmt: skip


@pytest.mark.silent(OUTSIDE)
def test_weight_clipping_every_step_is_only_noted():
    # WGAN's critic: weights clamped by hand after every step, on purpose
    model = _mlp()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=5e-3)
    # "full": every gap between steps compared (standard compares every 20th and after each
    # validation, so it needs 200 steps to call a write in every gap a habit)
    with tw.watch(model, optimizer, preset="full", record=False, verbose=False) as watch:
        for i in range(30):
            watch.log(loss=_step(model, optimizer, i))
            with torch.no_grad():
                for p in model.parameters():
                    p.clamp_(-0.01, 0.01)
    assert all(f.severity == "info" for f in watch.findings if f.rule == OUTSIDE)
    assert_fires(watch.findings, OUTSIDE, where="(every step)", severity="info")


def _freeze_midway(release_grads: bool, steps: int = 30):
    model = _mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with tw.watch(model, optimizer, record=False, verbose=False) as watch:
        for i in range(steps):
            if i == 10:  # freeze the first layer
                for p in model[0].parameters():
                    p.requires_grad_(False)
                    if release_grads:
                        p.grad = None
            # set_to_none=False: the frozen layer keeps a zero grad, so AdamW still moves it
            watch.log(loss=_step(model, optimizer, i, set_to_none=False))
    return model, watch.findings


@pytest.mark.fires(FROZEN_MOVING)
def test_a_frozen_layer_with_zero_grads_still_moves():
    _, found = _freeze_midway(release_grads=False)
    finding = assert_fires(found, FROZEN_MOVING, where="0.weight", severity="warning")
    assert finding.evidence["params"] == ["0.weight", "0.bias"]
    assert finding.evidence["step"] == 20  # the first sampled step after the freeze (every 20)
    assert_silent(found, FROZEN)  # a freeze mid-training is deliberate: only the drift is news


@pytest.mark.silent(FROZEN_MOVING)
def test_a_frozen_layer_whose_grads_are_dropped_stays_put():
    model, found = _freeze_midway(release_grads=True)
    assert_silent(found, FROZEN_MOVING)
    assert_silent(found, OUTSIDE)


@pytest.mark.silent(FROZEN_MOVING)
def test_a_momentum_teacher_outside_the_optimizer_is_not_a_frozen_layer_moving():
    # BYOL/MoCo: a frozen copy updated by EMA every step, held by no optimizer
    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.student = _mlp()
            self.teacher = copy.deepcopy(self.student).requires_grad_(False)

        def forward(self, x):
            return self.student(x) + self.teacher(x).detach()

    model = Pair()
    optimizer = torch.optim.SGD(model.student.parameters(), lr=0.1)
    with tw.watch(model, optimizer, record=False, verbose=False) as watch:
        for i in range(30):
            watch.log(loss=_step(model, optimizer, i))
            with torch.no_grad():
                for t, s in zip(
                    model.teacher.parameters(), model.student.parameters(), strict=True
                ):
                    t.lerp_(s, 0.01)
    assert_silent(watch.findings, FROZEN_MOVING)
    assert all(f.severity == "info" for f in watch.findings if f.rule == OUTSIDE)


@pytest.mark.fires(FROZEN)
def test_an_optimizer_holding_only_frozen_tensors_is_reported_in_flight():
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for p in model.parameters():  # frozen before the watch starts: it still sees them
        p.requires_grad = False
    model[2] = nn.Linear(16, 3)  # a new head the optimizer does not hold
    with tw.watch(model, optimizer, record=False, verbose=False) as watch:
        for i in range(3):
            watch.log(loss=_step(model, optimizer, i))
            if i == 0:
                first = list(watch.findings)
    finding = assert_fires(first, FROZEN, where="(all parameters)", severity="error")
    assert "0.weight" in finding.evidence["frozen_held"]
    assert finding.evidence["trainable_not_held"] == ["2.weight", "2.bias"]
    assert "requires_grad=False" in finding.message


@pytest.mark.silent(FROZEN)
def test_a_frozen_backbone_left_out_of_the_optimizer_is_fine():
    model = _mlp()
    for p in model[0].parameters():
        p.requires_grad = False
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with tw.watch(model, optimizer, record=False, verbose=False) as watch:
        for i in range(12):
            watch.log(loss=_step(model, optimizer, i))
    assert_silent(watch.findings, FROZEN)
    assert_silent(watch.findings, OUTSIDE)
    assert_silent(watch.findings, FROZEN_MOVING)


def _gan(reset_d: bool):
    """A GAN step order: D steps on real and fake, then G's loss backpropagates through D (after
    D's step, adding to D's grads), and D's zero_grad() comes before D's next backward."""
    torch.manual_seed(0)
    d = nn.Sequential(nn.Linear(4, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    g = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 4))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    with tw.watch(d, opt_d, record=False, verbose=False) as watch:
        for i in range(30):
            real = torch.randn(16, 4, generator=torch.Generator().manual_seed(i)) + 2
            fake = g(torch.randn(16, 2))
            if reset_d:
                d.zero_grad()
            loss_d = bce(d(real), torch.ones(16, 1)) + bce(d(fake.detach()), torch.zeros(16, 1))
            loss_d.backward()
            opt_d.step()
            watch.log(loss=loss_d)
            g.zero_grad()
            bce(d(fake), torch.ones(16, 1)).backward()  # reaches D's params too
            opt_g.step()
    return watch.findings


@pytest.mark.silent(ZERO_GRAD)
def test_generator_backward_through_the_discriminator_is_not_a_missing_zero_grad():
    assert_silent(_gan(reset_d=True), ZERO_GRAD)


@pytest.mark.fires(ZERO_GRAD)
def test_a_discriminator_never_reset_is_a_missing_zero_grad():
    assert_fires(_gan(reset_d=False), ZERO_GRAD, severity="error")


@pytest.mark.silent(FROZEN, FROZEN_MOVING)
def test_a_discriminator_frozen_while_the_generator_trains_is_not_frozen():
    # The WGAN-GP habit: D's requires_grad is switched off for G's step and on again for D's.
    torch.manual_seed(0)
    d = nn.Sequential(nn.Linear(4, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    g = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 4))
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.5, 0.9))
    with tw.watch(d, opt_d, record=False, verbose=False) as watch:
        for i in range(30):
            d.requires_grad_(True)
            real = torch.randn(16, 4, generator=torch.Generator().manual_seed(i)) + 2
            d.zero_grad()
            loss_d = d(g(torch.randn(16, 2)).detach()).mean() - d(real).mean()
            loss_d.backward()
            opt_d.step()
            watch.log(loss=loss_d)
            d.requires_grad_(False)  # G's step: D frozen, its forward still watched
            g.zero_grad()
            (-d(g(torch.randn(16, 2))).mean()).backward()
            opt_g.step()
    assert_silent(watch.findings, FROZEN)
    assert_silent(watch.findings, FROZEN_MOVING)
    assert_silent(watch.findings, OUTSIDE)


def test_a_storage_freed_between_uses_is_not_read():
    """A frozen tensor outside the optimizer whose storage is freed after each use
    (`untyped_storage().resize_(0)`, as FSDP and CPU-offloading code free unsharded weights) and
    allocated again before the next: the fingerprint must not read the freed memory (a crash
    once it is unmapped: the tensor here is 8 MB), and a reallocation is no write."""
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.teacher = nn.Parameter(torch.ones(2_000_000), requires_grad=False)
    nbytes = model.teacher.untyped_storage().nbytes()
    with tw.watch(model, optimizer, record=False, verbose=False) as watch:
        for i in range(45):
            with torch.no_grad():  # "unshard": storage back, values gathered in
                model.teacher.untyped_storage().resize_(nbytes)
                model.teacher.fill_(1.0)
            x, y = _data(i)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x) * model.teacher[:3], y)
            loss.backward()
            model.teacher.untyped_storage().resize_(0)  # "reshard": freed until the next use
            optimizer.step()
            watch.log(loss=loss)
            if i in (9, 30):
                watch.log_val(loss=_validate(model))
    assert_silent(watch.findings, OUTSIDE)
    assert_silent(watch.findings, FROZEN_MOVING)
