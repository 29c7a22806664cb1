"""Your own model: an importable factory ``package.module:function`` and its keyword arguments.

Wherever a zoo name is accepted (:func:`~initlab.zoo.models.build_model`, ``initlab compare
--model``), a *factory spec* ``MODULE:ATTRIBUTE`` names instead any importable callable that
returns an ``nn.Module`` (``ATTRIBUTE`` may be dotted, ``pkg.mod:Class.build``). The module is
imported as ``python -c "import MODULE"`` would from the current directory; nothing is
evaluated. Keyword arguments come from ``NAME=VALUE`` text (:func:`parse_model_args`), read as
Python literals by :func:`ast.literal_eval`, never executed.

Errors are :class:`~initlab._checks.ArgumentError` naming the library argument (``model`` for
the spec, ``model_params`` for an argument) and echoing the spec, so the command line can print
the flag that set it.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import keyword
import os
import re
from collections.abc import Callable, Iterable

from torch import nn

from initlab._checks import ArgumentError
from initlab._imports import import_user_module

__all__ = [
    "build_factory_model",
    "factory_params",
    "format_model",
    "is_factory_spec",
    "parse_model_args",
    "resolve_factory",
    "signature_params",
]

_SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
#: A bare word read as text: starts with a letter or ``_``; letters, digits, ``_ . -`` after.
_WORD = re.compile(r"^[A-Za-z_][\w.\-]*$")
#: JSON's spellings, accepted for ``--model-param`` values written as JSON before 0.x.
_JSON_WORDS = {"true": True, "false": False, "null": None}


def is_factory_spec(name: object) -> bool:
    """Whether ``name`` is meant as a factory spec (a string containing ``:``), not a zoo name."""
    return isinstance(name, str) and ":" in name


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """Import the callable that ``spec`` (``package.module:function``) names and return it.

    The module is imported with :func:`importlib.import_module`; when it is not found and the
    current directory is not on ``sys.path`` (the ``initlab`` console script), the current
    directory is appended to ``sys.path`` and the import tried once more, so a ``models.py``
    beside the command is found as ``python -m`` would find it.

    Args:
        spec: ``MODULE:ATTRIBUTE``; ``MODULE`` a dotted module path, ``ATTRIBUTE`` a dotted
            attribute path inside it.

    Returns:
        The callable.

    Raises:
        ArgumentError: (argument ``model``) ``spec`` is not ``MODULE:ATTRIBUTE``; the module
            cannot be imported (the import's own error is quoted); the attribute does not
            exist; or it is not callable.

    Example:
        >>> resolve_factory("initlab.zoo.models:MLP").__name__
        'MLP'
    """
    if not isinstance(spec, str) or not _SPEC.match(spec):
        raise ArgumentError(
            "model",
            "a model factory must be MODULE:FUNCTION, a dotted module path and a dotted name "
            f"inside it, e.g. mypackage.models:build_net; got model={spec!r}",
        )
    module_name, _, attribute = spec.partition(":")
    module = _import(module_name, spec)
    target = module
    for i, part in enumerate(attribute.split(".")):
        if not hasattr(target, part):
            where = module_name + "".join(f".{p}" for p in attribute.split(".")[:i])
            found = sorted(
                n for n in dir(target) if not n.startswith("_") and callable(getattr(target, n))
            )
            listed = ", ".join(found[:12]) + (", ..." if len(found) > 12 else "")
            raise ArgumentError(
                "model",
                f"model factory {spec!r}: {where} has no attribute {part!r} "
                f"(its public callables: {listed or 'none'})",
            )
        target = getattr(target, part)
    if not callable(target):
        raise ArgumentError(
            "model",
            f"model factory {spec!r} is a {type(target).__name__}, not a callable; name a "
            "function or class that returns an nn.Module",
        )
    return target


def _import(module_name: str, spec: str):
    try:
        return import_user_module(module_name)
    except ModuleNotFoundError as error:
        raise ArgumentError(
            "model",
            f"model factory {spec!r}: cannot import module {module_name!r} "
            f"({type(error).__name__}: {error}); it must be importable from {os.getcwd()} or "
            "sys.path",
        ) from None
    except Exception as error:  # noqa: BLE001 - a module that fails while importing
        raise ArgumentError(
            "model",
            f"model factory {spec!r}: importing module {module_name!r} failed with "
            f"{type(error).__name__}: {error}",
        ) from None


def factory_params(spec: str) -> dict[str, object]:
    """Return the keyword arguments the factory ``spec`` names accepts, each with its default.

    A parameter without a default maps to :data:`inspect.Parameter.empty`; ``**kwargs`` and
    positional-only parameters are not listed. A callable whose signature cannot be read
    (some builtins) gives ``{}``.

    Raises:
        ArgumentError: as :func:`resolve_factory`.
    """
    return signature_params(resolve_factory(spec))


def signature_params(factory: Callable) -> dict[str, object]:
    """``{name: default}`` of ``factory``'s keyword parameters (see :func:`factory_params`)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in signature.parameters.values() if p.kind in kinds}


def build_factory_model(spec: str, params: dict | None = None) -> nn.Module:
    """Call the factory ``spec`` names with keyword ``params``; check it returns an ``nn.Module``.

    Args:
        spec: ``MODULE:FUNCTION`` (:func:`resolve_factory`).
        params: keyword arguments for the call.

    Returns:
        The model the factory returned.

    Raises:
        ArgumentError: as :func:`resolve_factory` (argument ``model``); a keyword the factory
            does not take (argument ``model_params``, the accepted names listed); the call
            raises (argument ``model``, the exception quoted with the spec and arguments); the
            result is not an ``nn.Module`` (argument ``model``).
    """
    factory = resolve_factory(spec)
    params = dict(params or {})
    accepted = signature_params(factory)
    unknown = [k for k in params if k not in accepted]
    if unknown and not _takes_var_keyword(factory):
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ArgumentError(
            "model_params",
            f"model factory {spec!r} takes the keyword arguments {sorted(accepted) or 'none'}; "
            f"got {unknown[0]}={params[unknown[0]]!r}{hint}",
        )
    call = format_model(spec, params)
    try:
        model = factory(**params)
    except Exception as error:  # noqa: BLE001 - any failure of user code, reported with the call
        raise ArgumentError(
            "model", f"calling the model factory {call} raised {type(error).__name__}: {error}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ArgumentError(
            "model",
            f"the model factory {call} must return a torch.nn.Module; it returned "
            f"{type(model).__name__}",
        )
    return model


def _takes_var_keyword(factory: Callable) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True  # unreadable signature: let the call decide
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def format_model(name: str, params: dict | None) -> str:
    """``name(key=value, ...)`` as it would be called, e.g. ``pkg.mod:net(width=8)``."""
    inner = ", ".join(f"{k}={v!r}" for k, v in (params or {}).items())
    return f"{name}({inner})"


def parse_model_args(pairs: Iterable[str], argument: str = "model_params") -> dict:
    """Parse ``NAME=VALUE`` texts into keyword arguments; VALUE is a Python literal.

    Each VALUE is read by :func:`ast.literal_eval` (numbers, strings in quotes, ``True``,
    ``False``, ``None``, lists, tuples, dicts of those), never evaluated; tuples are passed
    as lists (as ``config.json`` stores them, so a resumed comparison builds the same model)
    and values JSON cannot hold (sets, bytes, complex, NaN) are refused. Two more forms
    are accepted because users type them: JSON's ``true``, ``false``, ``null``; and a bare
    word (a letter or ``_`` first, then letters, digits, ``_``, ``.``, ``-``), read as that
    text, so ``norm=batch`` means ``norm='batch'``. Anything else that is not a literal, such
    as ``__import__('os')`` or ``1+``, is refused.

    Args:
        pairs: the texts, e.g. ``["width=8", "channels=[8, 16]", "norm=batch"]``.
        argument: the library argument named by errors.

    Returns:
        ``{name: value}`` in the order given (a repeated name keeps the last value).

    Raises:
        ArgumentError: a text without ``=``, a name that is not an identifier, or a value
            that is neither a literal nor a bare word (the message says how to quote text).

    Example:
        >>> parse_model_args(["width=8", "lr=1e-3", "channels=[8,16]", "norm=batch", "s='a b'"])
        {'width': 8, 'lr': 0.001, 'channels': [8, 16], 'norm': 'batch', 's': 'a b'}
    """
    params = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier() or keyword.iskeyword(name):
            raise ArgumentError(
                argument,
                f"a model argument must be NAME=VALUE with NAME a Python identifier, e.g. "
                f"width=8; got {pair!r}",
            )
        params[name] = _stored(name, _literal(name, text.strip(), argument), argument)
    return params


def _stored(name: str, value, argument: str):
    """``value`` as ``config.json`` stores it: tuples as lists; refuse what JSON cannot hold.

    A resumed comparison rebuilds its model from ``config.json``, so a value that would come
    back different (a set, bytes, a complex number, a dict with non-text keys, NaN) is refused
    here rather than silently changed on ``--resume``.
    """
    if isinstance(value, (list, tuple)):
        return [_stored(name, v, argument) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _stored(name, v, argument) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return value
    raise ArgumentError(
        argument,
        f"model argument {name!r}: {value!r} ({type(value).__name__}) cannot be stored in "
        "config.json, so a resumed comparison could not rebuild the model; use numbers, "
        "strings, True/False/None and lists or dicts (text keys) of them",
    )


def _literal(name: str, text: str, argument: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if text in _JSON_WORDS:
        return _JSON_WORDS[text]
    if _WORD.match(text):
        return text
    raise ArgumentError(
        argument,
        f"the value of model argument {name!r} must be a Python literal (a number, a quoted "
        f"string, True/False/None, or a list, tuple or dict of them) or a bare word; got "
        f"{name}={text!r}, which is not a literal and is never evaluated (quote text: "
        f"{name}=\"'...'\")",
    )


def check_output(model: nn.Module, inputs, labels, name: str) -> int:
    """Check that ``model`` maps ``inputs`` to logits ``(B, classes)`` that fit ``labels``.

    One forward pass of the first two inputs, in eval mode and without gradients (the mode is
    restored), so no BatchNorm statistic changes.

    Args:
        model: the classifier.
        inputs: a batch ``(B, ...)``; labels: ``(B,)`` integer class indices.
        name: the zoo name or factory spec, for the message.

    Returns:
        The number of logits, ``classes``.

    Raises:
        ArgumentError: (argument ``model``) the forward pass fails, the output is not a 2-d
            tensor with one row per input, or a label is ``>= classes``.
    """
    import torch

    x = inputs[:2]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as error:  # noqa: BLE001 - user code, reported with the input's shape
        raise ArgumentError(
            "model",
            f"model {name!r} fails on a batch of shape {tuple(x.shape)}: "
            f"{type(error).__name__}: {error}",
        ) from None
    finally:
        model.train(training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != len(x):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ArgumentError(
            "model",
            f"model {name!r} must return logits (B, classes); for a batch of shape "
            f"{tuple(x.shape)} it returned {got}",
        )
    classes = out.shape[1]
    top = int(labels.max())
    if top >= classes:
        raise ArgumentError(
            "model",
            f"model {name!r} returns {classes} logits but the labels need {top + 1} "
            f"(labels up to {top}); give it {top + 1} outputs",
        )
    return classes
