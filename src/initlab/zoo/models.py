"""The model zoo, registered by name: classifiers for 28x28 one-channel images and
character-level language models.

Every image model accepts ``(B, 1, 28, 28)``, ``(B, 28, 28)`` or flattened ``(B, 784)`` float
input (it reshapes inside) and returns logits of shape ``(B, num_classes)``. The
character-level models (``char-gpt``, ``char-rnn``; class attribute ``input_kind =
"tokens"``) take token ids ``(B, T)`` int64 and return logits ``(B, T, vocab_size)``.
Models are built with PyTorch's default initialization; an initialization scheme
(:mod:`initlab.schemes`) overwrites it before training.

To add a model, add one entry to :data:`MODELS`: a name mapped to a class or factory whose
keyword arguments are its documented parameters. An old name kept for saved sweeps and scripts
goes into :data:`MODEL_ALIASES`; every function here accepts it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
from torch import nn

from initlab._checks import ArgumentError
from initlab.zoo._common import ACTIVATIONS, NORMS, choice, positive, positive_ints
from initlab.zoo.extra import LSTMClassifier, PatchTransformer, SmallResNet
from initlab.zoo.factory import (
    build_factory_model,
    factory_params,
    is_factory_spec,
    resolve_factory,
    signature_params,
)
from initlab.zoo.recurrent import CharRNN, SeqRNN
from initlab.zoo.residual import ResidualMLP
from initlab.zoo.transformer import CharTransformer, ViT

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "MODELS",
    "MODEL_ALIASES",
    "InitNet",
    "OneHiddenLayerMLP",
    "SmallCNN",
    "accepted_params",
    "build_model",
    "describe_models",
    "fit_classes",
    "model_aliases",
    "model_defaults",
    "resolve_model",
]


class OneHiddenLayerMLP(nn.Module):
    """An MLP 784 -> 128 -> ReLU -> num_classes with layers ``fc1``, ``fc2`` (``mlp-784-128-10``).

    The network of the MNIST example initlab started from (``num_classes=10``); that example's
    initialization (fc1 Xavier-uniform, fc2 Kaiming-uniform for ReLU, biases zero) is the
    ``xavier-then-he`` scheme, not part of the model. ``InitNet`` is its deprecated old name.

    Args:
        num_classes: number of output logits.

    Example:
        >>> OneHiddenLayerMLP()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 784)  # (B, 1, 28, 28) or (B, 784) -> (B, 784)
        return self.fc2(torch.relu(self.fc1(x)))


#: Deprecated name of :class:`OneHiddenLayerMLP` (the same class), kept for old imports.
InitNet = OneHiddenLayerMLP


class MLP(nn.Module):
    """A multilayer perceptron: ``depth`` hidden blocks Linear -> [norm] -> activation -> [dropout].

    Hidden layers are ``hidden.0``, ``hidden.1``, ... (each a Sequential whose Linear is ``.0``),
    the output layer is ``head``.

    Args:
        depth: number of hidden layers, >= 1.
        width: units per hidden layer, >= 1.
        activation: one of ``relu, leaky_relu, tanh, sigmoid, selu, gelu, silu, linear``
            (``linear``: no nonlinearity, a deep linear network as in Saxe et al. 2014).
        norm: ``"batch"`` (BatchNorm1d), ``"layer"`` (LayerNorm) or ``None``, placed after each
            hidden Linear.
        dropout: dropout probability after each activation, in [0, 1); 0 adds no Dropout layer.
        in_features: flattened input size (784 for 28x28 images).
        num_classes: number of output logits.

    Raises:
        TypeError: ``depth`` or ``width`` is not an int.
        ArgumentError: an unknown activation or norm, or an out-of-range size or probability
            (a ``ValueError`` naming the argument).

    Example:
        >>> MLP(depth=2, width=32, activation="tanh")(torch.zeros(3, 784)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        depth: int = 2,
        width: int = 256,
        activation: str = "relu",
        norm: str | None = None,
        dropout: float = 0.0,
        in_features: int = 784,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        positive("depth", depth)
        positive("width", width)
        choice("activation", activation, ACTIVATIONS)
        if norm is not None:
            choice("norm", norm, NORMS)
        if not 0.0 <= dropout < 1.0:
            raise ArgumentError("dropout", f"dropout must be in [0, 1); got dropout={dropout!r}")
        self.in_features = in_features
        blocks = []
        for i in range(depth):
            layers: list[nn.Module] = [nn.Linear(in_features if i == 0 else width, width)]
            if norm is not None:
                layers.append(NORMS[norm](width))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            blocks.append(nn.Sequential(*layers))
        self.hidden = nn.Sequential(*blocks)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.in_features)  # (B, ...) -> (B, in_features)
        return self.head(self.hidden(x))


class SmallCNN(nn.Module):
    """A small CNN: two stages of 3x3 conv (padding 1) -> ReLU -> 2x2 max-pool, then a Linear head.

    Shapes for 28x28 input: (B, 1, 28, 28) -> (B, c1, 14, 14) -> (B, c2, 7, 7) -> (B, classes).
    Layers are ``conv1``, ``conv2`` and ``head``.

    Args:
        channels: output channels of the two conv stages ``(c1, c2)``, each >= 1.
        num_classes: number of output logits.
        image_size: side of the square one-channel input image, divisible by 4.

    Raises:
        ArgumentError: ``channels`` is not two integers >= 1, or ``image_size`` is not divisible
            by 4 (a ``ValueError`` naming the argument).

    Example:
        >>> SmallCNN()(torch.zeros(2, 784)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, channels: tuple[int, int] = (16, 32), num_classes: int = 10, image_size: int = 28
    ) -> None:
        super().__init__()
        c1, c2 = positive_ints("channels", channels, 2, "[8,16]")
        if image_size % 4:
            raise ArgumentError(
                "image_size", f"image_size must be divisible by 4; got image_size={image_size!r}"
            )
        self.image_size = image_size
        self.conv1 = nn.Conv2d(1, c1, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3, padding=1)
        self.head = nn.Linear(c2 * (image_size // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, self.image_size, self.image_size)  # (B, 1, H, W)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)  # (B, c1, H/2, W/2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)  # (B, c2, H/4, W/4)
        return self.head(x.flatten(1))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp-784-128-10": OneHiddenLayerMLP,
    "mlp": MLP,
    "cnn": SmallCNN,
    "resmlp": ResidualMLP,
    "lstm": LSTMClassifier,
    "transformer": PatchTransformer,
    "resnet": SmallResNet,
    "char-gpt": CharTransformer,
    "vit": ViT,
    "char-rnn": CharRNN,
    "seq-rnn": SeqRNN,
}
#: Old model names, each mapped to its key of :data:`MODELS`; accepted wherever a name is.
MODEL_ALIASES: dict[str, str] = {"initnet": "mlp-784-128-10"}


def resolve_model(name: str) -> str:
    """Return the key of :data:`MODELS` that ``name`` (a key or an alias) means.

    A factory spec ``MODULE:FUNCTION`` (:mod:`initlab.zoo.factory`) is returned unchanged once
    it imports and names a callable.

    Raises:
        ArgumentError: ``name`` is neither (argument ``model``; the message lists the names
            and aliases and suggests a close match), or a factory spec that does not resolve
            (:func:`~initlab.zoo.factory.resolve_factory`).

    Example:
        >>> resolve_model("initnet"), resolve_model("mlp")
        ('mlp-784-128-10', 'mlp')
    """
    if isinstance(name, str) and name in MODEL_ALIASES:
        return MODEL_ALIASES[name]
    if is_factory_spec(name):
        resolve_factory(name)
        return name
    try:
        return choice("model", name, [*MODELS, *MODEL_ALIASES])
    except ArgumentError as error:
        if isinstance(name, str) and "." in name:  # a module path without its function
            raise ArgumentError(
                "model",
                f"{error}; or, for your own model, a model factory must be MODULE:FUNCTION, "
                f"e.g. {name}:build_net ({name!r} has no ':')",
            ) from None
        raise


def model_aliases(name: str) -> list[str]:
    """Return the aliases of zoo model ``name`` (a key or an alias), sorted; ``[]`` if none."""
    key = resolve_model(name)
    if is_factory_spec(key):
        return []
    return sorted(alias for alias, target in MODEL_ALIASES.items() if target == key)


def build_model(name: str, **params) -> nn.Module:
    """Build the zoo model registered as ``name`` with keyword ``params``.

    Args:
        name: a key of :data:`MODELS` (``mlp-784-128-10``, ``mlp``, ``cnn``, ...), an alias
            (``initnet``), or a factory spec ``MODULE:FUNCTION``
            (:func:`~initlab.zoo.factory.build_factory_model`, whose errors it raises).
        **params: the model's documented keyword arguments.

    Returns:
        A new ``nn.Module`` with PyTorch's default initialization.

    Raises:
        ArgumentError: if ``name`` is unknown (argument ``model``; the message suggests a close
            match), or the model refuses a parameter's value (the message names it).
        TypeError: if a parameter is not accepted by that model, or has the wrong type.

    Example:
        >>> build_model("mlp", depth=1, width=8).head.in_features
        8
    """
    if is_factory_spec(name):
        return build_factory_model(name, params)
    factory = MODELS[resolve_model(name)]
    accepted = accepted_params(name)
    for key in params:
        if key not in accepted:  # before the call: a raw __init__ TypeError names no choices
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            takes = f"the parameters {accepted}" if accepted else "no parameters"
            raise TypeError(f"model {name!r} takes {takes}; got {key}={params[key]!r}{hint}")
    return factory(**params)


def accepted_params(name: str) -> list[str]:
    """Return the sorted keyword arguments that zoo model ``name`` accepts.

    Raises:
        ArgumentError: if ``name`` is unknown.

    Example:
        >>> "depth" in accepted_params("mlp")
        True
    """
    return sorted(model_defaults(name))


def model_defaults(name: str) -> dict[str, object]:
    """Return ``{parameter: default}`` of zoo model ``name`` or factory spec, in signature order.

    Read by :func:`inspect.signature`; a parameter without a default maps to
    :data:`inspect.Parameter.empty`.

    Raises:
        ArgumentError: if ``name`` is unknown or a factory spec that does not resolve.

    Example:
        >>> model_defaults("cnn")
        {'channels': (16, 32), 'num_classes': 10, 'image_size': 28}
    """
    if is_factory_spec(name):
        return factory_params(name)
    return signature_params(MODELS[resolve_model(name)])


def fit_classes(name: str, params: dict, num_classes: int) -> dict:
    """Return ``params`` with ``num_classes`` added where zoo model ``name`` needs it for a dataset.

    Every zoo model takes ``num_classes`` (default 10, MNIST's); a dataset with another count,
    such as EMNIST letters (labels 1-26, so 27 logits), gets a head of its size unless
    ``params`` already sets one. ``params`` itself is not modified.

    Raises:
        ArgumentError: if ``name`` is unknown.

    Example:
        >>> fit_classes("mlp-784-128-10", {}, 27), fit_classes("mlp-784-128-10", {}, 10)
        ({'num_classes': 27}, {})
    """
    defaults = model_defaults(name)
    if "num_classes" not in defaults or "num_classes" in params:
        return params
    if defaults["num_classes"] == num_classes:
        return params
    return {**params, "num_classes": num_classes}


def describe_models() -> list[tuple[str, str]]:
    """Return ``(name, first docstring line)`` for every registered model, sorted by name.

    A model with aliases ends its line with them, e.g. ``(alias: initnet)``.
    """
    rows = []
    for name in sorted(MODELS):
        line = (MODELS[name].__doc__ or "").strip().splitlines()[0]
        aliases = model_aliases(name)
        rows.append((name, line + (f" (alias: {', '.join(aliases)})" if aliases else "")))
    return rows
