"""A Lightning MLP whose `training_step` applies softmax to the logits before F.cross_entropy
(log-softmax twice): the gradients shrink as the probabilities sharpen and the loss stalls well
above 0. The model itself ends in a Linear; the softmax is only in the step."""

import sys
from pathlib import Path

import torch.nn.functional as F

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parents[1]))
from _lightning_digits import DigitsData, DigitsMLP  # noqa: E402

EXPECT = ["softmax-before-loss"]


class SoftmaxInStep(DigitsMLP):
    def loss(self, logits, y):
        return F.cross_entropy(F.softmax(logits, dim=1), y)  # the fault: probabilities in


def setup():
    return tw.Setup.from_lightning(SoftmaxInStep(), DigitsData())
