"""`trainwise.watch` as a Hugging Face `TrainerCallback`.

    trainer = transformers.Trainer(..., callbacks=[TrainwiseTrainerCallback()])

The watch attaches at the start of training to the model and the Trainer's optimizer, closes
every optimizer step, takes the loss the Trainer reports every `logging_steps` (it keeps no
per-step loss) and the `eval_*` metrics of each evaluation, and closes when training ends.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from trainwise.watch import Watch


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
