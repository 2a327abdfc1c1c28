"""pytorch/examples super_resolution (model.py + main.py) on sklearn's 8x8 digits: the same
sub-pixel network (conv 5x5 -> 64, conv 3x3 -> 64, conv 3x3 -> 32, conv 3x3 -> upscale^2, then
PixelShuffle; ReLU; orthogonal init with the ReLU gain), MSELoss, Adam(lr=0.01, the example's
default --lr), a test pass (PSNR) after every epoch. The example trains on the Y channel of
BSDS300 downscaled by the factor; here the high-resolution image is the 8x8 digit in [0, 1] and
the input is its 4x4 average-pooled copy (upscale_factor=2)."""

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _data import batches, digits  # noqa: E402

EXPECT = []


class Net(nn.Module):
    def __init__(self, upscale_factor=2):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(1, 64, (5, 5), (1, 1), (2, 2))
        self.conv2 = nn.Conv2d(64, 64, (3, 3), (1, 1), (1, 1))
        self.conv3 = nn.Conv2d(64, 32, (3, 3), (1, 1), (1, 1))
        self.conv4 = nn.Conv2d(32, upscale_factor**2, (3, 3), (1, 1), (1, 1))
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)  # (B, 4, 4, 4) -> (B, 1, 8, 8)
        gain = nn.init.calculate_gain("relu")
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.orthogonal_(conv.weight, gain)
        nn.init.orthogonal_(self.conv4.weight)

    def forward(self, x):  # (B, 1, 4, 4) -> (B, 1, 8, 8)
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        return self.pixel_shuffle(self.conv4(x))


def main(quick: bool = False, verbose: bool = False):
    x, y, xv, _ = digits(normalize=False)
    hr, hr_val = (x / 16).view(-1, 1, 8, 8), (xv / 16).view(-1, 1, 8, 8)
    lr_val = F.avg_pool2d(hr_val, 2)  # (397, 1, 4, 4)
    model = Net()
    criterion = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    data = batches(hr, y, 64)
    with tw.watch(model, optimizer, verbose=verbose) as watch:
        for _epoch in range(12):  # 252 steps; test PSNR 11.2 -> 16.7 dB (bicubic: 13.3)
            model.train()
            for _ in range(len(hr) // 64):
                target, _ = next(data)
                optimizer.zero_grad()
                loss = criterion(model(F.avg_pool2d(target, 2)), target)
                loss.backward()
                optimizer.step()
                watch.log(loss=loss)
            model.eval()
            with torch.no_grad():
                mse = criterion(model(lr_val), hr_val).item()
            watch.log_val(loss=mse, psnr=10 * math.log10(1 / mse))
            if verbose:
                print(f"test mse {mse:.4f} psnr {10 * math.log10(1 / mse):.2f} dB")
    return watch.findings


if __name__ == "__main__":
    main(verbose=True)
