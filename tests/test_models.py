"""The model zoo: exact architectures, input layouts, a forward/backward sweep, errors."""

import re

import pytest
import torch
from torch import nn

from initlab._checks import ArgumentError
from initlab.zoo.models import (
    ACTIVATIONS,
    MLP,
    MODELS,
    OneHiddenLayerMLP,
    SmallCNN,
    build_model,
    fit_classes,
)


def test_mlp_784_128_10_is_the_reference_examples_network():
    net = build_model("mlp-784-128-10")
    assert type(net) is OneHiddenLayerMLP
    assert [name for name, _ in net.named_children()] == ["fc1", "fc2"]
    assert (net.fc1.in_features, net.fc1.out_features) == (784, 128)
    assert (net.fc2.in_features, net.fc2.out_features) == (128, 10)
    # 784*128 + 128 + 128*10 + 10, by hand
    assert sum(p.numel() for p in net.parameters()) == 101_770


def test_mlp_784_128_10_forward_is_fc2_relu_fc1():
    net = OneHiddenLayerMLP()
    x = torch.rand(5, 784, generator=torch.Generator().manual_seed(0))
    expected = net.fc2(torch.relu(net.fc1(x)))
    torch.testing.assert_close(net(x), expected, rtol=0, atol=0)


# The character-level models read token ids, not images (tests/test_zoo_sequence.py).
IMAGE_MODELS = sorted(n for n in MODELS if getattr(MODELS[n], "input_kind", "image") == "image")


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_zoo_head_fits_the_dataset_unless_set(name):
    params = fit_classes(name, {}, 27)  # EMNIST letters: labels 1-26
    assert params == {"num_classes": 27}
    assert build_model(name, **params).eval()(torch.rand(2, 784)).shape == (2, 27)
    assert fit_classes(name, {}, 10) == {}  # the default: the report keeps "(defaults)"
    assert fit_classes(name, {"num_classes": 5}, 27) == {"num_classes": 5}  # the user's choice


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_layout_gives_the_same_logits(name):
    torch.manual_seed(0)
    model = build_model(name).eval()
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    out = model(images)
    assert out.shape == (4, 10)
    torch.testing.assert_close(model(images.reshape(4, 28, 28)), out, rtol=0, atol=0)
    torch.testing.assert_close(model(images.reshape(4, 784)), out, rtol=0, atol=0)


@pytest.mark.parametrize(
    "name, params",
    [
        ("mlp-784-128-10", {}),
        ("mlp", {}),
        ("mlp", {"depth": 3, "width": 32, "activation": "tanh", "norm": "batch"}),
        ("mlp", {"depth": 2, "width": 32, "activation": "selu", "norm": "layer", "dropout": 0.2}),
        ("cnn", {}),
        ("cnn", {"channels": (4, 8)}),
    ],
)
def test_forward_backward_reaches_every_parameter(name, params):
    torch.manual_seed(0)
    model = build_model(name, **params).train()
    x = torch.rand(8, 1, 28, 28)
    loss = nn.functional.cross_entropy(model(x), torch.arange(8) % 10)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_mlp_structure():
    model = MLP(depth=3, width=16, activation="gelu", norm="batch", dropout=0.1)
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(nn.Linear) == 4
    assert kinds.count(nn.BatchNorm1d) == 3
    assert kinds.count(nn.Dropout) == 3
    assert kinds.count(nn.GELU) == 3
    assert [type(m) for m in model.hidden[0]] == [nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Dropout]
    assert (model.hidden[0][0].in_features, model.hidden[1][0].in_features) == (784, 16)
    assert (model.head.in_features, model.head.out_features) == (16, 10)


def test_mlp_without_norm_or_dropout_adds_neither():
    model = MLP(depth=1, width=8)
    assert [type(m) for m in model.hidden[0]] == [nn.Linear, nn.ReLU]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_activation_names(activation):
    layer = MLP(depth=1, width=4, activation=activation).hidden[0][1]
    assert type(layer) is ACTIVATIONS[activation]


def test_cnn_shapes():
    cnn = SmallCNN(channels=(16, 32))
    assert cnn.conv1.weight.shape == (16, 1, 3, 3)
    assert cnn.conv2.weight.shape == (32, 16, 3, 3)
    assert cnn.head.in_features == 32 * 7 * 7  # two 2x2 pools: 28 -> 14 -> 7


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: build_model("mpl"), ArgumentError, r"model must be one of .*did you mean 'mlp'"),
        (lambda: MLP(activation="rellu"), ArgumentError, r"activation .* got activation='rellu'"),
        (lambda: MLP(norm="group"), ArgumentError, r"norm must be one of \['batch', 'layer'\]"),
        (lambda: MLP(dropout=1.0), ArgumentError, r"dropout must be in \[0, 1\); got dropout=1.0"),
        (lambda: MLP(depth=0), ArgumentError, r"^depth must be >= 1; got depth=0$"),
        (lambda: MLP(width=2.0), TypeError, r"^width must be an int; got width=2.0$"),
        (
            lambda: SmallCNN(image_size=30),
            ArgumentError,
            r"image_size must be divisible by 4; got image_size=30",
        ),
        (
            lambda: build_model("initnet", width=3),
            TypeError,
            r"model 'initnet' takes the parameters \['num_classes'\]; got width=3$",
        ),
        (
            lambda: build_model("mlp", dept=4),
            TypeError,
            r"model 'mlp' takes the parameters \['activation', 'depth', 'dropout', 'in_features', "
            r"'norm', 'num_classes', 'width'\]; got dept=4 \(did you mean 'depth'\?\)",
        ),
        (
            lambda: build_model("cnn", depth=3),
            TypeError,
            r"model 'cnn' takes the parameters \['channels', 'image_size', 'num_classes'\]; "
            r"got depth=3$",
        ),
    ],
)
def test_errors_name_the_argument(call, error, message):
    with pytest.raises(error, match=message) as raised:
        call()
    if error is ArgumentError:  # the argument a caller maps to its own option
        assert raised.value.argument == message.lstrip("^").split()[0]


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        # before: "cannot unpack non-iterable int object" from `c1, c2 = channels`
        ("cnn", {"channels": 8}, "channels must be a list of 2 positive integers, e.g. "),
        ("cnn", {"channels": [8, 16, 32]}, "channels=[8, 16, 32]"),
        ("cnn", {"channels": [8, 0]}, "got channels=[8, 0]"),
        ("cnn", {"channels": [8, True]}, "got channels=[8, True]"),
        ("cnn", {"channels": "8,16"}, "got channels='8,16'"),
        ("resnet", {"widths": 8}, "widths must be a list of one or more positive integers"),
        ("resnet", {"widths": []}, "e.g. widths=[16,32,64]; got widths=[]"),
        ("resnet", {"widths": [4, 8.0]}, "got widths=[4, 8.0]"),
    ],
)
def test_tuple_params_must_be_lists_of_positive_ints(name, params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_model(name, **params)


def test_tuple_params_accept_lists_from_json():
    assert build_model("cnn", channels=[8, 16]).conv2.weight.shape == (16, 8, 3, 3)
    assert build_model("resnet", widths=[4]).head.in_features == 4
