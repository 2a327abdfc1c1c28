"""What is interpreted: a model with its weights, the Setup that feeds it, and the split.

Four ways in, one `Subject` out:
    of_model(model, dataset, loss)     a trained module and any dataset of (input, target)
    of_setup(setup, checkpoint, split) a Setup and a state dict (best.pt, or a last.pt)
    of_fit(result, setup, split)       a tw.fit result (its setup from the run record's
                                       command when not given)
    of_run(ref, split)                 a fit run record: its setup file and best checkpoint
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from trainwise.errors import SetupError
from trainwise.spec import Setup

SPLITS = ("val", "train")
SHOWN_KEYS = 8
# `trainwise fit`'s options that take no value (every other option is followed by one).
FIT_FLAGS = {"--early-stop", "--quiet", "--record", "--no-record", "--output-bias",
             "--no-output-bias", "-h", "--help"}  # fmt: skip  # missing / unexpected checkpoint keys named in a message


@dataclass
class Subject:
    """setup: batches, the model's call and the loss; model: the weights interpreted (on the
    setup's device); dataset: the split interpreted, `where` its name; recipe/epochs: how the
    model was trained (a fit run's), which label issues' cross-validation repeats; folder: a
    run's folder, where the report goes."""

    setup: Setup
    model: nn.Module
    dataset: Dataset
    where: str
    source: str
    recipe: Any = None
    epochs: int | None = None
    folder: Path | None = None
    notes: list[str] = field(default_factory=list)


def of_model(model: nn.Module, dataset: Dataset | DataLoader, loss: Any, **options: Any
             ) -> Subject:  # fmt: skip
    """A trained module and a dataset (or DataLoader: its dataset is read in order). Label
    issues retrain copies of the module with their parameters reset."""
    if not isinstance(model, nn.Module):
        raise SetupError(
            f"interpret(model, ...): expected an nn.Module, got {type(model).__name__}"
        )
    data = dataset  # a DataLoader stays one: its batch size and collate function are kept
    dataset = data.dataset if isinstance(data, DataLoader) else data
    options = {k: v for k, v in options.items() if v is not None}
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    options.setdefault("device", device)
    setup = Setup(model=_fresh_copies(model), train=data, val=data, loss=loss, **options)
    return Subject(setup, model, dataset, "dataset", f"{type(model).__name__} as given")


def _fresh_copies(model: nn.Module):
    """A model factory for cross-validation: copies of `model` with every layer's parameters
    reset (what a fresh model of the same architecture would start from)."""

    def build() -> nn.Module:
        fresh = copy.deepcopy(model)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        return fresh

    build.__qualname__ = f"copy of {type(model).__name__}"
    return build


def of_setup(setup: Setup, checkpoint: str | Path | None, split: str = "val", seed: int = 0
             ) -> Subject:  # fmt: skip
    """The Setup's model with the checkpoint's weights, on the split (fit's held-out 20% of the
    training set, the same one for the same seed, when the Setup has no validation set)."""
    setup, dataset, notes = _split_of(setup, split, seed)
    model = setup.build_model()
    source = f"{setup.name} with {checkpoint}"
    if checkpoint is None:
        source = f"{setup.name}, untrained (no checkpoint given)"
        notes.append("no checkpoint: the model is interpreted as the setup builds it, untrained")
    else:
        load_checkpoint(model, checkpoint)
    return Subject(setup, model, dataset, split, source, notes=notes)


def of_fit(result: Any, setup: Setup | None, split: str = "val") -> Subject:
    """A tw.fit result: its final model, its Setup (read back from the run record's setup file
    when not given), its recipe and length."""
    record = _record_of(result)
    seed, epochs = _fit_settings(record)
    if setup is None:
        setup = _setup_of_record(record)
    setup, dataset, notes = _split_of(setup, split, seed)
    model = result.model.to(setup.torch_device)
    folder = Path(result.record_path) if result.record_path else None
    return Subject(setup, model, dataset, split, f"the fit result ({result.steps} steps)",
                   recipe=result.recipe, epochs=epochs, folder=folder, notes=notes)  # fmt: skip


def of_run(ref: str, split: str = "val", root: str | None = None, command: str = "interpret"
           ) -> Subject:  # fmt: skip
    """A fit run record (number, id, name or folder): its setup file, its best checkpoint.
    `command` names who reads it in the messages (interpret, compress)."""
    from trainwise.runs.store import find_run
    from trainwise.train.checkpoints import BEST
    from trainwise.train.recipe import Recipe

    record = find_run(ref, root)
    if record.meta.get("kind") != "fit":
        raise SetupError(
            f"run {record.id} is a {record.meta.get('kind')} run; {command} reads a fit run's "
            "checkpoint (`trainwise runs --kind fit` lists them), or give SETUP_FILE --checkpoint"
        )
    checkpoint = record.path / BEST
    if not checkpoint.is_file():
        raise SetupError(f"run {record.id} has no best checkpoint ({checkpoint} is missing)")
    seed, epochs = _fit_settings(record)
    subject = of_setup(_setup_of_record(record), checkpoint, split, seed)
    recipe = (record.meta.get("config") or {}).get("recipe")
    subject.recipe = Recipe(**recipe) if isinstance(recipe, dict) else None
    subject.epochs, subject.folder = epochs, record.path
    subject.source = f"run {record.id}, {BEST}"
    return subject


def _split_of(setup: Setup, split: str, seed: int) -> tuple[Setup, Dataset, list[str]]:
    from trainwise.train.data import with_validation

    if split not in SPLITS:
        raise SetupError(f"interpret: split={split!r}; expected one of {', '.join(SPLITS)}")
    notes: list[str] = []
    if split == "train":
        return setup, setup.train_dataset, notes
    setup, note = with_validation(setup, seed)  # fit's own held-out split, when it made one
    if note:
        notes.append(note.replace("are held out for validation", "were held out by fit: "
                                  "interpreted as the validation set"))  # fmt: skip
    return setup, setup.val_dataset, notes


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a state dict (fit's best.pt; a last.pt's "model") into `model`; a mismatch names
    the missing and unexpected keys and the tensors of another shape."""
    path = Path(path)
    if not path.is_file():
        raise SetupError(f"--checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SetupError(f"{path}: not a checkpoint torch.load can read ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # fit's last.pt holds the model's state dict under "model"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SetupError(f"{path}: expected a model state dict (name -> tensor)")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k} {tuple(state[k].shape)} vs the model's {tuple(v.shape)}"
                for k, v in expected.items() if k in state and state[k].shape != v.shape]  # fmt: skip
    if missing or unexpected or reshaped:
        parts = [f"{label} {_listed(keys)}" for label, keys in
                 (("missing keys:", missing), ("unexpected keys:", unexpected),
                  ("other shapes:", reshaped)) if keys]  # fmt: skip
        raise SetupError(
            f"{path} does not match the setup's model {type(model).__name__}: {'; '.join(parts)}"
        )
    model.load_state_dict(state)


def _listed(keys: list[str]) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def _record_of(result: Any):
    from trainwise.runs.store import RunRecord

    if result.record_path is None:
        return None
    try:
        return RunRecord.load(result.record_path)
    except SetupError:
        return None


def _fit_settings(record: Any) -> tuple[int, int | None]:
    """(seed, epochs) of a fit run (0, None without a record)."""
    fit = ((record.meta.get("config") or {}).get("fit") or {}) if record is not None else {}
    return int(fit.get("seed") or 0), fit.get("epochs")  # None when trained by --steps


def _setup_of_record(record: Any) -> Setup:
    """The Setup a fit run trained: `trainwise fit FILE[:FUNCTION]` as its command recorded,
    read again relative to the folder it ran in."""
    from trainwise.loader import load_setup

    target = _fit_target(record.meta) if record is not None else None
    if target is None:
        what = f"run {record.id}" if record is not None else "the fit result has no record, so it"
        raise SetupError(
            f"{what} was not made by `trainwise fit FILE`, so its setup file is unknown: give "
            "the Setup (tw.interpret(result, setup)), or `trainwise interpret FILE "
            "--checkpoint RUN/checkpoints/best.pt`"
        )
    return load_setup(target)


def _fit_target(meta: dict) -> str | None:
    command = [str(a) for a in meta.get("command") or []]
    if "fit" not in command:
        return None
    rest, target = iter(command[command.index("fit") + 1 :]), None
    for arg in rest:
        if not arg.startswith("-"):
            target = arg
            break
        if "=" not in arg and arg not in FIT_FLAGS:
            next(rest, None)  # the option's value
    if target is None:
        return None
    path, sep, function = target.rpartition(":")
    file = path if sep and function.isidentifier() else target
    resolved = Path(meta.get("cwd") or ".") / file
    return str(resolved) + (f":{function}" if sep and function.isidentifier() else "")


def with_device(subject: Subject, device: str | None) -> Subject:
    if device is None:
        return subject
    setup = dataclasses.replace(subject.setup, device=device)
    return dataclasses.replace(subject, setup=setup, model=subject.model.to(setup.torch_device))
