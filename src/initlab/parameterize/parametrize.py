"""``parametrize``: a parameterization of a model as functions of width and depth.

One call reads the model against a base model (:mod:`initlab.parameterize.shapes`), looks up
each parameter's role in the chosen table (:mod:`initlab.parameterize.tables`) and returns a
:class:`Parameterization`: the :class:`~initlab.policy.InitPlan` with the scaled initial
distributions, the forward multipliers (attached by :meth:`Parameterization.apply_` as forward
hooks or :mod:`torch.nn.utils.parametrize` parametrizations, removed by
:meth:`Parameterization.remove`) and the optimizer parameter groups. The model's code is not
changed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize as torch_parametrize

from initlab._checks import ArgumentError, one_of, positive_int
from initlab.introspect.trace import analyze
from initlab.parameterize.shapes import WidthInfo, block_of, count_blocks, template, widths
from initlab.parameterize.tables import ATTENTION, DEPTH, TABLES, Scaling, describe, evaluate
from initlab.policy import InitPlan, PlanRow, plan

__all__ = ["PARAMETERIZATIONS", "ParamRow", "Parameterization", "parametrize"]

#: The parameterization names :func:`parametrize` accepts.
PARAMETERIZATIONS = tuple(TABLES)
_OPTIMIZER_NAMES = {"adam": "adam", "adamw": "adam", "sgd": "sgd"}
_OPTIMIZER_CLASSES = ((torch.optim.AdamW, "adam"), (torch.optim.Adam, "adam"),
                      (torch.optim.SGD, "sgd"))  # fmt: skip
_HOOKED = (nn.Linear, nn.modules.conv._ConvNd)
_RANDOM = frozenset({"normal", "uniform", "truncated_normal", "orthogonal"})


@dataclass(frozen=True)
class ParamRow:
    """One parameter of a :class:`Parameterization`.

    Attributes:
        name: the parameter's name in ``model.named_parameters()``.
        role: ``input``, ``embedding``, ``hidden``, ``output``, ``bias``, ``norm``,
            ``vector`` or ``fixed`` (:mod:`initlab.parameterize.shapes`).
        shape, base_shape: in the model and in the base model.
        width_dims: which dims are widths (``"out,in"``, ``"out"``, ``"in"``, ``"0"``, ``"-"``).
        m_in, m_out: fan-in and fan-out width multipliers (model / base; 1 if not a width).
        init_std: standard deviation of the initial random draw (None: not a random draw, a
            constant, the module's own init or left untouched).
        init: the initial distribution as text (``N(0, 0.05^2)``, ``U(+-0.1)``, ``= 1``,
            ``keep``).
        multiplier: forward multiplier of the parameter (a Linear/conv weight: its input is
            scaled, the bias is not, as ``mup``'s ``MuReadout``).
        branch_multiplier: multiplier of the output of the residual branch this parameter's
            layer ends (1 if none).
        lr_scale, weight_decay_scale, eps_scale: factors on the base learning rate, weight
            decay and Adam epsilon, for the optimizer family the parameterization was built
            for (:attr:`Parameterization.optimizer_kind`).
        block: the residual block holding the parameter (``"blocks.2"``) or None.
        note: what was not scaled and why, else "".
    """

    name: str
    role: str
    shape: tuple[int, ...]
    base_shape: tuple[int, ...]
    width_dims: str
    m_in: float
    m_out: float
    init_std: float | None
    init: str
    multiplier: float
    branch_multiplier: float
    lr_scale: float
    weight_decay_scale: float
    eps_scale: float
    block: str | None = None
    note: str = ""


class _Scale(nn.Module):
    """The parametrization ``W -> c * W`` (for parameters not hooked through a layer input)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.factor


def _scale_input(factor, module, args):
    return (args[0] * factor, *args[1:])


def _scale_output(factor, module, args, output):
    return output * factor


class Parameterization:
    """A model's parameterization: scaled init plan, forward multipliers, optimizer groups.

    Built by :func:`parametrize`. Attributes: ``name``, ``model``, ``plan`` (the
    :class:`~initlab.policy.InitPlan` whose rows hold the scaled distributions), ``rows``
    (:class:`ParamRow` per parameter, ``named_parameters`` order), ``optimizer_kind``
    (``"adam"`` or ``"sgd"``), ``depth`` and ``base_depth`` (residual blocks; None for width-only
    parameterizations), ``branches`` (module ending a residual branch -> branch multiplier),
    ``attention`` (score module name -> logit multiplier), ``readouts`` (a Linear whose weight
    is tied to an embedding -> its readout multiplier, on its input) and ``notes`` (what the
    model gives no hook for, and other remarks).
    """

    def __init__(self, *, name, model, plan_, rows, optimizer_kind, scales, depth, base_depth,
                 branches, attention, readouts, notes):  # fmt: skip
        self.name = name
        self.model = model
        self.plan = plan_
        self.rows = rows
        self.optimizer_kind = optimizer_kind
        self.depth = depth
        self.base_depth = base_depth
        self.branches = branches
        self.attention = attention
        self.readouts = readouts
        self.notes = notes
        self._scales = scales
        self._handles: list = []
        self._parametrized: list[tuple[nn.Module, str]] = []

    def __repr__(self) -> str:
        return (
            f"Parameterization({self.name!r}, rows={len(self.rows)}, "
            f"optimizer={self.optimizer_kind!r}, attached={self.attached})"
        )

    def __getitem__(self, name: str) -> ParamRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no parameter {name!r}")

    @property
    def attached(self) -> bool:
        """Whether the forward multipliers are attached to the model."""
        return bool(self._handles or self._parametrized)

    def apply_(self, *, seed: int | None = 0, generator: torch.Generator | None = None):
        """Initialize the model in place from :attr:`plan` and attach the forward multipliers.

        The draws are :meth:`initlab.policy.InitPlan.apply`'s (per-parameter streams from
        ``seed``); multipliers attached before are removed first, so calling it twice attaches
        once. Returns this object.

        Raises:
            TypeError, ValueError: as :meth:`initlab.policy.InitPlan.apply` (a bad seed, a model
                on the meta device).
        """
        self.remove()
        self.plan.apply(seed=seed, generator=generator)
        return self.attach()

    def attach(self):
        """Attach the forward multipliers without re-initializing (e.g. after loading a
        checkpoint trained with them); returns this object.

        A Linear or convolution weight's multiplier scales the layer's input (a forward
        pre-hook: ``W (c x) + b``, the bias unscaled, as ``mup``'s ``MuReadout``); any other
        parameter's is a :func:`torch.nn.utils.parametrize.register_parametrization` of
        ``c * W``; a residual branch multiplier and an attention-logit multiplier scale the
        output of the branch's last layer and of the score module (forward hooks).
        """
        self.remove()
        for row in self.rows:
            if row.multiplier == 1.0:
                continue
            owner_name, _, leaf = row.name.rpartition(".")
            owner = self.model.get_submodule(owner_name)
            if isinstance(owner, _HOOKED) and leaf == "weight":
                hook = functools.partial(_scale_input, row.multiplier)
                self._handles.append(owner.register_forward_pre_hook(hook))
            else:
                torch_parametrize.register_parametrization(owner, leaf, _Scale(row.multiplier))
                self._parametrized.append((owner, leaf))
        for module_name, factor in self.readouts.items():
            hook = functools.partial(_scale_input, factor)
            module = self.model.get_submodule(module_name)
            self._handles.append(module.register_forward_pre_hook(hook))
        for module_name, factor in (*self.branches.items(), *self.attention.items()):
            if factor != 1.0:
                hook = functools.partial(_scale_output, factor)
                module = self.model.get_submodule(module_name)
                self._handles.append(module.register_forward_hook(hook))
        return self

    def remove(self) -> None:
        """Remove every multiplier this object attached (hooks and parametrizations); the
        parameters keep their values and Parameter objects."""
        for handle in self._handles:
            handle.remove()
        for owner, leaf in self._parametrized:
            torch_parametrize.remove_parametrizations(owner, leaf, leave_parametrized=False)
        self._handles, self._parametrized = [], []

    def param_groups(
        self,
        lr: float,
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        *,
        optimizer: str | None = None,
    ) -> list[dict]:
        """Return parameter groups for ``torch.optim``: one per distinct scaling.

        Each group holds ``params``, ``names`` (for reading), ``lr`` = ``lr`` x the row's
        ``lr_scale``, ``weight_decay`` likewise and, for Adam and AdamW, ``eps``. Frozen
        parameters (``requires_grad=False``) are left out.

        Args:
            lr, weight_decay, eps: the base values, those tuned at the base model.
            optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``; default the one given to
                :func:`parametrize`.

        Raises:
            ArgumentError: an optimizer the parameterization does not cover (names those it
                covers), or a negative ``lr``/``weight_decay`` or non-positive ``eps``.
        """
        kind = self._kind(optimizer)
        for arg, value in (("lr", lr), ("weight_decay", weight_decay)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ArgumentError(arg, f"{arg} must be a number >= 0; got {arg}={value!r}")
        if not isinstance(eps, (int, float)) or eps <= 0:
            raise ArgumentError("eps", f"eps must be a number > 0; got eps={eps!r}")
        groups: dict[tuple, dict] = {}
        params = dict(self.model.named_parameters())
        for row in self.rows:
            param = params.get(row.name)
            if param is None:  # parametrized: torch names it ...parametrizations.weight.original
                param = (
                    self.model.get_submodule(row.name.rpartition(".")[0])
                    .parametrizations[row.name.rpartition(".")[2]]
                    .original
                )
            if not param.requires_grad:
                continue
            key = self._scales[kind][row.name]
            group = groups.get(key)
            if group is None:
                group = {"params": [], "names": [], "lr": lr * key[0]}
                group["weight_decay"] = weight_decay * key[1]
                if kind == "adam":
                    group["eps"] = eps * key[2]
                groups[key] = group
            group["params"].append(param)
            group["names"].append(row.name)
        return list(groups.values())

    def optimizer(
        self,
        optimizer_class: Callable[..., torch.optim.Optimizer],
        lr: float,
        *,
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        **kwargs,
    ) -> torch.optim.Optimizer:
        """Build ``optimizer_class(self.param_groups(...), lr=lr, **kwargs)``.

        ``optimizer_class`` is ``torch.optim.SGD``, ``Adam`` or ``AdamW`` (or a subclass); the
        groups follow its family (SGD or Adam), whatever ``optimizer`` :func:`parametrize` got.

        Raises:
            ArgumentError: any other class (names the supported ones), or a family the
                parameterization does not cover.
        """
        kind = next(
            (k for cls, k in _OPTIMIZER_CLASSES
             if isinstance(optimizer_class, type) and issubclass(optimizer_class, cls)),
            None,
        )  # fmt: skip
        if kind is None:
            raise ArgumentError(
                "optimizer_class",
                "optimizer_class must be torch.optim.SGD, torch.optim.Adam or "
                f"torch.optim.AdamW (or a subclass); got {optimizer_class!r}",
            )
        groups = self.param_groups(lr, weight_decay, eps, optimizer=kind)
        if kind == "adam":
            kwargs["eps"] = eps
        return optimizer_class(groups, lr=lr, weight_decay=weight_decay, **kwargs)

    def _kind(self, optimizer: str | None) -> str:
        if optimizer is None:
            return self.optimizer_kind
        kind = _OPTIMIZER_NAMES[one_of("optimizer", optimizer, _OPTIMIZER_NAMES)]
        if kind not in self._scales:
            raise ArgumentError(
                "optimizer",
                f"{self.name} covers optimizers {_covered(self.name)}; got optimizer={optimizer!r}",
            )
        return kind

    def to_dict(self) -> dict:
        """Return the parameterization as JSON-ready data: name, optimizer family, depths,
        hooks, notes and the rows (``json.dumps`` works on it; the plan has its own
        ``to_dict``)."""
        return {
            "format": "initlab.Parameterization",
            "version": 1,
            "name": self.name,
            "optimizer": self.optimizer_kind,
            "depth": self.depth,
            "base_depth": self.base_depth,
            "branches": dict(self.branches),
            "attention": dict(self.attention),
            "readouts": dict(self.readouts),
            "notes": list(self.notes),
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }

    def table(self) -> str:
        """Return the parameterization as a fixed-width text table, one line per parameter."""
        header = ("parameter", "role", "width dims", "m_in", "init", "mult", "branch",
                  f"lr x ({self.optimizer_kind})", "wd x", "eps x")  # fmt: skip
        lines = [header]
        for r in self.rows:
            lines.append(
                (
                    r.name,
                    r.role,
                    r.width_dims,
                    f"{r.m_in:g}",
                    r.init,
                    f"{r.multiplier:.4g}",
                    f"{r.branch_multiplier:.4g}",
                    f"{r.lr_scale:.4g}",
                    f"{r.weight_decay_scale:.4g}",
                    f"{r.eps_scale:.4g}",
                )
            )
        widths_ = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = ["  ".join(c.ljust(w) for c, w in zip(line, widths_, strict=True)).rstrip()
               for line in lines]  # fmt: skip
        depth = "" if self.depth is None else f"; depth {self.depth} (base {self.base_depth})"
        out.append(f"({len(self.rows)} parameters; {self.name}{depth})")
        out.extend(f"note: {n}" for n in self.notes)
        out.extend(f"note: {r.name}: {r.note}" for r in self.rows if r.note)
        return "\n".join(out)


def _covered(name: str) -> list[str]:
    if any(s.sgd_lr is None for s in TABLES[name].values()):
        return ["adam", "adamw"]
    return ["adam", "adamw", "sgd"]


def parametrize(
    model: nn.Module,
    parameterization: str,
    base: nn.Module | None = None,
    *,
    delta: nn.Module | None = None,
    depth: int | None = None,
    base_depth: int | None = None,
    optimizer: str = "adam",
    policy: str = "auto",
    example_input=None,
) -> Parameterization:
    r"""Parameterize ``model`` by width (and depth) against ``base``; change nothing yet.

    Per parameter: its width dims from comparison with ``base`` (and ``delta``), its role, and
    from the table of ``parameterization`` (:mod:`initlab.parameterize.tables`, where each
    table cites its source) the init std, the forward multiplier, the learning rate, weight
    decay and Adam epsilon factors. Standard deviations are relative to the ``policy`` plan
    (:func:`initlab.plan`): at the base width, ``sp``, ``ntk``, ``mup``, ``depth-mup`` and
    ``completep`` equal standard parameterization, as in ``mup`` (Yang et al. 2022, Tensor
    Programs V, sec. 4 and Table 8); ``umup`` is absolute (Blake et al. 2024, Table 2).

    ==========  ==============================================================================
    ``sp``      the policy's init at the model's width; multipliers and lr unchanged
    ``ntk``     init std of the base; multiplier m_in^-1/2 on hidden and output weights
    ``mup``     hidden std x m_in^-1/2; output multiplier 1/m_in; Adam: hidden lr / m_in;
                SGD: vector-like lr x m, hidden lr x m_out/m_in; attention logits 1/d_head
    ``umup``    every weight N(0, 1); multipliers 1/sqrt(fan_in) (hidden, Linear input),
                1/fan_in (output); Adam lr 1/sqrt(fan_in) hidden, 1/sqrt(width) input
    ``depth-mup``  ``mup`` and branch multiplier (L/L_base)^-1/2, block Adam lr x the same
    ``completep``  ``mup`` and branch multiplier (L/L_base)^-1, block lr unchanged, hidden
                Adam eps x m_in^-1 (L/L_base)^-1, block vector eps x (L/L_base)^-1
    ==========  ==============================================================================

    The depth L is the number of residual blocks: the children of the ``nn.ModuleList`` /
    ``nn.Sequential`` containers that hold the residual branches found by tracing
    ``example_input`` (:func:`initlab.introspect.trace.analyze`); a branch's multiplier scales
    the output of the layer that ends it.

    Args:
        model: the model to parameterize, any ``nn.Module`` (CPU or other device).
        parameterization: one of ``sp``, ``ntk``, ``mup``, ``umup``, ``depth-mup``,
            ``completep``.
        base: the same architecture at the base width (and, for depth parameterizations, any
            depth); any device, the meta device included. Required, except for ``sp``.
        delta: optionally the architecture at a third width, to find width dims where
            ``model`` and ``base`` happen to agree (as ``mup.set_base_shapes(delta=...)``).
        depth, base_depth: residual blocks of ``model`` and ``base``; default counted.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``: the family whose lr table
            :attr:`ParamRow.lr_scale` shows and :meth:`Parameterization.param_groups` uses.
        policy: the :func:`initlab.plan` preset the initial distributions start from
            (``"torch"`` reproduces PyTorch's default init, what ``mup`` assumes).
        example_input: one input batch; required by ``depth-mup`` and ``completep`` (residual
            branches are found by tracing) and used by the plan. Its tensors are moved to the
            device of the model's (and the base's) parameters for the trace: a model on the
            meta device is traced on meta tensors.

    Returns:
        A :class:`Parameterization`.

    Raises:
        TypeError: ``model`` or ``base`` is not an ``nn.Module``; ``depth`` not an int.
        ArgumentError: (ValueError, naming the argument) an unknown ``parameterization`` (lists
            the valid ones), an optimizer the table does not cover (names those it covers),
            ``base`` missing, a parameter that cannot be matched to the base (names the
            parameter and both shapes), a depth parameterization without ``example_input`` or
            without residual blocks.

    Example:
        >>> wide = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 3))
        >>> narrow = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> p = parametrize(wide, "mup", base=narrow)
        >>> p["2.weight"].role, p["2.weight"].multiplier
        ('output', 0.25)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    name = one_of("parameterization", parameterization, PARAMETERIZATIONS)
    kind = _OPTIMIZER_NAMES[one_of("optimizer", optimizer, _OPTIMIZER_NAMES)]
    if kind == "sgd" and "sgd" not in _covered(name):
        raise ArgumentError(
            "optimizer",
            f"{name} covers optimizers {_covered(name)}; got optimizer={optimizer!r}",
        )
    if base is None:
        if name != "sp":
            raise ArgumentError(
                "base", f"{name} needs base=, the same model built at another width"
            )
        base = model
    if not isinstance(base, nn.Module):
        raise TypeError(f"base must be a torch.nn.Module; got {type(base).__name__}")
    for arg, value in (("depth", depth), ("base_depth", base_depth)):
        if value is not None:
            positive_int(arg, value)
    owners = {n: model.get_submodule(n.rpartition(".")[0]) for n, _ in model.named_parameters()}
    info = widths(model, base, delta, owners)
    if example_input is not None:  # a meta model traces on meta tensors (nothing allocated)
        example_input = _on(example_input, _device(model))
    model_plan = plan(model, policy, example_input=example_input)
    base_plan, base_note = _plan_base(base, policy, example_input)
    base_rows = _base_rows(base_plan)

    depth_table = DEPTH.get(name)
    branches: dict[str, float] = {}
    blocks: set[str] = set()
    m_depth = 1.0
    if depth_table is not None:
        ends = _branch_ends(model, example_input, name)
        blocks = {block_of(e, model) for e in ends}
        containers = {b.rpartition(".")[0] for b in blocks}
        depth = depth or count_blocks(model, containers)
        base_depth = base_depth or count_blocks(base, containers)
        m_depth = depth / base_depth
        branches = dict.fromkeys(sorted(ends), m_depth**-depth_table.alpha)
    table = TABLES[name]
    new_rows, rows, scales = [], [], {k: {} for k in ("adam", "sgd") if k in _covered(name)}
    plan_rows = {n: r for r in model_plan.rows for n in (r.name, *r.tied)}
    for pname, width in info.items():
        scaling = table[width.role]
        prow = plan_rows.get(pname)
        values = _values(width, prow)
        owner_name = pname.rpartition(".")[0]
        block = block_of(owner_name, model) if owner_name else None
        in_block = block in blocks
        std, note, new_row = _init(prow, scaling, values, base_rows, pname, name)
        if prow is not None and prow.name == pname:
            new_rows.append(new_row)
        lr_depth = eps_depth = 1.0
        if depth_table is not None and in_block:
            lr_depth = m_depth ** (depth_table.alpha - 1)
            if depth_table.scale_eps:
                eps_depth = m_depth**-depth_table.alpha
        eps = evaluate(scaling.eps, values) * eps_depth
        scales["adam"][pname] = (
            evaluate(scaling.adam_lr, values) * lr_depth,
            evaluate(scaling.adam_wd, values),
            eps,
        )
        if "sgd" in scales:
            scales["sgd"][pname] = (
                evaluate(scaling.sgd_lr, values),
                evaluate(scaling.sgd_wd, values),
                1.0,
            )
        lr_scale, wd_scale, eps_scale = scales[kind][pname]
        rows.append(
            ParamRow(
                name=pname,
                role=width.role,
                shape=width.shape,
                base_shape=width.base_shape,
                width_dims=width.dims_text(),
                m_in=width.m_in,
                m_out=width.m_out,
                init_std=std if new_row is not None and new_row.distribution in _RANDOM else None,
                init=_draw(new_row if new_row is not None else prow),
                multiplier=evaluate(scaling.multiplier, values),
                branch_multiplier=branches.get(owner_name, 1.0),
                lr_scale=lr_scale,
                weight_decay_scale=wd_scale,
                eps_scale=eps_scale,
                block=block if in_block else None,
                note=note,
            )
        )
    attention, notes = _attention(model, base, info, ATTENTION.get(name))
    readouts, tie_notes = _tied_readouts(model, info, table["output"])
    notes = [*([base_note] if base_note else []), *notes, *tie_notes]
    scaled_plan = InitPlan(model, new_rows, source=model_plan.source,
                           policy=f"{name} ({model_plan.policy})")  # fmt: skip
    return Parameterization(
        name=name,
        model=model_plan.model,
        plan_=scaled_plan,
        rows=rows,
        optimizer_kind=kind,
        scales=scales,
        depth=depth if depth_table is not None else None,
        base_depth=base_depth if depth_table is not None else None,
        branches=branches,
        readouts=readouts,
        attention=attention,
        notes=notes,
    )


def _draw(row: PlanRow | None) -> str:
    """A plan row's distribution as short text."""
    if row is None:
        return "-"
    if row.distribution == "normal":
        return f"N(0, {row.std:.4g}^2)"
    if row.distribution == "uniform":
        return f"U(+-{row.bound:.4g})"
    if row.distribution == "truncated_normal":
        return f"TN(0, {row.std:.4g}^2, +-{row.bound:.4g})"
    if row.distribution == "orthogonal":
        return f"orthogonal std {row.std:.4g}"
    if row.distribution == "constant" and row.value:
        return "= " + ",".join(f"{v:g}" for v in sorted(set(row.value)))
    return row.distribution


def _tied_readouts(model: nn.Module, info: dict[str, WidthInfo], output: Scaling):
    """A Linear whose weight is another parameter's (an output layer tied to the embedding,
    Press and Wolf 2017): as a readout its input takes the output multiplier (``mup``'s
    ``MuSharedReadout``); its init and lr stay those of the parameter it shares."""
    readouts, notes = {}, []
    primary = {id(q): n for n, q in model.named_parameters()}
    for alias, param in model.named_parameters(remove_duplicate=False):
        if alias in info:
            continue
        owner_name, _, leaf = alias.rpartition(".")
        width = info[primary[id(param)]]
        owner = model.get_submodule(owner_name)
        if not (isinstance(owner, _HOOKED) and leaf == "weight" and width.infinite[1:2] == (True,)
                and not width.infinite[0]):  # fmt: skip
            continue
        factor = evaluate(output.multiplier, _values(width, None))
        if factor != 1.0:
            readouts[owner_name] = factor
            notes.append(
                f"{alias} is {primary[id(param)]} (tied): as a readout, its input is scaled by "
                f"{factor:.4g}; init and lr are {primary[id(param)]}'s"
            )
    return readouts, notes


def _values(width: WidthInfo, prow: PlanRow | None) -> dict[str, float]:
    shape = width.shape
    if prow is not None and prow.fan_in is not None:
        fan_in = prow.fan_in
    else:
        fan_in = math.prod(shape[1:]) if len(shape) >= 2 else 1
    return {"m_in": width.m_in, "m_out": width.m_out, "m": width.m, "fan_in": fan_in,
            "width": width.width}  # fmt: skip


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _on(example_input, device):
    if isinstance(example_input, torch.Tensor):
        return example_input.to(device)
    if isinstance(example_input, Mapping):
        return {k: _on(v, device) for k, v in example_input.items()}
    if isinstance(example_input, (list, tuple)):
        return type(example_input)(_on(v, device) for v in example_input)
    return example_input


def _plan_base(base: nn.Module, policy: str, example_input) -> tuple[InitPlan, str]:
    """Plan the base as the model is planned: traced on ``example_input`` (moved to the base's
    device, meta included) when given. Its warnings are the model's plan's, so they are not
    repeated; a trace that fails falls back to the structure, with a note."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if example_input is not None:
            try:
                return plan(base, policy, example_input=_on(example_input, _device(base))), ""
            except ArgumentError as error:
                note = f"the base was planned from its structure: its trace failed ({error})"
                return plan(base, policy), note
        return plan(base, policy), ""


def _base_rows(base_plan: InitPlan) -> dict[str, PlanRow]:
    rows = {n: r for r in base_plan.rows for n in (r.name, *r.tied)}
    for n, r in list(rows.items()):
        rows.setdefault(template(n), r)
    return rows


def _init(prow, scaling, values, base_rows, pname, name):
    """Return (init std, note, plan row) for one parameter."""
    if prow is None:
        return None, "no plan row (frozen or not planned): not initialized", None
    factor = evaluate(scaling.init, values)
    if scaling.init_from == "model" or prow.distribution in {"constant", "skip", "none"}:
        return prow.std, "", prow
    if scaling.init_from == "unit":
        std = factor
        row = dataclasses.replace(
            prow, distribution="normal", std=std, bound=None, gain=None,
            rule=f"{name}: unit scale", reason=f"{name} (Blake et al. 2024, Table 2): N(0, 1)",
        )  # fmt: skip
        return std, "", row
    base_row = base_rows.get(pname) or base_rows.get(template(pname))
    if prow.std is None or base_row is None or base_row.std is None:
        note = "its own init is kept and not rescaled (no std to scale)"
        return prow.std, note if factor != 1.0 or prow.distribution == "keep" else "", prow
    std = base_row.std * factor
    ratio = std / prow.std
    row = dataclasses.replace(
        prow,
        std=std,
        bound=None if prow.bound is None else prow.bound * ratio,
        gain=None if prow.gain is None else prow.gain * ratio,
        rule=f"{name}: {prow.rule}",
        reason=f"{prow.reason}; {name}: std = base std {base_row.std:.4g} x "
        f"{describe(scaling.init)} = {std:.4g}",
    )
    return std, "", row


def _branch_ends(model: nn.Module, example_input, name: str) -> list[str]:
    if example_input is None:
        raise ArgumentError(
            "example_input",
            f"{name} needs example_input=: residual branches are found by tracing one forward",
        )
    context = analyze(model, example_input)
    ends = [
        n
        for n, layer in context.layers.items()
        if layer.residual_end and block_of(n, model) is not None
    ]
    if not ends:
        raise ArgumentError(
            "model",
            f"{name} scales residual branches by depth, but the traced forward of the model "
            "shows no residual branch inside an nn.ModuleList or nn.Sequential of blocks",
        )
    return ends


def _attention(model, base, info, mode):
    """Score-module multipliers (logits 1/d_head) and notes for attention without a hook."""
    attention, notes = {}, []
    if mode is None:
        return attention, notes
    for mname, module in model.named_modules():
        n_head = getattr(module, "n_head", getattr(module, "num_heads", None))
        projections = ("q", "k", "query", "key", "c_attn", "qkv", "in_proj_weight")
        is_attention = isinstance(n_head, int) and any(hasattr(module, a) for a in projections)
        if not (is_attention or isinstance(module, nn.MultiheadAttention)):
            continue
        score, q = getattr(module, "score", None), getattr(module, "q", None)
        if not isinstance(score, nn.Identity) or not isinstance(q, nn.Linear):
            notes.append(
                f"attention {mname!r} exposes no logit hook (an nn.Identity 'score' and a "
                "Linear 'q'): its logits keep 1/sqrt(d_head)"
            )
            continue
        prefix = f"{mname}." if mname else ""
        d_head = q.out_features / n_head
        if mode == "absolute":
            factor = d_head**-0.5
        else:
            base_heads = _base_heads(base, mname, n_head)
            d_base = info[f"{prefix}q.weight"].base_shape[0] / base_heads
            factor = (d_base / d_head) ** 0.5
        attention[f"{prefix}score"] = factor
    return attention, notes


def _base_heads(base: nn.Module, mname: str, default: int) -> int:
    target = template(mname + ".")
    for name, module in base.named_modules():
        if name == mname or template(name + ".") == target:
            heads = getattr(module, "n_head", getattr(module, "num_heads", None))
            if isinstance(heads, int):
                return heads
    return default
