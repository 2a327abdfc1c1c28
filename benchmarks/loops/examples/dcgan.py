"""pytorch/examples dcgan/main.py on sklearn's 8x8 digits (scaled to [-1, 1], as the example's
Normalize(0.5, 0.5) does): the same architecture pattern (generator of ConvTranspose2d + BatchNorm
+ ReLU ending in Tanh; discriminator of strided Conv2d + BatchNorm + LeakyReLU(0.2) ending in
Sigmoid; N(0, 0.02) init), BCELoss, two Adam(lr=2e-4, betas=(0.5, 0.999)), and the same loop:
(1) update D on a real batch (label 1) and on G's samples detached (label 0), after
netD.zero_grad(); (2) update G so that D calls its samples real, after netG.zero_grad().

A user watches both players, one watch per optimizer. Sizes shrink: nz=16, 2 layers each."""

import sys
from pathlib import Path

import torch
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = []
NZ, NGF, NDF = 16, 32, 32


def weights_init(m):
    if "Conv" in type(m).__name__:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in type(m).__name__:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def generator():  # (B, NZ, 1, 1) -> (B, 1, 8, 8)
    return nn.Sequential(
        nn.ConvTranspose2d(NZ, NGF * 2, 4, 1, 0, bias=False),  # -> (B, 64, 4, 4)
        nn.BatchNorm2d(NGF * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(NGF * 2, 1, 4, 2, 1, bias=False),  # -> (B, 1, 8, 8)
        nn.Tanh(),
    )


def discriminator():  # (B, 1, 8, 8) -> (B,) probabilities of "real"
    return nn.Sequential(
        nn.Conv2d(1, NDF, 4, 2, 1, bias=False),  # -> (B, 32, 4, 4)
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False),  # -> (B, 64, 2, 2)
        nn.BatchNorm2d(NDF * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(NDF * 2, 1, 2, 1, 0, bias=False),  # -> (B, 1, 1, 1)
        nn.Sigmoid(),
        nn.Flatten(0),
    )


def main(quick: bool = False, verbose: bool = False):
    x, y, _, _ = digits(normalize=False)
    x = (x / 8 - 1).view(-1, 1, 8, 8)  # pixels 0..16 -> [-1, 1]
    netG, netD = generator(), discriminator()
    netG.apply(weights_init)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = batches(x, y, 64)
    watch_d = tw.watch(netD, optimizerD, name="D", verbose=verbose)
    watch_g = tw.watch(netG, optimizerG, name="G", verbose=verbose)
    for i in range(300):  # D(x) ~0.5-0.8 and D(G(z)) ~0.3-0.5: neither player wins
        real, _ = next(data)
        b = real.size(0)
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        errD_real = criterion(netD(real), torch.full((b,), 1.0))
        errD_real.backward()
        fake = netG(torch.randn(b, NZ, 1, 1))
        output = netD(fake.detach())
        errD_fake = criterion(output, torch.full((b,), 0.0))
        errD_fake.backward()
        d_g_z1 = output.mean().item()
        optimizerD.step()
        watch_d.log(loss=errD_real + errD_fake)
        # (2) Update G: maximize log(D(G(z)))
        netG.zero_grad()
        output = netD(fake)
        errG = criterion(output, torch.full((b,), 1.0))  # fake labels are real for G's cost
        errG.backward()
        optimizerG.step()
        watch_g.log(loss=errG)
        if verbose and i % 50 == 0:
            print(
                f"[{i}] Loss_D {(errD_real + errD_fake).item():.3f} Loss_G {errG.item():.3f} "
                f"D(G(z)) {d_g_z1:.3f} / {output.mean().item():.3f}"
            )
    return watch_d.close() + watch_g.close()


if __name__ == "__main__":
    main(verbose=True)
