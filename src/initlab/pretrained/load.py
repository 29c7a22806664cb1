"""Load pretrained weights into a model safely, report every tensor, initialize only the rest."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from initlab._checks import one_of
from initlab.policy.receipt import plan_source, record_model
from initlab.pretrained.adapt import adapt_input_channels, first_conv_weight
from initlab.pretrained.keys import align, apply_key_map, matches_any, weight_norm_names
from initlab.pretrained.report import (
    Adapted,
    Constructed,
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
    on_mismatch: str = "error",
    adapt_first_conv: bool = True,
    new_head: str | Iterable[str] | None = None,
    init_rest: str | None = "auto",
    example_input=None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    freeze: bool | str | Iterable[str] | None = None,
    trust_pickle: bool = False,
    receipt=None,
) -> LoadReport:
    r"""Load pretrained tensors into ``model`` in place; initialize only what was not loaded.

    All or nothing: every check below runs before the first tensor is written, and a load
    that raises leaves the model as it was. Steps, each recorded in the returned
    :class:`LoadReport`:

    1. Read ``source`` without running code from it (safetensors, or PyTorch pickles with
       ``torch.load(weights_only=True)``; see :mod:`initlab.pretrained.sources`). Wrappers
       ``{"state_dict": ...}``, ``{"model": ...}`` and the like are unwrapped.
    2. Rename checkpoint names: ``key_map`` first, then prefix alignment (``strip_prefixes``),
       then the two spellings of weight norm (``weight_g``/``weight_v`` and
       ``parametrizations.weight.original0``/``original1``, see
       :func:`~initlab.pretrained.keys.weight_norm_names`). A load that would copy nothing (no
       checkpoint name matches a model name, or every tensor that matches has another shape)
       raises: it never "succeeds" by copying nothing.
    3. Check every tensor to be copied, and refuse the load, listing every problem, if one
       has NaN or infinite entries (unless the model's own tensor holds the same non-finite
       value there, as a constructed mask does), is integer, bool or complex for a floating
       model tensor (complex for a real one), does not fit an integer model tensor exactly,
       overflows the model's dtype, holds no data (meta) or is not dense, or if two different
       checkpoint tensors go to one tied model tensor. A tensor of another shape is never
       partly copied or broadcast: the first convolution may be adapted to another number of
       input channels (:mod:`initlab.pretrained.adapt`); any other mismatch raises unless
       ``on_mismatch="reinit"`` or ``new_head`` allows it.
    4. Plan, with the policy ``init_rest``, the parameters that are not loaded (missing from
       the checkpoint, mismatched, or declared a new head); a plan that would touch a loaded
       tensor is refused.
    5. Apply the plan, which writes only those parameters (if it raises, they get their
       previous values back); then copy every checked tensor, bit for bit (cast only between
       floating dtypes, or exactly into integer ones); then freeze (``requires_grad=False``)
       the loaded parameters that ``freeze`` selects. The report lists as re-initialized only
       what the plan wrote: a parameter it leaves alone (no rule covers it, or an own init
       that does not write it, as for ``weight_g``/``weight_v`` of the old ``weight_norm``)
       is reported as left as constructed.

    Buffers: persistent buffers (BatchNorm running statistics) load like parameters; when the
    checkpoint lacks them they are reported missing and keep their constructed values (the
    policy initializes parameters only). Checkpoint entries for non-persistent buffers
    (``BertModel``'s ``embeddings.position_ids``, saved by older ``transformers`` versions) are
    ignored and reported as such: the model computes those itself and they are not part of its
    state. Tied parameters (one tensor under two names) count as loaded under both names when
    the checkpoint provides either, or both equal.

    Args:
        model: the module to load into, on any device; modified in place.
        source: a state_dict, an ``nn.Module``, or a path to a ``.safetensors`` file, a
            ``.pt``/``.pth``/``.bin``/``.ckpt`` file, a sharded ``*.index.json``, or a directory
            in the Hugging Face layout.
        key_map: renames applied to checkpoint names first: a dict
            ``{checkpoint name: model name}`` (unlisted names kept, value ``None`` drops the
            tensor: then the model's tensor is missing and initialized by the policy) or a
            callable ``name -> name or None``.
        strip_prefixes: ``"auto"`` strips a leading prefix such as ``module.``,
            ``_orig_mod.`` or ``model.`` from the checkpoint's names, or matches them under a
            prefix of the model's (``bert.``), when that matches strictly more names; a
            sequence such as ``("module.",)`` strips exactly those prefixes from checkpoint
            names; ``None`` uses names as they are.
        on_mismatch: ``"error"`` (default): a checkpoint tensor whose shape differs from the
            model's raises, listing every mismatch, before anything is written;
            ``"reinit"``: such tensors are left to the policy ``init_rest`` and reported.
        adapt_first_conv: adapt the first convolution's weight when only its number of input
            channels differs (fold for fewer channels, repeat and rescale for more, so that the
            response to a replicated input is preserved), instead of treating it as a mismatch.
        new_head: parameters to leave out of the load and initialize afresh, e.g. a classifier
            for a new task, whatever its shape: ``"auto"`` (the last ``nn.Linear`` in
            registration order, the usual classifier), or glob patterns / module prefixes
            (``"fc"``, ``"classifier.*"``). Their checkpoint tensors are reported as ignored,
            never as mismatched, so a head of another size loads under the default
            ``on_mismatch="error"``.
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
        receipt: None (default) records nothing; True attaches a
            :class:`~initlab.policy.receipt.Receipt` of every parameter and buffer after the
            load to the report as ``report.receipt`` (source: the checkpoint tensor and file, the
            adapted tensor and rule, the policy's rule for re-initialized parameters; hashes of
            the values as written, so that :func:`initlab.verify` can tell a tensor that is no
            longer its checkpoint's bytes); a path also writes it there, atomically (an
            ``OSError`` then comes after the model is loaded).

    Returns:
        The :class:`LoadReport`: loaded, missing, unexpected, mismatched (both shapes), adapted,
        re-initialized (with the policy's rule), left as constructed (with why), ignored and
        frozen tensors.

    Raises:
        ValueError: no checkpoint name matches the model; shapes differ and
            ``on_mismatch="error"`` (all listed, with the ``new_head`` patterns that would
            declare them a new head); a checkpoint tensor is refused as in step 3 (all listed,
            naming the source, the checkpoint and model names, and ``key_map={name: None}``
            where dropping the tensor is the way out); an option is unknown; a ``new_head`` or
            ``freeze`` pattern matches no suitable parameter; two checkpoint names map to one
            model name; the policy ``init_rest`` cannot initialize the rest (its message,
            after a line saying nothing was written).
        PickleRefusedError: (a ValueError) a pickle needs full unpickling and
            ``trust_pickle`` is False; nothing in it ran.
        CheckpointReadError: (a ValueError) a file is truncated or corrupted; names the file.
        TypeError: ``model`` is not an ``nn.Module``, ``source`` is unsupported, ``seed`` is
            not an int, ``generator`` not a ``torch.Generator`` or ``receipt`` not None, True
            or a path.
        RuntimeError: the plan for the rest includes a loaded tensor (nothing written).

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
    if not (receipt is None or receipt is True or isinstance(receipt, (str, os.PathLike))):
        raise TypeError(f"receipt must be None, True or a path; got receipt={receipt!r}")
    _check_seed(seed, generator)
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
        raise ValueError(_mismatch_message(triage.mismatches, description))
    writes = _checked_writes(triage, targets, description)
    loaded_names = _with_tied(targets, [m.target for m in triage.copies + triage.adapts])
    to_freeze = _freeze_names(model, loaded_names, freeze)
    mismatched_names = {row.name for row in triage.mismatches}
    accounted = loaded_names | head | mismatched_names
    missing = [n for n in targets if n not in accounted]
    reasons = {n: "missing from checkpoint" for n in missing}
    reasons.update({n: "shape mismatch" for n in mismatched_names})
    reasons.update({n: "new head" for n in head})
    rest = [n for n, _ in model.named_parameters() if n not in loaded_names]
    init_plan = _plan_rest(model, rest, loaded_names, init_rest, example_input)

    # The plan writes only the rest, so it may run first: if it fails, the rest is put back
    # and nothing loaded has been written yet.
    reinitialized, constructed = _init_rest(
        model, init_plan, rest, reasons, init_rest, seed, generator
    )
    _write(writes)  # every check passed
    for name in to_freeze:
        targets[name].requires_grad_(False)
    loaded, adapted = _rows(triage, targets)
    loaded += _tied_rows(loaded, loaded_names, targets)
    written = {row.name for row in reinitialized}
    report = LoadReport(
        source=description,
        alignment=triage.alignment,
        loaded=tuple(loaded),
        missing=tuple(missing),
        unexpected=tuple(triage.unexpected),
        mismatched=tuple(
            replace(row, action=_mismatch_action(row.name, written, loaded_names))
            for row in triage.mismatches
        ),
        adapted=tuple(adapted),
        reinitialized=tuple(reinitialized),
        constructed=tuple(constructed),
        ignored=tuple(triage.ignored),
        frozen=tuple(to_freeze),
        init_plan=None if init_plan is None else init_plan.to_dict(),
    )
    logger.info("load_pretrained from %s: %s", description, report.summary())
    if receipt is not None:
        made = _receipt(model, report, init_plan, seed)
        report = replace(report, receipt=made)
        if receipt is not True:
            made.save(receipt)
    return report


def _receipt(model, report: LoadReport, init_plan, seed):
    """The receipt of a finished load: each tensor's source from the report's rows."""
    sources = {}
    for row in report.loaded:
        sources[row.name] = {"kind": "checkpoint", "file": report.source,
                             "tensor": row.source_key, "dtype": row.source_dtype}  # fmt: skip
    for row in report.adapted:
        sources[row.name] = {"kind": "adapted", "file": report.source,
                             "tensor": row.source_key, "rule": row.rule}  # fmt: skip
    written = {row.name for row in report.reinitialized}
    if init_plan is not None:
        for row in init_plan.rows:
            for name in (row.name, *row.tied):
                if name in written:
                    sources[name] = plan_source(row)
    return record_model(model, sources, origin="load_pretrained", seed=seed)


def _check_seed(seed, generator) -> None:
    # The same checks as InitPlan.apply, made before anything is written.
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int; got seed={seed!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")


def _mismatch_action(name: str, written: set[str], loaded: set[str]) -> str:
    if name in written:
        return "re-initialized"
    if name in loaded:  # a tied alias of it was loaded under another name
        return "loaded through a tied name"
    return "left as constructed"


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
    translated, renamed = weight_norm_names(renamed, shapes, model_shapes)
    triage.alignment = "; ".join(filter(None, (triage.alignment, translated)))
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


@dataclass(frozen=True)
class _Write:
    """One model tensor and the value it will hold: checked, cast to its dtype, not yet written."""

    name: str
    tensor: torch.Tensor
    value: torch.Tensor


def _checked_writes(triage: _Triage, targets, description: str) -> list[_Write]:
    """Check every tensor the load would write; return one write per model tensor, or raise.

    Nothing is written here. Every problem is collected first, so that one error lists them
    all (the rules are in :func:`load_pretrained`, step 3).
    """
    problems: list[str] = []
    chosen: dict[int, tuple[_Match, torch.Tensor]] = {}  # id(model tensor) -> first value
    writes: list[_Write] = []
    jobs = [(m, False) for m in triage.copies] + [(m, True) for m in triage.adapts]
    for m, adapt in jobs:
        target = targets[m.target]
        where = f"{m.source_key!r} -> model {m.target!r}"
        problem = (
            _source_problem(m.value)
            or _cast_problem(m.value.dtype, target.dtype, m.source_key)
            or _target_problem(target)
        )
        if problem is None:
            value = adapt_input_channels(m.value, target.shape[1]) if adapt else m.value
            value = value.detach().to(target.dtype)
            problem = _value_problem(m.value, value, target, m.source_key)
        if problem is not None:
            problems.append(f"{where}: {problem}")
            continue
        first = chosen.setdefault(id(target), (m, value))
        if first[0] is m:
            writes.append(_Write(m.target, target, value))
        elif not _same_values(first[1], value):
            problems.append(_tie_conflict(first[0], m, first[1], value))
    if problems:
        raise ValueError(
            f"refused to load {description}: {len(problems)} checkpoint tensor(s) cannot be "
            "loaded as they are; nothing was written:\n"
            + "\n".join(f"  {p}" for p in problems[:_MAX_LISTED])
            + (
                f"\n  ... and {len(problems) - _MAX_LISTED} more"
                if len(problems) > _MAX_LISTED
                else ""
            )
        )
    return writes


_MAX_LISTED = 20


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "floating"
    return "bool" if dtype == torch.bool else "integer"


def _source_problem(value: torch.Tensor) -> str | None:
    if value.is_meta:
        return "the checkpoint tensor is on the meta device and holds no data"
    if value.layout != torch.strided:
        return f"the checkpoint tensor is {value.layout} (not dense); convert it with .to_dense()"
    return None


def _cast_problem(source: torch.dtype, model: torch.dtype, key: str) -> str | None:
    """Refuse a cast that changes what the values are (a floating model tensor takes only
    floating values; a real one no complex values); integer targets are checked exactly later."""
    have, want = _kind(source), _kind(model)
    if want == "floating" and have == "floating":
        return None
    if want == "complex" and have in ("floating", "complex"):
        return None
    if want in ("integer", "bool") and have != "complex":
        return None
    what = "drops the imaginary part" if have == "complex" else "would load them silently"
    return (
        f"{have} values ({_dtype(source)}) for the model's {_dtype(model)} tensor: casting "
        f"{what}; a checkpoint of weights holds floating tensors. Convert it yourself if "
        f"that is what it means, or drop it with key_map={{{key!r}: None}}"
    )


def _target_problem(target: torch.Tensor) -> str | None:
    # What makes Tensor.copy_ raise once the source is dense, of the shape and a valid dtype.
    if target.is_inference():
        return (
            "the model's tensor is an inference tensor (made under torch.inference_mode()), "
            "which cannot be written in place; build the model outside inference_mode"
        )
    if any(
        stride == 0 and size > 1 for stride, size in zip(target.stride(), target.shape, strict=True)
    ):
        return (
            "the model's tensor is an expanded view (stride 0: several entries share one "
            "memory location), which cannot be written entry by entry; give the module a "
            "tensor of its own (.clone())"
        )
    return None


def _value_problem(
    source: torch.Tensor, value: torch.Tensor, target: torch.Tensor, key: str
) -> str | None:
    """Refuse non-finite values, and values an integer model tensor cannot hold exactly."""
    if not (value.is_floating_point() or value.is_complex()):
        if torch.equal(value.to(source.dtype), source):
            return None
        return (
            f"its {_dtype(source.dtype)} values do not fit the model's {_dtype(value.dtype)} "
            "tensor exactly "
            f"(the cast would change them); convert it yourself, or drop it with "
            f"key_map={{{key!r}: None}}"
        )
    bad = ~torch.isfinite(value)
    if not bool(bad.any()):
        return None
    # A non-finite entry the model's own tensor already holds (a -inf mask it builds) is no
    # news; any other is.
    mine = target.detach().to(value.device)[bad]
    theirs = value[bad]
    same = (mine == theirs) | (torch.isnan(mine) & torch.isnan(theirs))
    if bool(same.all()):
        return None
    first = int(torch.nonzero(bad.flatten())[~same][0])  # flat index of the first new one
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(first), value.shape))
    count = f"{int((~same).sum())} of {value.numel()} entries"
    if bool(torch.isfinite(source).all()):
        largest = float(source.detach().abs().max())
        top = torch.finfo(value.dtype).max
        have, want = _dtype(source.dtype), _dtype(value.dtype)
        return (
            f"finite in the checkpoint ({have}), but {count} overflow to infinity in the "
            f"model's {want} (first at index {index}; largest |value| {largest:.4g}, {want} "
            f"holds at most {top:.6g}); build the model in a wider dtype"
        )
    nans = int(torch.isnan(theirs[~same]).sum())
    return (
        f"{count} are NaN or infinite ({nans} NaN; first at index {index}): the checkpoint "
        "is broken (a diverged run?). To load the rest and initialize this tensor by the "
        f"policy, drop it with key_map={{{key!r}: None}}"
    )


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a, b.to(a.device))


def _tie_conflict(first: _Match, second: _Match, a: torch.Tensor, b: torch.Tensor) -> str:
    if a.shape == b.shape and (a.is_floating_point() or a.is_complex()):
        gap = f"largest difference {float((a - b.to(a.device)).abs().max()):.4g}"
    else:
        gap = "different values"
    return (
        f"{first.source_key!r} -> model {first.target!r} and {second.source_key!r} -> model "
        f"{second.target!r}: the model ties these names (one shared tensor), but the "
        f"checkpoint holds two different tensors for them ({gap}); loading both would keep "
        f"whichever came last. Drop the one you do not want, e.g. "
        f"key_map={{{second.source_key!r}: None}}: the other then loads under both names"
    )


def _write(writes: list[_Write]) -> None:
    with torch.no_grad():
        for i, w in enumerate(writes):
            try:
                w.tensor.copy_(w.value)
            except Exception as error:  # pragma: no cover - the checks above foresee copy_'s
                raise RuntimeError(
                    f"writing {w.name!r} failed after {i} of {len(writes)} tensors were "
                    f"written ({type(error).__name__}: {error}); the checks before writing "
                    "did not foresee it, so the model is partly loaded: build it again"
                ) from error


def _rows(triage: _Triage, targets) -> tuple[list[Loaded], list[Adapted]]:
    loaded, adapted = [], []
    for m in triage.copies:
        target = targets[m.target]
        dtypes = (_dtype(m.value.dtype), _dtype(target.dtype))
        loaded.append(Loaded(m.target, m.source_key, tuple(target.shape), *dtypes))
    for m in triage.adapts:
        shapes = (tuple(m.value.shape), tuple(targets[m.target].shape))
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


def _plan_rest(model, rest, loaded: set[str], init_rest, example_input):
    """Plan (not apply) the policy for parameters ``rest``; refuse a plan touching a loaded one."""
    if not rest or init_rest is None:
        return None
    from initlab.policy import plan as make_plan

    init_plan = make_plan(model, init_rest, example_input=example_input, only=rest)
    stray = sorted({row.name for row in init_plan.rows} & loaded)
    if stray:
        # The policy must never touch a loaded tensor; refuse before anything is written.
        raise RuntimeError(
            f"the init plan includes loaded tensors {stray[:5]}; nothing was written"
        )
    return init_plan


def _init_rest(model, init_plan, rest, reasons, init_rest, seed, generator):
    """Apply the plan; return rows for the parameters it wrote and for those it left alone.

    A row of distribution ``none`` (no rule covers it) or ``skip`` (frozen) writes nothing; a
    ``keep`` row runs its module's own init, which may leave the tensor as it was (the
    ``reset_parameters`` of a layer under the old ``weight_norm`` writes the computed
    ``weight``, not ``weight_g``/``weight_v``): those are compared before and after. If the
    plan raises, every parameter of ``rest`` gets its previous value back.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    if init_plan is None:
        detail = "init_rest=None: not initialized"
        rows = [Constructed(n, tuple(params[n].shape), reasons[n], detail) for n in rest]
        return [], rows
    planned = {}
    for row in init_plan.rows:
        for name in (row.name, *row.tied):
            planned[name] = row
    before = {n: params[n].detach().clone() for n in rest}
    try:
        init_plan.apply(seed=seed, generator=generator)
    except Exception as error:
        with torch.no_grad():
            for n, value in before.items():
                params[n].copy_(value)
        if not isinstance(error, ValueError):
            raise
        raise ValueError(
            f"init_rest={init_rest!r} cannot initialize the parameters not loaded; nothing was "
            "written (init_rest=None leaves them as constructed):\n" + str(error)
        ) from error
    reinitialized, constructed = [], []
    for n in rest:
        row, shape = planned.get(n), tuple(params[n].shape)
        if row is None:
            constructed.append(Constructed(n, shape, reasons[n], "not in the policy's plan"))
        elif row.distribution in ("none", "skip"):
            constructed.append(Constructed(n, shape, reasons[n], row.reason))
        elif row.distribution == "keep" and torch.equal(before[n], params[n]):
            detail = f"{row.reason}; that init left this tensor unchanged"
            constructed.append(Constructed(n, shape, reasons[n], detail))
        else:
            reinitialized.append(Reinitialized(n, shape, reasons[n], _describe(row)))
    return reinitialized, constructed


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


def _mismatch_message(mismatches: list[Mismatched], description: str) -> str:
    lines = [
        f"  {m.name} (checkpoint {m.source_key}): checkpoint {m.source_shape} vs model "
        f"{m.model_shape}"
        for m in mismatches
    ]
    modules = list(dict.fromkeys(m.name.rpartition(".")[0] or m.name for m in mismatches))
    return (
        f"{len(mismatches)} checkpoint tensor(s) of {description} differ in shape from the "
        "model; nothing was written:\n" + "\n".join(lines) + "\n"
        f"If they are a new head (a classifier for other classes), pass new_head={modules!r}: "
        "initialized afresh, their checkpoint tensors ignored. To initialize every mismatched "
        "tensor by the policy init_rest instead, pass on_mismatch='reinit'"
    )
