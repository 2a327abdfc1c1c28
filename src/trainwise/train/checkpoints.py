"""fit's checkpoints, in the run record's folder.

checkpoints/best.pt: the model's state dict at the best whole-set validation (by `monitor`),
    `model.load_state_dict(torch.load(path, weights_only=True))`.
checkpoints/last.pt: everything a killed run needs to go on exactly where it was: model,
    optimizer, scheduler, scaler, clipping threshold, the torch RNG (now, and at the start of
    the epoch, which decides its data order), the step, the epoch and the batch within it, the
    recipe as applied, and the run's length, seed and sample. Saved at every epoch end and at
    validation points: at every one while the file is small (under LARGE_BYTES), else at most
    LAST_SAVES times a run between epoch ends (a model's weights and Adam's two moments, 54 MB
    for a 4.7M-weight MLP, took 0.15 s a save on a CPU: at every one of fit's ~50 validation
    points that was a third of a 176-step run). Written to a temporary file and renamed (a kill
    never leaves half a file).
checkpoints/final.pt: a final fit's model state dict (Recipe.final_fit: no validation, so no
    best), loaded like best.pt.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwise.errors import SetupError

BEST = Path("checkpoints") / "best.pt"
LAST = Path("checkpoints") / "last.pt"
FINAL = Path("checkpoints") / "final.pt"
LOWER_IS_BETTER = ("val_loss", "val_mae", "val_ece")
HIGHER_IS_BETTER = ("val_accuracy", "val_f1", "val_r2", "val_iou")
LARGE_BYTES = 2**20  # a last.pt this large (~5 ms a save here) is written ~10 times a run, not ~50
LAST_SAVES = 10  # ... at validation points at least a tenth of the run apart


def check_monitor(monitor: str) -> None:
    if monitor not in LOWER_IS_BETTER + HIGHER_IS_BETTER:
        raise SetupError(
            f"fit: monitor={monitor!r}; expected one of {', '.join(LOWER_IS_BETTER + HIGHER_IS_BETTER)}"
        )


def _better(value: float, best: float | None, monitor: str) -> bool:
    if not math.isfinite(value):  # a diverged model is never the best one
        return False
    if best is None:
        return True
    return value > best if monitor in HIGHER_IS_BETTER else value < best


@dataclass
class Pieces:
    """What a fit run trains with and a checkpoint holds: a resumed run restores all five."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch LR scheduler
    scaler: Any  # torch.amp.GradScaler, or fit's stand-in that does nothing
    clipper: Any  # train.clipping.GradientClipper

    def state_dicts(self) -> dict[str, Any]:
        return {name: getattr(self, name).state_dict() for name in PIECES}

    def load_state_dicts(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise SetupError(
                f"fit --resume: the checkpoint does not match the setup's model ({exc})"
            ) from exc
        for name in PIECES[1:]:
            getattr(self, name).load_state_dict(state[name])


PIECES = tuple(f.name for f in fields(Pieces))


class Saver:
    """Writes the checkpoints of one fit run into `folder` (nothing without a record)."""

    def __init__(self, folder: Path | None, recipe: Any, epochs, steps, seed, sample,
                 processes: int = 1, total: int = 0) -> None:  # fmt: skip
        """total: the run's steps (large checkpoints are spaced a tenth of it apart)."""
        self.folder = folder
        self._large = False  # the last last.pt written was over LARGE_BYTES
        self._saved_at = -math.inf  # the step of the last last.pt written
        self._spacing = max(1, math.ceil(total / LAST_SAVES))
        # processes: how many trained it (a resumed run must train on as many: the global
        # batch and each process's share of the data depend on it)
        self.run = {"recipe": recipe.to_dict(), "epochs": epochs, "steps": steps, "seed": seed,
                    "sample": sample, "processes": processes}  # fmt: skip
        self.best_path: Path | None = None

    def last(self, pieces: Pieces, step: int, epoch: int, batch: int, epoch_rng, best,
             mid_epoch: bool = False) -> None:  # fmt: skip
        """The state after `step` (batch `batch` of epoch `epoch` done); none while the
        weights are not finite (a diverging run keeps its last good checkpoint), nor at a
        validation point `mid_epoch` when the checkpoint is large and the last one recent."""
        if self.folder is None:
            return
        if mid_epoch and self._large and step - self._saved_at < self._spacing:
            return
        if not _finite(pieces.model):
            return
        state = {
            **self.run,
            **pieces.state_dicts(),
            "rng": torch.get_rng_state(),
            # dropout on a GPU draws from the GPU's generator: a resumed run needs it too
            "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
            "epoch_rng": epoch_rng,
            "step": step,
            "epoch": epoch,
            "batch": batch,
            "best": best,
        }
        _save(state, self.folder / LAST)
        self._saved_at = step
        self._large = (self.folder / LAST).stat().st_size > LARGE_BYTES

    def epoch_end(self, pieces: Pieces, step: int, epoch: int, metrics: dict[str, float],
                  best: dict[str, float], monitor: str, last: bool = True) -> dict[str, float]:  # fmt: skip
        """After a whole-set validation: best.pt when `monitor` improved, last.pt (unless the
        run stopped on an error: the last good one stays). Returns the best so far."""
        value = metrics.get(monitor.removeprefix("val_"))
        if value is not None and _better(value, best.get(monitor), monitor):
            best = {"step": step, "epoch": epoch, **{f"val_{k}": v for k, v in metrics.items()}}
            if self.folder is not None:
                _save(_on_cpu(pieces.model.state_dict()), self.folder / BEST)
                self.best_path = self.folder / BEST
        if last:
            self.last(pieces, step, epoch, 0, None, best)
        return best


def save_model(model: nn.Module, path: Path) -> None:
    """The model's state dict at `path` (written whole or not at all)."""
    _save(_on_cpu(model.state_dict()), path)


def _on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with its tensors on the CPU: a model trained on a GPU then loads with a
    plain `torch.load(path, weights_only=True)` on a machine without one (a laptop for
    interpret, a CPU server for compress); on the CPU nothing is copied."""
    return {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def _finite(model: nn.Module) -> bool:
    """Every floating-point weight and buffer finite (one sync)."""
    tensors = [t for t in model.state_dict().values() if torch.is_floating_point(t)]
    return not tensors or bool(torch.stack([t.isfinite().all() for t in tensors]).all())


def _save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_last(run: str | Path) -> dict[str, Any]:
    """The last checkpoint of a fit run folder (or the checkpoint file itself)."""
    path = Path(run)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise SetupError(
            f"fit --resume {run}: no checkpoint at {path}; expected a fit run's folder "
            "(trainwise runs lists them)"
        )
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise SetupError(f"fit --resume: {path} could not be read ({exc})") from exc


def restore(state: dict[str, Any], pieces: Pieces) -> tuple[int, int, int, dict[str, float]]:
    """Loads a last checkpoint into the run's pieces; (step, epoch, batches done in the epoch,
    best so far). The RNG is set to where the killed run was."""
    pieces.load_state_dicts(state)
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])
    return state["step"], state["epoch"], state["batch"], dict(state["best"])
