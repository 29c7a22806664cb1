"""Rules as data: what a rule matches and which distribution it assigns.

A :class:`Rule` is a frozen dataclass: a set of conditions (layer kind, parameter role,
following activation, name glob or regex, module type, residual-branch end) and one
initialization. A policy is an ordered tuple of rules; the first rule that matches a
parameter fires. Every rule resolves to an explicit distribution with its standard deviation
or bound, which is what a plan row stores and what ``apply`` draws from.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from initlab._checks import one_of
from initlab.initializers.variance_scaling import (
    DISTRIBUTIONS,
    TRUNCATED_STD,
    scaled_draw,
    select_fan,
    variance_scaling_std,
)
from initlab.introspect.activations import CALLABLES, FAMILIES, Activation
from initlab.introspect.kinds import KINDS, config_value, rescaled_tied_head, unscaled_attention

__all__ = ["ACTIVATION_NAMES", "INITS", "Rule", "RuleSet", "Target"]

#: What a rule can assign.
INITS = (
    "constant",
    "forget_gate",
    "keep",
    "normal",
    "orthogonal",
    "truncated_normal",
    "uniform",
    "variance_scaling",
)
_MODES = ("fan_avg", "fan_in", "fan_out", "hidden", "model_dim")
#: What ``Rule.scale`` accepts besides a number.
_SCALES = ("activation", "1/head_dim")
#: What ``Rule.activations`` accepts: activation names, families and three special words.
ACTIVATION_NAMES = (*CALLABLES, *FAMILIES, "any", "none", "output")
_DISTRIBUTIONS = DISTRIBUTIONS


@dataclass(frozen=True)
class Target:
    """Everything a rule can match on for one parameter."""

    name: str  # qualified name, e.g. "encoder.layers.0.linear1.weight"
    role: str  # leaf name without the RNN layer suffix, e.g. "weight_ih"
    kind: str  # layer kind from initlab.introspect.kinds.KINDS
    module: nn.Module
    activation: Activation | None
    is_output: bool
    residual_end: bool
    ndim: int
    fan_in: int | None
    fan_out: int | None
    blocks: int
    hidden: int | None  # hidden_size of recurrent layers
    ancestors: tuple[nn.Module, ...] = ()  # the modules that contain the owner, root first
    # an embedding whose width is that of an embedding tied to (shared with) an output layer
    tied_output: bool = False
    tied: bool = False  # the parameter itself is reached under more than one name


@dataclass(frozen=True)
class Rule:
    r"""One row of a policy: conditions, then one initialization.

    Conditions (all given ones must hold; an empty tuple or ``None`` matches anything):

    * ``kinds``: layer kinds (``"linear"``, ``"conv"``, ``"lstm"``, ``"norm"`` ... see
      :data:`initlab.introspect.kinds.KINDS`).
    * ``roles``: parameter leaf names without RNN suffix (``"weight"``, ``"bias"``,
      ``"weight_hh"``, ``"in_proj_weight"``).
    * ``activations``: the activation after the layer, by name (``"relu"``), family
      (``"relu_family"``, ``"saturating"``, ``"selu"``), ``"any"`` (any activation), ``"none"``
      (no activation, not the output layer) or ``"output"`` (the layer producing the output).
    * ``param``: a glob on the qualified name (``"*.c_proj.weight"``) or a regex prefixed with
      ``"re:"`` (``"re:^head\."``), matched with :func:`re.search`.
    * ``module``: a module class (``isinstance``) or a class name.
    * ``within``: a module class or class name that must contain the owning module (e.g.
      ``nn.Transformer``, whose own reset re-draws every matrix inside it).
    * ``residual_end``: whether the layer must (or must not) end a residual branch.
    * ``tied_output``: whether the parameter is an embedding of width ``d`` in a model whose
      output projection shares the weight of an embedding of width ``d`` (input and output
      embeddings tied, Press and Wolf 2017): the tied embedding itself and the embeddings of
      its width (positions, token types), which are summed with it.
    * ``tied``: whether the parameter itself is shared (one Parameter under several names, as
      GPT-2's ``wte.weight`` and ``lm_head.weight``).
    * ``fused``: whether the parameter holds several blocks drawn each as its own matrix (the
      gates of an LSTM/GRU, the q/k/v of an attention input projection, Hugging Face's
      ``Conv1D`` ``c_attn``).
    * ``unscaled_attention``: whether the parameter's module lies directly in an attention that
      does not divide its scores by sqrt(head_dim) (T5's ``q``, ``k``, ``v``, ``o`` and
      ``relative_attention_bias``; :func:`initlab.introspect.kinds.unscaled_attention`).
    * ``rescaled_tied_head``: whether the model multiplies the input of its tied output layer
      by dim^-1/2 (T5; :func:`initlab.introspect.kinds.rescaled_tied_head`).
    * ``min_ndim``: parameters with fewer dimensions do not match.

    Initializations (``init``), each with the fields it reads:

    * ``"variance_scaling"``: std = sqrt(scale / fan), ``fan`` by ``mode`` (``"fan_in"``,
      ``"fan_out"``, ``"fan_avg"`` = (fan_in + fan_out) / 2, ``"hidden"`` = ``hidden_size``);
      ``"model_dim"`` = the input width of the enclosing unscaled attention (T5's ``d_model``);
      ``scale`` multiplies the variance; ``scale="activation"`` uses the square of the gain of
      the following activation (1 without one), ``scale="1/head_dim"`` the inverse head width
      of the enclosing unscaled attention (T5 folds the 1/sqrt(d_kv) of the scores into
      ``q``). ``distribution`` ``"normal"``, ``"uniform"`` (bound = sqrt(3) std) or
      ``"truncated_normal"`` (actual std = target, cut at 2 sigma of the underlying normal, as
      in JAX). Glorot and Bengio (2010), He et al. (2015), LeCun et
      al. (1998) are special cases. Fans are per block (gate, q/k/v) when ``per_block``; else
      read from the stored shape as ``torch.nn.init`` and Keras do. ``split_heads`` reads the
      fans of an ``nn.MultiheadAttention`` projection as Keras reads the head-split kernel of its
      ``MultiHeadAttention`` (``compute_fans`` takes the leading dims of a 3-D kernel as a
      receptive field): q/k/v, kernel (in, heads, head_dim): fan_in = heads * in, fan_out =
      head_dim * in; output, kernel (heads, head_dim, out): fan_in = heads * head_dim, fan_out =
      heads * out.
    * ``"normal"``: N(0, std**2). ``"truncated_normal"``: N(0, std**2) cut to +-``bound``
      (absolute; default 2 std). ``"uniform"``: U(-bound, bound). With ``std_from`` (a config
      attribute such as ``"initializer_range"``) the std is that attribute of the ``config`` of
      the innermost module around the parameter that has one (Hugging Face models, nanoGPT),
      and ``std`` where none has it or it is 0 (as ``PreTrainedModel._init_weights`` reads
      ``config.initializer_range or 0.02``).
    * ``"orthogonal"``: a (semi-)orthogonal matrix per block times ``gain`` (Saxe et al. 2014).
    * ``"constant"``: ``value``. ``"forget_gate"``: an LSTM bias, ``value`` in the forget gate
      block and 0 elsewhere (Jozefowicz et al. 2015).
    * ``"keep"``: the module's own ``reset_parameters()`` / ``init_weights()`` runs.

    ``residual_scale`` multiplies the std by 1 / sqrt(number of parameters of the whole model
    this policy scales), i.e. 1 / sqrt(2 n_layers) for the two residual projections per GPT-2
    block (Radford et al. 2019, Sec. 2.3). With ``residual_layers`` (a config attribute such as
    ``"n_layer"``, read as ``std_from``) it is 1 / sqrt(2 * that number) instead, GPT-2's own
    count of two branches per layer (Hugging Face ``GPT2PreTrainedModel._init_weights``, which
    scales a cross-attention's projection by it too); the count is the fallback when no config
    has it. ``zero_rows`` (``"padding_idx"``) zeroes an embedding's padding row.

    Example:
        >>> head = Rule("small head", "normal", param="re:^head\\.", std=0.01, note="tiny logits")
        >>> tanh = Rule("tanh: orthogonal", "orthogonal", activations=("tanh",), gain=5 / 3)
        >>> plan = initlab.plan(model, rules=[head, tanh])  # doctest: +SKIP
    """

    name: str
    init: str
    kinds: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    activations: tuple[str, ...] = ()
    param: str | None = None
    module: type | tuple[type, ...] | str | None = None
    within: type | tuple[type, ...] | str | None = None
    residual_end: bool | None = None
    tied_output: bool | None = None
    tied: bool | None = None
    fused: bool | None = None
    unscaled_attention: bool | None = None
    rescaled_tied_head: bool | None = None
    min_ndim: int = 0
    scale: float | str = 1.0
    mode: str = "fan_in"
    distribution: str = "normal"
    std: float = 1.0
    bound: float | None = None
    value: float = 0.0
    gain: float = 1.0
    per_block: bool = True
    split_heads: bool = False
    residual_scale: bool = False
    residual_layers: str | None = None
    std_from: str | None = None
    zero_rows: str | None = None
    note: str = ""
    _regex: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        one_of("init", self.init, INITS)
        one_of("mode", self.mode, _MODES)
        one_of("distribution", self.distribution, _DISTRIBUTIONS)
        for attr in ("kinds", "roles", "activations"):
            value = getattr(self, attr)
            if isinstance(value, str):  # a bare string would match per character
                object.__setattr__(self, attr, (value,))
        for kind in self.kinds:
            one_of("kinds entry", kind, KINDS)
        for name in self.activations:
            one_of("activations entry", name, ACTIVATION_NAMES)
        if self.scale not in _SCALES and (
            isinstance(self.scale, bool)
            or not isinstance(self.scale, (int, float))
            or not self.scale >= 0
        ):
            raise ValueError(
                f"scale must be a number >= 0 or one of {list(_SCALES)}; got scale={self.scale!r}"
            )
        for attr in ("std_from", "residual_layers"):
            value = getattr(self, attr)
            if value is not None and not (isinstance(value, str) and value.isidentifier()):
                raise ValueError(
                    f"{attr} must be a config attribute name (e.g. 'initializer_range') or None; "
                    f"got {attr}={value!r}"
                )
        if self.residual_layers is not None and not self.residual_scale:
            raise ValueError(
                f"residual_layers={self.residual_layers!r} sets the residual scale, so it needs "
                "residual_scale=True"
            )
        if self.param is not None:
            pattern = (
                self.param[3:]
                if self.param.startswith("re:")
                else "^" + fnmatch.translate(self.param)
            )
            try:
                object.__setattr__(self, "_regex", re.compile(pattern))
            except re.error as error:
                raise ValueError(
                    f"param is not a valid pattern: param={self.param!r} ({error})"
                ) from None

    def matches(self, t: Target) -> bool:
        """Return whether every condition of this rule holds for ``t``."""
        return (
            t.ndim >= self.min_ndim
            and (not self.kinds or t.kind in self.kinds)
            and (not self.roles or t.role in self.roles)
            and (not self.activations or _activation_matches(self.activations, t))
            and (self._regex is None or self._regex.search(t.name) is not None)
            and (self.module is None or _module_matches(self.module, t.module))
            and (self.within is None or any(_module_matches(self.within, a) for a in t.ancestors))
            and (self.residual_end is None or self.residual_end == t.residual_end)
            and (self.tied_output is None or self.tied_output == t.tied_output)
            and (self.tied is None or self.tied == t.tied)
            and (self.fused is None or self.fused == (t.blocks > 1))
            and (
                self.unscaled_attention is None
                or self.unscaled_attention == (_attention_of(t) is not None)
            )
            and (
                self.rescaled_tied_head is None
                or self.rescaled_tied_head == rescaled_tied_head(_outward(t))
            )
        )

    def to_dict(self) -> dict:
        """Return the rule as JSON-ready data (a module class is written as its name)."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if not k.startswith("_")}
        for key in ("module", "within"):
            if isinstance(data[key], type):
                data[key] = data[key].__name__
            elif isinstance(data[key], tuple):
                data[key] = [m.__name__ for m in data[key]]
        for key in ("kinds", "roles", "activations"):
            data[key] = list(data[key])
        return data


class RuleSet(tuple):
    """An ordered tuple of :class:`Rule` (first match wins) that prints as a table.

    It is a plain tuple in every other way: index it, iterate it, concatenate it.

    Example:
        >>> print(initlab.preset_rules("auto"))  # doctest: +SKIP
        #   rule                  when                          init             why
        1   norm weight = 1       kinds=norm roles=weight       constant 1
    """

    __slots__ = ()

    def __str__(self) -> str:
        rows = [(str(i), r.name, _when(r), _what(r), r.note) for i, r in enumerate(self, 1)]
        header = ("#", "rule", "when", "init", "why")
        widths = [max(len(row[c]) for row in [header, *rows]) for c in range(4)]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True))
            + "  "
            + row[4]
            for row in [header, *rows]
        ).rstrip()


def _when(rule: Rule) -> str:
    """The rule's conditions as ``key=value`` words; ``any parameter`` when it has none."""
    parts = [
        f"{key}={','.join(getattr(rule, key))}"
        for key in ("kinds", "roles", "activations")
        if getattr(rule, key)
    ]
    if rule.param is not None:
        parts.append(f"param={rule.param}")
    for key in ("module", "within"):
        value = getattr(rule, key)
        if value is not None:
            names = value if isinstance(value, tuple) else (value,)
            parts.append(f"{key}={','.join(getattr(n, '__name__', str(n)) for n in names)}")
    if rule.residual_end is not None:
        parts.append("residual end" if rule.residual_end else "not residual end")
    if rule.tied_output is not None:
        parts.append("tied to output" if rule.tied_output else "not tied to output")
    if rule.tied is not None:
        parts.append("tied" if rule.tied else "not tied")
    if rule.fused is not None:
        parts.append("fused blocks" if rule.fused else "not fused")
    if rule.unscaled_attention is not None:
        parts.append(
            "in unscaled attention" if rule.unscaled_attention else "not in unscaled attention"
        )
    if rule.rescaled_tied_head is not None:
        parts.append("rescaled tied head" if rule.rescaled_tied_head else "no rescaled tied head")
    if rule.min_ndim:
        parts.append(f"ndim>={rule.min_ndim}")
    return " ".join(parts) or "any parameter"


def _what(rule: Rule) -> str:
    """The rule's initialization in a few words."""
    if rule.init == "variance_scaling":
        scale = {"activation": "gain^2", "1/head_dim": "1/d_kv"}.get(rule.scale, rule.scale)
        scale = scale if isinstance(scale, str) else f"{scale:g}"
        what = f"{rule.distribution} std=sqrt({scale} / {rule.mode})"
    elif rule.init == "normal":
        what = f"normal std={rule.std:g}"
        if rule.std_from:
            what = f"normal std=config.{rule.std_from} (else {rule.std:g})"
    elif rule.init in {"truncated_normal", "uniform"}:
        what = f"{rule.init} std={rule.std:g}" + (
            f" bound={rule.bound:g}" if rule.bound is not None else ""
        )
    elif rule.init == "orthogonal":
        what = f"orthogonal gain={rule.gain:g}"
    elif rule.init in {"constant", "forget_gate"}:
        what = f"{rule.init} {rule.value:g}"
    else:
        what = "module's own reset"
    if rule.residual_layers:
        return what + f" / sqrt(2 config.{rule.residual_layers})"
    return what + (" * 1/sqrt(n)" if rule.residual_scale else "")


def _activation_matches(wanted: tuple[str, ...], t: Target) -> bool:
    if t.is_output:
        return "output" in wanted
    if t.activation is None:
        return "none" in wanted
    name = t.activation.name
    return (
        "any" in wanted
        or name in wanted
        or any(name in FAMILIES[w] for w in wanted if w in FAMILIES)
    )


def _outward(t: Target) -> tuple[nn.Module, ...]:
    """The parameter's module, then the modules around it, innermost first."""
    return (t.module, *reversed(t.ancestors))


def _attention_of(t: Target) -> tuple[int, int] | None:
    """``(head_dim, model_dim)`` of the unscaled attention that directly holds ``t``'s module."""
    return unscaled_attention(t.ancestors[-1]) if t.ancestors else None


def _module_matches(wanted: type | tuple | str, module: nn.Module) -> bool:
    if isinstance(wanted, (type, tuple)):
        return isinstance(module, wanted)
    return any(cls.__name__ == wanted for cls in type(module).__mro__)


@dataclass(frozen=True)
class Draw:
    """A resolved initialization: what a plan row stores and ``apply`` draws from."""

    distribution: str  # normal | truncated_normal | uniform | orthogonal | constant | keep
    std: float | None = None
    bound: float | None = None
    value: tuple[float, ...] | None = None  # per block for constants
    gain: float | None = None
    formula: str = ""


def resolve(rule: Rule, t: Target, n_scaled: int, stored_fans: tuple[int, int] | None) -> Draw:
    """Turn ``rule`` into an explicit :class:`Draw` for target ``t``.

    ``n_scaled`` is the number of parameters the policy's ``residual_scale`` rules match;
    ``stored_fans`` are the fans of the whole stored tensor (for ``per_block=False``).
    """
    factor, suffix = _residual_factor(rule, t, n_scaled)
    if rule.init == "keep":
        return Draw("keep", formula="the module's own reset_parameters()")
    if rule.init == "constant":
        return Draw("constant", std=0.0, value=(rule.value,), formula=f"constant = {rule.value:g}")
    if rule.init == "forget_gate":
        values = tuple(rule.value if i == 1 else 0.0 for i in range(t.blocks))
        return Draw(
            "constant",
            std=0.0,
            value=values,
            formula=f"forget gate block = {rule.value:g}, blocks i, g, o = 0",
        )
    if rule.init == "orthogonal":
        return Draw("orthogonal", gain=rule.gain, formula=f"orthogonal, gain = {rule.gain:g}")
    if rule.init == "normal":
        std, text = _std(rule, t)
        formula = f"= {text}{suffix}" + (f" = {std * factor:.3g}" if suffix else "")
        return Draw("normal", std=std * factor, formula=formula)
    if rule.init == "truncated_normal":
        std, text = _std(rule, t)
        bound = rule.bound if rule.bound is not None else 2 * std
        formula = f"= {text}{suffix}; cut at +-{bound * factor:.3g}"
        return Draw("truncated_normal", std=std * factor, bound=bound * factor, formula=formula)
    if rule.init == "uniform":
        given = rule.bound if rule.bound is not None else scaled_draw(rule.std, "uniform").bound
        bound = given * factor
        return Draw("uniform", std=bound / math.sqrt(3), bound=bound)
    return _variance_scaling(rule, t, stored_fans, factor, suffix)


def _std(rule: Rule, t: Target) -> tuple[float, str]:
    """The rule's std and how it reads: ``rule.std``, or the config attribute ``std_from``."""
    if rule.std_from is None:
        return rule.std, f"{rule.std:g}"
    value = config_value(_outward(t), rule.std_from)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value:
        return rule.std, f"{rule.std:g} (no config.{rule.std_from})"
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"rule {rule.name!r} reads the std of {t.name!r} from config.{rule.std_from}, "
            f"which is {value!r}; it must be a finite number >= 0"
        )
    return float(value), f"config.{rule.std_from} = {value:g}"


def _residual_factor(rule: Rule, t: Target, n_scaled: int) -> tuple[float, str]:
    """The residual factor on the std and its text (empty when there is none)."""
    if not rule.residual_scale:
        return 1.0, ""
    if rule.residual_layers is not None:
        layers = config_value(_outward(t), rule.residual_layers)
        if isinstance(layers, int) and not isinstance(layers, bool) and layers > 0:
            return 1.0 / math.sqrt(2 * layers), (
                f" / sqrt(2 * {layers} (config.{rule.residual_layers}))"
            )
    if n_scaled:
        return 1.0 / math.sqrt(n_scaled), f" * 1/sqrt({n_scaled})"
    return 1.0, ""


def _split_head_fans(rule: Rule, t: Target, fan_in, fan_out) -> tuple[int, int, str]:
    """Keras's fans of the head-split kernel of a multi-head attention projection (see
    ``Rule``, ``split_heads``): ``t``'s per-block fans are those of the (out, in) matrix."""
    attention = t.module if t.kind == "attention" else (t.ancestors[-1] if t.ancestors else None)
    heads = getattr(attention, "num_heads", None)
    if t.kind not in {"attention", "attention_out"} or not isinstance(heads, int) or not fan_in:
        raise ValueError(
            f"rule {rule.name!r} (split_heads=True) needs an nn.MultiheadAttention projection "
            f"with num_heads; {t.name!r} is of kind {t.kind!r}"
        )
    if t.kind == "attention":  # (in, heads, head_dim)
        fans = (heads * fan_in, fan_out // heads * fan_in)
        shape = f"({fan_in}, {heads}, {fan_out // heads})"
    else:  # (heads, head_dim, out)
        fans = (fan_in, heads * fan_out)
        shape = f"({heads}, {fan_in // heads}, {fan_out})"
    return *fans, f"; Keras kernel {shape}, fans {fans[0]} and {fans[1]}"


def _variance_scaling(rule: Rule, t: Target, stored_fans, factor: float, suffix: str) -> Draw:
    fan_in, fan_out = (t.fan_in, t.fan_out) if rule.per_block else stored_fans or (None, None)
    where = keras = ""
    if rule.split_heads:
        fan_in, fan_out, keras = _split_head_fans(rule, t, fan_in, fan_out)
    needs_attention = rule.scale == "1/head_dim" or rule.mode == "model_dim"
    attention = _attention_of(t) if needs_attention else None
    if needs_attention and attention is None:
        raise ValueError(
            f"rule {rule.name!r} reads the head or model width of the attention around "
            f"{t.name!r}, which does not lie directly in an unscaled attention (T5's layout: "
            "Linear q, k, v, o and key_value_proj_dim); give the rule unscaled_attention=True"
        )
    if rule.mode == "hidden":
        fan, fan_text = t.hidden, "hidden_size"
    elif rule.mode == "model_dim":
        fan, fan_text = attention[1], "d_model"
    elif rule.mode == "fan_avg" and fan_in is not None:
        fan, fan_text = select_fan(fan_in, fan_out, rule.mode), "fan_avg"
        where = f" with fan_avg = ({fan_in} + {fan_out}) / 2"
    else:
        fan = fan_in if rule.mode in {"fan_in", "fan_avg"} else fan_out
        fan_text = rule.mode
    if fan is None:  # 0 is a fan: a zero-element layer such as nn.Linear(0, 4) has fan_in 0
        raise ValueError(
            f"rule {rule.name!r} needs fans for parameter {t.name!r} (mode={rule.mode!r}), "
            "which has none; give that parameter a constant, normal or uniform rule"
        )
    if fan == 0:  # PyTorch's reset_parameters: bound = 1 / sqrt(fan_in) if fan_in > 0 else 0
        formula = f"constant = 0: {fan_text} = 0 (zero-element weight), as PyTorch's bound 0"
        return Draw("constant", std=0.0, value=(0.0,), formula=formula)
    if rule.scale == "activation":
        scale = t.activation.gain() ** 2 if t.activation is not None and not t.is_output else 1.0
    elif rule.scale == "1/head_dim":
        scale = 1.0 / attention[0]
    else:
        scale = float(rule.scale)
    std = variance_scaling_std(scale, fan) * factor  # initlab.variance_scaling_'s formula
    # Readable as text: "= sqrt(2 / fan_in) = sqrt(2 / 400) = 0.0707" (the row prefixes "std").
    if rule.scale == "1/head_dim":
        formula = (
            f"= sqrt(1 / (d_kv * {fan_text})){suffix} = sqrt(1 / ({attention[0]} * {fan:g}))"
            f"{suffix}"
        )
    else:
        formula = f"= sqrt({scale:.4g} / {fan_text}){suffix} = sqrt({scale:.4g} / {fan:g}){suffix}"
    formula += f" = {std:.3g}{where}{keras}"
    draw = scaled_draw(std, rule.distribution)
    if draw.distribution == "uniform":
        formula += f"; bound = sqrt(3) * std = {draw.bound:.3g}"
        return Draw("uniform", std=std, bound=draw.bound, formula=formula)
    if draw.distribution == "truncated_normal":
        formula += (
            "; drawn from N(0, sigma^2) cut at +-2 sigma, sigma = std / "
            f"{TRUNCATED_STD:.4f} = {draw.sampler_std:.3g}"
        )
        return Draw("truncated_normal", std=draw.sampler_std, bound=draw.bound, formula=formula)
    return Draw("normal", std=std, formula=formula)
