"""Map checkpoint tensor names onto a model's names: user key maps, then prefix alignment.

Two causes of names that differ only by a prefix are common:

- the checkpoint was saved from a wrapper: ``nn.DataParallel``/DDP (``module.``),
  ``torch.compile`` (``_orig_mod.``), a Lightning module (``model.``), so its names carry a
  prefix the model lacks;
- the model wraps the checkpointed network: ``BertForSequenceClassification`` holds the encoder
  as ``bert.``, so the model's names carry a prefix the checkpoint lacks.

``strip_prefixes="auto"`` tries both: it strips a leading prefix (one or two dotted components)
from the checkpoint's names, from the model's names, or both, and keeps the alignment under
which the most checkpoint tensors land on a model tensor of the same shape, but only if that
is strictly more than with the names as they are, and only if it matches at least half of the
checkpoint's names.
A load never silently copies nothing: the caller raises when no name matches.

Weight norm has two spellings: ``torch.nn.utils.weight_norm`` (deprecated) stores ``weight_g``
and ``weight_v``, ``torch.nn.utils.parametrizations.weight_norm`` stores the same two tensors as
``parametrizations.weight.original0`` and ``original1``. :func:`weight_norm_names` translates a
checkpoint saved under one into a model built with the other, as Hugging Face's legacy renaming
does (``transformers/conversion_mapping.py``: ``.weight_g`` ->
``.parametrizations.weight.original0``, ``.weight_v`` -> ``.parametrizations.weight.original1``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Alignment", "align", "apply_key_map", "matches_any", "weight_norm_names"]

#: Wrapper prefixes tried first when ``strip_prefixes="auto"`` (the order breaks ties).
KNOWN_WRAPPERS = ("module.", "_orig_mod.", "model.")
# Auto alignment tries prefixes of at most this many dotted components ("module._orig_mod.").
_MAX_DEPTH = 2


@dataclass(frozen=True)
class Alignment:
    """A rename of checkpoint names: strip ``source_prefix``, then match under ``model_prefix``.

    A checkpoint name starting with ``source_prefix`` loses it; the result ``k`` is matched to
    the model's ``model_prefix + k`` when that exists, else to ``k`` itself.
    """

    source_prefix: str = ""
    model_prefix: str = ""

    def rename(self, key: str, model_keys: Collection[str]) -> str:
        """Return the model name that checkpoint name ``key`` maps to under this alignment."""
        if self.source_prefix and key.startswith(self.source_prefix):
            key = key[len(self.source_prefix) :]
        if self.model_prefix and self.model_prefix + key in model_keys:
            return self.model_prefix + key
        return key

    def describe(self) -> str:
        """Return a one-line human description (empty for the identity)."""
        parts = []
        if self.source_prefix:
            parts.append(f"stripped {self.source_prefix!r} from checkpoint names")
        if self.model_prefix:
            parts.append(f"matched under the model prefix {self.model_prefix!r}")
        return "; ".join(parts)


def apply_key_map(
    keys: Iterable[str], key_map: Mapping[str, str] | Callable[[str], str | None] | None
) -> dict[str, str | None]:
    """Return ``{checkpoint name: new name}``; ``None`` as the new name drops that tensor.

    Args:
        keys: the checkpoint's tensor names.
        key_map: ``None`` (names unchanged); a dict of exact renames (names not in it are kept;
            a value ``None`` drops the tensor); or a callable ``name -> new name or None``.

    Raises:
        TypeError: ``key_map`` is neither, or the callable returns a non-string.
        ValueError: two checkpoint names map to the same new name.
    """
    if key_map is None:
        rename = str
    elif isinstance(key_map, Mapping):

        def rename(k):
            return key_map.get(k, k)
    elif callable(key_map):
        rename = key_map
    else:
        raise TypeError(
            "key_map must be None, a dict {checkpoint name: model name} or a callable "
            f"name -> name; got key_map of type {type(key_map).__name__}"
        )
    mapped = {k: rename(k) for k in keys}
    bad = {k: v for k, v in mapped.items() if v is not None and not isinstance(v, str)}
    if bad:
        raise TypeError(f"key_map must return str or None; got {dict(list(bad.items())[:5])}")
    _no_collisions(mapped, "key_map")
    return mapped


def align(
    shapes: Mapping[str, tuple[int, ...]],
    model_shapes: Mapping[str, tuple[int, ...]],
    strip_prefixes,
) -> tuple[str, dict[str, str]]:
    """Choose how checkpoint names map to model names; return how, and ``{checkpoint: model}``.

    ``"auto"`` scores each candidate alignment by the number of checkpoint tensors that land on
    a model tensor of the same shape (then by names matched at all), and accepts the best one
    only if it beats the names as they are and matches at least half of the checkpoint's
    names: a prefix that happens to line up one stray tensor is not a wrapper.

    Args:
        shapes: checkpoint names (after the key map) and their shapes.
        model_shapes: the model's names (state_dict and non-persistent buffers) and shapes.
        strip_prefixes: ``"auto"`` (search prefixes on both sides as above), ``None`` (names
            as they are), or a sequence of checkpoint prefixes to strip, each removed
            repeatedly from the front of every name that has it (e.g. ``("module.",)``).

    Returns:
        ``(description, mapping)``: a one-line description of the renaming for the report
        (empty when names are used as they are), and each checkpoint name's model name.

    Raises:
        ValueError: ``strip_prefixes`` is a string other than ``"auto"``, or two checkpoint
            names end up with the same model name.
    """
    if strip_prefixes is None:
        return "", {k: k for k in shapes}
    if isinstance(strip_prefixes, str):
        if strip_prefixes != "auto":
            raise ValueError(
                "strip_prefixes must be 'auto', None or a sequence of prefixes such as "
                f"('module.',); got strip_prefixes={strip_prefixes!r}"
            )
        best = _best_alignment(shapes, model_shapes)
        mapped = {k: best.rename(k, model_shapes) for k in shapes}
        description = best.describe()
    else:
        prefixes = tuple(strip_prefixes)
        mapped = {k: _strip_all(k, prefixes) for k in shapes}
        changed = any(k != v for k, v in mapped.items())
        description = f"stripped {list(prefixes)} from checkpoint names" if changed else ""
    _no_collisions(mapped, "strip_prefixes")
    return description, mapped


def weight_norm_names(
    mapped: Mapping[str, str],
    shapes: Mapping[str, tuple[int, ...]],
    model_shapes: Mapping[str, tuple[int, ...]],
) -> tuple[str, dict[str, str]]:
    """Translate weight-norm names between the old and the parametrization spelling.

    A pair ``P.w_g``/``P.w_v`` whose model names are absent becomes
    ``P.parametrizations.w.original0``/``original1`` when the model has both with the same
    shapes, and the other way round. Only whole pairs are translated: the magnitude ``g`` and
    the direction ``v`` mean something only together (``w = g * v / ||v||``, Salimans and
    Kingma 2016), and no other parametrization in PyTorch stores two originals.

    Args:
        mapped: ``{checkpoint name: model name}`` after key map and alignment.
        shapes: checkpoint shapes by the names ``mapped`` is keyed by.
        model_shapes: the model's names and shapes.

    Returns:
        ``(description, mapping)``: a one-line description ("" when nothing was translated)
        and ``mapped`` with the translated names.
    """
    taken = set(mapped.values())
    pairs: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    for key, name in mapped.items():
        if name in model_shapes:
            continue
        twin = _weight_norm_twin(name)
        if twin is None:
            continue
        layer, other, half = twin
        if other not in taken and shapes[key] == model_shapes.get(other):
            pairs.setdefault(layer, {})[half] = (key, other)
    renamed = dict(mapped)
    done = [pair for pair in pairs.values() if len(pair) == 2]
    for pair in done:
        renamed.update(dict(pair.values()))
    if not done:
        return "", renamed
    return (
        f"weight-norm names translated for {len(done)} layer(s) "
        "(weight_g/weight_v <-> parametrizations.weight.original0/original1)",
        renamed,
    )


def _weight_norm_twin(name: str) -> tuple[tuple[str, str], str, str] | None:
    """``((module, tensor), the other spelling of name, "g" or "v")``, or None."""
    parts = name.split(".")
    leaf = parts[-1]
    if len(parts) >= 3 and parts[-3] == "parametrizations" and leaf in ("original0", "original1"):
        owner, tensor = parts[:-3], parts[-2]
        half = "g" if leaf == "original0" else "v"
        return (".".join(owner), tensor), ".".join([*owner, f"{tensor}_{half}"]), half
    if len(leaf) > 2 and leaf[-2:] in ("_g", "_v"):
        owner, tensor, half = parts[:-1], leaf[:-2], leaf[-1]
        original = "original0" if half == "g" else "original1"
        return (
            (".".join(owner), tensor),
            ".".join([*owner, "parametrizations", tensor, original]),
            half,
        )
    return None


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Return True if ``name`` matches a glob pattern or lies under a pattern used as a prefix.

    ``"bert.encoder"`` matches ``"bert.encoder.layer.0.output.dense.weight"`` (a module
    prefix); ``"*.bias"`` matches every bias (shell-style glob, :mod:`fnmatch`).
    """
    return any(fnmatch.fnmatchcase(name, p) or name.startswith(p + ".") for p in patterns)


def _best_alignment(shapes, model_shapes) -> Alignment:
    candidates = [
        Alignment(s, m)
        for s in ("", *_prefixes(shapes))
        for m in ("", *_prefixes(model_shapes))
        if not (s and m and s == m)
    ]

    def score(a: Alignment) -> tuple[int, int]:
        targets = [(k, a.rename(k, model_shapes)) for k in shapes]
        named = [(k, t) for k, t in targets if t in model_shapes]
        return sum(shapes[k] == model_shapes[t] for k, t in named), len(named)

    identity = score(Alignment())
    # max() keeps the first of equal scores: identity, then known wrappers, then shorter names.
    best = max(candidates, key=score)
    fits, named = score(best)
    if fits > identity[0] and 2 * named >= len(shapes):
        return best
    return Alignment()


def _prefixes(keys: Iterable[str]) -> list[str]:
    """Leading dotted prefixes of ``keys`` (1 to _MAX_DEPTH components), known wrappers first."""
    found = set()
    for k in keys:
        parts = k.split(".")[:-1]
        for depth in range(1, min(_MAX_DEPTH, len(parts)) + 1):
            found.add(".".join(parts[:depth]) + ".")

    def rank(p: str) -> tuple:
        known = p in KNOWN_WRAPPERS
        return (not known, KNOWN_WRAPPERS.index(p) if known else 0, p.count("."), p)

    return sorted(found, key=rank)


def _strip_all(key: str, prefixes: tuple[str, ...]) -> str:
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if p and key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def _no_collisions(mapped: Mapping[str, str | None], option: str) -> None:
    seen: dict[str, str] = {}
    for k, v in mapped.items():
        if v is None:
            continue
        if v in seen:
            raise ValueError(
                f"{option} maps two checkpoint tensors to the same name {v!r}: "
                f"{seen[v]!r} and {k!r}"
            )
        seen[v] = k
