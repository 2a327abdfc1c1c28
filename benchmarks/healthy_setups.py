"""The healthy examples of issue 4, as setup builders: the protocol's defaults must pass on all.

An MLP and a CNN on scikit-learn's digits, a 1D CNN on MNIST-1D (generated offline by the
`mnist1d` package), a GRU on a synthetic sequence task, a small transformer on token sequences,
a regression MLP on scikit-learn's diabetes data. Used by tests/stages and benchmarks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw


def _adamw(params):
    return torch.optim.AdamW(params, lr=1e-3)


def _digits(flat: bool):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    x = (x - x[300:].mean()) / x[300:].std()
    x = x.reshape(len(x), 64) if flat else x.unsqueeze(1)
    return TensorDataset(x[300:], y[300:]), TensorDataset(x[:300], y[:300])


def mlp_digits() -> tw.Setup:
    train, val = _digits(flat=True)
    return tw.Setup(
        model=lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=_adamw,
        name="mlp-digits",
    )


def cnn_digits() -> tw.Setup:
    train, val = _digits(flat=False)

    def model():
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),  # (B, 16, 8, 8)
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 32, 4, 4)
            nn.Flatten(),
            nn.Linear(32 * 16, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    return tw.Setup(
        model=model,
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=_adamw,
        name="cnn-digits",
    )


def mnist1d_data(n: int = 4000):
    """MNIST-1D (x: (N, 1, 40) standardized signals, y: 10 classes), train/val TensorDatasets."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n
    data = make_dataset(args)  # generated locally from templates: no download
    x = torch.tensor(data["x"], dtype=torch.float32).unsqueeze(1)
    xt = torch.tensor(data["x_test"], dtype=torch.float32).unsqueeze(1)
    mean, std = x.mean(), x.std()
    y, yt = torch.tensor(data["y"]), torch.tensor(data["y_test"])
    return TensorDataset((x - mean) / std, y), TensorDataset((xt - mean) / std, yt)


def cnn1d(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(1, 32, 5, padding=2),
        nn.ReLU(),  # (B, 32, 40)
        nn.Conv1d(32, 32, 3, padding=1, stride=2),
        nn.ReLU(),  # (B, 32, 20)
        nn.Conv1d(32, 32, 3, padding=1, stride=2),
        nn.ReLU(),  # (B, 32, 10)
        nn.Flatten(),
        nn.Linear(320, classes),
    )


def cnn1d_mnist1d() -> tw.Setup:
    train, val = mnist1d_data()
    return tw.Setup(
        model=cnn1d,
        train=train,
        val=val,
        loss=nn.CrossEntropyLoss(),
        optimizer=_adamw,
        name="cnn1d-mnist1d",
    )


def _sequences(n: int, seed: int):
    """(N, 16, 4) Gaussian steps; the label is the feature with the largest sum over time."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, 4, generator=g)
    return x, x.sum(dim=1).argmax(dim=1)


class GRUClassifier(nn.Module):
    def __init__(self, features: int = 4, hidden: int = 32, classes: int = 4) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):  # x (B, T, F)
        out, _ = self.gru(x)  # (B, T, H)
        return self.head(out[:, -1])  # the last step has seen the whole sequence


def gru_sequences() -> tw.Setup:
    return tw.Setup(
        model=GRUClassifier,
        train=TensorDataset(*_sequences(1500, 0)),
        val=TensorDataset(*_sequences(300, 1)),
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3),
        name="gru-sequences",
    )


def _tokens(n: int, seed: int):
    """(N, 12) tokens from a vocabulary of 8; the label is the most frequent of tokens 0..3."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 8, (n, 12), generator=g)
    counts = torch.stack([(x == t).sum(dim=1) for t in range(4)], dim=1)  # (N, 4)
    return x, counts.argmax(dim=1)


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 8, length: int = 12, dim: int = 32, classes: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, 64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens):  # (B, T)
        h = self.encoder(self.embed(tokens) + self.pos)  # (B, T, D)
        return self.head(h.mean(dim=1))


def transformer_tokens() -> tw.Setup:
    return tw.Setup(
        model=TinyTransformer,
        train=TensorDataset(*_tokens(1500, 0)),
        val=TensorDataset(*_tokens(300, 1)),
        loss=nn.CrossEntropyLoss(),
        optimizer=_adamw,
        name="transformer-tokens",
    )


def regression_mlp() -> tw.Setup:
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.float32).unsqueeze(1)
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean()) / y.std()
    return tw.Setup(
        model=lambda: nn.Sequential(
            nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)
        ),
        train=TensorDataset(x[:300], y[:300]),  # 142 held out: tiny-validation wants 100+
        val=TensorDataset(x[300:], y[300:]),
        loss=nn.MSELoss(),
        optimizer=_adamw,
        name="regression-mlp",
    )


HEALTHY = {
    "mlp-digits": mlp_digits,
    "cnn-digits": cnn_digits,
    "cnn1d-mnist1d": cnn1d_mnist1d,
    "gru-sequences": gru_sequences,
    "transformer-tokens": transformer_tokens,
    "regression-mlp": regression_mlp,
}
