"""`tw.interpret`: what a trained model gets wrong, from one bounded pass over a dataset.

    interp = tw.interpret(model, dataset, loss_fn)       # or tw.interpret(result) after tw.fit,
    interp = tw.interpret(setup, checkpoint="best.pt")   # or interpret_run("RUN")
    interp.top_losses(k), interp.confusion(), interp.most_confused(), interp.per_class(),
    interp.calibration(), interp.label_issues(), interp.max_activating(layer, k)

The pass (passes.py) keeps the k largest losses, the confusion counts, the per-class counts and
the calibration bins, never every prediction: memory is flat in the data set's size (measured
by benchmarks/interpret_memory.py). Label issues, max-activating inputs and attributions are
computed when asked, each with a pass or a training of its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainwise.context import StaticContext
from trainwise.errors import SetupError
from trainwise.interpret.activations import (
    Activation,
    TopActivations,
    UnitCapture,
    channels_first,
    layer_named,
    weight_histograms,
    weight_layers,
)
from trainwise.interpret.attributions import Attribution, attribute
from trainwise.interpret.forms import FORMS, input_form
from trainwise.interpret.label_issues import (
    DEFAULT_FOLDS,
    DEFAULT_METHOD,
    CrossValidation,
    LabelIssue,
    cross_val_probabilities,
    find_label_issues,
)
from trainwise.interpret.losses import per_sample_loss
from trainwise.interpret.passes import PassCounts, batches, stream
from trainwise.interpret.sources import Subject, of_fit, of_model, of_run, of_setup
from trainwise.interpret.stream import Calibration, ResidualSummary, TopLoss

DEFAULT_K = 16  # top losses kept by the pass
MAX_UNITS = 64  # units followed by max_activating when none are named
DEFAULT_EPOCHS = 10  # label issues' folds when the model's own training length is unknown


@dataclass(frozen=True)
class ConfusedPair:
    """`count` samples of class `actual` predicted as `predicted`."""

    actual: int
    predicted: int
    count: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ClassScores:
    """One class's precision, recall and F1 (torchmetrics) and its number of samples."""

    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def interpret(subject: Any, dataset: Any = None, loss: Any = None, *, checkpoint: Any = None,
              split: str = "val", k: int = DEFAULT_K, form: str | None = None,
              setup: Any = None, seed: int = 0, **options: Any) -> Interpretation:  # fmt: skip
    """Interpret a trained model on a dataset in one bounded pass.

    interpret(model, dataset, loss_fn)        a module, a Dataset/DataLoader of (input, target)
                                              pairs (or any batch form a Setup takes: pass
                                              task=, num_classes=, target=, ... as options)
    interpret(fit_result[, setup=setup])      after tw.fit; split="val" or "train"
    interpret(setup, checkpoint=path)         a Setup and a state dict
    k: the top losses kept; form: how samples are drawn (one of forms.FORMS; default read from
    the first sample's shape); seed: of fit's held-out split, for a Setup without validation
    set (fit's --seed).
    """
    from trainwise.spec import Setup
    from trainwise.train.loop import FitResult

    if isinstance(subject, nn.Module):
        if dataset is None:
            raise SetupError("interpret(model, dataset, loss_fn): the dataset is missing")
        found = of_model(subject, dataset, loss, **options)
    elif isinstance(subject, FitResult):
        found = of_fit(subject, setup, split)
    elif isinstance(subject, Setup):
        found = of_setup(subject, checkpoint, split, seed)
    else:
        raise SetupError(
            f"interpret({type(subject).__name__}): expected an nn.Module with a dataset and a "
            "loss, a tw.fit result, or a tw.Setup with checkpoint="
        )
    return Interpretation.of(found, k, form)


def interpret_run(ref: str, split: str = "val", k: int = DEFAULT_K, root: str | None = None,
                  form: str | None = None) -> Interpretation:  # fmt: skip
    """Interpret a fit run (number, id, name or folder): its setup file, its best checkpoint."""
    return Interpretation.of(of_run(ref, split, root), k, form)


class Interpretation:
    """The result of the pass, and what can be asked of the model afterwards."""

    def __init__(self, subject: Subject, counts: PassCounts, output_form: str,
                 form: str, notes: list[str]) -> None:  # fmt: skip
        self.subject, self.counts, self.output_form, self.form = subject, counts, output_form, form
        self.task, self.num_classes = counts.task, counts.num_classes
        self.notes = notes
        self._issues: tuple[list[LabelIssue], CrossValidation] | None = None

    @classmethod
    def of(cls, subject: Subject, k: int = DEFAULT_K, form: str | None = None
           ) -> Interpretation:  # fmt: skip
        if form is not None and form not in FORMS:
            raise SetupError(f"interpret: form={form!r}; expected one of {', '.join(FORMS)}")
        setup = subject.setup
        ctx = StaticContext(setup)
        ctx.check_loss_accepts_output()
        task, num_classes = ctx.task, ctx.num_classes
        loss_fn, note = per_sample_loss(setup.loss, ctx.prediction_loss, task)
        notes = [*subject.notes, *([note] if note else [])]
        if task == "regression":
            notes.append("regression: no classes, so residuals instead of a confusion matrix, "
                         "per-class scores, calibration and label issues")  # fmt: skip
        if task == "multilabel":
            notes.append("multilabel: per-label scores and calibration; no confusion matrix "
                         "and no label issues (they need one label per sample)")  # fmt: skip
        model = subject.model
        layers = weight_layers(model)
        data = batches(setup, subject.dataset, _where(subject))
        counts = stream(setup, model, data, loss_fn, task, num_classes, ctx.output_form, k,
                        layers)  # fmt: skip
        if counts.samples == 0:
            raise SetupError(f"interpret: the {subject.where} set yielded no samples")
        interp = cls(subject, counts, ctx.output_form, form or "other", notes)
        if form is None:
            interp.form = input_form(interp.sample(0)[0], task)
        return interp

    # -- what the pass kept -----------------------------------------------------------------

    @property
    def samples(self) -> int:
        return self.counts.samples

    @property
    def mean_loss(self) -> float:
        return self.counts.loss_sum / max(self.counts.samples, 1)

    def top_losses(self, k: int | None = None) -> list[TopLoss]:
        """The samples with the largest loss, largest first (at most the k of the pass)."""
        return self.counts.top.largest(k)

    def confusion(self) -> list[list[int]]:
        """Counts [actual][predicted] (pixels for segmentation), from torchmetrics."""
        metric = self._metric("confusion", "a confusion matrix")
        return metric.compute().long().cpu().tolist()

    def most_confused(self, min_count: int = 1) -> list[ConfusedPair]:
        """The off-diagonal cells of the confusion matrix with at least min_count samples,
        largest first."""
        matrix = np.asarray(self.confusion())
        np.fill_diagonal(matrix, 0)
        actual, predicted = np.nonzero(matrix >= max(min_count, 1))
        pairs = [ConfusedPair(int(a), int(p), int(matrix[a, p]))
                 for a, p in zip(actual, predicted, strict=True)]  # fmt: skip
        return sorted(pairs, key=lambda p: (-p.count, p.actual, p.predicted))

    def per_class(self) -> dict[str, ClassScores]:
        """Per class (or label): precision, recall, F1 from torchmetrics, and the support."""
        values = {name: self._metric(name, "per-class scores").compute().cpu()
                  for name in ("precision", "recall", "f1")}  # fmt: skip
        support = self._support()
        return {str(c): ClassScores(float(values["precision"][c]), float(values["recall"][c]),
                                    float(values["f1"][c]), int(support[c]))
                for c in range(len(support))}  # fmt: skip

    def calibration(self) -> Calibration:
        """Expected calibration error over 15 confidence bins and the bins (reliability)."""
        if self.counts.calibration is None:
            raise SetupError(f"calibration: this is {self.task}, with no class probabilities")
        return self.counts.calibration.result()

    def residuals(self) -> ResidualSummary:
        """Regression: residual moments and a bounded sample of (target, prediction) pairs."""
        if self.counts.residuals is None:
            raise SetupError(f"residuals: this is {self.task}; residuals are for regression")
        return self.counts.residuals.result()

    def weight_distributions(self) -> dict[str, dict[str, Any]]:
        return weight_histograms(self.subject.model)

    def activation_distributions(self) -> dict[str, dict[str, Any]]:
        """Each weight layer's outputs over the first 512 samples of the pass (a sample)."""
        return self.counts.activations.histograms() if self.counts.activations else {}

    def _metric(self, name: str, what: str) -> Any:
        metric = self.counts.metrics.get(name)
        if metric is None:
            raise SetupError(
                f"{what}: this is {self.task}"
                + (" (no classes: see residuals())" if self.task == "regression" else "")
            )
        return metric

    def _support(self) -> list[int]:
        stats = self._metric("support", "per-class scores").compute().cpu()  # (C, 5)
        return stats[:, 4].long().tolist()  # tp, fp, tn, fn, support

    # -- what needs more work: label issues, activations, attributions -----------------------

    def label_issues(self, folds: int = DEFAULT_FOLDS, epochs: int | None = None,
                     method: str = DEFAULT_METHOD, recipe: Any = None) -> list[LabelIssue]:  # fmt: skip
        """Probable label errors in the training set, most likely first: confident learning on
        out-of-sample probabilities from `folds`-fold cross-validation, each fold trained with
        tw.fit (the run's recipe and epochs when known)."""
        if self._issues is None:
            self._issues = self._find_label_issues(folds, epochs, method, recipe)
        return self._issues[0]

    @property
    def cross_validation(self) -> CrossValidation | None:
        return self._issues[1] if self._issues else None

    def _find_label_issues(self, folds, epochs, method, recipe):
        from trainwise.data import class_labels_at, dataset_len

        if self.task != "classification":
            raise SetupError(f"label issues: this is {self.task}; they need one class label "
                             "per sample (single-label classification)")  # fmt: skip
        setup = self.subject.setup
        dataset = setup.train_dataset
        size = dataset_len(dataset)
        labels = class_labels_at(dataset, setup.split_batch, range(size or 0))
        if labels is None:
            raise SetupError("label issues: the training labels could not be read as one class "
                             "index per sample")  # fmt: skip
        labels = labels.cpu().numpy().astype(np.int64)
        epochs = epochs or self.subject.epochs or DEFAULT_EPOCHS
        probs, how = cross_val_probabilities(
            setup, labels, self.num_classes, folds, epochs, recipe or self.subject.recipe,
            output_form=self.output_form,
        )  # fmt: skip
        return find_label_issues(probs, labels, method), how

    def max_activating(self, layer: str, k: int = 9, units: list[int] | None = None
                       ) -> dict[int, list[Activation]]:  # fmt: skip
        """Per unit of `layer` (a channel, averaged over positions, or a feature), the k
        samples of the split with the largest value, largest first; one more pass. units:
        default the layer's first 64."""
        model, setup = self.subject.model, self.subject.setup
        module = layer_named(model, layer)
        capture = UnitCapture(module, channels_first(model, module))
        heaps: TopActivations | None = None
        was = model.training
        model.eval()
        try:
            with capture, torch.no_grad():
                for x, _, indices in batches(setup, self.subject.dataset, _where(self.subject)):
                    setup.predict(model, x)
                    values = capture.values
                    if values is None:
                        raise SetupError(f"max_activating: layer {layer!r} gives no float "
                                         "tensor output")  # fmt: skip
                    if heaps is None:
                        heaps = TopActivations(self._units(layer, values, units), k)
                    heaps.update(values.cpu(), indices)
        finally:
            model.train(was)
        return heaps.result() if heaps else {}

    @staticmethod
    def _units(layer: str, values: torch.Tensor, units: list[int] | None) -> list[int]:
        count = values.shape[1]
        if units is None:
            return list(range(min(count, MAX_UNITS)))
        bad = [u for u in units if not 0 <= u < count]
        if bad:
            raise SetupError(f"max_activating: layer {layer!r} has units 0..{count - 1}; got {bad}")
        return list(units)

    def attributions(self, k: int = 8, method: str = "saliency") -> list[Attribution]:
        """Captum attribution maps of the k top-loss samples, for the class each was
        predicted as (saliency, or integrated gradients)."""
        top = self.top_losses(k)
        if not top:
            return []
        if self.task in ("segmentation", "multilabel"):
            raise SetupError(f"attributions: for classification and regression; this is "
                             f"{self.task}")  # fmt: skip
        inputs = [self.sample(t.index)[0] for t in top]
        if not all(isinstance(x, torch.Tensor) for x in inputs):
            raise SetupError("attributions: the model takes several inputs or no tensor; "
                             "they need one input tensor")  # fmt: skip
        device = self.subject.setup.torch_device
        targets = [t.pred if self.task == "classification" else None for t in top]
        maps = attribute(self.subject.model, self.subject.setup.predict,
                         torch.stack(inputs).to(device), targets, method)  # fmt: skip
        return [Attribution(t.index, target, m)
                for t, target, m in zip(top, targets, maps, strict=True)]  # fmt: skip

    def sample(self, index: int) -> tuple[Any, Any]:
        """(input, target) of one sample of the split, read again from the dataset."""
        item = self.subject.dataset[index]
        return self.subject.setup.split_batch(item, index, _where(self.subject))

    # -- output ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The --json contract: top_losses, confusion, most_confused, per_class, calibration,
        label_issues (null when not computed), and for regression the residuals."""
        classes = (
            self.task in ("classification", "segmentation") and "confusion" in self.counts.metrics
        )
        issues = self._issues[0] if self._issues else None
        return {
            "source": self.subject.source,
            "split": self.subject.where,
            "task": self.task,
            "num_classes": self.num_classes,
            "samples": self.samples,
            "loss": self.mean_loss,
            "top_losses": [t.to_dict() for t in self.top_losses()],
            "confusion": self.confusion() if classes else None,
            "most_confused": [p.to_dict() for p in self.most_confused()] if classes else [],
            "per_class": ({c: s.to_dict() for c, s in self.per_class().items()}
                          if "precision" in self.counts.metrics else {}),  # fmt: skip
            "calibration": self.calibration().to_dict() if self.counts.calibration else None,
            "residuals": self.residuals().to_dict() if self.counts.residuals else None,
            "label_issues": [i.to_dict() for i in issues] if issues is not None else None,
            "cross_validation": dataclasses.asdict(self.cross_validation)
            if self.cross_validation else None,
            "notes": self.notes,
        }  # fmt: skip

    def write_report(self, folder: str | Path | None = None, **choices: Any) -> Path:
        """The HTML report (interpret.html) in `folder`, default the run's folder (else the
        current one); its path."""
        from trainwise.interpret.page import build_page
        from trainwise.report.interpret_html import write_interpret_html

        folder = Path(folder or self.subject.folder or ".")
        return write_interpret_html(build_page(self, **choices), folder)


def _where(subject: Subject) -> str:
    return "val" if subject.where == "val" else "train"
