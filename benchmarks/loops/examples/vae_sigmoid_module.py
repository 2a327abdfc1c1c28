"""pytorch/examples vae/main.py as users often write it: the decoder an nn.Sequential ending in
an nn.Sigmoid module (the example calls torch.sigmoid), on MNIST-like images: sklearn's 8x8
digits in the middle of a 16x16 black frame, so that three quarters of the pixels are 0, as in
MNIST. Trained, the decoder predicts the background at ~0: 70-80% of its sigmoid's outputs sit
within 1% of 0. That is the model being right, not a saturated layer (binary cross-entropy on a
sigmoid's output gives its logits the gradient p - y): the watch raised saturated-activations
on the output layer until output layers were left out of it. Otherwise as examples/vae.py:
the same loss (BCE summed over pixels + KL), Adam(lr=1e-3), batch 128, a test pass per epoch."""

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


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def framed(x):
    """(N, 64) pixels 0..16 -> (N, 256) in [0, 1]: each 8x8 digit inside a 16x16 black frame."""
    return F.pad((x / 16).reshape(-1, 8, 8), (4, 4, 4, 4)).reshape(-1, 256)


def main(quick: bool = False, verbose: bool = False):
    x, y, xv, _ = digits(normalize=False)
    x, xv = framed(x), framed(xv)
    torch.manual_seed(0)
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = batches(x, y, 128)
    steps_per_epoch = len(x) // 128  # 10
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _epoch in range(40):  # 400 steps
            model.train()
            for _ in range(steps_per_epoch):
                data_b, _ = next(data)
                optimizer.zero_grad()
                recon, mu, logvar = model(data_b)
                loss = loss_function(recon, data_b, mu, logvar)
                loss.backward()
                optimizer.step()
                watch.log(loss=loss / len(data_b))
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
