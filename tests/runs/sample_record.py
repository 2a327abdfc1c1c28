"""A real, small run record: a check of a digits MLP fed raw 0..16 pixels, then 100 steps of
training with the per-layer signals a watch records, and an LR range test. Shared by the
report and browser tests (and used to make the README screenshot)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw
from trainwise.demo.digits import VAL_SIZE, _digits
from trainwise.runs import start

STEPS = 100


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),  # (N, 1, 8, 8) -> (N, 64)
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def raw_pixel_setup() -> tw.Setup:
    x, y = _digits()  # (N, 1, 8, 8) raw 0..16, labels 0..9
    return tw.Setup(
        model=mlp,
        train=TensorDataset(x[VAL_SIZE:], y[VAL_SIZE:]),
        val=TensorDataset(x[:VAL_SIZE], y[:VAL_SIZE]),
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
        batch_size=64,
        name="digits-raw-pixels",
    )


def lr_range_test(setup: tw.Setup, steps: int = 30) -> tuple[list[float], list[float], float]:
    """A plain exponential LR sweep on a fresh model: (lrs, smoothed losses, steepest-fall lr)."""
    model = setup.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    loader = DataLoader(setup.train, batch_size=64, shuffle=True)
    lrs, losses, smooth = [], [], None
    batches = iter(loader)
    for i in range(steps):
        lr = 1e-5 * (1.0 / 1e-5) ** (i / (steps - 1))
        for g in opt.param_groups:
            g["lr"] = lr
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        smooth = loss.item() if smooth is None else 0.8 * smooth + 0.2 * loss.item()
        lrs.append(lr)
        losses.append(smooth)
        if not math.isfinite(smooth) or smooth > 4 * min(losses):
            break
    # Steepest fall over a 5-point window, before the minimum (past it the loss is diverging).
    lowest = losses.index(min(losses))
    slopes = [(losses[i + 2] - losses[i - 2], i) for i in range(2, max(3, lowest - 2))]
    return lrs, losses, lrs[min(slopes)[1]]


def write_sample_record(root, name: str = "digits-raw-pixels", steps: int = STEPS):
    """Returns the run folder."""
    torch.manual_seed(0)
    setup = raw_pixel_setup()
    report = tw.check(setup, record=False)  # logged into the record built here, below
    model = setup.build_model()
    opt = setup.build_optimizer(model)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    loader = DataLoader(setup.train, batch_size=64, shuffle=True)
    xv, yv = setup.val.tensors
    relus = {n: m for n, m in model.named_modules() if isinstance(m, nn.ReLU)}
    weights = {n: p for n, p in model.named_parameters() if p.dim() > 1}
    config = {"model": "mlp 64-128-64-32-10", "batch_size": 64, "max_lr": 3e-3, "steps": steps}
    with start(
        "watch", name=name, config=config, optimizer=opt, seed=0, device="cpu", root=root
    ) as run:
        run.log_report(report)
        run.log_data(report.stages[0].metrics["data"])
        lrs, losses, suggestion = lr_range_test(setup)
        run.log_curve("lr_find", lrs, losses, xlabel="learning rate", ylabel="loss",
                      xscale="log", marks={"suggested lr": suggestion}, kind="lr_find")  # fmt: skip
        step, batches, acts = 0, iter(loader), {}
        while step < steps:
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(loader)
                continue
            sampled = step % 20 == 0
            acts.clear()
            hooks = [
                m.register_forward_hook(lambda _m, _i, out, n=n: acts.__setitem__(n, out.detach()))
                for n, m in relus.items()
            ] if sampled else []  # fmt: skip
            loss = F.cross_entropy(model(x), y)
            for h in hooks:
                h.remove()
            opt.zero_grad()
            loss.backward()
            before = {n: p.detach().clone() for n, p in weights.items()}
            grad_norms = {n: p.grad.norm().item() for n, p in weights.items()}
            opt.step()
            ratios = {n: ((p - before[n]).norm() / p.norm()).item() for n, p in weights.items()}
            run.log_metrics(step, {"train/loss": loss.item(), "lr": sched.get_last_lr()[0]})
            sched.step()
            if step % 4 == 0:
                run.log_layers(step, "grad_norm", grad_norms)
                run.log_layers(step, "update_ratio", ratios)
            for n, a in acts.items():
                run.log_histogram(step, f"activations/{n}", a)
            if step % 10 == 0 or step == steps - 1:
                with torch.no_grad():
                    out = model(xv)
                run.log_metrics(step, {"val/loss": F.cross_entropy(out, yv).item(),
                                       "val/acc": (out.argmax(1) == yv).float().mean().item()})  # fmt: skip
            step += 1
    return run.path
