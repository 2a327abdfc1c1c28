"""Healthy: a tiny BERT (BertForSequenceClassification from a BertConfig, nothing downloaded)
set up through the Hugging Face Trainer's pieces: dict samples (input_ids, attention_mask,
labels) of variable length, padded by DataCollatorWithPadding with a tokenizer built from an
in-memory vocabulary; the model computes its own cross-entropy from `labels`. Three balanced
topics, each with its own keywords, 800 training and 200 validation sentences (_topics.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from _topics import DataCollatorWithPadding, TopicSentences, bert, tokenizer, topic_setup  # noqa: E402, F401

EXPECT: list[str] = []


def setup():
    return topic_setup(bert, "trainwise-bert-dict-batches")
