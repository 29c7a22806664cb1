"""What every zoo model file shares: the activation and norm tables and the argument checks.

The checks raise :class:`~initlab._checks.ArgumentError` naming the model's own keyword argument
(``depth``, ``channels``), so that a caller can say which of its options set it; a value of the
wrong type stays a ``TypeError``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from initlab._checks import ArgumentError, one_of, positive_int

__all__ = ["ACTIVATIONS", "NORMS", "activation", "choice", "positive", "positive_ints"]

#: Activation names the zoo's MLPs accept, each mapped to its module class.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,  # negative slope 0.01, PyTorch's default
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    # No nonlinearity: a deep linear network (Saxe, McClelland and Ganguli 2014), whose
    # learning dynamics are solvable; an nn.Identity, so tracing sees no activation (gain 1).
    "linear": nn.Identity,
}
#: Norm names the zoo's MLPs accept (``norm=``), each mapped to its class (called with the width).
NORMS: dict[str, Callable[[int], nn.Module]] = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


def choice(argument: str, value, allowed) -> str:
    """Return ``value`` if it is one of ``allowed``.

    Raises:
        ArgumentError: it is not (the message of :func:`~initlab._checks.one_of`: the accepted
            values and a close match).
    """
    try:
        return one_of(argument, value, allowed)
    except ValueError as error:
        raise ArgumentError(argument, str(error)) from None


def positive(argument: str, value: int) -> int:
    """Return ``value`` if it is an int >= 1 (:func:`~initlab._checks.positive_int`).

    Raises:
        TypeError: ``value`` is not an int (a bool is refused).
        ArgumentError: ``value`` is below 1.
    """
    try:
        return positive_int(argument, value)
    except TypeError:
        raise
    except ValueError as error:
        raise ArgumentError(argument, str(error)) from None


def positive_ints(argument: str, value, count: int | None, example: str) -> tuple[int, ...]:
    """Return ``value`` as a tuple of ints >= 1: ``count`` of them, or one or more if None.

    A tuple-valued parameter given a single integer (``channels=8``) fails here, with an
    example, instead of later on unpacking; ``example`` is a valid value, e.g. ``[8,16]``.

    Raises:
        ArgumentError: ``value`` is not a list or tuple of that many ints >= 1.
    """
    size_ok = isinstance(value, (list, tuple)) and (
        len(value) == count if count is not None else len(value) > 0
    )
    if size_ok:
        try:
            return tuple(positive_int(f"{argument}[{i}]", v) for i, v in enumerate(value))
        except (TypeError, ValueError):
            pass  # one message for every bad value, with the example
    size = "one or more" if count is None else str(count)
    raise ArgumentError(
        argument,
        f"{argument} must be a list of {size} positive integers, e.g. {argument}={example}; "
        f"got {argument}={value!r}",
    )


def activation(name: str) -> nn.Module:
    """Return a new activation module for a key of :data:`ACTIVATIONS`.

    Raises:
        ArgumentError: ``name`` is not a key of :data:`ACTIVATIONS` (argument ``activation``).
    """
    return ACTIVATIONS[choice("activation", name, ACTIVATIONS)]()
