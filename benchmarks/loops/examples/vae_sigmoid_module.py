"""pytorch/examples vae/main.py as users often write it: the decoder an nn.Sequential ending in
an nn.Sigmoid module (the example calls torch.sigmoid), on MNIST-like images: sklearn's 8x8
digits in the middle of a 16x16 black frame, so that three quarters of the pixels are 0, as in
MNIST. Trained, the decoder predicts the background at ~0: 70-80% of its sigmoid's outputs sit
within 1% of 0. That is the model being right, not a saturated layer (binary cross-entropy on a
sigmoid's output gives its logits the gradient p - y): the watch raised saturated-activations
on the output layer until output layers were left out of it. Otherwise as examples/vae.py,
whose loss (BCE summed over pixels + KL) and training loop it uses."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path[:0] = [str(Path(__file__).parents[1]), str(Path(__file__).parent)]
from _data import digits  # noqa: E402
from vae import train  # noqa: E402

EXPECT = []


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(256, 200), nn.ReLU())
        self.mu, self.logvar = nn.Linear(200, 10), nn.Linear(200, 10)
        self.decoder = nn.Sequential(
            nn.Linear(10, 200), nn.ReLU(), nn.Linear(200, 256), nn.Sigmoid()
        )

    def forward(self, x):  # x: (B, 256) in [0, 1]
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar


def framed(x):
    """(N, 64) pixels 0..16 -> (N, 256) in [0, 1]: each 8x8 digit inside a 16x16 black frame."""
    return F.pad((x / 16).reshape(-1, 8, 8), (4, 4, 4, 4)).reshape(-1, 256)


def main(quick: bool = False, verbose: bool = False):
    x, y, xv, _ = digits(normalize=False)
    torch.manual_seed(0)
    return train(VAE(), framed(x), y, framed(xv), epochs=40, verbose=verbose)  # 400 steps


if __name__ == "__main__":
    main(verbose=True)
