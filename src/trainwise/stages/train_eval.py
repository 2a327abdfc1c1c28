"""Train/eval consistency: after a short training, the outputs in eval mode on a training batch
must stay close to those in train mode (BatchNorm statistics, dropout scaling). Judged by
`train-eval-mismatch` (rules/protocol.py), whose thresholds also decide what is measured here."""

from __future__ import annotations

import math

import torch
from torch import nn

from trainwise.measurements import StaleBatchNorm, TrainEvalGap
from trainwise.rules.protocol import MISMATCH, stale_statistics
from trainwise.spec import model_copy
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome
from trainwise.state import preserved

PASSES = 8  # train-mode passes averaged when the model has custom (possibly random) layers
TRAIN_STEPS = 50  # when the short-training stage left no model
# Batches (of the training batch size) that re-estimate BatchNorm's running statistics at the
# trained weights before the output comparison. After a short training at a high learning rate
# the running statistics (an average over the last ~1/momentum steps) lag weights that are still
# moving fast: a healthy BN CNN on digits (SGD 0.05, momentum 0.9, 40 steps) measured output
# distance 0.48 from that lag alone, with every layer inside the stale-statistics limits (rules/protocol.py).
# That lag is gone after a few more steps of real training, so it is not a train/eval mismatch;
# statistics that do not follow the data at all (momentum 0, frozen BN) are judged before the
# refresh by `_stale_batchnorm`.
REFRESH_BATCHES = 8


class TrainEvalStage:
    name = "train-eval"
    title = "Train/eval consistency"

    def run(self, run: CheckRun) -> StageOutcome:
        if (reason := ex.training_skip_reason(run)) is not None:
            return ex.skipped(reason)
        with ex.isolated(run):
            if run.short_training is not None:
                trained = run.short_training
                model, x, y = model_copy(trained.model), trained.x, trained.y
            else:
                model, x, y = _train(run, self.name)
            stale = _stale_batchnorm(run, model, x, self.name)
            if stale is None:
                _refresh_batchnorm(run, model, self.name)
            _switch_off_dropout(model)
            eval_out, eval_loss = _outputs(run, model, x, y, {}, self.name, 1)
            train_out, train_loss = _outputs(run, model, x, y, {"": True}, self.name, 1)
            passes = PASSES if _random_in_train_mode(run, model, x, self.name) else 1
            if passes > 1:
                train_out, train_loss = _outputs(run, model, x, y, {"": True}, self.name, passes)
            distance = _distance(train_out, eval_out)
            layer, share = None, 0.0
            if stale is None and distance > MISMATCH:  # locate the module responsible
                layer, share = _responsible(run, model, x, y, eval_out, passes, self.name)
        return StageOutcome(
            metrics={
                "distance": distance,
                "loss_train_mode": train_loss,
                "loss_eval_mode": eval_loss,
                "passes": passes,
            },
            summary=(
                f"eval vs train mode: output distance {distance:.2f} (limit {MISMATCH}), loss "
                f"{ex.fmt(eval_loss)} vs {ex.fmt(train_loss)}"
            ),
            measurement=TrainEvalGap(distance, train_loss, eval_loss, passes, stale, layer, share),
        )


def _train(run: CheckRun, stage: str):
    model, optimizer = ex.fresh(run)
    size = min(run.setup.effective_batch_size, len(run.context.train_sample))
    stream = ex.batches(
        run.context.train_sample, size, run, torch.Generator().manual_seed(run.seed)
    )
    for _ in range(TRAIN_STEPS):
        x, y = next(stream)
        ex.train_step(run, model, optimizer, x, y, stage)
    return model, x, y


@torch.no_grad()
def _stale_batchnorm(run, model, x, stage) -> StaleBatchNorm | None:
    """The first BatchNorm whose running statistics are far from its training-mode input's.

    The batch passes in train mode with dropout as configured, as in training; the running
    statistics are restored afterwards.
    """
    norms = {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    }
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_pre_hook(lambda mod, args, n=n: inputs.setdefault(n, args[0].detach()))
        for n, m in norms.items()
    ]
    try:
        with preserved(model):
            model.train()
            ex.forward(run, model, x, stage)
    finally:
        for h in handles:
            h.remove()
    for name, m in norms.items():
        if name not in inputs:
            continue
        h = inputs[name].float().transpose(0, 1).flatten(1)  # (C, N * spatial)
        mean, var = h.mean(dim=1), h.var(dim=1)
        running_mean, running_var = m.running_mean.float(), m.running_var.float()
        offset = float(((mean - running_mean).abs() / (var + m.eps).sqrt()).mean())
        ratio = float(((running_var + m.eps) / (var + m.eps)).log().mean().exp())
        if stale_statistics(offset, ratio):
            return StaleBatchNorm(f"layer '{name}' ({type(m).__name__})", offset, ratio)
    return None


@torch.no_grad()
def _refresh_batchnorm(run: CheckRun, model: nn.Module, stage: str) -> None:
    """Re-estimate every BatchNorm's running statistics at the current weights: a cumulative
    average (momentum None) over REFRESH_BATCHES training batches, in train mode with dropout as
    configured (so a variance shift from dropout before BN stays visible)."""
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
    ]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    size = min(run.setup.effective_batch_size, len(run.context.train_sample))
    stream = ex.batches(
        run.context.train_sample, size, run, torch.Generator().manual_seed(run.seed + 1)
    )
    was_training = model.training
    model.train()
    for _ in range(REFRESH_BATCHES):
        ex.forward(run, model, next(stream)[0], stage)
    model.train(was_training)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def _switch_off_dropout(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
        elif isinstance(m, nn.MultiheadAttention):
            m.dropout = 0.0


@torch.no_grad()
def _random_in_train_mode(run, model, x, stage) -> bool:
    """Whether train mode is still random with torch's dropout off (a custom dropout): only then
    are PASSES forwards averaged, here and for each module in `_responsible`. Any user-defined
    class (a U-Net's top module) used to count as possibly random, which made the module search
    of a deterministic 20-module U-Net cost 160 forwards."""
    if all(type(m).__module__.startswith("torch.") for m in model.modules()):
        return False
    with preserved(model):  # restores the RNG too, so both passes run inside it
        model.train()
        first, second = (ex.first_tensor(ex.forward(run, model, x, stage)) for _ in range(2))
    return not torch.equal(first, second)


@torch.no_grad()
def _outputs(run, model, x, y, train_modes: dict[str, bool], stage: str, passes: int):
    """Mean output and loss over `passes` forwards, with the named modules in train mode and the
    rest in eval mode ("" is every module); BN statistics are restored afterwards."""
    with preserved(model):
        model.eval()
        if "" in train_modes:
            model.train()
        else:
            modules = dict(model.named_modules())
            for name in train_modes:
                modules[name].training = True
        outs = [ex.first_tensor(ex.forward(run, model, x, stage)).float() for _ in range(passes)]
        mean = torch.stack(outs).mean(dim=0)
        # A model's own loss that matches no known loss cannot score a mean of passes: NaN.
        prediction = outs[0] if passes == 1 else mean
        known = run.context.prediction_loss is not None
        loss = float(ex.compute_loss(run, prediction, y, stage)) if known else math.nan
    return mean, loss


def _distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / (a.norm() + 1e-12))


def _responsible(run, model, x, y, eval_out, passes, stage) -> tuple[str, float]:
    """The single module whose switch to train mode moves the output the most."""
    best, best_d = "the model", 0.0
    for name, module in list(model.named_modules())[:100]:
        if not name:
            continue
        out, _ = _outputs(run, model, x, y, {name: True}, stage, passes)
        d = _distance(out, eval_out)
        if d > best_d:
            best, best_d = f"layer '{name}' ({type(module).__name__})", d
    return best, best_d
