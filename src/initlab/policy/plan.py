"""Plan an initialization (one readable row per parameter), then apply it.

``plan(model)`` inspects the model (kinds, layer-aware fans, the activation after each layer),
matches every parameter against an ordered rule table and stores an explicit distribution per
parameter; nothing is written. ``InitPlan.apply(seed=s)`` writes the weights, each parameter
from its own random stream derived from ``(s, parameter name)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from initlab._checks import warn_zero_element
from initlab.fans import compute_fans
from initlab.introspect.kinds import ParamFans, can_be_output, fans_of, layer_kind, role_of
from initlab.introspect.trace import ModelContext, analyze
from initlab.policy.distributed import local_box
from initlab.policy.own_init import OWN_INIT, describe_own_init, run_own_inits, storage_key
from initlab.policy.presets import PolicyOptions, preset_rules
from initlab.policy.rules import Draw, Rule, Target, resolve
from initlab.policy.streams import fill_box_

__all__ = ["InitPlan", "PlanRow", "init_model", "plan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanRow:
    """One parameter of a plan.

    ``distribution`` is ``normal`` (N(0, std^2)), ``uniform`` (U(-bound, bound), std =
    bound/sqrt(3)), ``truncated_normal`` (N(0, std^2) cut to +-bound, std of the normal before
    truncation), ``orthogonal`` (per block, times ``gain``), ``constant`` (``value`` per
    block), ``keep`` (the module's own init runs), ``skip`` (frozen) or ``none`` (no rule: left
    untouched). ``fan_in``/``fan_out`` are those of one of ``blocks`` blocks, which lie along
    ``block_dim`` (0, except 1 for the fused q/k/v of a Hugging Face ``Conv1D`` stored
    ``(in, out)``).
    """

    name: str
    shape: tuple[int, ...]
    layer_kind: str
    role: str
    fan_in: int | None
    fan_out: int | None
    blocks: int
    activation: str | None
    rule: str
    distribution: str
    std: float | None
    bound: float | None
    reason: str
    value: tuple[float, ...] | None = None
    gain: float | None = None
    zero_rows: tuple[int, ...] = ()
    module: str = ""
    tied: tuple[str, ...] = ()
    block_dim: int = 0


class InitPlan:
    """The initialization of one model: rows to read, print, save and apply.

    Attributes:
        rows: list of :class:`PlanRow`, in ``named_parameters`` order.
        model: the model the plan writes into.
        source: how activations were found, ``"trace"`` or ``"structure"``.
        policy: the preset name (or ``"custom"``).
        uncovered: names of parameters no rule covers and that have no own init.
        on_meta: names of the model's parameters and buffers that were on the meta device when
            the plan was made (``plan``, ``from_dict``): :meth:`apply` restores those it does
            not draw. (A tensor of such a model built off the meta device, e.g. by the legacy
            ``torch.Tensor(n)``, is restored too if ``to_empty`` re-allocated it.)
        lsuv: the :class:`~initlab.datadriven.LSUVReport` of ``init_model(..., lsuv=batch)``,
            else None.

    A model compiled by ``torch.compile`` stands for the module it compiled (``_orig_mod``),
    which shares its parameters: the plan is that module's.
    """

    def __init__(self, model: nn.Module, rows: Sequence[PlanRow], *, source: str, policy: str):
        self.model = _uncompiled(model)
        self.rows = list(rows)
        self.source = source
        self.policy = policy
        self.uncovered = [r.name for r in self.rows if r.distribution == "none"]
        self.lsuv = None  # the LSUVReport when init_model(..., lsuv=batch) calibrated the model
        params = [n for n, p in self.model.named_parameters() if p.is_meta]
        self._meta_buffers = tuple(
            n for n, b in self.model.named_buffers(remove_duplicate=False) if b.is_meta
        )
        self.on_meta = (*params, *self._meta_buffers)
        # to_empty re-allocates every tensor, also those a meta-built model holds off the meta
        # device: remember where they live, to tell at apply whether they were emptied
        self._off_meta = {}
        if self.on_meta:
            named = [
                *((n, p, "param") for n, p in self.model.named_parameters()),
                *((n, b, "buffer") for n, b in self.model.named_buffers(remove_duplicate=False)),
            ]
            self._off_meta = {
                n: (storage_key(t), kind) for n, t, kind in named if not t.is_meta and t.numel()
            }

    def __repr__(self) -> str:
        return f"InitPlan(policy={self.policy!r}, source={self.source!r}, rows={len(self.rows)})"

    def __getitem__(self, name: str) -> PlanRow:
        for row in self.rows:
            if row.name == name or name in row.tied:
                return row
        close = difflib.get_close_matches(name, [r.name for r in self.rows], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"no row for parameter {name!r}{hint}")

    def apply(
        self,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        restore: bool = True,
    ):
        """Write every planned parameter in place and return this plan.

        Each chunk of 2**18 entries of a parameter draws from its own ``torch.Generator``
        seeded with SHA-256 of ``"{base}:{name}:{chunk}"`` (:mod:`initlab.policy.streams`), so
        the weights depend only on the seed and the parameter's name: not on module
        construction order, nor on other layers, nor on how a DTensor parameter is sharded
        (each rank fills only its shard, :mod:`initlab.policy.distributed`). ``base`` is
        ``seed``; else one draw from ``generator``; else one draw from the global generator.
        Values are drawn on the CPU in float32 and copied to the parameter's device and dtype,
        so a seed gives the same weights on every device. ``keep`` rows are handed back to
        their module's own init (its ``reset_parameters``-type method, a Hugging Face model's
        ``_init_weights``; see :mod:`initlab.policy.own_init`), run under a forked global RNG
        seeded from ``base`` and the module's name, so they too depend on the seed only. A
        module with running statistics whose parameters are all ``keep`` rows (BatchNorm and
        InstanceNorm under the ``torch`` preset) is reset whole, as a fresh one: its running
        statistics and ``num_batches_tracked`` too.

        A model built on the meta device: ``model.to_empty()`` leaves every tensor holding
        uninitialized memory. Those the plan draws are written as above; the other tensors that
        were on the meta device when the plan was made (:attr:`on_meta`: buffers such as
        BatchNorm running statistics, Hugging Face ``position_ids`` and rotary ``inv_freq``,
        frozen parameters such as Whisper's sinusoidal ``embed_positions``, parameters no rule
        covers) are recomputed by the own init of their module and the modules above it, the
        code that computed them at construction, and each is kept only if that computation is
        deterministic (two runs with other seeds and other prior memory agree), i.e. equal to
        what the model built off the meta device holds. Parameters left out by ``only=`` are
        not touched.

        A tie the plan recorded (a row's ``tied`` names) that the model no longer has is
        restored first: ``model.to_empty()`` of a meta model gives every module its own new
        Parameter, so GPT-2's ``lm_head.weight`` stops being ``wte.weight``, and writing the row
        would leave the other name's uninitialized memory in the model. Each such alias is set
        to the row's Parameter again, with one warning naming them.

        Args:
            seed: the base seed (an int).
            generator: draws the base seed when ``seed`` is None.
            restore: False leaves the tensors of :attr:`on_meta` that the plan does not draw as
                ``to_empty`` left them (uninitialized memory), for a caller that sets them
                itself right after, e.g. from a checkpoint.

        Raises:
            TypeError: if ``seed`` is not an int or ``generator`` not a ``torch.Generator``.
            ValueError: if a tensor to write is on the meta device (call ``model.to_empty()``
                first) or a parameter (or a tied alias) no longer has the planned shape; or,
                naming each of them and how to fix it, if a tensor of :attr:`on_meta` cannot be
                recomputed (no own init writes it, or it is random: a frozen ``nn.Linear``, a
                constant set in a constructor) or a ``keep`` parameter is not written by its
                own init. Nothing is drawn then, and ``keep`` parameters keep their values.

        Warns:
            UserWarning: naming the aliases re-tied (Hugging Face models can instead call
                ``model.tie_weights()`` after ``to_empty``); and, as ``torch.nn.init`` does,
                "Initializing zero-element tensors is a no-op", once, naming the parameters
                with no elements (``nn.Linear(0, 4).weight``).
        """
        base = _base_seed(seed, generator)
        if not isinstance(restore, bool):
            raise TypeError(f"restore must be True or False; got restore={restore!r}")
        drawn = [r for r in self.rows if r.distribution not in {"keep", "skip", "none"}]
        empty = [r.name for r in drawn if 0 in r.shape]
        if empty:  # as torch.nn.init does (a kept own init warns itself): once per call
            warn_zero_element(empty)
        with torch.no_grad():
            self._retie()
            keep = [(r.name, *r.tied) for r in self.rows if r.distribution == "keep"]
            to_restore = {**(self._to_restore() if restore else {}), **self._running_stats()}
            run_own_inits(self.model, keep, to_restore, base)
            for row in self.rows:
                if row.distribution not in {"keep", "skip", "none"}:
                    _write(self.model, row, base)
        return self

    def _running_stats(self) -> dict[str, str]:
        """Name -> ``"buffer"`` for the buffers of each module with running statistics (it has
        ``reset_running_stats``: BatchNorm, InstanceNorm) whose own parameters are all ``keep``
        rows: its ``reset_parameters`` re-initializes it whole, as a fresh module, running
        statistics and ``num_batches_tracked`` included (the torch preset)."""
        keep = {n for r in self.rows if r.distribution == "keep" for n in (r.name, *r.tied)}
        out = {}
        for owner in {n.rpartition(".")[0] for n in keep}:
            module = self.model.get_submodule(owner)
            prefix = owner + "." if owner else ""
            own = {prefix + n for n, _ in module.named_parameters(recurse=False)}
            if callable(getattr(module, "reset_running_stats", None)) and own <= keep:
                out.update({prefix + n: "buffer" for n, _ in module.named_buffers(recurse=False)})
        return out

    def _to_restore(self) -> dict[str, str]:
        """Name -> ``"buffer"``/``"skip"``/``"none"`` for the tensors of :attr:`on_meta` that no
        row draws; parameters without a row (left out by ``only=``) are not the plan's."""
        rows = {n: r for r in self.rows for n in (r.name, *r.tied)}
        out = {n: "buffer" for n in self._meta_buffers}
        named = {
            **dict(self.model.named_parameters()),
            **dict(self.model.named_buffers(remove_duplicate=False)),
        }
        emptied = [
            (n, kind)
            for n, (key, kind) in self._off_meta.items()
            if n in named and storage_key(named[n]) != key
        ]
        out.update({n: "buffer" for n, kind in emptied if kind == "buffer"})
        for name in (*self.on_meta, *(n for n, kind in emptied if kind == "param")):
            row = rows.get(name)
            if row is not None and row.distribution in {"skip", "none"}:
                out[row.name] = row.distribution
        return out

    def _retie(self) -> None:
        retied = []
        for row in self.rows:
            param = self.model.get_parameter(row.name) if row.tied else None
            for alias in row.tied:
                owner_name, _, leaf = alias.rpartition(".")
                owner = self.model.get_submodule(owner_name)
                current = getattr(owner, leaf)
                if current is param:
                    continue
                if current is None or tuple(current.shape) != tuple(param.shape):
                    got = None if current is None else tuple(current.shape)
                    raise ValueError(
                        f"parameter {alias!r}, planned as tied to {row.name!r} {row.shape}, "
                        f"now has shape {got}"
                    )
                setattr(owner, leaf, param)
                retied.append(f"{alias} = {row.name}")
        if retied:
            warnings.warn(
                f"apply() re-tied parameters the plan recorded as shared but the model no "
                f"longer shares (model.to_empty() gives each module its own Parameter): "
                f"{retied}; Hugging Face models can also call model.tie_weights() after "
                "to_empty",
                stacklevel=3,
            )

    def table(self) -> str:
        """Return the plan as a fixed-width text table, one line per parameter."""
        header = ("parameter", "shape", "kind", "fans", "act", "rule", "draw", "reason")
        lines = [header]
        for r in self.rows:
            fans = "" if r.fan_in is None else f"{r.fan_in}/{r.fan_out}"
            if r.blocks > 1:
                fans += f" x{r.blocks}"
            lines.append(
                (
                    r.name,
                    "x".join(map(str, r.shape)),
                    r.layer_kind,
                    fans,
                    r.activation or "-",
                    r.rule,
                    _draw_text(r),
                    r.reason,
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
        out = [
            "  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True))
            + "  "
            + line[-1]
            for line in lines
        ]
        out.append(f"({len(self.rows)} parameters; policy {self.policy}; activations from "
                   f"{self.source})")  # fmt: skip
        return "\n".join(out)

    def to_dict(self) -> dict:
        """Return the plan as JSON-ready data (``json.dumps`` works on it)."""
        return {
            "format": "initlab.InitPlan",
            "version": 1,
            "policy": self.policy,
            "source": self.source,
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict, model: nn.Module) -> InitPlan:
        """Rebuild a plan from :meth:`to_dict` data for ``model``.

        Raises:
            ValueError: if ``data`` is not a plan, or a row names a parameter the model lacks
                or has with another shape.
        """
        if not isinstance(data, dict) or data.get("format") != "initlab.InitPlan":
            raise ValueError("data is not an initlab plan (missing format='initlab.InitPlan')")
        model = _uncompiled(model)
        params = dict(model.named_parameters(remove_duplicate=False))
        rows = []
        for raw in data["rows"]:
            row = PlanRow(
                **{
                    k: tuple(v) if isinstance(v, list) else v
                    for k, v in raw.items()
                    if k in PlanRow.__dataclass_fields__
                }
            )
            if row.name not in params or tuple(params[row.name].shape) != row.shape:
                got = tuple(params[row.name].shape) if row.name in params else "missing"
                raise ValueError(
                    f"plan row {row.name!r} with shape {row.shape} does not fit the model "
                    f"(model has: {got})"
                )
            rows.append(row)
        return cls(model, rows, source=data["source"], policy=data["policy"])


def _uncompiled(model: nn.Module) -> nn.Module:
    """The module a model compiled by ``torch.compile`` wraps (its ``_orig_mod``, which holds
    the same Parameters), else ``model``: planned through the wrapper, every name would gain
    ``_orig_mod.`` (other random streams than the uncompiled model's) and a traced
    ``example_input`` would run through the compiler, which the tracer's function mode and
    hooks cannot follow."""
    while isinstance(getattr(model, "_orig_mod", None), nn.Module) and any(
        child is model._orig_mod for child in model.children()
    ):
        model = model._orig_mod
    return model


def _draw_text(r: PlanRow) -> str:
    if r.distribution in {"normal", "orthogonal"} and r.std is not None:
        text = f"N(0, {r.std:.4g}^2)" if r.distribution == "normal" else f"orth std {r.std:.3g}"
    elif r.distribution == "uniform":
        text = f"U(+-{r.bound:.4g})"
    elif r.distribution == "truncated_normal":
        text = f"TN(0, {r.std:.4g}^2, +-{r.bound:.4g})"
    elif r.distribution == "constant":
        values = set(r.value)
        text = (
            f"= {r.value[0]:g}" if len(values) == 1 else "= " + ",".join(f"{v:g}" for v in r.value)
        )
    else:
        text = r.distribution
    return text + (" (pad row 0)" if r.zero_rows else "")


def _base_seed(seed, generator) -> int:
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int; got seed={seed!r}")
        return seed
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def _write(model: nn.Module, row: PlanRow, base: int) -> None:
    param = model.get_parameter(row.name)
    if param.is_meta:
        raise ValueError(
            f"parameter {row.name!r} is on the meta device: call model.to_empty(device=...) "
            "before apply()"
        )
    if tuple(param.shape) != row.shape:
        raise ValueError(f"parameter {row.name!r} has shape {tuple(param.shape)}, plan {row.shape}")
    # chunked streams: each rank of a sharded parameter draws only its shard (policy.streams)
    local, offset = local_box(param, row.name)
    fill_box_(local, row, base, offset)


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
    model = _uncompiled(model)
    opts = PolicyOptions.from_kwargs(**options)
    _check_residual_options(opts, example_input)
    table, name = _rule_table(policy, rules, options)
    context = analyze(model, example_input)
    selected = _selected(model, only)
    targets = _targets(model, context, selected, opts)
    matched = [next((r for r in table if r.matches(t[0])), None) for t in targets]
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
            raise ValueError(
                f"{option}=True needs example_input: residual branches are found by tracing "
                "one forward pass, and without it no layer would be changed; pass "
                "example_input (initlab plan: --input-shape)"
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
    lsuv=None,
    **options,
) -> InitPlan:
    """Plan and apply in one step, then optionally calibrate by LSUV; return the applied plan.

    Same arguments as :func:`plan` (``rules=``, ``only=`` and options pass through) plus
    ``seed`` for :meth:`InitPlan.apply`.

    With ``lsuv=batch`` the planned weights are the starting point of LSUV (Mishkin and Matas,
    "All you need is a good init", 2016, Alg. 1): :func:`initlab.lsuv_` runs on ``batch`` with
    ``orthogonal_preinit=False`` (the plan already wrote the weights) and rescales every Linear
    and Conv weight and bias until its output has unit std. The rows of calibrated layers say
    so in their ``reason`` (their ``std``/``bound`` stay the planned draw, before rescaling),
    and the :class:`~initlab.datadriven.LSUVReport` is the plan's ``lsuv`` attribute; re-applying
    the plan (or one rebuilt by :meth:`InitPlan.from_dict`) writes the draw without LSUV.

    Args:
        lsuv: an input batch ``(B, ...)`` or ``(input, target, ...)`` (a few hundred examples),
            or ``None`` (no calibration).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> init_model(net, seed=0).rows[0].rule
        'tanh/sigmoid family: Xavier'
        >>> init_model(net, seed=0, lsuv=torch.randn(256, 4)).lsuv.layers[0].status
        'converged'
    """
    result = plan(model, policy, example_input=example_input, **options).apply(seed=seed)
    if lsuv is not None:
        _calibrate(result, lsuv)
    return result


def _calibrate(result: InitPlan, data) -> None:
    """Run LSUV from the applied plan's weights and note it in the rows of calibrated layers."""
    from initlab.datadriven.lsuv import lsuv_  # datadriven sits beside policy, imported on use

    report = lsuv_(result.model, data, orthogonal_preinit=False)
    done = {layer.name: layer for layer in report.layers}
    for i, row in enumerate(result.rows):
        layer = done.get(row.module)
        if layer is not None:
            note = (
                f"; then LSUV on data (Mishkin and Matas 2016) rescaled weight and bias to output "
                f"std {layer.std:.3g} ({layer.status}, {layer.iterations} rescaling(s))"
                + (f", bias shifted to output mean {layer.mean:.2g}" if report.correct_mean else "")
            )
            result.rows[i] = dataclasses.replace(row, reason=row.reason + note)
    result.lsuv = report


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
            raise ValueError(
                f"parameter {name!r} is an uninitialized lazy parameter: pass example_input so "
                "that one forward pass materializes it before planning"
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
