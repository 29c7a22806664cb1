"""The plan data model: one readable row per parameter, and writing it into the model.

An :class:`InitPlan` holds one :class:`PlanRow` per parameter (kind, fans, activation, rule,
an explicit distribution, reason); :meth:`InitPlan.apply` writes it, each parameter from its own
random streams derived from ``(seed, parameter name)`` (:mod:`initlab.policy.streams`);
:meth:`InitPlan.to_dict` and :meth:`InitPlan.from_dict` save and rebuild it. Building a plan
from a model (inspecting it, matching rules) is :mod:`initlab.policy.build`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from initlab._checks import warn_zero_element
from initlab.policy.distributed import local_box
from initlab.policy.own_init import run_own_inits, storage_key
from initlab.policy.receipt import plan_source, record_model
from initlab.policy.streams import fill_box_

__all__ = ["InitPlan", "PlanRow", "uncompiled"]


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
        receipt: the :class:`~initlab.policy.receipt.Receipt` of the last
            ``apply(..., receipt=True or path)``, else None.
        lsuv: the :class:`~initlab.datadriven.LSUVReport` of
            ``initlab.init_model(..., lsuv=batch)`` (:mod:`initlab.schemes.compose`), else None.

    A model compiled by ``torch.compile`` stands for the module it compiled (``_orig_mod``),
    which shares its parameters: the plan is that module's.
    """

    def __init__(self, model: nn.Module, rows: Sequence[PlanRow], *, source: str, policy: str):
        self.model = uncompiled(model)
        self.rows = list(rows)
        self.source = source
        self.policy = policy
        self.uncovered = [r.name for r in self.rows if r.distribution == "none"]
        self.receipt = None  # the Receipt of the last apply(..., receipt=...)
        self.lsuv = None  # the LSUVReport when initlab.init_model(..., lsuv=batch) calibrated it
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
        receipt=None,
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
            receipt: None (default) records nothing; True sets :attr:`receipt` to a
                :class:`~initlab.policy.receipt.Receipt` of every parameter and buffer after the
                write (source: the row's rule and distribution, its own init, or the module for
                buffers; the base seed; statistics; SHA-256); a path also writes it there as
                JSON, atomically. :func:`initlab.policy.verify.verify` checks a model against it.

        Raises:
            TypeError: if ``seed`` is not an int or ``generator`` not a ``torch.Generator``,
                or ``receipt`` is not None, True or a path.
            OSError: the receipt file cannot be written (the model is written by then).
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
        if not (receipt is None or receipt is True or isinstance(receipt, (str, os.PathLike))):
            raise TypeError(f"receipt must be None, True or a path; got receipt={receipt!r}")
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
        if receipt is not None:
            self.receipt = self._receipt(base)
            if receipt is not True:
                self.receipt.save(receipt)
        return self

    def _receipt(self, base: int):
        sources = {n: plan_source(r) for r in self.rows for n in (r.name, *r.tied)}
        return record_model(self.model, sources, origin="plan", seed=base)

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
        model = uncompiled(model)
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


def uncompiled(model: nn.Module) -> nn.Module:
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
