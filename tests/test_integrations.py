"""The Lightning and Hugging Face adapters, run with the real packages on tiny models."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from helpers import assert_clean, assert_fires


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _digits_like(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    return x, (x[:, :4].sum(1) > 0).long()


def test_lightning_callback_watches_a_healthy_fit():
    import lightning as L

    from trainwise.integrations.lightning import TrainwiseCallback

    class Classifier(L.LightningModule):
        def __init__(self, lr):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
            self.lr = lr

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=self.lr)

    x, y = _digits_like()
    train = DataLoader(TensorDataset(x[:192], y[:192]), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(x[192:], y[192:]), batch_size=64)
    callback = TrainwiseCallback(verbose=False)
    trainer = L.Trainer(
        max_epochs=3,
        accumulate_grad_batches=2,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Classifier(lr=1e-2), train, val)
    watch = callback.watch
    assert watch.step == trainer.global_step == 18  # 12 batches / 2 accumulated, x 3 epochs
    assert len(watch.signals.get("train/loss")) == 18
    assert set(watch.signals.get("backward_passes").values) == {2.0}
    assert len(watch.signals.get("val/loss")) == 3
    assert_clean(callback.findings)


def test_lightning_callback_reports_a_broken_fit():
    import lightning as L

    from trainwise.integrations.lightning import TrainwiseCallback

    class LogCounts(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.nll_loss(torch.log(F.softmax(self.net(x * 1e4), 1)), y)  # log(0)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = _digits_like()
    callback = TrainwiseCallback(verbose=False)
    trainer = L.Trainer(
        max_steps=6,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(LogCounts(), DataLoader(TensorDataset(x, y), batch_size=32))
    finding = assert_fires(callback.findings, "nonfinite-loss")
    assert "log of 0" in finding.message


class _TokenPairs(Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, 100, (n, 12), generator=g)
        self.labels = (self.ids[:, 0] > 50).long()  # learnable from the first token

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {
            "input_ids": self.ids[i],
            "attention_mask": torch.ones(12, dtype=torch.long),
            "labels": self.labels[i],
        }


def test_transformers_callback_watches_a_trainer(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from trainwise.integrations.transformers import TrainwiseTrainerCallback

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)  # from a config: no download
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=24,
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        logging_steps=4,
        eval_strategy="steps",
        eval_steps=8,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        gradient_accumulation_steps=2,
        disable_tqdm=True,
    )
    callback = TrainwiseTrainerCallback(verbose=False)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_TokenPairs(256, 0),
        eval_dataset=_TokenPairs(64, 1),
        callbacks=[callback],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    watch = callback.watch
    assert watch.step == 24
    # measured steps: the first 20, then every 10th (the standard preset)
    assert list(watch.signals.get("grad_norm").steps) == [*range(21)]
    assert set(watch.signals.get("backward_passes").values) == {2.0}
    assert len(watch.signals.get("train/loss")) == 6  # every logging_steps
    assert len(watch.signals.get("val/loss")) == 3
    assert "grad_norm/bert.embeddings.word_embeddings.weight" in watch.signals
    assert_clean(callback.findings)
