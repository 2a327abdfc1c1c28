import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw
from builders import blobs, cnn, images, mlp, setup, static
from helpers import assert_fires, assert_silent

BIAS_BN = "bias-before-batchnorm"
BN_BATCH = "batchnorm-small-batch"
LARGE = "large-kernel"
DECONV = "deconv-checkerboard"
RNN = "vanilla-rnn"
DEEP = "deep-without-skip"
SATURATING = "saturating-activations"
DROPOUT_BN = "dropout-before-batchnorm"
CAPACITY = "capacity-vs-data"
SEG_STEM = "segmentation-early-downsample"
CONSTANT = "constant-init"
RNN_INIT = "rnn-hidden-init"


class ResidualBlock(nn.Module):
    """BatchNorms inside Sequentials inside a custom block, and a conv shortcut into a BN."""

    def __init__(self, cin, cout, bias):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        )  # fmt: skip
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=bias), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.main(x) + self.shortcut(x))


def resnet(bias=True):
    return nn.Sequential(
        ResidualBlock(3, 8, bias), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    )


@pytest.mark.fires(BIAS_BN)
def test_conv_bias_into_bn_inside_blocks_and_on_the_shortcut():
    x, y = images()
    finding = assert_fires(static(setup(resnet, x, y)), BIAS_BN, severity="info")
    assert finding.evidence["layers"] == ["0.main.0", "0.shortcut.0"]
    assert finding.evidence["parameters_saved"] == 16  # two biases of 8 channels
    assert "bias=False" in finding.fix


@pytest.mark.fires(BIAS_BN)
def test_linear_bias_into_batchnorm1d():
    x, y = blobs()

    def model():
        return nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))

    assert_fires(static(setup(model, x, y)), BIAS_BN, where="0")


@pytest.mark.silent(BIAS_BN)
def test_bias_free_convs_and_bn_after_relu_are_silent():
    x, y = images()
    assert_silent(static(setup(lambda: resnet(bias=False), x, y)), BIAS_BN)
    # conv -> ReLU -> BN: the bias is not cancelled (the ReLU sits between them)
    model = lambda: nn.Sequential(  # noqa: E731
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.BatchNorm2d(8), nn.Flatten(), nn.LazyLinear(4)
    )
    assert_silent(static(setup(model, x, y)), BIAS_BN)


@pytest.mark.fires(BN_BATCH)
def test_batchnorm_with_batches_of_four():
    x, y = images()
    s = tw.Setup(
        model=lambda: resnet(bias=False),
        train=DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True),
        loss=nn.CrossEntropyLoss(),
    )
    finding = assert_fires(static(s), BN_BATCH, severity="warning")
    assert finding.evidence["batch_size"] == 4
    assert "convert_batchnorm" in finding.fix


@pytest.mark.silent(BN_BATCH)
def test_batchnorm_with_batches_of_32_and_groupnorm_with_4_are_silent():
    x, y = images()
    assert_silent(static(setup(lambda: resnet(bias=False), x, y)), BN_BATCH)
    converted = lambda: tw.convert_batchnorm(resnet(bias=False), groups=4)  # noqa: E731
    assert_silent(static(setup(converted, x, y, batch_size=4)), BN_BATCH)


def conv_net(k2=3, groups=1):
    return nn.Sequential(
        nn.Conv2d(3, 16, 7, padding=3), nn.ReLU(),  # a 7x7 stem is fine
        nn.Conv2d(16, 16, k2, padding=k2 // 2, groups=groups), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    )  # fmt: skip


@pytest.mark.fires(LARGE)
def test_large_kernel_past_the_stem_gives_both_parameter_counts():
    x, y = images()
    finding = assert_fires(static(setup(lambda: conv_net(k2=7), x, y)), LARGE, where="2")
    assert finding.evidence["weights"] == 16 * 16 * 49
    assert finding.evidence["stacked_3x3"] == 3 * 16 * 16 * 9  # three 3x3 convs
    assert finding.evidence["stack_depth"] == 3


@pytest.mark.silent(LARGE)
def test_large_stem_and_depthwise_large_kernels_are_silent():
    x, y = images()
    assert_silent(static(setup(conv_net, x, y)), LARGE)
    assert_silent(static(setup(lambda: conv_net(k2=7, groups=16), x, y)), LARGE)


def autoencoder(k):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(8, 3, k, stride=2, padding=1, output_padding=1),  # 8x8 -> 16x16
    )  # fmt: skip


@pytest.mark.fires(DECONV)
def test_transposed_conv_kernel_not_a_multiple_of_stride():
    x, _ = images()
    finding = assert_fires(static(setup(lambda: autoencoder(3), x, x, loss=nn.MSELoss())), DECONV)
    assert "kernel_size=4" in finding.fix


@pytest.mark.silent(DECONV)
def test_transposed_conv_kernel_twice_the_stride_is_silent():
    x, _ = images()

    def model():
        return nn.Sequential(nn.Conv2d(3, 8, 3, 2, padding=1), nn.ConvTranspose2d(8, 3, 4, 2, 1))

    assert_silent(static(setup(model, x, x, loss=nn.MSELoss())), DECONV)


class Recurrent(nn.Module):
    def __init__(self, cell=nn.GRU, init=None):
        super().__init__()
        self.rnn = cell(16, 32, batch_first=True)
        if init is not None:
            for name, w in self.rnn.named_parameters():
                if name.startswith("weight_hh"):
                    init(w)
        self.head = nn.Linear(32, 4)

    def forward(self, x):  # (B, T, F)
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def seqs():
    x, y = blobs()
    return x[:, None, :].repeat(1, 6, 1), y  # (N, 6, 16)


@pytest.mark.fires(RNN)
@pytest.mark.fires(RNN_INIT)
def test_vanilla_rnn_with_default_init():
    x, y = seqs()
    report = static(setup(lambda: Recurrent(nn.RNN), x, y))
    assert_fires(report, RNN, where="rnn", severity="warning")
    finding = assert_fires(report, RNN_INIT, where="rnn.weight_hh_l0")
    sv = torch.linalg.svdvals(Recurrent(nn.RNN).rnn.weight_hh_l0.detach())
    assert finding.evidence["singular_min"] < 0.5 and sv.min() < 0.5
    assert "orthogonal_" in finding.fix


@pytest.mark.silent(RNN)
@pytest.mark.silent(RNN_INIT)
def test_gru_and_orthogonal_rnn_are_silent():
    x, y = seqs()
    assert_silent(static(setup(Recurrent, x, y)), RNN)
    assert_silent(static(setup(Recurrent, x, y)), RNN_INIT)
    orthogonal = lambda: Recurrent(nn.RNN, init=nn.init.orthogonal_)  # noqa: E731
    assert_silent(static(setup(orthogonal, x, y)), RNN_INIT)


def plain_mlp(depth, norm=False):
    layers = [nn.Linear(16, 32), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(32, 32), *([nn.LayerNorm(32)] if norm else []), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(32, 4))


class ResidualMLP(nn.Module):
    def __init__(self, depth=14):
        super().__init__()
        self.inp = nn.Linear(16, 32)
        self.blocks = nn.ModuleList(nn.Linear(32, 32) for _ in range(depth - 2))
        self.out = nn.Linear(32, 4)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = h + F.relu(block(h))  # residual
        return self.out(h)


@pytest.mark.fires(DEEP)
def test_fourteen_plain_layers():
    x, y = blobs()
    finding = assert_fires(static(setup(lambda: plain_mlp(14), x, y)), DEEP)
    assert finding.evidence["weight_layers"] == 14


@pytest.mark.silent(DEEP)
def test_deep_with_residuals_or_norms_and_shallow_plain_are_silent():
    x, y = blobs()
    assert_silent(static(setup(ResidualMLP, x, y)), DEEP)
    assert_silent(static(setup(lambda: plain_mlp(14, norm=True), x, y)), DEEP)
    assert_silent(static(setup(lambda: plain_mlp(6), x, y)), DEEP)


class TanhNet(nn.Module):
    """Functional tanh between layers: only the function recorder sees these."""

    def __init__(self):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(16, 32), *(nn.Linear(32, 32) for _ in range(3))])
        self.out = nn.Linear(32, 4)

    def forward(self, x):
        for fc in self.fcs:
            x = torch.tanh(fc(x))
        return self.out(x)


@pytest.mark.fires(SATURATING)
def test_functional_tanh_stack_inside_forward():
    x, y = blobs()
    finding = assert_fires(static(setup(TanhNet, x, y)), SATURATING, severity="warning")
    assert finding.evidence["saturating_hidden_activations"] == 4


@pytest.mark.silent(SATURATING)
def test_output_sigmoid_gates_and_a_gru_are_silent():
    x, y = blobs()

    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.g, self.out = nn.Linear(16, 32), nn.Linear(16, 32), nn.Linear(32, 4)

        def forward(self, x):  # GLU-style gates multiply, they do not feed a layer directly
            h = self.a(x) * torch.sigmoid(self.g(x))
            h = h * torch.sigmoid(h) * torch.tanh(h)
            return self.out(h)

    assert_silent(static(setup(Gated, x, y)), SATURATING)
    assert_silent(static(setup(lambda: mlp(tail=nn.Sigmoid()), x, F.one_hot(y, 4).float(), loss=nn.BCELoss())), SATURATING)  # fmt: skip
    assert_silent(static(setup(Recurrent, *seqs())), SATURATING)


@pytest.mark.fires(DROPOUT_BN)
def test_dropout_then_batchnorm():
    x, y = blobs()
    model = lambda: nn.Sequential(  # noqa: E731
        nn.Linear(16, 32, bias=False),
        nn.Dropout(0.5),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Linear(32, 4),
    )
    finding = assert_fires(static(setup(model, x, y)), DROPOUT_BN, where="2")
    assert finding.evidence["p"] == 0.5


@pytest.mark.silent(DROPOUT_BN)
def test_dropout_after_batchnorm_is_silent():
    x, y = blobs()
    model = lambda: nn.Sequential(  # noqa: E731
        nn.Linear(16, 32, bias=False),
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(32, 4),
    )
    assert_silent(static(setup(model, x, y)), DROPOUT_BN)


@pytest.mark.fires(CAPACITY)
def test_millions_of_parameters_for_a_few_hundred_samples():
    x, y = blobs(n=256)
    model = lambda: mlp(hidden=70_000)  # 16*70k + 70k*4 ~ 1.3M parameters, 5k per sample  # noqa: E731
    finding = assert_fires(static(setup(model, x, y)), CAPACITY, severity="warning")
    assert finding.evidence["params_per_sample"] > 1000


@pytest.mark.silent(CAPACITY)
def test_a_sensible_model_for_its_data_is_silent():
    x, y = blobs(n=256)
    assert_silent(static(setup(mlp, x, y)), CAPACITY)  # 676 params / 256 samples


class Segmenter(nn.Module):
    def __init__(self, skip):
        super().__init__()
        self.skip = skip
        self.stem = nn.Conv2d(3, 8, 7, stride=2, padding=3)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.head = nn.Conv2d(8 + (3 if skip else 0), 3, 1)

    def forward(self, x):
        h = self.up(F.relu(self.body(F.relu(self.stem(x)))))
        if self.skip:
            h = torch.cat([h, x], dim=1)
        return self.head(h)


@pytest.mark.fires(SEG_STEM)
def test_segmentation_with_a_strided_7x7_stem_and_no_skip():
    x, _ = images()
    masks = torch.randint(0, 3, (len(x), 16, 16))
    finding = assert_fires(
        static(setup(lambda: Segmenter(False), x, masks)), SEG_STEM, where="stem"
    )
    assert finding.evidence == {"stem_kernel": 7, "stem_stride": 2}


@pytest.mark.silent(SEG_STEM)
def test_segmentation_with_a_skip_and_classification_with_the_stem_are_silent():
    x, y = images()
    masks = torch.randint(0, 3, (len(x), 16, 16))
    assert_silent(static(setup(lambda: Segmenter(True), x, masks)), SEG_STEM)
    classifier = lambda: nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3), nn.Flatten(), nn.LazyLinear(4))  # noqa: E731
    assert_silent(static(setup(classifier, x, y)), SEG_STEM)


@pytest.mark.fires(CONSTANT)
def test_zero_initialized_hidden_layer():
    x, y = blobs()

    def model():
        net = mlp()
        nn.init.constant_(net[0].weight, 0.01)
        return net

    finding = assert_fires(static(setup(model, x, y)), CONSTANT, where="0.weight")
    assert finding.evidence["value"] == pytest.approx(0.01)


@pytest.mark.silent(CONSTANT)
def test_default_init_and_a_zero_initialized_head_are_silent():
    x, y = blobs()

    def zero_head():
        net = mlp()
        nn.init.zeros_(net[2].weight)  # a known trick for the last layer
        return net

    assert_silent(static(setup(mlp, x, y)), CONSTANT)
    assert_silent(static(setup(zero_head, x, y)), CONSTANT)
    assert_silent(static(setup(cnn, *images())), CONSTANT)


class HandWrittenRNN(nn.Module):
    """A cell applied at every time step: one layer deep, whatever the sequence length."""

    def __init__(self):
        super().__init__()
        self.w, self.u, self.out = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 4)

    def forward(self, x):  # (B, T, F)
        h = torch.zeros(x.shape[0], 32)
        for t in range(x.shape[1]):
            h = torch.tanh(self.w(x[:, t]) + self.u(h))
        return self.out(h)


@pytest.mark.silent(DEEP)
@pytest.mark.silent(SATURATING)
def test_a_recurrence_unrolled_over_time_is_not_a_deep_stack():
    x, y = blobs()
    x = x[:, None, :].repeat(1, 20, 1)  # 20 steps
    report = static(setup(HandWrittenRNN, x, y))
    assert_silent(report, DEEP)
    assert_silent(report, SATURATING)
