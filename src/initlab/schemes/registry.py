"""Named initialization schemes for whole models, as compared by ``initlab compare``.

A scheme is a model-agnostic rule. :func:`initialize` applies one to a model in three steps:

1. norm layers (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm): weight 1, bias 0,
   running statistics reset;
2. biases (every parameter with ``ndim < 2`` and ``bias`` in its name, outside norm layers) by
   the bias rule: ``zeros`` unless ``bias_init`` says otherwise (``"zeros"``,
   ``"constant:VALUE"`` or ``"torch"``, which keeps what the module's own ``reset_parameters``
   draws); ``torch_default`` defaults to ``"torch"``. Other 1-D parameters (a PReLU slope, a
   layer-scale vector) are not biases and keep their module's own initial values;
3. weights (every parameter with ``ndim >= 2`` outside norm layers) by the scheme. A weight that
   stacks independent blocks (LSTM/GRU gates, fused q/k/v) is filled block by block, each with
   its own fans (:func:`initlab.layer_fans` ``.blocks`` and :func:`initlab.per_block_`).

All randomness comes from the ``generator`` passed in; ``torch_default`` and the ``torch``
bias rule call ``reset_parameters()`` under a forked global RNG seeded from that generator, so
the global RNG is left untouched. Initialize on the CPU, then move the model.

Scheme options: ``name:key=value[:key=value]``, e.g. ``normal:std=0.1``, ``uniform:bound=0.1``.
To add a scheme, add one :class:`Scheme` to :data:`SCHEMES`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

import initlab as il
from initlab._checks import one_of
from initlab.schemes.auto import auto_weights
from initlab.schemes.datadriven import fixup_weights, lsuv_weights

__all__ = [
    "SCHEMES",
    "BiasInit",
    "Scheme",
    "check_fits",
    "initialize",
    "parse_bias_init",
    "parse_scheme",
    "weight_parameters",
]

_NORM_TYPES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
)


@dataclass(frozen=True)
class Scheme:
    """One named scheme.

    Attributes:
        name: registry key.
        summary: one line for ``initlab schemes``: the distribution with its exact parameters.
        init_weights: ``init_weights(model, generator=..., batch=..., **options)`` fills every
            weight (see :func:`weight_parameters`); ``batch`` is a training batch for
            data-dependent schemes, ``None`` otherwise.
        options: accepted options and their defaults (floats).
        default_bias: the bias rule used when ``bias_init`` is not given.
        torch_reset: call every module's ``reset_parameters()`` (seeded) before anything else.
    """

    name: str
    summary: str
    init_weights: Callable[..., None]
    options: Mapping[str, float] = field(default_factory=dict)
    default_bias: str = "zeros"
    torch_reset: bool = False


@dataclass(frozen=True)
class BiasInit:
    """A bias rule: ``kind`` is ``"zeros"``, ``"constant"`` (fill with ``value``) or ``"torch"``."""

    kind: str
    value: float = 0.0


def weight_parameters(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Parameter]]:
    """Yield ``(module, name, parameter)`` for every weight: ``ndim >= 2``, outside norm layers.

    Order is registration order (``model.modules()``, then each module's own parameters).
    """
    for module in model.modules():
        if isinstance(module, _NORM_TYPES):
            continue
        for name, param in module.named_parameters(recurse=False):
            if param.ndim >= 2:
                yield module, name, param


def _fill_weights(rule: Callable[..., None]) -> Callable[..., None]:
    """Turn a tensor rule ``rule(tensor, generator=, fans=, **options)`` into ``init_weights``."""

    def init_weights(model: nn.Module, *, generator: torch.Generator, batch=None, **options):
        for module, name, param in weight_parameters(model):
            _fill_one(module, name, param, rule, generator, options)

    return init_weights


def _fill_one(module, name, param, rule, generator, options) -> None:
    # Fans come from the layer kind (ConvTranspose, grouped conv, Bilinear, ...), not from the
    # stored shape; stacked gates / q,k,v blocks / conv groups are independent matrices, filled
    # one by one, each with these per-block fans.
    fans = il.layer_fans(module, name)
    il.per_block_(param, fans.blocks, rule, generator=generator, fans=fans.fans, **options)


def _seed_weights(model: nn.Module, *, generator: torch.Generator, batch=None) -> None:
    """The seed's mix generalized: the first weight Xavier-uniform, every later one He-uniform.

    In the seed's InitNet the first weight is fc1 (input layer) and the only later one is fc2.
    """
    for i, (module, name, param) in enumerate(weight_parameters(model)):
        rule = _xavier_uniform if i == 0 else _kaiming_uniform_relu
        _fill_one(module, name, param, rule, generator, {})


# Tensor rules: rule(tensor, *, generator, fans, **options). Rules without fans ignore them.
def _zeros(t, *, generator, fans):
    il.zeros_(t)


def _uniform(t, *, generator, fans, bound):
    il.uniform_(t, a=-bound, b=bound, generator=generator)


def _normal(t, *, generator, fans, std):
    il.normal_(t, mean=0.0, std=std, generator=generator)


def _xavier_uniform(t, *, generator, fans, gain=1.0):
    il.xavier_uniform_(t, gain=gain, fans=fans, generator=generator)


def _xavier_normal(t, *, generator, fans, gain):
    il.xavier_normal_(t, gain=gain, fans=fans, generator=generator)


def _kaiming_uniform_relu(t, *, generator, fans):
    il.kaiming_uniform_(t, mode="fan_in", nonlinearity="relu", fans=fans, generator=generator)


def _kaiming_normal_relu(t, *, generator, fans):
    il.kaiming_normal_(t, mode="fan_in", nonlinearity="relu", fans=fans, generator=generator)


def _lecun_normal(t, *, generator, fans):
    il.lecun_normal_(t, mode="fan_in", fans=fans, generator=generator)


def _orthogonal(t, *, generator, fans, gain):
    il.orthogonal_(t, gain=gain, generator=generator)


def _trunc_normal(t, *, generator, fans, std):
    il.trunc_normal_(t, mean=0.0, std=std, a=-2.0, b=2.0, bounds="std", generator=generator)


def _no_weights(model: nn.Module, *, generator: torch.Generator, batch=None) -> None:
    """Leave the weights as ``reset_parameters()`` drew them (``torch_default``)."""


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme(
            "seed",
            "the seed's mix: first weight xavier_uniform (gain 1), later weights "
            "kaiming_uniform (relu, fan_in), i.e. U(-sqrt(6/(fan_in+fan_out)), .) then "
            "U(-sqrt(6/fan_in), .)",
            _seed_weights,
        ),
        Scheme(
            "zeros",
            "all weights 0 (symmetric: the hidden units of a layer stay identical)",
            _fill_weights(_zeros),
        ),
        Scheme(
            "uniform",
            "U(-bound, bound), bound=0.05 (option bound): the seed's 'random initialization'",
            _fill_weights(_uniform),
            {"bound": 0.05},
        ),
        Scheme(
            "normal",
            "N(0, std^2), std=0.01 (option std): the seed's 'random initialization'",
            _fill_weights(_normal),
            {"std": 0.01},
        ),
        Scheme(
            "xavier_uniform",
            "U(-b, b), b = gain*sqrt(6/(fan_in+fan_out)), gain=1 (Glorot & Bengio 2010)",
            _fill_weights(_xavier_uniform),
            {"gain": 1.0},
        ),
        Scheme(
            "xavier_normal",
            "N(0, std^2), std = gain*sqrt(2/(fan_in+fan_out)), gain=1 (Glorot & Bengio 2010)",
            _fill_weights(_xavier_normal),
            {"gain": 1.0},
        ),
        Scheme(
            "kaiming_uniform",
            "U(-b, b), b = sqrt(6/fan_in): He et al. 2015 for relu (gain sqrt 2), fan_in",
            _fill_weights(_kaiming_uniform_relu),
        ),
        Scheme(
            "kaiming_normal",
            "N(0, std^2), std = sqrt(2/fan_in): He et al. 2015 for relu, fan_in (untruncated)",
            _fill_weights(_kaiming_normal_relu),
        ),
        Scheme(
            "lecun_normal",
            "N(0, std^2), std = 1/sqrt(fan_in), untruncated (LeCun et al. 1998)",
            _fill_weights(_lecun_normal),
        ),
        Scheme(
            "orthogonal",
            "gain * (semi-)orthogonal matrix from the QR of a Gaussian, gain=1 (Saxe et al. 2014)",
            _fill_weights(_orthogonal),
            {"gain": 1.0},
        ),
        Scheme(
            "trunc_normal",
            "N(0, std^2) truncated to [-2 std, 2 std], std=0.02 (option std), as in ViT/timm",
            _fill_weights(_trunc_normal),
            {"std": 0.02},
        ),
        Scheme(
            "torch_default",
            "each module's reset_parameters(): PyTorch's defaults, e.g. Linear/Conv "
            "U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias",
            _no_weights,
            default_bias="torch",
            torch_reset=True,
        ),
        Scheme(
            "lsuv",
            "orthogonal, then each layer rescaled to unit output variance on a training batch "
            "(Mishkin & Matas 2016)",
            lsuv_weights,
        ),
        Scheme(
            "fixup",
            "He normal; residual branches scaled by L^(-1/(2m-2)), their last layer and the head "
            "zero (Zhang et al. 2019); residual models only",
            fixup_weights,
        ),
        Scheme(
            "auto",
            "initlab.plan(model, 'auto'): per layer He / Xavier / LeCun by the following "
            "activation, orthogonal recurrent and Xavier q/k/v blocks, LSTM forget bias 1, "
            "output layer Xavier; biases by the policy",
            auto_weights,
        ),
    )
}


def parse_scheme(text: str) -> tuple[Scheme, dict[str, float]]:
    """Parse ``"name"`` or ``"name:key=value[:key=value]"`` into a scheme and its options.

    Returns:
        ``(scheme, options)`` with every option of the scheme, defaults filled in.

    Raises:
        ValueError: unknown scheme or option (close matches suggested), or a non-numeric value.

    Example:
        >>> parse_scheme("normal:std=0.1")[1]
        {'std': 0.1}
    """
    name, *pairs = text.split(":")
    scheme = SCHEMES[one_of("scheme", name, SCHEMES)]
    options = dict(scheme.options)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"scheme options are key=value; got {pair!r} in scheme={text!r}")
        if not scheme.options:  # one_of would say "must be one of []"
            raise ValueError(f"scheme {name!r} takes no options; got {pair!r} in scheme={text!r}")
        one_of(f"option of scheme {name!r}", key, scheme.options)
        options[key] = _number(value, f"{key} in scheme={text!r}")
    return scheme, options


def parse_bias_init(text: str) -> BiasInit:
    """Parse a bias rule: ``"zeros"``, ``"torch"`` or ``"constant:VALUE"``.

    Raises:
        ValueError: unknown rule, or ``constant`` without a numeric value.

    Example:
        >>> parse_bias_init("constant:0.01")
        BiasInit(kind='constant', value=0.01)
    """
    kind, sep, value = text.partition(":")
    one_of("bias_init", kind, ("zeros", "constant", "torch"))
    if kind == "constant":
        if not sep:
            raise ValueError(
                f"bias_init constant needs a value, e.g. 'constant:0.01'; got {text!r}"
            )
        return BiasInit("constant", _number(value, f"bias_init={text!r}"))
    if sep:
        raise ValueError(f"bias_init {kind!r} takes no value; got bias_init={text!r}")
    return BiasInit(kind)


def initialize(
    model: nn.Module,
    scheme: str,
    *,
    generator: torch.Generator,
    bias_init: str | None = None,
    batch: torch.Tensor | None = None,
) -> nn.Module:
    """Initialize every parameter of ``model`` in place by ``scheme`` (see the module docstring).

    Args:
        model: any ``nn.Module``; initialize it on the CPU, then move it.
        scheme: a scheme name with optional options, e.g. ``"seed"``, ``"normal:std=0.1"``.
        generator: the only source of randomness (a CPU ``torch.Generator``).
        bias_init: the bias rule; ``None`` uses the scheme's default (``zeros``; ``torch`` for
            ``torch_default``).
        batch: a training batch for data-dependent schemes; ignored by the others.

    Returns:
        ``model`` itself.

    Raises:
        ValueError: unknown scheme, option or bias rule.

    Example:
        >>> from initlab.zoo.models import InitNet
        >>> net = initialize(InitNet(), "seed", generator=torch.Generator().manual_seed(0))
        >>> float(net.fc1.bias.abs().sum())
        0.0
    """
    spec, options = parse_scheme(scheme)
    bias = parse_bias_init(bias_init if bias_init is not None else spec.default_bias)
    if spec.torch_reset or bias.kind == "torch":
        _torch_reset(model, generator)
    with torch.no_grad():
        _init_norms(model)
        if bias.kind != "torch":
            for param in _bias_parameters(model):
                param.fill_(bias.value)
    spec.init_weights(model, generator=generator, batch=batch, **options)
    return model


def check_fits(model: nn.Module, scheme: str, model_name: str) -> None:
    """Initialize a copy of ``model`` by weight-only ``scheme``; say so if it does not fit.

    Raises:
        ValueError: the scheme fails on the model, e.g. ``fixup`` without residual blocks; the
            message names the model and, for fixup, the zoo models that have them.
    """
    try:
        initialize(copy.deepcopy(model), scheme, generator=torch.Generator().manual_seed(0))
    except ValueError as error:
        hint = ""
        if scheme.split(":")[0] == "fixup":  # fixup_'s own error names no model
            hint = " (fixup needs residual blocks: use model 'resmlp' or 'resnet', --model resmlp)"
        raise ValueError(
            f"scheme {scheme!r} does not apply to model {model_name!r}{hint}: {error}"
        ) from None


def _torch_reset(model: nn.Module, generator: torch.Generator) -> None:
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # Children before parents, as at construction, so a parent's own reset (e.g.
        # nn.Transformer._reset_parameters) wins over its children's as it does in PyTorch.
        for module in reversed(list(model.modules())):
            reset = getattr(module, "reset_parameters", None) or getattr(
                module, "_reset_parameters", None
            )
            if callable(reset):
                reset()


def _init_norms(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, _NORM_TYPES):
            for name, param in module.named_parameters(recurse=False):
                param.fill_(1.0 if name == "weight" else 0.0)
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()


def _bias_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    for module in model.modules():
        if not isinstance(module, _NORM_TYPES):
            for name, param in module.named_parameters(recurse=False):
                if param.ndim < 2 and "bias" in name:
                    yield param


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number; got {text!r}") from None
