"""The tasks of the LR-suggestion benchmark and the fixed-budget training that scores an LR.

Every task is small enough to train in about a second on one CPU thread, so the oracle (a log
grid of LRs x 3 seeds per task) fits in minutes. All data is generated or bundled offline:
scikit-learn's digits and Friedman #1, `mnist1d` (generated locally), a synthetic sequence task.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


@dataclass(frozen=True)
class Task:
    name: str
    data: str  # key into DATASETS
    model: Callable[[], nn.Module]
    optimizer: str  # "adamw" | "sgd"
    batch_size: int
    steps: int  # the fixed training budget (cosine-annealed to 0)
    loss: str = "ce"  # "ce" (classification, also per token) | "mse"

    def make_optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)

    def make_loss(self) -> Callable:
        if self.loss == "mse":
            return nn.MSELoss()
        ce = nn.CrossEntropyLoss()
        # Sequence outputs (B, T, V) against targets (B, T): flatten the tokens.
        return lambda out, y: ce(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    def loader(self, seed: int) -> DataLoader:
        x, y, _, _ = DATASETS[self.data]()
        g = torch.Generator().manual_seed(seed)
        return DataLoader(
            TensorDataset(x, y), batch_size=self.batch_size, shuffle=True, generator=g
        )

    def grid(self, per_decade: int = 4) -> list[float]:
        """The oracle's log grid: wide enough that the best LR is inside it, not on its edge."""
        lo, hi = (-4.0, -0.5) if self.optimizer == "adamw" else (-3.0, 0.5)
        n = round((hi - lo) * per_decade)
        return [10 ** (lo + i / per_decade) for i in range(n + 1)]


# -- data: (x_train, y_train, x_val, y_val), standardized -------------------------------------


@cache
def digits_flat():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _split(torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y), seed=0)


@cache
def digits_image():
    x, y, xv, yv = digits_flat()
    return x.view(-1, 1, 8, 8), y, xv.view(-1, 1, 8, 8), yv


@cache
def mnist1d():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 5000
    d = make_dataset(args)
    x = torch.tensor(d["x"], dtype=torch.float32)
    xv = torch.tensor(d["x_test"], dtype=torch.float32)
    mean, std = x.mean(), x.std()
    return (
        ((x - mean) / std).unsqueeze(1),
        torch.tensor(d["y"]),
        ((xv - mean) / std).unsqueeze(1),
        torch.tensor(d["y_test"]),
    )  # (N, 1, 40)


@cache
def mnist1d_seq():
    x, y, xv, yv = mnist1d()
    return x.transpose(1, 2), y, xv.transpose(1, 2), yv  # (N, 40, 1) for the GRU


@cache
def friedman():
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=2000, n_features=10, noise=0.5, random_state=0)
    y = (y - y.mean()) / y.std()
    return _split(
        torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)[:, None], 0
    )


@cache
def reverse_sequences():
    """Tokens 0..7 in sequences of 10; the target at position i is the token at 9 - i."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 8, (3000, 10), generator=g)
    return x[:2400], x[:2400].flip(1), x[2400:], x[2400:].flip(1)


def _split(x: torch.Tensor, y: torch.Tensor, seed: int, val: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g)
    n_val = int(len(x) * val)
    tr, va = order[n_val:], order[:n_val]
    if x.dim() == 2 and x.dtype == torch.float32:
        mean, std = x[tr].mean(0), x[tr].std(0).clamp_min(1e-3)
        x = (x - mean) / std
    return x[tr], y[tr], x[va], y[va]


DATASETS = {
    "digits": digits_flat,
    "digits_img": digits_image,
    "mnist1d": mnist1d,
    "mnist1d_seq": mnist1d_seq,
    "friedman": friedman,
    "reverse": reverse_sequences,
}


# -- models -----------------------------------------------------------------------------------


def mlp(inp=64, hidden=128, out=10, depth=2):
    layers, d = [], inp
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    return nn.Sequential(*layers, nn.Linear(d, out))


def deep_bn_mlp(inp=64, hidden=64, out=10, depth=8):
    layers, d = [], inp
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
        d = hidden
    return nn.Sequential(*layers, nn.Linear(d, out))


def digits_cnn(bn: bool = False):
    norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), norm(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), norm(32), nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 32, 4, 4)
        nn.Flatten(), nn.Linear(32 * 16, 10),
    )  # fmt: skip


def cnn1d():
    return nn.Sequential(
        nn.Conv1d(1, 32, 5, padding=2), nn.ReLU(),
        nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),  # (B, 32, 20)
        nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),  # (B, 32, 10)
        nn.Flatten(), nn.Linear(32 * 10, 10),
    )  # fmt: skip


class GRUClassifier(nn.Module):
    def __init__(self, hidden: int = 48) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 40, 1)
        _, h = self.gru(x)  # h: (1, B, H)
        return self.head(h[-1])


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 8, length: int = 10, d: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(length, d) * 0.02)
        block = nn.TransformerEncoderLayer(d, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, T) tokens
        return self.head(self.encoder(self.tok(x) + self.pos))  # (B, T, vocab)


TASKS: list[Task] = [
    Task("digits-mlp-adamw", "digits", lambda: mlp(), "adamw", 32, 800),
    Task("digits-mlp-sgd", "digits", lambda: mlp(), "sgd", 32, 800),
    Task("digits-mlp-adamw-b256", "digits", lambda: mlp(), "adamw", 256, 300),
    Task("digits-cnn-adamw", "digits_img", lambda: digits_cnn(), "adamw", 32, 800),
    Task("digits-cnnbn-sgd-b128", "digits_img", lambda: digits_cnn(bn=True), "sgd", 128, 400),
    Task("deep-bn-mlp-sgd", "digits", lambda: deep_bn_mlp(), "sgd", 64, 600),
    Task("mnist1d-cnn-adamw", "mnist1d", cnn1d, "adamw", 64, 800),
    Task("mnist1d-cnn-sgd", "mnist1d", cnn1d, "sgd", 64, 800),
    Task("mnist1d-gru-adamw", "mnist1d_seq", GRUClassifier, "adamw", 64, 600),
    Task("reverse-transformer-adamw", "reverse", TinyTransformer, "adamw", 64, 800),
    Task("friedman-mlp-adamw", "friedman", lambda: mlp(10, 64, 1), "adamw", 32, 800, "mse"),
]


def train_and_validate(task: Task, lr: float, seed: int) -> float:
    """Mean validation loss after `task.steps` steps at peak LR `lr`, cosine-annealed to 0.

    A run whose loss turns non-finite scores +inf (diverged).
    """
    torch.manual_seed(seed)
    model = task.model()
    opt = task.make_optimizer(model.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, task.steps)
    loss_fn = task.make_loss()
    loader = task.loader(seed)
    model.train()
    step = 0
    while step < task.steps:
        for x, y in loader:
            loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):
                return math.inf
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == task.steps:
                break
    return validation_loss(task, model)


@torch.no_grad()
def validation_loss(task: Task, model: nn.Module) -> float:
    _, _, xv, yv = DATASETS[task.data]()
    model.eval()
    value = float(task.make_loss()(model(xv), yv))
    return value if np.isfinite(value) else math.inf
