"""A GAN loop that never resets the discriminator's gradients: the generator's zero_grad is
there, the discriminator's is missing, so each D step applies the sum of all its past gradients
(and the gradients the G step leaves in D).

Source: https://github.com/Hsintien-Ng/idinvert_pytorch-reproduced/issues/1 (optimizer_D.zero_grad()
was missing before the discriminator's backward; the author confirmed and fixed it).

Symptom (measured, seed 0): D's gradient norm grows with the step count (5.8, 36, 103 at steps
0, 25, 125) and D stops learning: Loss_D stays ~1.5 and G fools it, D(G(z)) ~0.7, where the
correct loop (examples/dcgan) has Loss_D falling to ~1.0 and D(G(z)) ~0.4-0.5.
Expected: `missing-zero-grad` on the discriminator's watch.
"""

import sys
from pathlib import Path

import torch
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
from _data import batches, digits  # noqa: E402
from dcgan import NZ, discriminator, generator, weights_init  # noqa: E402

EXPECT = ["missing-zero-grad"]


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
    for i in range(150):
        real, _ = next(data)
        b = real.size(0)
        # BUG: netD.zero_grad() / optimizerD.zero_grad() is missing here
        errD_real = criterion(netD(real), torch.full((b,), 1.0))
        errD_real.backward()
        fake = netG(torch.randn(b, NZ, 1, 1))
        errD_fake = criterion(netD(fake.detach()), torch.full((b,), 0.0))
        errD_fake.backward()
        optimizerD.step()
        watch_d.log(loss=errD_real + errD_fake)
        netG.zero_grad()
        output = netD(fake)
        errG = criterion(output, torch.full((b,), 1.0))
        errG.backward()
        optimizerG.step()
        watch_g.log(loss=errG)
        if verbose and i % 25 == 0:
            g = sum(p.grad.norm() ** 2 for p in netD.parameters()) ** 0.5
            print(
                f"[{i}] Loss_D {(errD_real + errD_fake).item():.3f} Loss_G {errG.item():.3f} "
                f"D(G(z)) {output.mean().item():.3f} D grad norm {g:.3g}"
            )
    return watch_d.close() + watch_g.close()


if __name__ == "__main__":
    main(verbose=True)
