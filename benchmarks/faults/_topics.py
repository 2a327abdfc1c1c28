"""A tiny BERT topic classifier set up from a Hugging Face Trainer's pieces, nothing downloaded:
the healthy case (healthy/bert_dict_batches.py) and its broken twin (static/
bert_num_labels_too_small.py) share it. Dict samples (input_ids, attention_mask, labels) of
variable length, padded by DataCollatorWithPadding with a tokenizer built from an in-memory
vocabulary; three balanced topics, each with its own keywords."""

import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DataCollatorWithPadding,
    TrainingArguments,
)

import trainwise as tw

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(123)]
KEYWORDS = 8  # class c has the keywords w{8c}..w{8c+7}; w24..w122 are filler words


def tokenizer() -> BertTokenizerFast:
    # `vocab=` a dict (or a path); transformers 5 ignores `vocab_file=`.
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)})


class TopicSentences(Dataset):
    """Sentences of 6..24 words, classes balanced: each word is one of the sentence's class
    keywords with probability 0.4 (at least one is), else a filler word."""

    def __init__(self, n: int, seed: int, classes: int = 3):
        g = torch.Generator().manual_seed(seed)
        self.labels = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
        texts = []
        for label in self.labels.tolist():
            length = int(torch.randint(6, 25, (1,), generator=g))
            words = torch.randint(3 * KEYWORDS, 123, (length,), generator=g)
            topical = torch.rand(length, generator=g) < 0.4
            topical[0] |= not bool(topical.any())
            picks = torch.randint(0, KEYWORDS, (int(topical.sum()),), generator=g)
            words[topical] = label * KEYWORDS + picks
            texts.append(" ".join(f"w{i}" for i in words.tolist()))
        self.encoded = tokenizer()(texts)  # lists of ids with [CLS] ... [SEP], unpadded

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {
            "input_ids": torch.tensor(self.encoded["input_ids"][i]),
            "attention_mask": torch.tensor(self.encoded["attention_mask"][i]),
            "labels": self.labels[i],
        }


def bert(num_labels: int = 3) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, num_labels=num_labels,
    )  # fmt: skip
    return BertForSequenceClassification(config)


def topic_setup(model, run_name: str) -> tw.Setup:
    """800 training and 200 validation sentences, the Trainer's pieces around `model`."""
    args = TrainingArguments(
        output_dir=str(Path(tempfile.gettempdir()) / run_name),
        per_device_train_batch_size=16,
        learning_rate=1e-3,
        report_to=[],
    )
    return tw.Setup.from_hf(
        model=model,
        args=args,
        train_dataset=TopicSentences(800, seed=0),
        eval_dataset=TopicSentences(200, seed=1),
        data_collator=DataCollatorWithPadding(tokenizer()),
    )
