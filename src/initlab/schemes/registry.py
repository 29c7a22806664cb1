"""The built-in schemes by name, as ``initlab train``, ``compare`` and ``diagnose`` run them.

Each entry of :data:`SCHEMES` is a :class:`~initlab.schemes.scheme.Scheme`: a weight policy
(:mod:`initlab.schemes.weights`, :mod:`initlab.schemes.auto`) plus steps after it
(:mod:`initlab.schemes.steps`). A scheme's old names are its ``aliases``
(:data:`SCHEME_ALIASES`); every function here accepts them.

Scheme options: ``name:key=value[:key=value]``, e.g. ``normal:std=0.1``, ``uniform:bound=0.1``.
Every scheme also takes ``forget_bias`` (``xavier_uniform:forget_bias=1``): the LSTM forget-gate
(GRU update-gate) bias set after the scheme (:func:`initlab.schemes.classic.set_forget_bias_`);
and, but one that loads a source checkpoint, ``class_prior=1``: the output layer's bias set to
the log class prior of the training batch's labels after the scheme
(:class:`initlab.schemes.heads.ClassPriorBias`; the batch is ``(inputs, labels, ...)``).
To add a scheme, add one :class:`~initlab.schemes.scheme.Scheme` to :data:`SCHEMES`.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from initlab._checks import ArgumentError, one_of
from initlab.schemes import weights as w
from initlab.schemes.auto import Preset
from initlab.schemes.classic import FORGET_BIAS, ZeroGamma, with_forget_bias
from initlab.schemes.heads import CLASS_PRIOR, with_class_prior
from initlab.schemes.meanfield import MEANFIELD
from initlab.schemes.recurrent import IdentityRNN, RecurrentOrthogonal
from initlab.schemes.scheme import BiasInit, Scheme, number, parse_bias_init
from initlab.schemes.steps import LSUV, Fixup, LoadPretrained
from initlab.schemes.transformer import POLICIES as TRANSFORMER
from initlab.schemes.weights import CONSTRUCTED, EveryWeight, FirstWeight, weight_parameters

__all__ = [
    "SCHEMES",
    "SCHEME_ALIASES",
    "BiasInit",
    "Scheme",
    "canonical_scheme",
    "check_fits",
    "initialize",
    "parse_bias_init",
    "parse_scheme",
    "scheme_names",
    "weight_parameters",
]


def _transformer(name: str, summary: str, *, aliases: tuple[str, ...] = (), **options) -> Scheme:
    """A transformer scheme: its policy from :data:`initlab.schemes.transformer.POLICIES`, its
    own options and the common ones (``scaled_embedding``, ``zero_head``)."""
    policy = TRANSFORMER[name]
    return Scheme(name, summary, policy, options={**options, **policy.COMMON}, aliases=aliases)


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme(
            "xavier-then-he",
            "first weight xavier_uniform (gain 1), later weights kaiming_uniform (relu, "
            "fan_in), i.e. U(-sqrt(6/(fan_in+fan_out)), .) then U(-sqrt(6/fan_in), .): the "
            "initialization of the MNIST example initlab started from",
            FirstWeight(w.xavier_uniform, w.kaiming_uniform_relu),
            aliases=("seed",),
        ),
        Scheme(
            "zeros",
            "all weights 0 (symmetric: the hidden units of a layer stay identical)",
            EveryWeight(w.zeros),
        ),
        Scheme(
            "uniform",
            "U(-bound, bound), bound=0.05 (option bound): the first example's 'random "
            "initialization'",
            EveryWeight(w.uniform),
            options={"bound": 0.05},
        ),
        Scheme(
            "normal",
            "N(0, std^2), std=0.01 (option std): the first example's 'random initialization'",
            EveryWeight(w.normal),
            options={"std": 0.01},
        ),
        Scheme(
            "xavier_uniform",
            "U(-b, b), b = gain*sqrt(6/(fan_in+fan_out)), gain=1 (Glorot & Bengio 2010)",
            EveryWeight(w.xavier_uniform),
            options={"gain": 1.0},
        ),
        Scheme(
            "xavier_normal",
            "N(0, std^2), std = gain*sqrt(2/(fan_in+fan_out)), gain=1 (Glorot & Bengio 2010)",
            EveryWeight(w.xavier_normal),
            options={"gain": 1.0},
        ),
        Scheme(
            "kaiming_uniform",
            "U(-b, b), b = sqrt(6/fan_in): He et al. 2015 for relu (gain sqrt 2), fan_in",
            EveryWeight(w.kaiming_uniform_relu),
        ),
        Scheme(
            "kaiming_normal",
            "N(0, std^2), std = sqrt(2/fan_in): He et al. 2015 for relu, fan_in (untruncated)",
            EveryWeight(w.kaiming_normal_relu),
        ),
        Scheme(
            "lecun_normal",
            "N(0, std^2), std = 1/sqrt(fan_in), untruncated (LeCun et al. 1998)",
            EveryWeight(w.lecun_normal),
        ),
        Scheme(
            "orthogonal",
            "gain * (semi-)orthogonal matrix from the QR of a Gaussian, gain=1 (Saxe et al. 2014)",
            EveryWeight(w.orthogonal),
            options={"gain": 1.0},
        ),
        Scheme(
            "trunc_normal",
            "N(0, std^2) truncated to [-2 std, 2 std], std=0.02 (option std), as in ViT/timm",
            EveryWeight(w.trunc_normal),
            options={"std": 0.02},
        ),
        Scheme(
            "torch_default",
            "each module's reset_parameters(): PyTorch's defaults, e.g. Linear/Conv "
            "U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias",
            CONSTRUCTED,
            default_bias="torch",
            torch_reset=True,
        ),
        Scheme(
            "lsuv",
            "orthogonal, then each layer rescaled to unit output variance on a training batch "
            "(Mishkin & Matas 2016)",
            CONSTRUCTED,  # LSUV's own step 1 draws the orthogonal weights
            steps=(LSUV(),),
        ),
        Scheme(
            "fixup",
            "He normal; residual branches scaled by L^(-1/(2m-2)), their last layer and the head "
            "zero (Zhang et al. 2019); residual models only",
            EveryWeight(w.kaiming_normal_relu),
            steps=(Fixup(),),
        ),
        Scheme(
            "zero_gamma",
            "He normal N(0, 2/fan_in), norm layers 1/0 but the last norm weight (gamma) of each "
            "residual branch 0 (Goyal et al. 2017 Sec. 5.1); residual models with norms only",
            EveryWeight(w.kaiming_normal_relu),
            steps=(ZeroGamma(),),
        ),
        Scheme(
            "auto",
            "initlab.plan(model, 'auto'): per layer He / Xavier / LeCun by the following "
            "activation, orthogonal recurrent and Xavier q/k/v blocks, LSTM forget bias 1, "
            "output layer Xavier; biases by the policy",
            Preset("auto"),
        ),
        Scheme(
            "pretrained",
            "every tensor from a source checkpoint (the model pretrained on another dataset) "
            "but the classifier head, which is new, by the auto policy; no options",
            CONSTRUCTED,
            steps=(LoadPretrained(new_head="auto", on_mismatch="error"),),
        ),
        # Recurrent layers only; embeddings and heads keep PyTorch's defaults (torch_reset),
        # drawn as torch_default draws them, so that only the recurrent init differs.
        Scheme(
            "rnn_orthogonal",
            "LSTM/GRU/RNN: recurrent weights orthogonal per gate (Saxe et al. 2014; per gate as "
            "Jozefowicz et al. 2015, Keras), input weights xavier_uniform per gate, biases 0, "
            "LSTM forget bias forget_bias=1 (Jozefowicz et al. 2015 Sec. 2.2); rest PyTorch's",
            RecurrentOrthogonal(),
            options={"forget_bias": 1.0},
            default_bias="torch",
            torch_reset=True,
        ),
        Scheme(
            "irnn",
            "plain RNN: recurrent weight scale*I (scale=1), input weights N(0, std^2), "
            "std=0.001, biases 0 (Le, Jaitly & Hinton 2015 Sec. 3); no LSTM/GRU; rest PyTorch's",
            IdentityRNN(),
            options={"scale": 1.0, "std": 0.001},
            default_bias="torch",
            torch_reset=True,
        ),
        # Transformers (the zoo's contract: initlab.schemes.transformer); each takes the options
        # scaled_embedding (token embedding N(0, 1/d)) and zero_head (head weight 0), 0 or 1.
        _transformer(
            "gpt2",
            "every weight N(0, 0.02^2) (option std), residual projections attn.proj/mlp.proj "
            "N(0, (std/sqrt(2L))^2) (Radford et al. 2019 Sec. 2.3); embeddings and positions "
            "N(0, std^2), LN 1/0, biases 0",
            std=0.02,
        ),
        _transformer(
            "small_init",
            "every weight (embeddings, positions, head) N(0, 2/(5d)), std sqrt(2/(5d)) (Nguyen & "
            "Salazar 2019, Transformers without Tears); LN 1/0, biases 0",
        ),
        _transformer(
            "wang_init",
            "residual projections N(0, (2/(L sqrt(d)))^2) (Wang & Komatsuzaki 2021, GPT-NeoX "
            "wang_init), every other weight small_init N(0, 2/(5d)); LN 1/0, biases 0",
        ),
        _transformer(
            "llama_depth",
            "OLMo-core llama_depth: weights N(0, 0.02^2) cut at 3 std, residual projections of "
            "block i std 0.02/sqrt(2(i+1)), token embedding N(0, 1), head std d^-1/2 cut at 3 "
            "std, positions 0.02; LN 1/0, biases 0",
        ),
        _transformer(
            "zero_proj",
            "residual projections and head 0 (modded-nanogpt), q/k/v/mlp.fc PyTorch's "
            "U(-1/sqrt(fan_in), .), token embedding N(0, 1), positions N(0, 0.02^2); LN 1/0, "
            "biases 0",
        ),
        _transformer(
            "deepnorm",
            "post-LN only: residual_scale alpha=(2L)^(1/4), xavier_normal gain beta=(8L)^(-1/4) "
            "for v, attn.proj, mlp.fc, mlp.proj, gain 1 for q, k, embeddings, positions, head "
            "(Wang et al. 2022 DeepNet Sec. 3, Fig. 2); LN 1/0, biases 0",
        ),
        _transformer(
            "tfixup",
            "T-Fixup, decoder-only: every weight xavier_uniform, token embedding and positions "
            "N(0, (d^-1/2 (9L)^-1/4)^2), v, attn.proj, mlp.fc, mlp.proj xavier_uniform times "
            "(9L)^-1/4 (Huang et al. 2020 Sec. 3); derived without LayerNorm or warm-up (char-gpt "
            "norm=none is its setting; with LN only a depth scaling); causal models only; LN "
            "1/0, biases 0",
        ),
        _transformer(
            "rezero",
            "residual gates 0, every weight (embeddings, positions, head) xavier_uniform "
            "(Bachlechner et al. 2020; SkipInit, De & Smith 2020); LN 1/0, biases 0; gated "
            "models only",
            aliases=("skipinit",),
        ),
        _transformer(
            "layerscale",
            "residual gates eps: 0.1 for L <= 18, 1e-5 for L <= 24, else 1e-6 (option eps, 0 = by "
            "depth; Touvron et al. 2021 CaiT Sec. 3), weights N(0, 0.02^2) cut at 2 std; LN 1/0, "
            "biases 0; gated models only",
            eps=0.0,
        ),
        _transformer(
            "mimetic",
            "per head W_q W_k^T ~ alpha1 Z + beta1 I, W_v W_proj ~ alpha2 Z - beta2 I (Z ~ "
            "N(0, 1/d), SVD factors; 0.7, 0.7, 0.4, 0.4), other weights N(0, 0.02^2) cut at 2 std "
            "(Trockman & Kolter 2023 Sec. 3); LN 1/0, biases 0",
            alpha1=0.7,
            beta1=0.7,
            alpha2=0.4,
            beta2=0.4,
        ),
        MEANFIELD,
    )
}

#: Every old scheme name, mapped to its key of :data:`SCHEMES`.
SCHEME_ALIASES: dict[str, str] = {a: s.name for s in SCHEMES.values() for a in s.aliases}


def scheme_names() -> list[str]:
    """Return every scheme name and alias that :func:`parse_scheme` accepts, sorted."""
    return sorted([*SCHEMES, *SCHEME_ALIASES])


def canonical_scheme(text: str) -> str:
    """Return ``text`` (``name[:options]``) with an alias replaced by its scheme's name.

    Example:
        >>> canonical_scheme("seed"), canonical_scheme("normal:std=0.1")
        ('xavier-then-he', 'normal:std=0.1')
    """
    name, sep, rest = text.partition(":")
    return SCHEME_ALIASES.get(name, name) + sep + rest


def parse_scheme(text: str) -> tuple[Scheme, dict[str, float]]:
    """Parse ``"name"`` or ``"name:key=value[:key=value]"`` into a scheme and its options.

    ``name`` is a key of :data:`SCHEMES` or an alias (``seed`` is ``xavier-then-he``).

    Returns:
        ``(scheme, options)`` with every option of the scheme, defaults filled in.

    Raises:
        ArgumentError: unknown scheme or option (close matches suggested), or a non-numeric
            value (argument ``scheme``).

    ``forget_bias=VALUE`` is accepted by every scheme: unless the scheme owns that option
    (``rnn_orthogonal``), the returned scheme is a copy with a
    :class:`~initlab.schemes.classic.ForgetBias` step appended
    (:func:`~initlab.schemes.classic.with_forget_bias`), and ``options`` leaves it out.
    ``class_prior=1`` likewise, by every scheme but one that loads a source checkpoint: a copy
    with a :class:`~initlab.schemes.heads.ClassPriorBias` step appended
    (:func:`~initlab.schemes.heads.with_class_prior`); ``class_prior=0`` changes nothing.

    Example:
        >>> parse_scheme("normal:std=0.1")[1]
        {'std': 0.1}
    """
    name, *pairs = text.split(":")
    try:
        scheme = SCHEMES[SCHEME_ALIASES.get(name) or one_of("scheme", name, scheme_names())]
    except ValueError as error:
        raise ArgumentError("scheme", str(error)) from None
    options = dict(scheme.options)
    forget_bias = None  # the option every scheme takes (initlab.schemes.classic)
    class_prior = None  # likewise (initlab.schemes.heads), but not a source-loading scheme
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ArgumentError(
                "scheme", f"scheme options are key=value; got {pair!r} in scheme={text!r}"
            )
        if key == FORGET_BIAS and key not in scheme.options:
            forget_bias = number(value, f"{key} in scheme={text!r}", "scheme")
            continue
        if key == CLASS_PRIOR and not scheme.needs_source:
            class_prior = number(value, f"{key} in scheme={text!r}", "scheme")
            continue
        if not scheme.takes_options:  # one_of would say "must be one of []"
            why = " (its weights come from the source checkpoint)" if scheme.needs_source else ""
            raise ArgumentError(
                "scheme",
                f"scheme {name!r} takes no options{why}; got {pair!r} in scheme={text!r}",
            )
        try:
            one_of(f"option of scheme {name!r}", key, scheme.options)
        except ValueError as error:
            raise ArgumentError("scheme", str(error)) from None
        options[key] = number(value, f"{key} in scheme={text!r}", "scheme")
    if forget_bias is not None:
        try:
            scheme = with_forget_bias(scheme, forget_bias)
        except ArgumentError as error:
            raise ArgumentError("scheme", f"{error} in scheme={text!r}") from None
    if class_prior is not None:
        try:
            scheme = with_class_prior(scheme, class_prior)
        except ArgumentError as error:
            raise ArgumentError("scheme", f"{error} in scheme={text!r}") from None
    return scheme, options


def initialize(
    model: nn.Module,
    scheme: str | Scheme,
    *,
    generator: torch.Generator,
    bias_init: str | None = None,
    batch=None,
    source=None,
) -> nn.Module:
    """Initialize every parameter of ``model`` in place by ``scheme`` (:meth:`Scheme.apply`).

    Args:
        model: any ``nn.Module``; initialize it on the CPU, then move it.
        scheme: a scheme name (or alias) with optional options, e.g. ``"xavier-then-he"``,
            ``"normal:std=0.1"``; or a :class:`~initlab.schemes.scheme.Scheme` (its default
            options).
        generator: the only source of randomness (a CPU ``torch.Generator``).
        bias_init: the bias rule; ``None`` uses the scheme's default (``zeros``; ``torch`` for
            ``torch_default``).
        batch: a training batch (a tensor or ``(inputs, ...)``) for schemes whose steps need
            one (``lsuv``); ``auto`` traces its first examples. Ignored by the others.
        source: the checkpoint of schemes that load one (``pretrained``): a path or a
            :class:`~initlab.schemes.steps.Source`.

    Returns:
        ``model`` itself.

    Raises:
        ArgumentError: unknown scheme, option or bias rule, or a ``batch`` or ``source`` the
            scheme needs is missing.
        ValueError: the scheme does not apply to the model (see :func:`check_fits`).

    Example:
        >>> from initlab.zoo.models import build_model
        >>> g = torch.Generator().manual_seed(0)
        >>> net = initialize(build_model("mlp-784-128-10"), "xavier-then-he", generator=g)
        >>> float(net.fc1.bias.abs().sum())
        0.0
    """
    if isinstance(scheme, Scheme):
        spec, options = scheme, dict(scheme.options)
    else:
        spec, options = parse_scheme(scheme)
    spec.apply(model, options, generator=generator, bias_init=bias_init, batch=batch, source=source)
    return model


def check_fits(model: nn.Module, scheme: str, model_name: str, *, batch=None) -> None:
    """Initialize a copy of ``model`` by ``scheme``; say so if the scheme does not fit it.

    The steps that need data (a batch, a source checkpoint) are left out: they are checked
    when they run. ``model`` itself is not changed. ``batch`` (a tensor or ``(inputs, ...)``,
    as :meth:`Scheme.apply` takes it) is what the policy traces, e.g. ``auto`` on inputs that
    are not 28x28 images; without it ``auto`` traces a zero MNIST-sized image.

    Raises:
        ArgumentError: the scheme fails on the model (argument ``model``), e.g. ``fixup``
            without residual blocks; the message names the model and the step's hint (for
            fixup, the zoo models that have them).
        ValueError: ``scheme`` is unknown or has a bad option (:func:`parse_scheme`).
    """
    spec, options = parse_scheme(scheme)
    offline = tuple(s for s in spec.steps if not (s.needs_batch or s.needs_source))
    # a step that needs data may still check the model now (ClassPriorBias: an output layer)
    checks = [s for s in spec.steps if s not in offline and hasattr(s, "check_model")]
    try:
        dataclasses.replace(spec, steps=offline).apply(
            copy.deepcopy(model), options, generator=torch.Generator().manual_seed(0), batch=batch
        )
        for step in checks:
            step.check_model(model)
    except ValueError as error:
        hints = [s.misfit_hint for s in (*offline, *checks) if s.misfit_hint]
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise ArgumentError(
            "model", f"scheme {scheme!r} does not apply to model {model_name!r}{hint}: {error}"
        ) from None
