"""Modules' own initialization, run for chosen tensors only, seeded, and checked.

Two uses in :meth:`InitPlan.apply <initlab.policy.plan.InitPlan.apply>`:

* ``keep`` rows: a parameter no rule covers is handed back to its module's own init.
* restoring a model built on the meta device: ``model.to_empty()`` gives every tensor
  uninitialized memory, and the plan draws only its parameters. Buffers (BatchNorm running
  statistics, Hugging Face's ``position_ids``, rotary ``inv_freq``), frozen parameters
  (Whisper's sinusoidal ``embed_positions``) and parameters no rule covers must get the values
  the model's constructor computes, or an error must say which ones cannot.

"Its own init" is what construction runs, replayed for the tensor's owner and every module
above it, descendants first (construction finishes a child before its parent, and a parent's
init may write into its children: ``nn.MultiheadAttention._reset_parameters`` zeroes
``out_proj.bias``, Whisper's ``WhisperEncoder`` init writes ``embed_positions.weight``):

1. PyTorch-level: the first of ``reset_parameters``, ``_reset_parameters``, ``init_weights`` a
   module has (not a Hugging Face ``PreTrainedModel``, whose ``init_weights`` is phase 2). A
   parametrized module (``torch.nn.utils.parametrize``, e.g. Wav2Vec2's weight-normed
   positional conv) runs it under ``parametrize.cached()``, so that it writes the effective
   weight, which is then assigned back through the parametrization's ``right_inverse``: what
   ``weight_norm(conv)`` does to the freshly reset weight at construction.
2. Hugging Face: ``D._init_weights(module)``, ``D`` the nearest ``PreTrainedModel`` at or above
   the module, as ``PreTrainedModel.initialize_weights`` dispatches it (transformers 5.x,
   ``smart_apply``). Construction marks each module ``_is_hf_initialized`` after its one call,
   so ``init_weights()`` does nothing a second time; ``_init_weights`` is therefore called
   directly, with the ``_is_hf_initialized`` flag of the target tensors (which makes
   transformers' ``init`` functions skip a tensor) lifted for the call and put back after.

Every tensor outside the targets is protected copy-on-write: a ``TorchFunctionMode`` saves a
protected tensor the first time an in-place operation (``normal_``, ``copy_``, ``__setitem__``,
``out=``...) writes into its storage, and copies it back afterwards, so only what a hook
touches is ever duplicated. Each module's hooks run under a forked global RNG seeded with
SHA-256 of ``"{seed}:{module name}"`` (phase 2: ``"{seed}:{module name}:hf"``).

Checks. Targets are filled with a sentinel (NaN; 0 and then 1 for integer and bool tensors)
before the hooks run. A ``keep`` parameter still holding NaN afterwards was not (wholly)
written by its own init. A tensor to restore is run twice, with different sentinels and
different seeds: it is restored only if both runs agree, i.e. the hooks computed it without
reading the old memory and without drawing random numbers, so that it holds the value the
model built off the meta device holds. Everything else is reported in one ``ValueError``, and
the ``keep`` parameters get their previous values back.

Limitation: the hooks are taken to be the code construction ran. A constructor that computes
a buffer one way and a ``reset_parameters`` that computes it another (deterministic) way is not
detected; Hugging Face models are built so (transformers 5.x materializes non-persistent
buffers of ``from_pretrained`` models through ``_init_weights`` too).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

from initlab.policy.distributed import local_box
from initlab.policy.streams import stream_seed

__all__ = ["OWN_INIT", "describe_own_init", "run_own_inits"]

OWN_INIT = ("reset_parameters", "_reset_parameters", "init_weights")
_INPLACE_DUNDERS = frozenset(
    {"__setitem__", "__set__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
     "__ifloordiv__", "__imod__", "__ipow__", "__iand__", "__ior__", "__ixor__",
     "__ilshift__", "__irshift__", "__imatmul__"}
)  # fmt: skip
# What to tell the user per kind of tensor apply could not restore.
_FIXES = {
    "buffer": "give its module a reset_parameters() (or, in a Hugging Face model, an "
    "_init_weights branch) that computes it",
    "skip": "plan with include_frozen=True to draw it, or give it a Rule",
    "none": "give it a Rule(param=...)",
}


def _hf_pretrained() -> type | None:
    """transformers' ``PreTrainedModel`` if transformers is loaded (a Hugging Face model cannot
    exist otherwise), else None: initlab does not import transformers itself."""
    module = sys.modules.get("transformers.modeling_utils")
    return getattr(module, "PreTrainedModel", None)


def _is_hf(module: nn.Module, pretrained: type | None) -> bool:
    return pretrained is not None and isinstance(module, pretrained)


def torch_own_init(module: nn.Module) -> str | None:
    """The name of the module's PyTorch-level own init method (the first of :data:`OWN_INIT`
    that can be called without arguments), or None."""
    if _is_hf(module, _hf_pretrained()):
        return None
    return next((m for m in OWN_INIT if _no_arguments(getattr(module, m, None))), None)


def _no_arguments(method) -> bool:
    if not callable(method):
        return False
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):  # a builtin without a signature: assume none needed
        return True
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in signature.parameters.values()
    )


def describe_own_init(module: nn.Module, ancestors: Sequence[nn.Module]) -> str | None:
    """Say what re-initializes a parameter of ``module`` (``ancestors`` from the root down to
    its parent), or None when nothing does: its (for a ``ParametrizationList``: the
    parametrized module's) ``reset_parameters``-type method and/or Hugging Face's
    ``_init_weights`` of the nearest ``PreTrainedModel`` at or above it."""
    host, through = module, ""
    if isinstance(module, parametrize.ParametrizationList) and len(ancestors) >= 2:
        host, through = ancestors[-2], " through its parametrization"
    parts = []
    method = torch_own_init(host)
    if method is not None:
        parts.append(f"{type(host).__name__}.{method}(){through}")
    pretrained = _hf_pretrained()
    hf = next((m for m in reversed((*ancestors, module)) if _is_hf(m, pretrained)), None)
    if hf is not None:
        parts.append(f"Hugging Face {type(hf).__name__}._init_weights")
    return ", then ".join(parts) or None


@dataclass
class _Hook:
    name: str
    module: nn.Module
    method: str | None  # PyTorch-level own init
    dispatcher: nn.Module | None  # nearest Hugging Face PreTrainedModel at or above
    parametrized: set[str] = field(default_factory=set)  # tensors written via right_inverse


def _hooks(model: nn.Module, targets: Iterable[Sequence[str]]) -> list[_Hook]:
    """The modules whose own init can write the targets (each a tensor's names): every owner
    and every module above it, descendants before ancestors."""
    order = {id(m): (i, n) for i, (n, m) in enumerate(model.named_modules())}
    pretrained = _hf_pretrained()
    hooks: dict[int, _Hook] = {}
    for names in targets:
        for name in names:
            owner_path = name.rpartition(".")[0]
            parametrized = None
            if isinstance(model.get_submodule(owner_path), parametrize.ParametrizationList):
                # "conv.parametrizations.weight.original0": conv's "weight" is written
                host_path, _, _ = owner_path.rpartition(".")[0].rpartition(".")
                parametrized, owner_path = owner_path.rpartition(".")[2], host_path
            parts = owner_path.split(".") if owner_path else []
            chain = [model.get_submodule(".".join(parts[:i])) for i in range(len(parts) + 1)]
            dispatcher = None
            for module in chain:  # root first: the dispatcher is the nearest one above
                if _is_hf(module, pretrained):
                    dispatcher = module
                if id(module) not in hooks:
                    hooks[id(module)] = _Hook(
                        order[id(module)][1], module, torch_own_init(module), dispatcher
                    )
            if parametrized is not None:
                hooks[id(chain[-1])].parametrized.add(parametrized)
    return sorted(hooks.values(), key=lambda h: -order[id(h.module)][0])


def storage_key(t) -> int | None:
    """Address of the memory the tensor (a DTensor: its local shard) stores its values in, or
    None for a tensor without one (meta, no elements)."""
    try:
        local = local_box(t)[0]
        return local.untyped_storage().data_ptr() if local.numel() else None
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        return None


class _CopyOnWrite(TorchFunctionMode):
    """Save a protected tensor before the first in-place write into its storage."""

    def __init__(self, protected: Mapping[int, list[torch.Tensor]]):
        super().__init__()
        self.protected = protected
        self.saved: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        written = []
        if (name.endswith("_") and not name.startswith("__")) or name in _INPLACE_DUNDERS:
            written.append(args[0] if args else None)
        if kwargs.get("out") is not None:
            out = kwargs["out"]
            written.extend(out if isinstance(out, (list, tuple)) else [out])
        for t in written:
            if isinstance(t, torch.Tensor):
                key = storage_key(t)
                if key in self.protected and key not in self.saved:
                    self.saved[key] = [(p, local_box(p)[0].clone()) for p in self.protected[key]]
        return func(*args, **kwargs)

    def restore(self) -> None:
        with torch.no_grad():
            for pairs in self.saved.values():
                for tensor, copy in pairs:
                    local_box(tensor)[0].copy_(copy)
        self.saved.clear()


def _fill(tensor: torch.Tensor, first: bool) -> None:
    local = local_box(tensor)[0]
    if local.is_floating_point() or local.is_complex():
        local.fill_(math.nan)
    else:
        local.fill_(0 if first else 1)


def _seed(base: int, name: str, tag: str) -> int:
    """Seed of a module's own init: SHA-256 of ``"{seed}:{name}"`` (the PyTorch-level hook, as
    :func:`initlab.policy.plan` has always seeded it), ``"{seed}:{name}:{tag}"`` otherwise."""
    name = name or "<root>"
    if tag:
        return stream_seed(base, name, tag)
    digest = hashlib.sha256(f"{base}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def _run(hooks: list[_Hook], targets: list[torch.Tensor], protect: dict, base: int, alt: bool):
    """Run every hook once, seeded (``alt``: other seeds), then undo writes outside targets."""
    devices = sorted({t.device.index for t in targets if t.is_cuda})
    flags = {}
    for t in targets:  # transformers' init functions skip a tensor flagged as initialized
        if "_is_hf_initialized" in getattr(t, "__dict__", {}):
            flags[id(t)] = (t, t.__dict__.pop("_is_hf_initialized"))
    guard = _CopyOnWrite(protect)
    try:
        with torch.random.fork_rng(devices=devices), guard:
            for hook in hooks:
                if hook.method is not None:
                    torch.manual_seed(_seed(base, hook.name, "alt" if alt else ""))
                    _call(hook)
            for hook in hooks:
                if hook.dispatcher is not None:
                    torch.manual_seed(_seed(base, hook.name, "alt hf" if alt else "hf"))
                    hook.dispatcher._init_weights(hook.module)
    finally:
        guard.restore()
        for t, flag in flags.values():
            t._is_hf_initialized = flag


def _call(hook: _Hook) -> None:
    method = getattr(hook.module, hook.method)
    if not hook.parametrized:
        method()
        return
    with parametrize.cached():  # the method writes the cached effective tensors in place
        method()
        values = {n: getattr(hook.module, n).detach().clone() for n in hook.parametrized}
    for n, value in values.items():
        # right_inverse gives the originals from the value; without one they keep the
        # sentinel and are reported
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            setattr(hook.module, n, value)


def run_own_inits(
    model: nn.Module,
    keep: Sequence[Sequence[str]],
    restore: Mapping[str, str],
    base: int,
) -> None:
    """Run the own init of the modules that own ``keep`` and ``restore`` tensors; change
    nothing else.

    Args:
        model: the model.
        keep: per ``keep`` parameter, its names (the first one, then tied aliases): set to
            what its own init draws under the seeded RNG.
        restore: name -> ``"buffer"``, ``"skip"`` (frozen parameter) or ``"none"`` (no rule),
            for tensors to set to the value construction computes.
        base: the plan's base seed.

    Raises:
        ValueError: a target is still on the meta device; or, listing all of them, a ``keep``
            parameter its own init does not write, and a tensor to restore that no own init
            computes without randomness (each with how to fix it). The ``keep`` parameters then
            hold their previous values again.
    """
    if not keep and not restore:
        return
    named = {
        **dict(model.named_parameters(remove_duplicate=False)),
        **dict(model.named_buffers(remove_duplicate=False)),
    }
    keep_t = {names[0]: named[names[0]] for names in keep}
    restore_t = {n: named[n] for n in restore}
    on_meta = [n for n, t in {**keep_t, **restore_t}.items() if t.is_meta]
    if on_meta:
        raise ValueError(
            f"tensors {on_meta[:8]} are on the meta device: call model.to_empty(device=...) "
            "before apply()"
        )
    targets = list({id(t): t for t in (*keep_t.values(), *restore_t.values())}.values())
    mine = {id(t) for t in targets}
    protect: dict[int, list[torch.Tensor]] = {}
    for t in {id(t): t for t in named.values()}.values():
        key = storage_key(t)
        if id(t) not in mine and key is not None:
            protect.setdefault(key, []).append(t)
    hooks = _hooks(model, [*keep, *([n] for n in restore)])
    before = {n: local_box(t)[0].clone() for n, t in keep_t.items()}
    try:
        first = {}
        if restore_t:  # a run with other sentinels and other seeds: what differs is not computed
            for t in targets:
                _fill(t, first=True)
            _run(hooks, targets, protect, base, alt=True)
            first = {n: local_box(t)[0].clone() for n, t in restore_t.items()}
        for t in targets:
            _fill(t, first=False)
        _run(hooks, targets, protect, base, alt=False)
        _check(keep_t, restore_t, restore, first)
    except BaseException:  # a hook raised, or a check failed: keep parameters as they were
        with torch.no_grad():
            for n, t in keep_t.items():
                local_box(t)[0].copy_(before[n])
        raise


def _check(keep_t, restore_t, restore, first) -> None:
    problems = []
    for n, t in keep_t.items():
        local = local_box(t)[0]
        if (local.is_floating_point() or local.is_complex()) and local.isnan().any():
            problems.append(
                f"{n!r} (planned 'keep'): its own init does not write it (or reads its old "
                "value); give it a Rule(param=...)"
            )
    for n, t in restore_t.items():
        local = local_box(t)[0]
        if torch.equal(local, first[n]):
            continue
        what = {"buffer": "buffer", "skip": "frozen parameter", "none": "parameter"}[restore[n]]
        untouched = _unwritten(local)
        why = (
            "no own init of its module or of a module above it writes it"
            if untouched
            else "its own init draws it at random or reads the old memory, so the value the "
            "model built off the meta device holds cannot be recomputed"
        )
        problems.append(
            f"{what} {n!r}: {why}; {_FIXES[restore[n]]}, or build the model off the meta "
            "device, or apply(..., restore=False) and set it yourself after apply"
        )
    if problems:
        raise ValueError(
            f"apply() cannot give {len(problems)} tensor(s) the values the model built off the "
            "meta device (or its own init) holds:\n  " + "\n  ".join(problems)
        )


def _unwritten(local: torch.Tensor) -> bool:
    if local.is_floating_point() or local.is_complex():
        return bool(local.isnan().all())
    return bool((local == 1).all())
