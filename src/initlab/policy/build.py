"""Building a plan: inspect a model, match every parameter against a rule table.

``plan(model)`` reads the model (kinds, layer-aware fans, the activation after each layer),
matches every parameter against an ordered rule table and stores an explicit distribution per
parameter in an :class:`~initlab.policy.plan.InitPlan`; nothing is written. ``init_model``
plans and applies in one step. The plan itself (rows, apply, JSON) is
:mod:`initlab.policy.plan`; composing a plan with data-driven steps such as LSUV is a scheme's
job (:func:`initlab.init_model`, :mod:`initlab.schemes.compose`).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from initlab._checks import ArgumentError
from initlab.fans import compute_fans
from initlab.introspect.kinds import ParamFans, can_be_output, fans_of, layer_kind, role_of
from initlab.introspect.trace import ModelContext, analyze
from initlab.policy.own_init import OWN_INIT, describe_own_init
from initlab.policy.plan import InitPlan, PlanRow, uncompiled
from initlab.policy.presets import PolicyOptions, preset_rules
from initlab.policy.rules import Draw, Rule, Target, resolve

__all__ = ["init_model", "plan"]

log = logging.getLogger(__name__)


def plan(
    model: nn.Module,
    policy: str | Sequence[Rule] = "auto",
    *,
    example_input=None,
    rules: Iterable[Rule] | None = None,
    only: Iterable[str] | None = None,
    **options,
) -> InitPlan:
    r"""Plan the initialization of every parameter of ``model``; write nothing.

    For each parameter: its layer kind and role, layer-aware fans per block
    (:func:`initlab.fans.layer_fans`), the activation after its layer (traced from one forward
    on ``example_input``, else read from module order), and the first rule of
    ``rules + preset`` that matches. The rule gives an explicit distribution (std or bound);
    the row says why. Tied parameters get one row (listing the other names), read as the
    embedding's when one is an embedding, else as a known layer's (BertForMaskedLM's
    ``cls.predictions.bias`` is its decoder Linear's bias); frozen ones
    (``requires_grad=False``) are skipped unless ``include_frozen=True``; a parameter no rule
    covers keeps its module's own ``reset_parameters`` if there is one, else it is left
    untouched and reported in ``InitPlan.uncovered`` with a warning. A model on the meta device
    can be planned (and applied after ``model.to_empty()``, re-tying what it untied).

    The ``auto`` preset is the selection guide: ReLU family -> He (fan_in, gain
    sqrt(2/(1+a^2)), He et al. 2015); tanh/sigmoid/softsign -> Xavier with the activation's
    gain (Glorot and Bengio 2010); SELU -> LeCun normal (Klambauer et al. 2017); other
    activations -> He-type with :func:`initlab.gains.compute_gain`; no activation and the
    output layer -> Xavier (``output_init="lecun"`` for LeCun); RNN/LSTM/GRU -> Xavier input and
    orthogonal hidden weights per gate (Saxe et al. 2014), zero biases, LSTM forget bias 1
    (Jozefowicz et al. 2015); attention -> Xavier per q/k/v block (Hugging Face's fused
    ``Conv1D`` ``c_attn`` too); embeddings N(0, 1) with the padding row 0, except an embedding
    tied to the output layer and the embeddings of its width: N(0, 1/dim), for unit-variance
    logits (Press and Wolf 2017); norms 1 and 0. See :mod:`initlab.policy.presets` for all
    presets.

    Args:
        model: any ``nn.Module``; parameters may be on any device, including meta.
        policy: a preset name (``auto``, ``torch``, ``gpt2``, ``bert``, ``keras``, ``flax``) or
            a sequence of :class:`Rule`.
        example_input: a tensor, tuple (positional) or dict (keyword) for one traced forward.
        rules: user rules tried before the policy's; one that matches nothing warns.
        only: parameter names to plan; every other parameter is left out and never touched.
        **options: :class:`~initlab.policy.presets.PolicyOptions` fields (``mode``,
            ``output_init``, ``relu_bias``, ``classifier_bias``, ``forget_bias``,
            ``zero_init_residual``, ``scale_residual``, ``embedding_std``, ``std``,
            ``include_frozen``).

    Returns:
        An :class:`InitPlan`.

    Raises:
        TypeError: ``model`` is not a module, a rule is not a :class:`Rule`, or an option name
            is unknown.
        ValueError: unknown preset or option value, a name in ``only`` that is not a
            parameter of ``model``, a lazy parameter still uninitialized (no example_input),
            ``zero_init_residual`` or ``scale_residual`` without ``example_input`` (residual
            branches are found only by tracing), an ``example_input`` the model's forward
            rejects (its error chained), or a ``keep`` rule on a module without its own init.
            Where one argument is at fault (``policy``, an option, ``example_input``) the error
            is an :class:`initlab._checks.ArgumentError` naming it, for a caller to map (the
            command line prints its flag).

    Warns:
        UserWarning: without ``example_input``, if the model has hidden linear or convolution
            layers but no activation module (functional activations are not seen); if no rule
            covers a parameter; if a user rule matches nothing; if ``zero_init_residual`` or
            ``scale_residual`` changes no parameter (GPT-2's branches end in a projection, not
            a norm; or the preset gives the branch ends another rule first).

    Example:
        >>> net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        >>> p = plan(net)
        >>> p["0.weight"].rule, p["2.weight"].rule
        ('ReLU family: He', 'output layer: Xavier')
        >>> p.apply(seed=0)  # doctest: +ELLIPSIS
        InitPlan(...)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    model = uncompiled(model)
    opts = PolicyOptions.from_kwargs(**options)
    _check_residual_options(opts, example_input)
    table, name = _rule_table(policy, rules, options)
    context = analyze(model, example_input)
    selected = _selected(model, only)
    targets = _targets(model, context, selected, opts)
    preset = set(map(id, table[len(tuple(rules or ())) :])) if isinstance(policy, str) else set()
    matched = [_match(table, t[0], preset) for t in targets]
    _warn_unseen_activations(context, targets, matched)
    n_scaled = _count_scaled(model, context, opts, table, selected, matched)
    rows = [_row(t, r, n_scaled, context) for t, r in zip(targets, matched, strict=True)]
    _warn_unused(rules or (), matched)
    _warn_idle_residual_options(opts, targets, matched, name)
    result = InitPlan(model, rows, source=context.source, policy=name)
    if result.uncovered:
        warnings.warn(
            f"no rule covers {len(result.uncovered)} parameter(s), left untouched: "
            f"{result.uncovered[:8]}; add a Rule(param=...) for them",
            stacklevel=2,
        )
    return result


def _count_scaled(model, context, opts, table, selected, matched) -> int:
    """Number of parameters of the whole model that ``residual_scale`` rules match: the
    residual scale is the model's, so planning a few names (``only=``, as ``load_pretrained``
    does) gives them the std a plan of the whole model gives."""
    if selected is not None and any(r.residual_scale for r in table):
        everything = _targets(model, context, None, opts)
        matched = [next((r for r in table if r.matches(t[0])), None) for t in everything]
    return sum(1 for r in matched if r is not None and r.residual_scale)


def _check_residual_options(opts: PolicyOptions, example_input) -> None:
    """Residual branches are found only by tracing a forward pass: without example_input the
    residual options would match no layer and silently do nothing."""
    if example_input is not None:
        return
    for option in ("zero_init_residual", "scale_residual"):
        if getattr(opts, option):
            raise ArgumentError(
                "example_input",
                f"{option}=True needs example_input: residual branches are found by tracing "
                "one forward pass, and without it no layer would be changed; pass "
                "example_input",
            )


def _warn_unseen_activations(context: ModelContext, targets, matched) -> None:
    """Warn once when the module structure shows no activation at all but hidden linear/conv
    layers get activation-dependent rules: the forward most likely applies functional
    activations (``F.relu``), which only a traced forward sees, so those layers would be
    planned as if linear."""
    if context.source != "structure" or any(c.activation for c in context.layers.values()):
        return
    hidden = [
        t.name
        for (t, *_), rule in zip(targets, matched, strict=True)
        if rule is not None and rule.activations and not t.is_output and can_be_output(t.module)
    ]
    if hidden:
        more = " ..." if len(hidden) > 3 else ""
        warnings.warn(
            f"the model has hidden linear/convolution layers ({hidden[:3]}{more}) but no "
            "activation module; functional activations (F.relu, torch.tanh in forward) cannot "
            "be seen without example_input, so these layers are planned as followed by no "
            "activation. Pass example_input to trace one forward pass",
            stacklevel=3,
        )


def init_model(
    model: nn.Module,
    policy: str | Sequence[Rule] = "auto",
    *,
    example_input=None,
    seed: int | None = None,
    **options,
) -> InitPlan:
    """Plan and apply in one step; return the applied plan.

    Same arguments as :func:`plan` (``rules=``, ``only=`` and options pass through) plus
    ``seed`` for :meth:`InitPlan.apply`. To calibrate the planned weights on data afterwards
    (LSUV), call :func:`initlab.init_model` with ``lsuv=batch``: composing the policy with a
    data-driven step is a scheme's job (:mod:`initlab.schemes.compose`), not the policy's.

    Raises:
        TypeError: as :func:`plan`; and for ``lsuv=``, naming :func:`initlab.init_model`.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> init_model(net, seed=0).rows[0].rule
        'tanh/sigmoid family: Xavier'
    """
    if "lsuv" in options:
        raise TypeError(
            "initlab.policy.init_model plans and applies only; for LSUV after the plan call "
            "initlab.init_model(model, ..., lsuv=batch) (initlab.schemes.compose.init_model)"
        )
    return plan(model, policy, example_input=example_input, **options).apply(seed=seed)


def _match(table, target: Target, preset: set[int]) -> Rule | None:
    """The first rule of ``table`` matching ``target``. A named preset's ``keep`` rule (the
    ``torch`` preset's catch-all "own reset_parameters") does not match a parameter whose
    module has no own init (a bare ``nn.Parameter`` registered on a container): such a
    parameter is uncovered, warned about and listed in ``plan.uncovered`` as under every other
    preset. A user's ``keep`` rule still matches it, and :func:`_row` raises naming it."""
    for rule in table:
        if not rule.matches(target):
            continue
        if (
            id(rule) in preset
            and rule.init == "keep"
            and describe_own_init(target.module, target.ancestors) is None
        ):
            continue
        return rule
    return None


def _rule_table(policy, rules, options) -> tuple[tuple[Rule, ...], str]:
    user = tuple(rules or ())
    if isinstance(policy, str):
        base, name = preset_rules(policy, **options), policy
    else:
        base, name = tuple(policy), "custom"
    for rule in (*user, *base):
        if not isinstance(rule, Rule):
            raise TypeError(f"rules must be initlab.policy.Rule objects; got {rule!r}")
    return user + base, name


def _selected(model: nn.Module, only) -> set[str] | None:
    if only is None:
        return None
    if isinstance(only, str):
        raise TypeError("only must be an iterable of parameter names, not a single string")
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = {n for n, _ in model.named_buffers()}
    chosen = set()
    for name in only:
        if name in params:
            chosen.add(id(params[name]))
        elif name in buffers:
            log.debug("only: %r is a buffer, not a parameter; ignored", name)
        else:
            close = difflib.get_close_matches(name, list(params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"only names {name!r}, which is not a parameter of the model{hint}")
    return chosen


def _targets(model, context: ModelContext, selected, opts: PolicyOptions):
    """Return ``(Target, param, owner_name, aliases, ParamFans, frozen)`` per unique selected
    parameter. A weight an embedding shares with an output projection is read as the
    embedding's, whichever name comes first; another shared parameter is read under its first
    name owned by a known layer (BertForMaskedLM's ``cls.predictions.bias`` as the bias of the
    Linear ``cls.predictions.decoder``)."""
    aliases: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(name)
    modules = dict(model.named_modules(remove_duplicate=False))
    tied = _tied_embeddings(model, aliases, modules)
    widths = {model.get_parameter(n).shape[-1] for n in tied.values()}
    read_as = {**_layer_aliases(aliases, modules), **tied}
    out = []
    for name, param in model.named_parameters():
        if selected is not None and id(param) not in selected:
            continue
        if isinstance(param, nn.parameter.UninitializedParameter):
            raise ArgumentError(
                "example_input",
                f"parameter {name!r} is an uninitialized lazy parameter: pass example_input so "
                "that one forward pass materializes it before planning",
            )
        owner_name, _, leaf = read_as.get(id(param), name).rpartition(".")
        owner = modules[owner_name]
        parent = modules.get(owner_name.rpartition(".")[0]) if owner_name else None
        kind = layer_kind(owner, parent)
        # an MHA's out_proj is never called on its own: it takes the context of the MHA
        ctx = context.of(owner_name if kind != "attention_out" else owner_name.rpartition(".")[0])
        fans = _fans(owner, leaf, kind, parent)
        target = Target(
            name=name,
            role=role_of(leaf),
            kind=kind,
            module=owner,
            activation=ctx.activation,
            is_output=ctx.is_output,
            residual_end=ctx.residual_end,
            ndim=param.ndim,
            fan_in=fans.fan_in,
            fan_out=fans.fan_out,
            blocks=fans.blocks,
            hidden=getattr(owner, "hidden_size", None),
            ancestors=_ancestors(modules, owner_name),
            tied_output=kind == "embedding" and param.ndim == 2 and param.shape[1] in widths,
            tied=len(aliases[id(param)]) > 1,
        )
        frozen = not param.requires_grad and not opts.include_frozen
        out.append((target, param, owner_name, tuple(aliases[id(param)][1:]), fans, frozen))
    return out


def _tied_embeddings(model, aliases: dict[int, list[str]], modules) -> dict[int, str]:
    """Map ``id(weight)`` to its name under an embedding, for each weight an embedding shares
    with an output projection (a linear layer): input and output embeddings tied as in Press
    and Wolf, "Using the Output Embedding to Improve Language Models" (2017), GPT-2 and
    Hugging Face's ``tie_word_embeddings`` (one Parameter reached under two module names).
    A forward that multiplies by an embedding's weight itself (``h @ self.wte.weight.T``) is
    not recognized: give that weight a rule (``Rule(param="wte.weight", ...)``)."""
    tied = {}
    for names in aliases.values():
        owners = [(n, modules[n.rpartition(".")[0]]) for n in names]
        embedding = next((n for n, m in owners if layer_kind(m) == "embedding"), None)
        if embedding is not None and any(can_be_output(m) for _, m in owners):
            tied[id(model.get_parameter(names[0]))] = embedding
    return tied


def _layer_aliases(aliases: dict[int, list[str]], modules) -> dict[int, str]:
    """Map ``id(param)`` to its first name owned by a known layer kind, for each parameter whose
    first name is owned by an unknown module (kind ``other``) and which a layer shares: the
    layer says what the parameter is. Hugging Face's ``BertLMPredictionHead`` holds the output
    bias as ``bias`` and ties it to ``decoder.bias``, a Linear's bias, which its
    ``_init_weights`` zeroes as every Linear bias; read under the head it has no rule."""
    read_as = {}
    for key, names in aliases.items():
        kinds = [layer_kind(modules[n.rpartition(".")[0]]) for n in names]
        if kinds[0] == "other":
            known = next((n for n, k in zip(names, kinds, strict=True) if k != "other"), None)
            if known is not None:
                read_as[key] = known
    return read_as


def _ancestors(modules: dict[str, nn.Module], owner_name: str) -> tuple[nn.Module, ...]:
    parts = owner_name.split(".") if owner_name else []
    return tuple(modules[".".join(parts[:i])] for i in range(len(parts)))


def _fans(owner: nn.Module, leaf: str, kind: str, parent: nn.Module | None) -> ParamFans:
    try:
        return fans_of(owner, leaf, kind, parent)
    except ValueError as error:  # e.g. an uninitialized lazy parameter: plan it without fans
        return ParamFans(None, None, 1, str(error))


def _stored_fans(owner: nn.Module, param: torch.Tensor, leaf: str) -> tuple[int, int] | None:
    if param.ndim >= 2:
        return compute_fans(param)
    weight = getattr(owner, "weight", None)
    if leaf.startswith("bias_") and hasattr(owner, "weight_" + leaf[5:]):
        weight = getattr(owner, "weight_" + leaf[5:])
    if leaf == "in_proj_bias":
        weight = getattr(owner, "in_proj_weight", None)
    return compute_fans(weight) if isinstance(weight, torch.Tensor) and weight.ndim >= 2 else None


def _row(entry, rule: Rule | None, n_scaled: int, context: ModelContext) -> PlanRow:
    t, param, owner_name, tied, fans, frozen = entry
    act = None if t.activation is None else str(t.activation)
    common = {
        "name": t.name,
        "shape": tuple(param.shape),
        "layer_kind": t.kind,
        "role": t.role,
        "fan_in": t.fan_in,
        "fan_out": t.fan_out,
        "blocks": t.blocks,
        "activation": "output" if t.is_output else act,
        "module": owner_name,
        "tied": tied,
        "block_dim": fans.block_dim,
    }
    tied_text = f"; tied with {', '.join(tied)}, initialized once" if tied else ""
    if frozen:
        reason = "frozen (requires_grad=False): skipped; include_frozen=True initializes it"
        return PlanRow(**common, rule="frozen", distribution="skip", std=None, bound=None,
                       reason=reason + tied_text)  # fmt: skip
    if rule is None:
        own = describe_own_init(t.module, t.ancestors)
        if own is not None:
            reason = f"no rule covers it: {own} keeps its own init"
            return PlanRow(**common, rule="own init", distribution="keep", std=None, bound=None,
                           reason=reason + tied_text)  # fmt: skip
        return PlanRow(**common, rule="none", distribution="none", std=None, bound=None,
                       reason="no rule covers it: left untouched" + tied_text)  # fmt: skip
    stored = _stored_fans(t.module, param, t.name.rpartition(".")[2])
    draw = resolve(rule, t, n_scaled, stored)
    if draw.distribution == "keep" and describe_own_init(t.module, t.ancestors) is None:
        raise ValueError(
            f"rule {rule.name!r} keeps the own init of {t.name!r}, but its module "
            f"{type(t.module).__name__} has none of {list(OWN_INIT)} and is not inside a "
            "Hugging Face model"
        )
    if not rule.per_block:
        common["blocks"], common["block_dim"] = 1, 0
        if stored is not None:
            common["fan_in"], common["fan_out"] = stored
    if draw.distribution == "orthogonal":  # a (rows, cols) block: entries of variance 1/max
        block = list(param.shape)
        block[common["block_dim"]] //= common["blocks"]
        rows, cols = block[0], math.prod(block[1:])
        draw = dataclasses.replace(draw, std=draw.gain / max(rows, cols) ** 0.5)
    return PlanRow(
        **common,
        rule=rule.name,
        distribution=draw.distribution,
        std=draw.std,
        bound=draw.bound,
        value=draw.value,
        gain=draw.gain,
        zero_rows=_zero_rows(rule, t.module),
        reason=_reason(rule, draw, t, context, fans.note) + tied_text,
    )


def _zero_rows(rule: Rule, module: nn.Module) -> tuple[int, ...]:
    index = getattr(module, rule.zero_rows, None) if rule.zero_rows else None
    return () if index is None else (int(index),)


def _reason(rule: Rule, draw: Draw, t: Target, context: ModelContext, note: str) -> str:
    parts = [rule.note] if rule.note else []
    if draw.formula:
        scaled = draw.distribution in {"normal", "uniform", "truncated_normal"}
        parts.append(f"std {draw.formula}" if scaled else draw.formula)
    if rule.activations and t.kind not in {"norm", "embedding"}:
        where = (
            "traced forward"
            if context.source == "trace"
            else "module order (no example_input: functional activations are not seen)"
        )
        what = "output layer" if t.is_output else f"activation {t.activation or 'none'}"
        parts.append(f"{what} from {where}")
    if t.blocks > 1 and rule.per_block and note:
        parts.append(note)
    return "; ".join(parts)


# Per residual option: a test for the rules it adds, the layer kinds that can end a branch for
# it, and what such a branch ends in.
_RESIDUAL_OPTIONS = (
    ("zero_init_residual", lambda r: r.residual_end is True and r.init == "constant", {"norm"},
     "a norm layer (a pre-norm transformer such as GPT-2 ends each branch in a projection; "
     "scale_residual=True scales those)"),
    ("scale_residual", lambda r: r.residual_scale, {"attention_out", "linear", "conv",
     "conv_transpose", "bilinear"}, "a projection (linear, conv or attention output)"),
)  # fmt: skip


def _warn_idle_residual_options(opts: PolicyOptions, targets, matched, policy: str) -> None:
    """Warn when a residual option changed no parameter, as a user rule that fires for nothing
    does: the model has no traced branch ending where the option acts, or the policy gives
    those layers another rule first."""
    for option, adds, kinds, what in _RESIDUAL_OPTIONS:
        if not getattr(opts, option) or any(r is not None and adds(r) for r in matched):
            continue
        ends = [
            t.name for t, *_ in targets if t.residual_end and t.kind in kinds and t.role == "weight"
        ]
        why = (
            f"policy {policy!r} gives the branch-ending parameters ({ends[:3]}) another rule first"
            if ends
            else f"no traced residual branch ends in {what}"
        )
        warnings.warn(f"{option}=True changed no parameter: {why}", stacklevel=3)


def _warn_unused(user_rules, fired) -> None:
    used = {id(r) for r in fired if r is not None}
    for rule in user_rules:
        if id(rule) not in used:
            warnings.warn(f"rule {rule.name!r} matched no parameter", stacklevel=3)
