"""In-place tensor initializers, with PyTorch's contract.

Every function fills its tensor in place under ``torch.no_grad()`` and returns the same object;
options are keyword-only; random ones take ``generator=`` and then never touch the global
generator; meta and zero-element tensors are returned untouched (after the arguments are
checked), a zero-element one with PyTorch's warning "Initializing zero-element tensors is a
no-op"; an ``nn.Parameter`` stays a leaf Parameter. Every scaled initializer is
:func:`variance_scaling_` with fixed arguments. Every scalar argument is checked (finite, in
range) and so is what it makes: a ValueError naming the argument, its value and the dtype is
raised, before anything is written, when the values would not fit the tensor's dtype (inf, or
all subnormal or 0) rather than writing inf or zeros.

Modules, one concept each: ``basic`` (constants, uniform, normal), ``truncated``
(``trunc_normal_``), ``variance_scaling`` (the primitive and its pure formula: ``select_fan``,
``variance_scaling_std``, ``scaled_draw``), ``named`` (Glorot/Xavier, He/Kaiming,
LeCun), ``orthogonal`` (orthogonal and delta-orthogonal), ``identity`` (identity, Dirac),
``sparse`` (Martens' sparse init), ``blocks`` (per-block init of fused weights),
``deprecated`` (PyTorch's deprecated unsuffixed names, ``normal`` ..., which warn
``FutureWarning`` and call the in-place function, as in ``torch.nn.init``; exported from
``initlab`` only, since ``orthogonal`` and ``sparse`` here are modules).
"""

from initlab.initializers.basic import constant_, normal_, ones_, uniform_, zeros_
from initlab.initializers.blocks import per_block_
from initlab.initializers.identity import dirac_, eye_, identity_
from initlab.initializers.named import (
    glorot_normal_,
    glorot_uniform_,
    he_normal_,
    he_uniform_,
    kaiming_normal_,
    kaiming_uniform_,
    lecun_normal_,
    lecun_uniform_,
    xavier_normal_,
    xavier_uniform_,
)
from initlab.initializers.orthogonal import delta_orthogonal_, orthogonal_
from initlab.initializers.sparse import sparse_
from initlab.initializers.truncated import trunc_normal_
from initlab.initializers.variance_scaling import (
    DISTRIBUTIONS,
    MODES,
    TRUNCATED_STD,
    ScaledDraw,
    scaled_draw,
    select_fan,
    variance_scaling_,
    variance_scaling_std,
)

__all__ = [
    "DISTRIBUTIONS",
    "MODES",
    "TRUNCATED_STD",
    "ScaledDraw",
    "constant_",
    "delta_orthogonal_",
    "dirac_",
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "identity_",
    "eye_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "normal_",
    "ones_",
    "orthogonal_",
    "per_block_",
    "scaled_draw",
    "select_fan",
    "sparse_",
    "trunc_normal_",
    "uniform_",
    "variance_scaling_",
    "variance_scaling_std",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]
