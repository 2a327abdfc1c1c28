"""tw.train_plus_val: the Setup for a last training run on the training and validation data.

Once the recipe and the number of epochs are chosen on the validation set, the validation data
have done their job, and a final run can learn from them too: more data, usually a better model
(the seeds' "retrain on train+val at the end"; common practice in Kaggle-style work). The price:
nothing is left to measure that run with, so early stopping and picking the best checkpoint on
validation are no longer possible. Train for the epoch count the earlier run found best, and
report the earlier run's validation numbers (or a separate test set), not this run's.
"""

from __future__ import annotations

import dataclasses

from torch.utils.data import ConcatDataset, DataLoader, RandomSampler

from trainwise.errors import SetupError
from trainwise.spec import Setup


def train_plus_val(setup: Setup) -> Setup:
    """A copy of `setup` whose training data are its train and val datasets together (a
    ConcatDataset, train first) and which has no validation data. A training DataLoader keeps
    its batch size, shuffling, collate_fn, workers and drop_last. Items of the validation set
    come as its dataset gives them: if the training dataset augments and the validation one
    does not, the validation items are trained on unaugmented."""
    if not isinstance(setup, Setup):
        raise SetupError(
            f"train_plus_val(setup=...): expected a tw.Setup, got {type(setup).__name__}"
        )
    if setup.val is None:
        raise SetupError(
            f"train_plus_val: Setup {setup.name!r} has no validation data to add to its training data"
        )
    both = ConcatDataset([setup.train_dataset, setup.val_dataset])
    train = setup.train
    if isinstance(train, DataLoader):
        train = DataLoader(
            both,
            batch_size=train.batch_size,
            shuffle=isinstance(train.sampler, RandomSampler),
            collate_fn=train.collate_fn,
            num_workers=train.num_workers,
            pin_memory=train.pin_memory,
            drop_last=train.drop_last,
        )
    else:
        train = both
    return dataclasses.replace(setup, train=train, val=None)
