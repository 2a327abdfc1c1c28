"""Setup.from_lightning and Setup.from_hf, with the real packages and tiny models from configs.

The projects are the fault suite's healthy cases (benchmarks/faults/healthy/lightning_module.py
and bert_dict_batches.py): what a user has, handed over as it is.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from transformers import TrainingArguments

import trainwise as tw
from helpers import speed_unjudged
from trainwise.context import StaticContext
from trainwise.loss_kinds import CROSS_ENTROPY
from trainwise.stages.static import StaticStage

HEALTHY = Path(__file__).parents[1] / "benchmarks" / "faults" / "healthy"


def _case(name: str):
    spec = importlib.util.spec_from_file_location(f"case_{name}", HEALTHY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


LIGHTNING = _case("lightning_module")
BERT = _case("bert_dict_batches")


class Items(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


# -- Lightning ----------------------------------------------------------------------------------


class Scheduled(LIGHTNING.DigitsMLP):
    def configure_optimizers(self):  # the dict form, with a scheduler
        opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 10)}


def test_from_lightning_takes_the_modules_step_optimizer_and_datamodule():
    module = Scheduled()
    before = _state(module)
    setup = tw.Setup.from_lightning(module, LIGHTNING.DigitsData(batch_size=32))
    assert setup.name == "Scheduled" and setup.effective_batch_size == 32
    ctx = StaticContext(setup)
    assert (
        isinstance(ctx.optimizer, torch.optim.SGD) and ctx.optimizer.param_groups[0]["lr"] == 0.05
    )
    assert ctx.loss_kind == CROSS_ENTROPY  # told by the value training_step returns
    report = tw.check(setup, stages=speed_unjudged(), quick=True)
    assert report.verdict == "ready to train", [f.message for f in report.findings]
    # The user's module is never trained: every experiment trains a copy.
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())


def test_from_lightning_takes_loaders_as_trainer_fit_does():
    data = LIGHTNING.DigitsData()
    data.setup("fit")
    setup = tw.Setup.from_lightning(
        LIGHTNING.DigitsMLP(),
        train_dataloaders=data.train_dataloader(),
        val_dataloaders=[data.val_dataloader()],
    )
    assert setup.val is not None
    assert static(setup).verdict == "ready to train"


def static(setup):
    return tw.check(setup, stages=[StaticStage()])


def test_lr_find_runs_on_a_lightning_setup_and_leaves_the_module_alone():
    module = LIGHTNING.DigitsMLP()
    before = _state(module)
    result = tw.lr_find(tw.Setup.from_lightning(module, LIGHTNING.DigitsData()), record=False)
    assert result.suggested_lr is not None and 1e-5 < result.suggested_lr < 1.0
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())


class NoOptimizer(LIGHTNING.DigitsMLP):
    def configure_optimizers(self):
        return "adam"


class BrokenData(L.LightningDataModule):
    def setup(self, stage):
        raise FileNotFoundError("data/train.csv")


def test_lightning_mistakes_get_clear_messages():
    with pytest.raises(tw.SetupError, match="expects a LightningModule, got Sequential"):
        tw.Setup.from_lightning(nn.Sequential(), LIGHTNING.DigitsData())
    with pytest.raises(tw.SetupError, match=r"BrokenData: .*FileNotFoundError: data/train.csv"):
        tw.Setup.from_lightning(LIGHTNING.DigitsMLP(), BrokenData())
    with pytest.raises(tw.SetupError, match=r"no training data"):
        tw.Setup.from_lightning(LIGHTNING.DigitsMLP())
    setup = tw.Setup.from_lightning(NoOptimizer(), LIGHTNING.DigitsData())
    with pytest.raises(tw.SetupError, match=r"NoOptimizer.configure_optimizers\(\) returned str"):
        setup.build_optimizer(setup.build_model())


# -- Hugging Face -------------------------------------------------------------------------------


def _args(**kw) -> TrainingArguments:
    return TrainingArguments(output_dir="unused", report_to=[], **kw)


def test_from_hf_builds_the_trainers_optimizer_and_batches():
    setup = tw.Setup.from_hf(
        BERT.bert,
        BERT.TopicSentences(64, seed=0),
        data_collator=BERT.DataCollatorWithPadding(BERT.tokenizer()),
        args=_args(per_device_train_batch_size=8, learning_rate=3e-4, weight_decay=0.1),
    )
    assert setup.loss is None and setup.effective_batch_size == 8
    model = setup.build_model()
    optimizer = setup.build_optimizer(model)
    assert isinstance(optimizer, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, plain = ([names[id(p)] for p in g["params"]] for g in optimizer.param_groups)
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    assert optimizer.param_groups[1]["weight_decay"] == 0.0
    assert all(n.endswith("bias") or "LayerNorm" in n for n in plain)
    assert "classifier.weight" in decayed and optimizer.param_groups[0]["lr"] == 3e-4
    ctx = StaticContext(setup)
    assert ctx.loss_kind == CROSS_ENTROPY and ctx.num_classes == 3
    # Padded by the collator, per batch: the check reads what the model is given.
    assert set(ctx.batch[0].kwargs) == {"input_ids", "attention_mask", "labels"}


def test_the_healthy_bert_case_passes_the_quick_protocol():
    report = tw.check(BERT.setup(), stages=speed_unjudged(), quick=True)
    assert report.verdict == "ready to train", [f.message for f in report.findings]
    assert not [r for r in report.stages if r.status == "skipped"]


def test_a_loss_function_given_to_from_hf_gets_the_logits():
    setup = tw.Setup.from_hf(
        BERT.bert,
        BERT.TopicSentences(64, seed=0),
        data_collator=BERT.DataCollatorWithPadding(BERT.tokenizer()),
        args=_args(),
        loss=nn.CrossEntropyLoss(),
    )
    ctx = StaticContext(setup)
    assert ctx.loss_kind == CROSS_ENTROPY and "labels" not in ctx.batch[0].kwargs
    assert static(setup).verdict == "ready to train"


def test_hf_mistakes_get_clear_messages():
    with pytest.raises(tw.SetupError, match="expects transformers.TrainingArguments, got dict"):
        tw.Setup.from_hf(BERT.bert, BERT.TopicSentences(8, seed=0), args={"lr": 1})
    # Raw variable-length items without a padding collator: the default collator cannot stack.
    setup = tw.Setup.from_hf(BERT.bert, BERT.TopicSentences(16, seed=0), args=_args())
    with pytest.raises(tw.SetupError, match="could not collate train samples"):
        static(setup)


def test_a_dict_batch_model_without_labels_argument_is_named():
    x = torch.randn(64, 8)
    data = Items([{"features": x[i], "labels": i % 2} for i in range(64)])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 2)

        def forward(self, features):
            return self.fc(features)

    setup = tw.Setup(model=Net, train=data, loss=None)
    with pytest.raises(tw.SetupError, match=r"Net.forward\(features\) takes no such argument"):
        static(setup)
    # With a loss function the same data check fine.
    report = static(tw.Setup(model=Net, train=data, loss=F.cross_entropy))
    assert report.verdict == "ready to train", [f.message for f in report.findings]


class TokenShare(Dataset):
    """Regression on token ids: the target is the (scaled) share of ids under 30."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, 100, (n, 12), generator=g)
        self.y = ((self.ids < 30).float().mean(dim=1) - 0.25) * 4

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.y[i]}


def test_an_hf_regression_head_is_judged_by_the_loss_it_computes():
    from transformers import BertConfig, BertForSequenceClassification

    def regressor():
        config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=32, num_labels=1)  # fmt: skip
        return BertForSequenceClassification(config)

    setup = tw.Setup.from_hf(regressor, TokenShare(128, seed=0), args=_args())
    ctx = StaticContext(setup)
    # HF squeezes the (N, 1) logits to the (N,) targets: MSE, and no broadcast to report.
    assert ctx.loss_kind == "mse" and ctx.loss_match == ("mse", "squeeze")
    report = static(setup)
    assert "output-size-mismatch" not in {f.rule for f in report.findings}
    # The same shapes through a loss function that broadcasts them are the real bug.
    broken = tw.Setup.from_hf(regressor, TokenShare(128, seed=0), args=_args(), loss=nn.MSELoss())
    assert "output-size-mismatch" in {f.rule for f in static(broken).findings}
