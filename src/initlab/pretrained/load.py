"""Load pretrained weights into a model safely, report every tensor, initialize only the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from initlab._checks import one_of
from initlab.pretrained.adapt import adapt_input_channels, first_conv_weight
from initlab.pretrained.keys import align, apply_key_map, matches_any
from initlab.pretrained.report import (
    Adapted,
    Ignored,
    Loaded,
    LoadReport,
    Mismatched,
    Reinitialized,
)
from initlab.pretrained.sources import read_state_dict

__all__ = ["load_pretrained"]

logger = logging.getLogger(__name__)

_ON_MISMATCH = ("error", "reinit")


@dataclass(frozen=True)
class _Match:
    """One checkpoint tensor and the model tensor it goes to (``target`` is a model name)."""

    source_key: str
    target: str
    value: torch.Tensor


def load_pretrained(
    model: nn.Module,
    source,
    *,
    key_map: Mapping[str, str | None] | Callable[[str], str | None] | None = None,
    strip_prefixes: str | Iterable[str] | None = "auto",
    on_mismatch: str = "reinit",
    adapt_first_conv: bool = True,
    new_head: str | Iterable[str] | None = None,
    init_rest: str | None = "auto",
    example_input=None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    freeze: bool | str | Iterable[str] | None = None,
    trust_pickle: bool = False,
) -> LoadReport:
    r"""Load pretrained tensors into ``model`` in place; initialize only what was not loaded.

    Steps, each recorded in the returned :class:`LoadReport`:

    1. Read ``source`` without running code from it (safetensors, or PyTorch pickles with
       ``torch.load(weights_only=True)``; see :mod:`initlab.pretrained.sources`). Wrappers
       ``{"state_dict": ...}``, ``{"model": ...}`` and the like are unwrapped.
    2. Rename checkpoint names: ``key_map`` first, then prefix alignment (``strip_prefixes``).
       A load that would copy nothing (no checkpoint name matches a model name, or every
       tensor that matches has another shape) raises: it never "succeeds" by copying nothing.
    3. Copy every tensor whose name and shape match, bit for bit (cast only if the dtypes
       differ). A tensor of another shape is never partly copied or broadcast: the first
       convolution may be adapted to another number of input channels
       (:mod:`initlab.pretrained.adapt`), any other mismatch is re-initialized or raises.
    4. Initialize, with the policy ``init_rest``, only the parameters that were not loaded
       (missing from the checkpoint, mismatched, or declared a new head). A loaded tensor is
       never overwritten: the plan is restricted to those names and checked before it writes.
    5. Freeze (``requires_grad=False``) the loaded parameters that ``freeze`` selects.

    Buffers: persistent buffers (BatchNorm running statistics) load like parameters; when the
    checkpoint lacks them they are reported missing and keep their constructed values (the
    policy initializes parameters only). Checkpoint entries for non-persistent buffers
    (``BertModel``'s ``embeddings.position_ids``, saved by older ``transformers`` versions) are
    ignored and reported as such: the model computes those itself and they are not part of its
    state. Tied parameters (one tensor under two names) count as loaded under both names when
    the checkpoint provides either.

    Args:
        model: the module to load into, on any device; modified in place.
        source: a state_dict, an ``nn.Module``, or a path to a ``.safetensors`` file, a
            ``.pt``/``.pth``/``.bin``/``.ckpt`` file, a sharded ``*.index.json``, or a directory
            in the Hugging Face layout.
        key_map: renames applied to checkpoint names first: a dict
            ``{checkpoint name: model name}`` (unlisted names kept, value ``None`` drops the
            tensor) or a callable ``name -> name or None``.
        strip_prefixes: ``"auto"`` strips a leading prefix such as ``module.``,
            ``_orig_mod.`` or ``model.`` from the checkpoint's names, or matches them under a
            prefix of the model's (``bert.``), when that matches strictly more names; a
            sequence such as ``("module.",)`` strips exactly those prefixes from checkpoint
            names; ``None`` uses names as they are.
        on_mismatch: ``"reinit"`` (default): a tensor whose shape differs is left to the
            policy and reported; ``"error"``: raise, listing every mismatch, before anything
            is copied.
        adapt_first_conv: adapt the first convolution's weight when only its number of input
            channels differs (fold for fewer channels, repeat and rescale for more, so that the
            response to a replicated input is preserved), instead of treating it as a mismatch.
        new_head: parameters to leave out of the load and initialize afresh, e.g. a classifier
            for a new task even when its shape happens to match: ``"auto"`` (the last
            ``nn.Linear`` in registration order, the usual classifier), or glob patterns /
            module prefixes (``"fc"``, ``"classifier.*"``). Their checkpoint tensors are
            reported as ignored, never as mismatched, so ``on_mismatch="error"`` still allows a
            head of another size.
        init_rest: the policy (for :func:`initlab.plan`) that initializes the parameters not
            loaded, ``"auto"`` by default; ``None`` leaves them as constructed.
        example_input: passed to :func:`initlab.plan`: one traced forward lets the policy see
            functional activations (``F.relu``) when choosing the rules for the rest.
        seed: seed for ``init_rest``; the same seed gives the same weights.
        generator: random stream for ``init_rest`` instead of ``seed``.
        freeze: ``True`` freezes every loaded (or adapted) parameter; a pattern or patterns
            (glob or module prefix, e.g. ``"bert.embeddings"``) freeze the loaded parameters
            they match; ``None`` freezes nothing.
        trust_pickle: fully unpickle PyTorch files (can run code; warns). Default False.

    Returns:
        The :class:`LoadReport`: loaded, missing, unexpected, mismatched (both shapes), adapted,
        re-initialized (with the policy's rule), ignored and frozen tensors.

    Raises:
        ValueError: no checkpoint name matches the model; ``on_mismatch="error"`` and shapes
            differ (all listed); an option is unknown; a ``new_head`` or ``freeze`` pattern
            matches no suitable parameter; two checkpoint names map to one model name.
        PickleRefusedError: (a ValueError) a pickle needs full unpickling and
            ``trust_pickle`` is False; nothing in it ran.
        TypeError: ``model`` is not an ``nn.Module`` or ``source`` is unsupported.

    Example:
        >>> def net():
        ...     return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> ckpt = {"module." + k: v for k, v in net().state_dict().items()}
        >>> report = load_pretrained(net(), ckpt)
        >>> report.clean, report.alignment
        (True, "stripped 'module.' from checkpoint names")
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    one_of("on_mismatch", on_mismatch, _ON_MISMATCH)
    targets = model.state_dict(keep_vars=True)
    if any(t.is_meta for t in targets.values()):
        raise ValueError(
            "model has tensors on the meta device, which hold no data to load into; "
            "materialize it first, e.g. model.to_empty(device='cpu')"
        )
    head = _head_names(model, new_head)
    state, description = read_state_dict(source, trust_pickle=trust_pickle)
    triage = _triage(model, state, targets, key_map, strip_prefixes, head, adapt_first_conv)
    if triage.mismatches and on_mismatch == "error":
        raise ValueError(_mismatch_message(triage.mismatches))
    loaded_names = _with_tied(targets, [m.target for m in triage.copies + triage.adapts])
    to_freeze = _freeze_names(model, loaded_names, freeze)

    loaded, adapted = _copy(triage, targets)
    loaded += _tied_rows(loaded, loaded_names, targets)
    mismatched_names = {row.name for row in triage.mismatches}
    accounted = loaded_names | head | mismatched_names
    missing = [n for n in targets if n not in accounted]
    reasons = {n: "missing from checkpoint" for n in missing}
    reasons.update({n: "shape mismatch" for n in mismatched_names})
    reasons.update({n: "new head" for n in head})
    rest = [n for n, _ in model.named_parameters() if n not in loaded_names]
    reinitialized, init_plan = _init_rest(
        model, rest, reasons, init_rest, example_input, seed, generator
    )
    for name in to_freeze:
        targets[name].requires_grad_(False)
    action = "left as constructed" if init_rest is None else "re-initialized"
    report = LoadReport(
        source=description,
        alignment=triage.alignment,
        loaded=tuple(loaded),
        missing=tuple(missing),
        unexpected=tuple(triage.unexpected),
        mismatched=tuple(replace(row, action=action) for row in triage.mismatches),
        adapted=tuple(adapted),
        reinitialized=tuple(reinitialized),
        ignored=tuple(triage.ignored),
        frozen=tuple(to_freeze),
        init_plan=init_plan,
    )
    logger.info("load_pretrained from %s: %s", description, report.summary())
    return report


@dataclass
class _Triage:
    """Where each checkpoint tensor goes, decided before anything is written."""

    alignment: str = ""
    copies: list[_Match] = field(default_factory=list)
    adapts: list[_Match] = field(default_factory=list)
    mismatches: list[Mismatched] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)


def _triage(model, state, targets, key_map, strip_prefixes, head, adapt_first_conv) -> _Triage:
    triage = _Triage()
    buffers = dict(model.named_buffers(remove_duplicate=False))
    transient = set(buffers) - set(targets)
    mapped = apply_key_map(state, key_map)
    triage.ignored += [Ignored(k, "dropped by key_map") for k, v in mapped.items() if v is None]
    kept = {v: k for k, v in mapped.items() if v is not None}  # mapped name -> checkpoint name
    model_shapes = {n: tuple(t.shape) for n, t in {**buffers, **targets}.items()}
    shapes = {name: tuple(state[key].shape) for name, key in kept.items()}
    triage.alignment, renamed = align(shapes, model_shapes, strip_prefixes)
    first_conv = first_conv_weight(model) if adapt_first_conv else None
    for name, target in renamed.items():
        key, value = kept[name], state[kept[name]]
        if target in transient:
            reason = "non-persistent buffer: the model computes it and does not save it"
            triage.ignored.append(Ignored(key, reason))
        elif target in head:
            triage.ignored.append(Ignored(key, "new head: initialized afresh"))
        elif target not in targets:
            triage.unexpected.append(key)
        elif value.shape == targets[target].shape:
            triage.copies.append(_Match(key, target, value))
        elif target == first_conv and _channels_only(value.shape, targets[target].shape):
            triage.adapts.append(_Match(key, target, value))
        else:
            shape, model_shape = tuple(value.shape), tuple(targets[target].shape)
            triage.mismatches.append(Mismatched(target, key, shape, model_shape, action=""))
    if not (triage.copies or triage.adapts or triage.mismatches):
        raise ValueError(_nothing_matches(state, targets, head))
    if not (triage.copies or triage.adapts):
        raise ValueError(_all_mismatched(triage.mismatches))
    # Rows follow the model's order (a safetensors file stores its names sorted).
    order = {name: i for i, name in enumerate(targets)}
    triage.copies.sort(key=lambda m: order[m.target])
    triage.mismatches.sort(key=lambda m: order[m.name])
    return triage


def _channels_only(source: torch.Size, model: torch.Size) -> bool:
    """True if two conv weight shapes differ only in the input-channel axis (axis 1)."""
    return len(source) == len(model) >= 3 and source[:1] + source[2:] == model[:1] + model[2:]


def _copy(triage: _Triage, targets) -> tuple[list[Loaded], list[Adapted]]:
    loaded, adapted = [], []
    with torch.no_grad():
        for m in triage.copies:
            target = targets[m.target]
            target.copy_(m.value)
            dtypes = (_dtype(m.value.dtype), _dtype(target.dtype))
            loaded.append(Loaded(m.target, m.source_key, tuple(target.shape), *dtypes))
        for m in triage.adapts:
            target = targets[m.target]
            target.copy_(adapt_input_channels(m.value, target.shape[1]))
            shapes = (tuple(m.value.shape), tuple(target.shape))
            adapted.append(Adapted(m.target, m.source_key, *shapes, _adapt_rule(*shapes)))
    return loaded, adapted


def _adapt_rule(source: tuple[int, ...], target: tuple[int, ...]) -> str:
    """Say what :func:`adapt_input_channels` did to a first conv: fold or repeat, and counts."""
    c, m = source[1], target[1]
    if m < c:
        return f"first conv: {c} input channels folded into {m} (summed cyclically)"
    return f"first conv: {c} input channels repeated onto {m}, each copy divided by its count"


def _with_tied(targets, names: list[str]) -> set[str]:
    """``names`` plus every other name of the same tensors (tied weights)."""
    by_id: dict[int, list[str]] = {}
    for name, tensor in targets.items():
        by_id.setdefault(id(tensor), []).append(name)
    return {alias for n in names for alias in by_id[id(targets[n])]}


def _tied_rows(loaded: list[Loaded], loaded_names: set[str], targets) -> list[Loaded]:
    """Rows for names loaded through a tied alias (same tensor as a loaded name)."""
    rows = {row.name: row for row in loaded}
    by_id = {id(targets[row.name]): row for row in loaded}
    return [
        replace(by_id[id(targets[n])], name=n)
        for n in sorted(loaded_names - set(rows))
        if id(targets[n]) in by_id
    ]


def _head_names(model: nn.Module, new_head) -> set[str]:
    if new_head is None:
        return set()
    names = [n for n, _ in model.named_parameters()]
    if new_head == "auto":
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(
                "new_head='auto' takes the last nn.Linear as the classifier, and the model has "
                "none; pass the head's name or patterns, e.g. new_head='fc'"
            )
        if linears[-1] == "":
            return set(names)
        patterns = (linears[-1],)
    else:
        patterns = _patterns(new_head, "new_head")
    _all_used(patterns, names, "new_head", "parameter")
    return {n for n in names if matches_any(n, patterns)}


def _freeze_names(model: nn.Module, loaded: set[str], freeze) -> list[str]:
    if freeze is None or freeze is False:
        return []
    candidates = [n for n, _ in model.named_parameters() if n in loaded]
    if freeze is True:
        return candidates
    patterns = _patterns(freeze, "freeze")
    _all_used(patterns, candidates, "freeze", "loaded parameter")
    return [n for n in candidates if matches_any(n, patterns)]


def _patterns(value, option: str) -> tuple[str, ...]:
    patterns = (value,) if isinstance(value, str) else value
    try:
        patterns = tuple(patterns)
    except TypeError:
        patterns = None
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise TypeError(
            f"{option} must be a non-empty pattern or sequence of patterns (glob or module "
            f"prefix, e.g. 'fc' or 'encoder.*'); got {option}={value!r}"
        )
    return patterns


def _all_used(patterns: tuple[str, ...], names: list[str], option: str, what: str) -> None:
    # A pattern that selects nothing is almost always a typo; failing beats a silent no-op.
    unused = [p for p in patterns if not any(matches_any(n, (p,)) for n in names)]
    if unused:
        raise ValueError(
            f"{option} pattern(s) {unused} match no {what}; {what}s are e.g. {names[:6]}"
        )


def _init_rest(model, rest, reasons, init_rest, example_input, seed, generator):
    """Initialize parameters ``rest`` (none of them loaded) by the policy; return report rows."""
    shapes = dict(model.named_parameters())
    if not rest or init_rest is None:
        rule = "left as constructed (init_rest=None)"
        return [Reinitialized(n, tuple(shapes[n].shape), reasons[n], rule) for n in rest], None
    from initlab.policy import plan as make_plan

    init_plan = make_plan(model, init_rest, example_input=example_input, only=rest)
    stray = sorted({row.name for row in init_plan.rows} - set(rest))
    if stray:
        # The policy must never touch a loaded tensor; refuse rather than overwrite.
        raise RuntimeError(f"the init plan includes loaded tensors {stray[:5]}; nothing applied")
    init_plan.apply(seed=seed, generator=generator)
    rules = {row.name: _describe(row) for row in init_plan.rows}
    rows = [
        Reinitialized(
            n, tuple(shapes[n].shape), reasons[n], rules.get(n, "not planned: as constructed")
        )
        for n in rest
    ]
    return rows, init_plan.to_dict()


def _describe(row) -> str:
    """One line from a policy plan row: its rule and, for random draws, the exact scale."""
    if row.distribution == "uniform":
        return f"{row.rule}: U(-{row.bound:.4g}, {row.bound:.4g})"
    if row.distribution == "normal":
        return f"{row.rule}: N(0, {row.std:.4g}^2)"
    if row.distribution == "truncated_normal":
        return f"{row.rule}: N(0, {row.std:.4g}^2) cut to +-{row.bound:.4g}"
    return f"{row.rule} ({row.distribution})"


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _nothing_matches(state, targets, head) -> str:
    left = [k for k in targets if k not in head]
    return (
        "no checkpoint tensor matches a model tensor by name, so nothing would load. "
        f"Checkpoint names: {sorted(state)[:5]}; model names: {left[:5]}. "
        "Map them with key_map (dict or callable) or strip_prefixes (e.g. ('module.',))"
    )


def _all_mismatched(mismatches: list[Mismatched]) -> str:
    first = mismatches[0]
    return (
        f"every checkpoint tensor that matches a model name differs in shape "
        f"({len(mismatches)} of them, e.g. {first.name}: checkpoint {first.source_shape} vs "
        f"model {first.model_shape}), so nothing would load: the checkpoint is of another "
        "architecture or size. Build the model with the checkpoint's sizes"
    )


def _mismatch_message(mismatches: list[Mismatched]) -> str:
    lines = [
        f"  {m.name} (checkpoint {m.source_key}): checkpoint {m.source_shape} vs model "
        f"{m.model_shape}"
        for m in mismatches
    ]
    return (
        f"{len(mismatches)} checkpoint tensor(s) differ in shape from the model "
        "(on_mismatch='error'):\n" + "\n".join(lines) + "\n"
        "Pass on_mismatch='reinit' to initialize them by the policy instead, or "
        "new_head=... to declare a new classifier"
    )
