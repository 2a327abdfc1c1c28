"""pytorch/examples vae/main.py on sklearn's 8x8 digits (pixels scaled to [0, 1]): the same
fully connected VAE (encoder -> mu, logvar; reparameterize; sigmoid decoder), the same loss
(binary cross-entropy summed over pixels + KL divergence), Adam(lr=1e-3), batch 128, the training
loss printed per sample, a test pass after every epoch. Sizes shrink: 64 pixels, 200 hidden
units, a 10-dim latent (784, 400, 20 in the original)."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = []


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 200)
        self.fc21 = nn.Linear(200, 10)  # mu
        self.fc22 = nn.Linear(200, 10)  # logvar
        self.fc3 = nn.Linear(10, 200)
        self.fc4 = nn.Linear(200, 64)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):  # x: (B, 64) in [0, 1]
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def main(quick: bool = False, verbose: bool = False):
    x, y, xv, _ = digits(normalize=False)
    x, xv = x / 16, xv / 16  # pixels 0..16 -> [0, 1], as ToTensor() gives MNIST
    return train(VAE(), x, y, xv, epochs=30, verbose=verbose)  # 300 steps; test loss 44 -> ~25


def train(model: nn.Module, x, y, xv, epochs: int, verbose: bool = False):
    """The example's loop, watched: Adam(lr=1e-3), batches of 128, a test pass per epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = batches(x, y, 128)
    steps_per_epoch = len(x) // 128  # 10
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _epoch in range(epochs):
            model.train()
            for _ in range(steps_per_epoch):
                data_b, _ = next(data)
                optimizer.zero_grad()
                recon, mu, logvar = model(data_b)
                loss = loss_function(recon, data_b, mu, logvar)
                loss.backward()
                optimizer.step()
                watch.log(loss=loss / len(data_b))  # the example reports the loss per sample
            model.eval()
            with torch.no_grad():
                recon, mu, logvar = model(xv)
                test_loss = loss_function(recon, xv, mu, logvar).item() / len(xv)
            watch.log_val(loss=test_loss)
            if verbose:
                print(f"test loss per sample {test_loss:.3f}")
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
