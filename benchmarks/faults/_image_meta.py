"""A model with two inputs, `forward(self, image, meta)`, on the 8x8 digits: a small CNN over the
standardized image and a linear branch over three tabular features (total ink, width in pixels,
a noisy 'price' that depends on the label). Samples are dicts {"image", "meta", "label"}. The
healthy case (healthy/two_input_model.py) standardizes the features, its broken twin
(static/two_input_unscaled_meta.py) leaves them raw."""

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parent))
from _digits import digits  # noqa: E402


class ImageMeta(Dataset):
    def __init__(self, image, meta, label):
        self.image, self.meta, self.label = image, meta, label

    def __len__(self):
        return len(self.label)

    def __getitem__(self, i):
        return {"image": self.image[i], "meta": self.meta[i], "label": self.label[i]}


def image_meta(standardize_meta: bool = True) -> tuple[ImageMeta, ImageMeta]:
    """(train, val): images (1, 8, 8) standardized; meta (3,) = ink, width, price."""
    g = torch.Generator().manual_seed(0)
    parts = []
    for scaled, raw in zip(digits(), digits(standardize=False), strict=True):  # same split
        x, y = scaled.tensors
        pixels = raw.tensors[0]  # 0..16
        ink = pixels.sum(dim=(1, 2, 3))  # ~150..450
        width = (pixels.amax(dim=2) > 0).sum(dim=(1, 2)).float()  # columns with ink, 0..8
        price = 1000 + 60 * y + 150 * torch.randn(len(y), generator=g)  # ~1,000..1,600
        parts.append([x, torch.stack([ink, width, price], dim=1), y])
    if standardize_meta:
        mean, std = parts[0][1].mean(dim=0), parts[0][1].std(dim=0)  # training statistics
        for part in parts:
            part[1] = (part[1] - mean) / std
    return ImageMeta(*parts[0]), ImageMeta(*parts[1])


class ImageAndMeta(nn.Module):
    def __init__(self, meta_features: int = 3, classes: int = 10):
        super().__init__()
        self.image = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * 4 * 4, 64), nn.ReLU(),
        )  # fmt: skip
        self.meta = nn.Sequential(nn.Linear(meta_features, 16), nn.ReLU())
        self.head = nn.Linear(64 + 16, classes)

    def forward(self, image, meta):  # (B, 1, 8, 8), (B, 3)
        return self.head(torch.cat([self.image(image), self.meta(meta)], dim=1))


def two_input_setup(standardize_meta: bool) -> tw.Setup:
    train, val = image_meta(standardize_meta)
    return tw.Setup(
        model=ImageAndMeta,
        train=train,
        val=val,
        inputs=("image", "meta"),
        target="label",
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
    )
