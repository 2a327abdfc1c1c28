"""The helpers the fixes point to, against plain PyTorch / scikit-learn references."""

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

import trainwise as tw


def bn_net():
    return nn.Sequential(
        nn.Conv2d(3, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU(),
        nn.Sequential(nn.Conv2d(24, 10, 3, padding=1), nn.BatchNorm2d(10)),
        nn.Flatten(), nn.Linear(10 * 64, 20), nn.BatchNorm1d(20), nn.Linear(20, 3),
    )  # fmt: skip


def test_convert_batchnorm_to_group_matches_groupnorm_and_keeps_the_affine():
    model = bn_net()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-1, 1)
    reference_weight = model[1].weight.clone()
    converted = tw.convert_batchnorm(model, to="group", groups=8, inplace=False)
    assert isinstance(model[1], nn.BatchNorm2d)  # the original is untouched
    norm = converted[1]
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 8 and norm.num_channels == 24
    assert torch.equal(norm.weight, reference_weight)
    assert converted[3][1].num_groups == 5  # 10 channels: largest divisor <= 8
    assert converted[6].num_channels == 20
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in converted.modules())
    x = torch.randn(2, 24, 8, 8)
    expected = nn.functional.group_norm(x, 8, norm.weight, norm.bias, norm.eps)
    assert torch.allclose(norm(x), expected)
    assert converted(torch.randn(1, 3, 8, 8)).shape == (1, 3)  # works with a batch of one


def test_convert_batchnorm_to_layer_normalizes_over_channels_and_positions():
    model = tw.convert_batchnorm(bn_net(), to="layer")
    norm = model[1]
    assert norm.num_groups == 1
    x = torch.randn(2, 24, 8, 8)
    ref = nn.functional.layer_norm(x, x.shape[1:], eps=norm.eps)  # affine is identity at init
    assert torch.allclose(norm(x), ref, atol=1e-5)


def test_convert_batchnorm_in_place_and_errors():
    model = bn_net()
    assert tw.convert_batchnorm(model) is model
    assert isinstance(model[1], nn.GroupNorm)
    frozen = bn_net().double()
    frozen[1].requires_grad_(False)
    tw.convert_batchnorm(frozen)
    assert frozen[1].weight.dtype == torch.float64 and not frozen[1].weight.requires_grad
    with pytest.raises(ValueError, match="'group' or 'layer'"):
        tw.convert_batchnorm(bn_net(), to="instance")


def test_param_groups_from_a_model_and_from_bare_parameters():
    model = bn_net()
    groups = tw.param_groups(model, weight_decay=0.05)
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    expected_no_decay = {
        id(p) for m in model.modules() for n, p in m.named_parameters(recurse=False)
        if n == "bias" or isinstance(m, nn.modules.batchnorm._BatchNorm)
    }  # fmt: skip
    assert no_decay == expected_no_decay
    assert decay == {id(p) for p in model.parameters()} - expected_no_decay
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    from_params = tw.param_groups(model.parameters(), weight_decay=0.05)
    assert {id(p) for p in from_params[1]["params"]} == no_decay
    opt = torch.optim.AdamW(groups, lr=1e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_class_weights_match_scikit_learn_balanced():
    y = np.array([0] * 50 + [1] * 5 + [2] * 20)
    ours = tw.class_weights(torch.tensor(y))
    ref = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert np.allclose(ours.numpy(), ref)
    missing = tw.class_weights([0, 0, 2], num_classes=4)
    assert missing.tolist()[1] == 0.0 and missing.tolist()[3] == 0.0
    with pytest.raises(ValueError, match="negative"):
        tw.class_weights([-1, 0])
