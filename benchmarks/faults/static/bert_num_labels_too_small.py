"""A tiny BERT whose config says num_labels=2 for data with 3 classes (topics): label 2 indexes
past the classifier's two logits, and the model's own CrossEntropyLoss fails on it (an IndexError
on the CPU, a device-side assert on a GPU). Same data and Trainer pieces as
healthy/bert_dict_batches."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from _topics import bert, topic_setup  # noqa: E402

EXPECT = ["labels-out-of-range"]


def bert_two_labels():
    return bert(num_labels=2)  # too few for the labels 0, 1, 2


def setup():
    return topic_setup(bert_two_labels, "trainwise-bert-num-labels")
