"""initlab: initialization of neural-network parameters, on PyTorch.

Layers, lowest first (lower layers never import higher ones):
fans, gains -> initializers -> policy, pretrained, datadriven, diagnostics -> experiments -> cli.
"""

from initlab.datadriven import LSUVReport, lsuv_
from initlab.diagnostics import Diagnosis, MeanField, critical_weight_variance, diagnose, mean_field
from initlab.fans import LayerFans, compute_fans, layer_fans
from initlab.gains import calculate_gain, compute_gain
from initlab.initializers import (
    constant_,
    delta_orthogonal_,
    dirac_,
    eye_,
    glorot_normal_,
    glorot_uniform_,
    he_normal_,
    he_uniform_,
    identity_,
    kaiming_normal_,
    kaiming_uniform_,
    lecun_normal_,
    lecun_uniform_,
    normal_,
    ones_,
    orthogonal_,
    per_block_,
    sparse_,
    trunc_normal_,
    uniform_,
    variance_scaling_,
    xavier_normal_,
    xavier_uniform_,
    zeros_,
)
from initlab.initializers.deprecated import (
    constant,
    dirac,
    eye,
    kaiming_normal,
    kaiming_uniform,
    normal,
    orthogonal,
    sparse,
    uniform,
    xavier_normal,
    xavier_uniform,
)
from initlab.parameterize import (
    PARAMETERIZATIONS,
    CoordCheck,
    Parameterization,
    ParamRow,
    SpectralAudit,
    coord_check,
    parametrize,
    spectral_audit,
)
from initlab.policy import (
    InitPlan,
    PlanRow,
    PolicyOptions,
    Receipt,
    ReceiptError,
    Rule,
    VerifyReport,
    plan,
    preset_rules,
    read_receipt,
    record_model,
    verify,
)
from initlab.pretrained import LoadReport, PickleRefusedError, load_pretrained
from initlab.schemes.compose import init_model

__all__ = [
    # fans and gains
    "compute_fans",
    "layer_fans",
    "LayerFans",
    "calculate_gain",
    "compute_gain",
    # tensor initializers
    "zeros_",
    "ones_",
    "constant_",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "variance_scaling_",
    "xavier_uniform_",
    "xavier_normal_",
    "glorot_uniform_",
    "glorot_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "he_uniform_",
    "he_normal_",
    "lecun_uniform_",
    "lecun_normal_",
    "orthogonal_",
    "delta_orthogonal_",
    "identity_",
    "eye_",
    "dirac_",
    "sparse_",
    "per_block_",
    # PyTorch's deprecated unsuffixed names (warn FutureWarning, call the in-place function)
    "uniform",
    "normal",
    "constant",
    "eye",
    "dirac",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "sparse",
    # policy: plan, apply, rules
    "plan",
    "init_model",
    "InitPlan",
    "PlanRow",
    "Rule",
    "PolicyOptions",
    "preset_rules",
    # integrity: receipts of what was drawn or loaded, and the verifier
    "Receipt",
    "ReceiptError",
    "read_receipt",
    "record_model",
    "verify",
    "VerifyReport",
    # parameterizations: init scale, multipliers and optimizer groups over width and depth
    "parametrize",
    "Parameterization",
    "ParamRow",
    "PARAMETERIZATIONS",
    "coord_check",
    "CoordCheck",
    "spectral_audit",
    "SpectralAudit",
    # pretrained: load safely, report, initialize only the rest
    "load_pretrained",
    "LoadReport",
    "PickleRefusedError",
    # diagnostics and data-driven init
    "diagnose",
    "Diagnosis",
    "mean_field",
    "MeanField",
    "critical_weight_variance",
    "lsuv_",
    "LSUVReport",
]
from initlab._version import __version__ as __version__  # noqa: E402
