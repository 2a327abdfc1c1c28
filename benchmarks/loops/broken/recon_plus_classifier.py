"""An autoencoder with a classification head: a summed reconstruction error (hundreds) plus a
cross-entropy (~2): the classifier term is drowned out."""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = ["loss-weights-unbalanced"]


def main(quick: bool = False, verbose: bool = False):
    x, y, _, _ = digits(normalize=False)
    encoder = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
    decoder, classifier = nn.Linear(32, 64), nn.Linear(32, 10)
    model = nn.ModuleDict({"encoder": encoder, "decoder": decoder, "classifier": classifier})
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = batches(x, y, 32)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _ in range(40):
            xb, yb = next(data)
            optimizer.zero_grad()
            h = encoder(xb)
            loss_recon = F.mse_loss(decoder(h), xb, reduction="sum") / len(xb)
            loss_cls = F.cross_entropy(classifier(h), yb)
            loss = loss_recon + loss_cls
            loss.backward()
            optimizer.step()
            watch.log(loss=loss, loss_recon=loss_recon, loss_cls=loss_cls)
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
