"""The one scheme concept: a weight policy plus the steps that run after it.

A :class:`Scheme` initializes a whole model, whatever its architecture, in this order
(:meth:`Scheme.apply`):

1. with ``torch_reset`` (``torch_default``) or the ``torch`` bias rule: every module's own
   ``reset_parameters()``, under a forked global RNG seeded from the generator (so the global
   RNG is left untouched);
2. norm layers (:func:`initlab.introspect.kinds.is_norm`: BatchNorm, LayerNorm, GroupNorm,
   InstanceNorm, RMSNorm ...): weight 1, bias 0, running statistics reset;
3. biases (every parameter with ``ndim < 2`` and ``bias`` in its name, outside norm layers) by
   the bias rule: ``zeros`` unless ``bias_init`` says otherwise (``"zeros"``,
   ``"constant:VALUE"`` or ``"torch"``, which keeps what step 1 drew). Other 1-D parameters
   (a PReLU slope, a layer-scale vector) are not biases and keep their module's own values;
4. weights by the scheme's ``policy`` (:mod:`initlab.schemes.weights`: one tensor rule for every
   weight; :class:`initlab.schemes.auto.Preset`: a policy preset's plan), with the scheme's
   options;
5. the ``steps``, in order (:mod:`initlab.schemes.steps`: LSUV, Fixup, a pretrained load).

All randomness comes from the ``generator`` passed in. Initialize on the CPU, then move the
model. The built-in schemes, by name, are in :mod:`initlab.schemes.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from initlab._checks import ArgumentError, one_of
from initlab.introspect.kinds import is_norm
from initlab.schemes.steps import Step

__all__ = ["BiasInit", "Scheme", "parse_bias_init"]


@dataclass(frozen=True)
class BiasInit:
    """A bias rule: ``kind`` is ``"zeros"``, ``"constant"`` (fill with ``value``) or ``"torch"``."""

    kind: str
    value: float = 0.0


@dataclass(frozen=True)
class Scheme:
    """One named scheme: a weight policy, then steps (see the module docstring).

    Attributes:
        name: the scheme's name.
        summary: one line for ``initlab schemes``: the distribution with its exact parameters.
        policy: ``policy(model, generator=..., batch=..., **options)`` fills the weights.
        steps: what runs after the policy, in order (:class:`~initlab.schemes.steps.Step`).
        options: the options the policy accepts and their defaults (floats).
        default_bias: the bias rule used when ``bias_init`` is not given.
        torch_reset: call every module's ``reset_parameters()`` (seeded) before anything else.
        aliases: other names that mean this scheme (old names kept for saved sweeps, and
            another paper's name for the same scheme, e.g. ``skipinit`` for ``rezero``).

    Example:
        >>> from initlab.schemes.steps import LSUV
        >>> from initlab.schemes.weights import EveryWeight, orthogonal
        >>> s = Scheme("ortho-lsuv", "orthogonal, then LSUV", EveryWeight(orthogonal),
        ...            steps=(LSUV(),), options={"gain": 1.0})
        >>> s.needs_batch, s.needs_source, s.takes_options
        (True, False, True)
    """

    name: str
    summary: str
    policy: Callable[..., None]
    steps: tuple[Step, ...] = ()
    options: Mapping[str, float] = field(default_factory=dict)
    default_bias: str = "zeros"
    torch_reset: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def needs_batch(self) -> bool:
        """Whether a step reads a training batch (``batch=`` must be given)."""
        return any(step.needs_batch for step in self.steps)

    @property
    def needs_source(self) -> bool:
        """Whether a step loads a checkpoint (``source=`` must be given)."""
        return any(step.needs_source for step in self.steps)

    @property
    def takes_options(self) -> bool:
        """Whether the scheme accepts options (``name:key=value``)."""
        return bool(self.options)

    def apply(
        self,
        model: nn.Module,
        options: Mapping[str, float] | None = None,
        *,
        generator: torch.Generator,
        bias_init: str | None = None,
        batch=None,
        source=None,
    ) -> dict[str, object]:
        """Initialize every parameter of ``model`` in place (see the module docstring).

        Args:
            model: any ``nn.Module``; initialize it on the CPU, then move it.
            options: the policy's options; ``None`` uses :attr:`options` (the defaults).
            generator: the only source of randomness (a CPU ``torch.Generator``).
            bias_init: the bias rule (see :func:`parse_bias_init`); ``None`` uses
                :attr:`default_bias`.
            batch: a training batch (a tensor or ``(inputs, ...)``) for the steps that need
                one; the ``auto`` preset traces its first examples when given.
            source: the checkpoint of a pretrained-load step (a path or a
                :class:`~initlab.schemes.steps.Source`).

        Returns:
            Each step's report, by step name (empty without steps; of two steps of one name,
            the later one's).

        Raises:
            ArgumentError: ``batch`` or ``source`` is missing for a step that needs it (before
                anything is written), or ``bias_init`` is not a bias rule.
            ValueError: a step refuses the model (e.g. Fixup without residual blocks).
        """
        options = dict(self.options if options is None else options)
        bias = parse_bias_init(bias_init if bias_init is not None else self.default_bias)
        self._check_inputs(batch, source)
        if self.torch_reset or bias.kind == "torch":
            _torch_reset(model, generator)
        with torch.no_grad():
            _init_norms(model)
            if bias.kind != "torch":
                for param in _bias_parameters(model):
                    param.fill_(bias.value)
        self.policy(model, generator=generator, batch=batch, **options)
        return {
            step.name: step(model, generator=generator, batch=batch, source=source)
            for step in self.steps
        }

    def _check_inputs(self, batch, source) -> None:
        for step in self.steps:
            if step.needs_batch and batch is None:
                raise ArgumentError(
                    "batch",
                    f"scheme {self.name!r} needs a data batch for its {step.name} step: pass "
                    "batch=(inputs, ...) (a few hundred training examples)",
                )
            if step.needs_source and source is None:
                raise ArgumentError(
                    "source",
                    f"scheme {self.name!r} needs a source checkpoint for its {step.name} step: "
                    "pass source=PATH (e.g. a model pretrained on another dataset)",
                )


def parse_bias_init(text: str) -> BiasInit:
    """Parse a bias rule: ``"zeros"``, ``"torch"`` or ``"constant:VALUE"``.

    Raises:
        ArgumentError: unknown rule, or ``constant`` without a numeric value (argument
            ``bias_init``).

    Example:
        >>> parse_bias_init("constant:0.01")
        BiasInit(kind='constant', value=0.01)
    """
    kind, sep, value = text.partition(":")
    try:
        one_of("bias_init", kind, ("zeros", "constant", "torch"))
    except ValueError as error:
        raise ArgumentError("bias_init", str(error)) from None
    if kind == "constant":
        if not sep:
            raise ArgumentError(
                "bias_init",
                f"bias_init constant needs a value, e.g. 'constant:0.01'; got {text!r}",
            )
        return BiasInit("constant", number(value, f"bias_init={text!r}", "bias_init"))
    if sep:
        raise ArgumentError(
            "bias_init", f"bias_init {kind!r} takes no value; got bias_init={text!r}"
        )
    return BiasInit(kind)


def number(text: str, what: str, argument: str) -> float:
    """Return ``text`` as a float; raise an ArgumentError naming ``argument`` if it is none."""
    try:
        return float(text)
    except ValueError:
        raise ArgumentError(argument, f"{what} must be a number; got {text!r}") from None


def _torch_reset(model: nn.Module, generator: torch.Generator) -> None:
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # Children before parents, as at construction, so a parent's own reset (e.g.
        # nn.Transformer._reset_parameters) wins over its children's as it does in PyTorch.
        for module in reversed(list(model.modules())):
            reset = getattr(module, "reset_parameters", None) or getattr(
                module, "_reset_parameters", None
            )
            if callable(reset):
                reset()


def _init_norms(model: nn.Module) -> None:
    for module in model.modules():
        if is_norm(module):
            for name, param in module.named_parameters(recurse=False):
                param.fill_(1.0 if name == "weight" else 0.0)
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()


def _bias_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    for module in model.modules():
        if not is_norm(module):
            for name, param in module.named_parameters(recurse=False):
                if param.ndim < 2 and "bias" in name:
                    yield param
