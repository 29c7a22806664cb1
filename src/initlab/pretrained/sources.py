"""Read a checkpoint into a flat ``{name: tensor}`` mapping without running code from it.

Accepted sources, safest first:

- an in-memory state_dict (any mapping of names to tensors) or an ``nn.Module`` (its state_dict);
- a ``.safetensors`` file, read by the ``safetensors`` library: a JSON header plus raw bytes, so
  reading it cannot execute anything;
- a sharded checkpoint described by an index JSON (``*.safetensors.index.json`` or
  ``pytorch_model.bin.index.json``: ``{"weight_map": {tensor name: shard file}}``);
- a PyTorch pickle (``.pt``, ``.pth``, ``.bin``, ``.ckpt``), read only with
  ``torch.load(weights_only=True)``, whose restricted unpickler admits tensors and plain
  containers and refuses every other global (``os.system``, ``builtins.exec``, ...) before
  calling it;
- a directory in the Hugging Face layout (``model.safetensors``, its sharded index, or
  ``pytorch_model.bin`` and its index), safetensors preferred.

Checkpoints often wrap the state_dict: ``{"state_dict": ...}`` (PyTorch Lightning),
``{"model": ...}``, ``{"model_state_dict": ...}``, ``{"module": ...}`` (DeepSpeed),
``{"net": ...}``; these wrappers are unwrapped (repeatedly) and their other entries (epoch,
optimizer state) ignored.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["CheckpointReadError", "PickleRefusedError", "read_state_dict", "WRAPPER_KEYS"]

logger = logging.getLogger(__name__)

#: Keys under which common training frameworks store the model's state_dict, tried in order.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# Files looked for in a directory, safest first (Hugging Face names).
_DIRECTORY_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


class PickleRefusedError(ValueError):
    """A PyTorch checkpoint needs full unpickling, which could run arbitrary code; not loaded."""


class CheckpointReadError(ValueError):
    """A checkpoint file cannot be read: truncated, corrupted, or not of the format its name says.

    The message names the file and the reader's own error (kept as ``__cause__``): a truncated
    ``torch.save`` zip, a pickle cut short (``EOFError``), bytes that are no pickle
    (``UnicodeDecodeError``, an unknown opcode), a safetensors header that does not parse, an
    index that is not JSON.
    """


def read_state_dict(source, *, trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    """Read ``source`` into a flat ``{name: tensor}`` dict on the CPU, never running its code.

    Args:
        source: a mapping of names to tensors (a state_dict, possibly wrapped), an ``nn.Module``,
            or a path (str or PathLike) to a ``.safetensors`` file, a ``.pt``/``.pth``/``.bin``/
            ``.ckpt`` file, an index JSON of a sharded checkpoint, or a directory holding one
            of ``model.safetensors``, ``model.safetensors.index.json``, ``pytorch_model.bin``,
            ``pytorch_model.bin.index.json``.
        trust_pickle: load PyTorch pickles with full unpickling (``weights_only=False``). Only
            for files from a trusted source: unpickling can run any code. Emits a warning.

    Returns:
        ``(state, description)``: the tensors by name, and a short description of the source
        for the report.

    Raises:
        PickleRefusedError: a pickle needs more than tensors and plain containers, and
            ``trust_pickle`` is False; nothing in the file has run.
        CheckpointReadError: a file is truncated, corrupted or not of the format its name
            says (the message names the file and the reader's error).
        FileNotFoundError: a path, or a shard named by an index, does not exist.
        ValueError: an unknown file type, a shard outside the index's directory, an index
            that names tensors its shards lack, or an empty checkpoint.
        TypeError: ``source`` is of an unsupported type, or holds entries that are not tensors.
    """
    if isinstance(source, nn.Module):
        return dict(source.state_dict()), f"module {type(source).__name__}"
    if isinstance(source, Mapping):
        return _flat(source, "source"), "in-memory state_dict"
    if isinstance(source, (str, os.PathLike)):
        path = _resolve(Path(source))
        return _flat(_read_path(path, trust_pickle), str(path)), str(path)
    raise TypeError(
        "source must be a state_dict (mapping of names to tensors), an nn.Module, or a path to "
        f"a checkpoint; got source of type {type(source).__name__}"
    )


def _resolve(path: Path) -> Path:
    """Return the checkpoint file to read: ``path`` itself, or the best file in a directory."""
    if not path.is_dir():
        return path
    for name in _DIRECTORY_FILES:
        if (path / name).is_file():
            logger.debug("reading %s from directory %s", name, path)
            return path / name
    raise FileNotFoundError(
        f"directory {str(path)!r} holds no checkpoint; looked for {list(_DIRECTORY_FILES)}"
    )


def _read_path(path: Path, trust_pickle: bool):
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    name = path.name.lower()
    if name.endswith(".index.json"):
        return _read_index(path, trust_pickle)
    if name.endswith(".safetensors"):
        return _read_safetensors(path)
    if name.endswith(_PICKLE_SUFFIXES):
        return _read_pickle(path, trust_pickle)
    raise ValueError(
        f"cannot tell the format of {str(path)!r} from its name; accepted: .safetensors, "
        f"{', '.join(_PICKLE_SUFFIXES)}, *.index.json, or a directory"
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (OSError, MemoryError):
        raise
    except Exception as error:  # safetensors raises its own SafetensorError, among others
        raise CheckpointReadError(_unreadable(path, "a safetensors file", error)) from error


def _read_pickle(path: Path, trust_pickle: bool):
    if trust_pickle:
        warnings.warn(
            f"trust_pickle=True: fully unpickling {str(path)!r}, which runs any code the file "
            "contains; do this only for files from a trusted source, and prefer converting "
            "them to safetensors once",
            UserWarning,
            stacklevel=4,
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except (OSError, MemoryError):
        raise
    except pickle.UnpicklingError as error:
        if not trust_pickle and _needs_code(str(error)):
            raise PickleRefusedError(_refusal(path, str(error))) from None
        # torch wraps its restricted unpickler's error in a paragraph of advice; the wrapped
        # one ("Unsupported operand 139") says what is wrong with the bytes.
        inner = error.__context__ if isinstance(error.__context__, Exception) else error
        raise CheckpointReadError(_unreadable(path, _TORCH, inner, trust_pickle)) from error
    except Exception as error:  # EOFError, UnicodeDecodeError, RuntimeError (zip), ...
        raise CheckpointReadError(_unreadable(path, _TORCH, error, trust_pickle)) from error


# What torch's restricted unpickler says when a pickle asks for more than tensors and plain
# containers (torch/_weights_only_unpickler.py): a global, an object to build or call. Its
# other errors (unknown opcode, a stream cut short) mean the bytes are not a sound pickle.
_CODE_MARKERS = ("GLOBAL", "Can only create new object", "call reduce", "Can only build")


def _needs_code(torch_message: str) -> bool:
    return any(marker in torch_message for marker in _CODE_MARKERS)


_TORCH = "a PyTorch checkpoint"


def _unreadable(path: Path, what: str, error: BaseException, trusted: bool = False) -> str:
    # Reader messages can run to a paragraph (torch's zip reader); its first line says it.
    lines = str(error).strip().splitlines()
    detail = f"{type(error).__name__}: {lines[0][:300]}" if lines else type(error).__name__
    if trusted:  # full unpickling also fails on a class this environment lacks
        cause = "the file is corrupted, or its pickle needs code this environment lacks"
    else:
        cause = "the file is truncated or corrupted, or is not what its name says"
    return (
        f"cannot read checkpoint {str(path)!r} as {what} ({detail}); {cause}: download or "
        "save it again"
    )


def _refusal(path: Path, torch_message: str) -> str:
    # torch names the offending global ("Unsupported global: GLOBAL io.open ..."); its advice
    # (weights_only=False, add_safe_globals) is exactly what we must not recommend blindly, so
    # only the name is kept.
    match = re.search(r"GLOBAL ([\w.]+)", torch_message)
    reason = (
        f"it calls or builds {match.group(1)}"
        if match
        else "torch's restricted unpickler rejected it"
    )
    return (
        f"refused to load {str(path)!r}: it is a pickle that needs full unpickling, and "
        f"unpickling can run arbitrary code ({reason}). Nothing in the file was run. "
        "Convert it to safetensors in an environment you trust (safetensors.torch.save_file), "
        "or, only if you trust the file, pass trust_pickle=True"
    )


def _read_index(path: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    try:
        index = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointReadError(_unreadable(path, "a JSON index", error)) from error
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(
            f"index {str(path)!r} has no 'weight_map' (a mapping of tensor names to shard files)"
        )
    folder = path.parent.resolve()
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = (folder / shard).resolve()
        # An index is data from the checkpoint's author: it must not reach outside its folder.
        if folder not in shard_path.parents:
            raise ValueError(
                f"index {str(path)!r} names shard {shard!r} outside its directory; refused"
            )
        if shard_path.name.lower().endswith(".index.json"):
            raise ValueError(f"index {str(path)!r} names another index {shard!r} as a shard")
        tensors = _flat(_read_path(shard_path, trust_pickle), str(shard_path))
        state.update({k: v for k, v in tensors.items() if weight_map.get(k) == shard})
    lacking = sorted(set(weight_map) - set(state))
    if lacking:
        raise ValueError(
            f"index {str(path)!r} names {len(lacking)} tensor(s) its shards lack: {lacking[:10]}"
        )
    return state


def _flat(obj, where: str) -> dict[str, torch.Tensor]:
    """Unwrap framework wrappers and check that every entry is a tensor."""
    if isinstance(obj, nn.Module):  # torch.save(model), loadable only with trust_pickle
        obj = obj.state_dict()
    while isinstance(obj, Mapping) and not _all_tensors(obj):
        inner = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        logger.debug("unwrapping checkpoint entry %r", inner)
        obj = obj[inner]
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"{where} holds a {type(obj).__name__}, not a mapping of names to tensors "
            "(a state_dict); save model.state_dict() instead of the model object"
        )
    others = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if others:
        raise TypeError(
            f"{where} holds entries that are not tensors: {others[:10]}; expected a state_dict "
            f"or one wrapped under one of {list(WRAPPER_KEYS)}"
        )
    if not obj:
        raise ValueError(f"{where} holds no tensors")
    return {str(k): v for k, v in obj.items()}


def _all_tensors(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())
