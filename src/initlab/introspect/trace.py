"""Find, for each layer, the activation that follows it, whether it produces the output, and
whether it ends a residual branch.

Two sources, the first that applies wins:

* **trace** (given ``example_input``): one forward pass under ``no_grad`` in ``eval`` mode that
  records module calls (forward hooks) and functional calls (a ``TorchFunctionMode``) in
  execution order, and follows the data: every tensor carries the set of layers whose output it
  still is (``sources``). Element-wise and shape operations (add, mul, views, dropout, norms
  written functionally, pooling) keep the sources; mixing operations (``matmul``, ``softmax``,
  ``einsum``, a layer call) end them; a norm layer adds itself to its input's sources. The
  first activation applied to a tensor whose sources include a layer is that layer's activation,
  so ``F.relu``, ``torch.tanh``, ``x.sigmoid()`` and ``x * torch.sigmoid(c * x)`` (SiLU) inside a
  custom ``forward`` are all found, in any branch order.
  The output layer is the last-called layer among the sources of each model output that has no
  activation. A residual add is an add of two traced tensors of different depth (the number of
  weight layers on their path): the deeper one is the branch, its producing layers end it.
  The same machinery runs inside any forward pass through :class:`ActivationWatch`, which
  reports each functional activation call as it happens (:func:`initlab.diagnose` records its
  statistics); the tracer's own pass adds only ``no_grad`` and ``eval`` mode.
* **structure** (no example input): module registration order (``named_modules``), reading
  named activation modules; norms, dropout and pooling are skipped over. It cannot see
  functional activations or residual adds: every reason says so, and :func:`initlab.plan`
  warns when a model with hidden linear or convolution layers shows no activation at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from initlab._checks import ArgumentError
from initlab.introspect.activations import Activation, from_function, from_module
from initlab.introspect.kinds import can_be_output, is_norm, is_opaque, is_weight_layer

__all__ = [
    "ActivationCall",
    "ActivationWatch",
    "LayerContext",
    "ModelContext",
    "analyze",
    "call_args",
    "tensors_in",
]

log = logging.getLogger(__name__)

# Operations whose output is no longer "the output of a layer" (it mixes features across
# positions or normalizes a distribution): an activation after them belongs to no layer.
_MIXING = frozenset(
    {
        "matmul",
        "__matmul__",
        "__rmatmul__",
        "mm",
        "bmm",
        "baddbmm",
        "einsum",
        "softmax",
        "log_softmax",
        "scaled_dot_product_attention",
        "linear",
        "bilinear",
        "conv1d",
        "conv2d",
        "conv3d",
        "embedding",
    }
)
_ADDS = frozenset({"add", "add_", "__add__", "__iadd__", "__radd__"})
_MULS = frozenset({"mul", "mul_", "__mul__", "__imul__", "__rmul__"})
# x * act2(act1(x)) patterns that are one activation: SiLU (Elfwing et al. 2018), Mish (Misra 2019).
_COMPOSITES = {("sigmoid",): "silu", ("softplus", "tanh"): "mish"}


@dataclass(frozen=True)
class LayerContext:
    """What follows one layer (a module that owns parameters)."""

    activation: Activation | None = None
    is_output: bool = False
    residual_end: bool = False
    called: bool = True


@dataclass(frozen=True)
class ModelContext:
    """Per-layer context of a whole model; ``source`` is ``"trace"`` or ``"structure"``."""

    layers: Mapping[str, LayerContext]
    source: str
    n_residual: int = 0

    def of(self, module_name: str) -> LayerContext:
        """Return the context of ``module_name`` (an empty one for unknown modules)."""
        return self.layers.get(module_name, LayerContext(called=self.source != "trace"))


def analyze(model: nn.Module, example_input=None) -> ModelContext:
    """Return the :class:`ModelContext` of ``model``, traced if ``example_input`` is given.

    ``example_input`` is a tensor (``model(x)``), a tuple/list (``model(*x)``) or a mapping
    (``model(**x)``).

    Raises:
        ArgumentError: (a ValueError naming ``example_input``) if the forward pass on
            ``example_input`` fails (the model's error is chained): an input given on purpose
            that does not run is a mistake to fix, not a reason to plan silently from the
            structure instead.
    """
    if example_input is None:
        return _from_structure(model)
    try:
        return _Tracer(model).run(example_input)
    except Exception as error:  # any user forward can fail; say which input and why
        raise ArgumentError(
            "example_input",
            f"example_input did not run through the model ({type(error).__name__}: {error}); "
            "pass an input the model's forward accepts, or example_input=None to read "
            "activations from the module structure",
        ) from error


@dataclass(frozen=True)
class ActivationCall:
    """One functional activation call reported by :class:`ActivationWatch`.

    Attributes:
        index: position among the calls reported by this watch (0, 1, ...).
        activation: the activation computed.
        layers: the layers whose output the activation's input still is, in first-call order
            (a norm passes its input's layers on: ``relu(bn(conv(x)))`` gives
            ``("conv", "bn")``); empty when the input comes from no layer (the model input, a
            ``matmul``, another activation).
        output: the activation's output; for an in-place call (``F.relu(x, inplace=True)``,
            ``x.relu_()``) the input tensor itself, rectified.
        replaces: indices of earlier calls this one subsumes: ``x * torch.sigmoid(x)`` is
            reported as the ``sigmoid`` call, then as a ``silu`` call on the product that
            replaces it (Mish: ``softplus`` and ``tanh``, replaced by ``mish``).
    """

    index: int
    activation: Activation
    layers: tuple[str, ...]
    output: torch.Tensor
    replaces: tuple[int, ...] = ()


class ActivationWatch:
    """Report every functional activation call of a model's forward passes, as it happens.

    Uses the tracer of :func:`analyze` (a ``TorchFunctionMode`` plus hooks on every module), so
    ``F.relu``, ``torch.tanh``, ``x.sigmoid()``, in-place ``x.relu_()`` and hand-written SiLU
    and Mish are recognized as in a plan. Calls inside activation modules (``nn.ReLU`` calls
    ``F.relu``) and inside opaque layers (``nn.LSTM``, ``nn.MultiheadAttention``) are not
    reported: the module is the activation. A hand-written GELU (``erf`` or ``tanh`` form) is
    not reported: the call's output is an inner term, not the GELU's. Grad mode and train/eval
    flags are left as they are. After each :meth:`watching` block, ``residual_ends`` holds the
    layers that end a residual branch in the forward passes watched (as in a plan's
    ``residual_end``: the layers whose output the deeper summand of a residual add still is),
    and ``summand_layers`` the last-called of them at each add: the layer whose output is the
    summand itself, a norm that ends a branch (ResNet's ``bn2``) rather than the layer before it.

    Args:
        model: the module whose forward passes are watched.
        on_call: called with an :class:`ActivationCall` right after each activation call,
            before the forward continues (so in-place changes made later are not yet visible).

    Example:
        >>> seen, net, x = [], nn.Sequential(nn.Linear(2, 2)), torch.randn(3, 2)
        >>> with ActivationWatch(net, seen.append).watching(x):
        ...     _ = torch.relu(net(x))
        >>> [(c.activation.name, c.layers) for c in seen]
        [('relu', ('0',))]
    """

    def __init__(self, model: nn.Module, on_call: Callable[[ActivationCall], None]):
        self._model = model
        self._on_call = on_call
        self.residual_ends: frozenset[str] = frozenset()
        self.summand_layers: frozenset[str] = frozenset()

    @contextmanager
    def watching(self, inputs) -> Iterator[None]:
        """Watch the forward passes run inside the block, which start from ``inputs``.

        ``inputs`` is the forward's tensor argument, or a tuple/list/mapping of them. The hooks
        and the mode are removed on exit, also when the block raises; the traced tensors are
        released then.
        """
        self._tracer = _Tracer(self._model, self._on_call)
        try:
            with self._tracer.observing(inputs):
                yield
        finally:
            self.residual_ends = frozenset(self._tracer.state.residual_ends)
            self.summand_layers = frozenset(self._tracer.state.summand_layers)
            del self._tracer

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Inside :meth:`watching`, run torch calls unobserved (e.g. statistics in a hook)."""
        self._tracer.state.suppress += 1
        try:
            yield
        finally:
            self._tracer.state.suppress -= 1


@dataclass(frozen=True)
class _Chain:
    """``act_n(... act_1(x))``, remembered so that ``x * act_n(... act_1(x))`` is one activation."""

    root: int  # id of x (of y when x = number * y, as in QuickGELU's sigmoid(1.702 * y))
    acts: tuple[str, ...]
    layers: tuple[str, ...]  # the layers act_1 was assigned to
    sources: frozenset[str]  # the layers whose output x was
    calls: tuple[int | None, ...]  # the reported call of each act (None: not reported)


@dataclass
class _Info:
    sources: frozenset[str]
    depth: int
    cubic: bool = False
    chain: _Chain | None = None
    base: int | None = None  # id of x when this tensor is x times a number (1.702 * x)


@dataclass
class _State:
    infos: dict[int, tuple[torch.Tensor, _Info]] = field(default_factory=dict)
    activations: dict[str, Activation] = field(default_factory=dict)
    residual_ends: set[str] = field(default_factory=set)
    summand_layers: set[str] = field(default_factory=set)
    n_residual: int = 0
    order: list[str] = field(default_factory=list)
    suppress: int = 0
    n_calls: int = 0


def tensors_in(obj) -> Iterator[torch.Tensor]:
    """Yield the tensors in ``obj``: a tensor, or tensors nested in lists, tuples and mappings
    (a Hugging Face ``ModelOutput`` is a mapping), depth first in order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from tensors_in(item)
    elif isinstance(obj, Mapping):
        for item in obj.values():
            yield from tensors_in(item)


class _Mode(TorchFunctionMode):
    def __init__(self, tracer: _Tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.tracer.state.suppress == 0:
            self.tracer.on_function(func, args, kwargs, out)
        return out


class _Tracer:
    def __init__(self, model: nn.Module, on_call: Callable[[ActivationCall], None] | None = None):
        self.model = model
        self.state = _State()
        self.names = {m: n for n, m in model.named_modules(remove_duplicate=False)}
        self.modules = dict(model.named_modules(remove_duplicate=False))
        self.on_call = on_call

    def run(self, example_input) -> ModelContext:
        args, kwargs = call_args(example_input)
        was_training = self.model.training
        self.model.eval()  # batch norm must not update its running statistics here
        try:
            with torch.no_grad(), self.observing((args, kwargs)):
                output = self.model(*args, **kwargs)
        finally:
            self.model.train(was_training)
        return self._context(output)

    @contextmanager
    def observing(self, inputs) -> Iterator[None]:
        """Hooks on every module and the function mode for the block, removed on exit."""
        with ExitStack() as stack:
            for module in self.model.modules():
                stack.callback(module.register_forward_pre_hook(self._pre, with_kwargs=True).remove)
                stack.callback(module.register_forward_hook(self._post, with_kwargs=True).remove)
            for t in tensors_in(inputs):
                self._set(t, _Info(frozenset(), 0))
            stack.enter_context(_Mode(self))
            yield

    def _info(self, t: torch.Tensor) -> _Info | None:
        entry = self.state.infos.get(id(t))
        return entry[1] if entry is not None and entry[0] is t else None

    def _set(self, t: torch.Tensor, info: _Info) -> None:
        # Keep the tensor alive so that its id is not reused by another tensor.
        self.state.infos[id(t)] = (t, info)

    def _pre(self, module, args, kwargs):
        if is_opaque(module) or from_module(module) is not None:
            self.state.suppress += 1

    def _post(self, module, args, kwargs, output):
        if not (is_opaque(module) or from_module(module) is not None):
            return
        self.state.suppress -= 1
        if self.state.suppress:
            return
        act = from_module(module)
        inputs = [i for i in map(self._info, tensors_in((args, kwargs))) if i is not None]
        first = next(tensors_in((args, kwargs)), None)
        if act is not None and first is not None:
            self._activation(act, first, output, report=False)  # the module is the activation
            return
        name = self.names[module]
        if name not in self.state.order:
            self.state.order.append(name)
        depth = max((i.depth for i in inputs), default=0)
        sources = frozenset({name})
        if is_norm(module):  # affine per channel at init: what follows it follows its input too
            sources |= frozenset().union(*(i.sources for i in inputs))
        else:
            depth += 1
        for t in tensors_in(output):
            self._set(t, _Info(sources, depth))

    def on_function(self, func, args, kwargs, out) -> None:
        name = getattr(func, "__name__", "")
        act = from_function(func, args, kwargs)
        first = next(tensors_in((args, kwargs)), None)
        if act is not None and first is not None:
            # erf and the tanh of a tanh-GELU compute an inner term of a GELU, not its output.
            report = name.rstrip("_") != "erf"
            if act.name == "tanh" and (info := self._info(first)) is not None and info.cubic:
                act = Activation("gelu", "tanh")  # 0.5x(1 + tanh(c(x + 0.044715 x^3)))
                report = False
            self._activation(act, first, out, report=report)
            return
        inputs = [i for i in map(self._info, tensors_in((args, kwargs))) if i is not None]
        if not inputs:
            for t in tensors_in(out):
                self._set(t, _Info(frozenset(), 0))
            return
        depth = max(i.depth for i in inputs)
        if name in _MULS and self._composite(args, out):
            return
        if name in _ADDS and len(inputs) == 2:
            self._residual(*inputs)
        if name in _MIXING:
            info = _Info(frozenset(), depth)
        else:
            cubic = any(i.cubic for i in inputs) or (
                name in {"pow", "__pow__"} and len(args) > 1 and args[1] == 3
            )
            info = _Info(frozenset().union(*(i.sources for i in inputs)), depth, cubic)
            if name in _MULS and len(inputs) == 1 and len(list(tensors_in(args))) == 1:
                info.base = inputs[0].base or id(first)  # x * number: still "x" for SiLU
        for t in tensors_in(out):
            self._set(t, info)

    def _activation(self, act: Activation, inp: torch.Tensor, out, *, report: bool) -> None:
        info = self._info(inp) or _Info(frozenset(), 0)
        old = info.chain
        call = self._report(act, info.sources, out) if report else None
        if old is not None:  # act2(act1(x)): remember it for x * act2(act1(x))
            chain = _Chain(
                old.root, (*old.acts, act.name), old.layers, old.sources, (*old.calls, call)
            )
        else:
            layers = tuple(s for s in info.sources if s not in self.state.activations)
            for layer in layers:
                self.state.activations[layer] = act
            chain = _Chain(info.base or id(inp), (act.name,), layers, info.sources, (call,))
        for t in tensors_in(out):
            self._set(t, _Info(frozenset(), info.depth, chain=chain))

    def _report(self, act, sources, out, replaces: tuple[int, ...] = ()) -> int | None:
        """Hand a functional activation call to ``on_call``; return its index."""
        output = next(tensors_in(out), None)
        if self.on_call is None or output is None:
            return None
        rank = {n: i for i, n in enumerate(self.state.order)}
        layers = tuple(sorted(sources, key=rank.__getitem__))
        index = self.state.n_calls
        self.state.n_calls += 1
        # Called inside the mode's __torch_function__, where the mode is off: the listener's
        # own torch calls are not traced.
        self.on_call(ActivationCall(index, act, layers, output, replaces))
        return index

    def _composite(self, args, out) -> bool:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) != 2:
            return False
        for x, y in (tensors, tensors[::-1]):
            info = self._info(y)
            chain = info.chain if info is not None else None
            if chain is None or chain.root != id(x):
                continue
            composite = _COMPOSITES.get(chain.acts)
            if composite is None:
                continue
            for layer in chain.layers:
                self.state.activations[layer] = Activation(composite)
            if None not in chain.calls:  # every part was reported: the product replaces them
                self._report(Activation(composite), chain.sources, out, chain.calls)
            for t in tensors_in(out):
                self._set(t, _Info(frozenset(), info.depth))
            return True
        return False

    def _residual(self, a: _Info, b: _Info) -> None:
        if a.depth == b.depth:
            return
        branch = a if a.depth > b.depth else b
        if branch.sources:
            self.state.n_residual += 1
            self.state.residual_ends |= branch.sources
            # A norm is called after the layer it normalizes and passes that layer on in its
            # sources, so the last-called source is the one whose output was added.
            last = max(branch.sources, key=self.state.order.index)
            self.state.summand_layers.add(last)

    def _context(self, output) -> ModelContext:
        rank = {n: i for i, n in enumerate(self.state.order)}
        outputs = set()
        for t in tensors_in(output):
            info = self._info(t)
            free = [
                s
                for s in (info.sources if info else ())
                if s not in self.state.activations and can_be_output(self.modules[s])
            ]
            if free:
                outputs.add(max(free, key=rank.__getitem__))
        layers = {
            name: LayerContext(
                activation=self.state.activations.get(name),
                is_output=name in outputs,
                residual_end=name in self.state.residual_ends,
            )
            for name in self.state.order
        }
        return ModelContext(layers, "trace", self.state.n_residual)


def call_args(example_input) -> tuple[tuple, dict]:
    """Return ``(args, kwargs)`` calling a model on ``example_input``: a mapping is keyword
    arguments (``model(**x)``), a tuple or list positional ones (``model(*x)``), anything else
    the one argument (``model(x)``)."""
    if isinstance(example_input, Mapping):
        return (), dict(example_input)
    if isinstance(example_input, (list, tuple)):
        return tuple(example_input), {}
    return (example_input,), {}


def _from_structure(model: nn.Module) -> ModelContext:
    """Read activations from registration order: the next activation module, skipping norms,
    dropout and pooling, before the next weight layer."""
    sequence = list(_flat_modules(model))
    layers: dict[str, LayerContext] = {}
    last_weight = None
    for i, (name, module) in enumerate(sequence):
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        act, ends = _next_activation(sequence[i + 1 :])
        act = act or _declared_activation(model, name)
        layers[name] = LayerContext(activation=act, called=True)
        if can_be_output(module) and act is None and ends:
            last_weight = name
    if last_weight is not None:
        layers[last_weight] = LayerContext(is_output=True)
    return ModelContext(layers, "structure")


def _flat_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Yield leaf-like modules (opaque ones whole) in registration order."""
    stack = [("", model)]
    while stack:
        name, module = stack.pop()
        children = list(module.named_children())
        if not children or is_opaque(module):
            yield name, module
            continue
        if any(True for _ in module.parameters(recurse=False)):
            yield name, module
        prefix = f"{name}." if name else ""
        stack.extend((prefix + n, c) for n, c in reversed(children))


def _next_activation(rest) -> tuple[Activation | None, bool]:
    """Return (activation after a layer or None, whether nothing but skippable modules follow)."""
    for _, module in rest:
        act = from_module(module)
        if act is not None:
            return act, False
        if is_weight_layer(module):
            return None, False
    return None, True


def _declared_activation(model: nn.Module, name: str) -> Activation | None:
    """``nn.TransformerEncoderLayer``/``DecoderLayer`` keep their activation as an attribute
    applied after ``linear1``; read it there, since it is not a registered module."""
    parent_name, _, leaf = name.rpartition(".")
    if leaf != "linear1":
        return None
    parent = model.get_submodule(parent_name)
    if not isinstance(parent, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
        return None
    fn = parent.activation
    if isinstance(fn, nn.Module):
        return from_module(fn)
    return from_function(fn, (), {})
