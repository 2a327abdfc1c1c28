"""Hugging Face: `trainwise.watch` as a `TrainerCallback`, tw.GradualUnfreezing as one, and a
Setup from a Trainer's parts.

    trainer = transformers.Trainer(..., callbacks=[TrainwiseTrainerCallback(), schedule.transformers()])
    setup = tw.Setup.from_hf(model, train_dataset, eval_dataset, data_collator, args)

The watch attaches at the start of training to the model and the Trainer's optimizer, closes
every optimizer step, takes the loss the Trainer reports every `logging_steps` (it keeps no
per-step loss) and the `eval_*` metrics of each evaluation, and closes when training ends.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from trainwise.errors import SetupError
from trainwise.steps import ModuleOptimizer
from trainwise.watch import Watch


class GradualUnfreezingTrainerCallback(TrainerCallback):
    """tw.GradualUnfreezing as a TrainerCallback: the schedule's on_epoch_start with the
    Trainer's epoch (whole epochs done), before every epoch (made by `schedule.transformers()`)."""

    def __init__(self, schedule: Any) -> None:
        self.schedule = schedule

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.schedule.on_epoch_start(int(state.epoch or 0))


class TrainwiseTrainerCallback(TrainerCallback):
    def __init__(
        self,
        preset: str = "standard",
        every: int | None = None,
        verbose: bool = True,
        **watch_options: Any,
    ) -> None:
        self.options = {"preset": preset, "every": every, "verbose": verbose, **watch_options}
        self.watch: Watch | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model is None or optimizer is None:
            return
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
        self.watch = Watch(model, optimizer, **self.options)

    def on_step_end(self, args, state, control, **kwargs):
        if self.watch is not None:
            self.watch.log()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.watch is None or not logs:
            return
        if "loss" in logs:
            self.watch.log_latest(loss=logs["loss"])
        evals = {
            k[len("eval_") :]: v
            for k, v in logs.items()
            if k.startswith("eval_") and isinstance(v, int | float)
        }
        if "loss" in evals:
            self.watch.log_val(**evals)

    def on_train_end(self, args, state, control, **kwargs):
        if self.watch is not None:
            self.watch.close()

    @property
    def findings(self):
        return self.watch.findings if self.watch is not None else []


# -- a Setup from what a Trainer is given ----------------------------------------------------------


def setup_fields(
    model: Any,
    train_dataset: Any,
    eval_dataset: Any = None,
    data_collator: Any = None,
    args: Any = None,
) -> dict[str, Any]:
    """The fields of a Setup (`Setup.from_hf`) that checks a model as `transformers.Trainer(model, args, train_dataset=...,
    eval_dataset=..., data_collator=...)` would train it: batches of the collator (default:
    transformers' own), the model's own loss (called with `labels=`), the Trainer's optimizer
    (class and settings from `args`, no weight decay on biases and norms) and batch size."""
    from transformers import TrainingArguments, default_data_collator

    if args is None:  # the Trainer's defaults; nothing is written to output_dir
        args = TrainingArguments(output_dir=str(Path(tempfile.gettempdir()) / "trainwise-hf"))
    if not isinstance(args, TrainingArguments):
        raise SetupError(
            f"Setup.from_hf(args=...) expects transformers.TrainingArguments, got "
            f"{type(args).__name__}"
        )
    if isinstance(eval_dataset, dict):  # the Trainer takes {name: dataset}: the first is used
        eval_dataset = next(iter(eval_dataset.values()), None)
    collate = data_collator or default_data_collator
    train = DataLoader(
        train_dataset, batch_size=args.per_device_train_batch_size, shuffle=True,
        collate_fn=collate,
    )  # fmt: skip
    val = None
    if eval_dataset is not None:
        batch = args.per_device_eval_batch_size
        val = DataLoader(eval_dataset, batch_size=batch, shuffle=False, collate_fn=collate)
    labels = list(args.label_names or [])
    return {
        "model": model,
        "train": train,
        "val": val,
        "loss": None,
        "optimizer": ModuleOptimizer(partial(_trainer_optimizer, args), "the Trainer's optimizer"),
        "target": labels[0] if len(labels) == 1 else None,
        "name": _model_name(model),
    }


def _trainer_optimizer(args: Any, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer `Trainer.create_optimizer` builds: its class and settings from `args`,
    weight decay on all but biases and normalization weights."""
    from transformers import Trainer

    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    decay = set(Trainer.get_decay_parameter_names(None, model))  # `self` is not used
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": args.weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]
    return cls([g for g in groups if g["params"]], **kwargs)


def _model_name(model: Any) -> str:
    if isinstance(model, nn.Module):
        return type(model).__name__
    return getattr(model, "__name__", "hf_model")
