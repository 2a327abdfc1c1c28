"""Shared data for fault cases: scikit-learn's bundled digits, standardized, in a fixed split."""

import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset


def digits(flat: bool = False, standardize: bool = True):
    """(train, val) TensorDatasets: inputs (N, 64) or (N, 1, 8, 8), labels (N,) in 0..9."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    if standardize:
        x = (x - x[300:].mean()) / x[300:].std()
    x = x.reshape(len(x), 64) if flat else x.unsqueeze(1)
    return TensorDataset(x[300:], y[300:]), TensorDataset(x[:300], y[:300])
