"""Named policies (presets) as ordered rule tables, and the options that tune them.

``auto`` is the selection guide (activation -> He / Xavier / LeCun, RNN -> Xavier + orthogonal,
attention -> Xavier, output layer -> Xavier or LeCun); ``torch``, ``gpt2``, ``bert``, ``keras``
and ``flax`` reproduce those libraries' own defaults. Print one with
``print(initlab.policy.preset_rules("auto"))``.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from torch import nn

from initlab._checks import ArgumentError, non_negative, one_of
from initlab.introspect.kinds import RUNNING_STATS_NORM_TYPES
from initlab.policy.rules import Rule, RuleSet

__all__ = ["PRESETS", "PolicyOptions", "preset_rules"]

_WEIGHTED = ("linear", "conv", "conv_transpose", "bilinear")
_RECURRENT = ("lstm", "gru", "rnn")
_QKV = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
# Keras and Flax have no padding index; PyTorch's nn.Embedding promises a zero padding row.
_PAD_NOTE = "a padding_idx row stays 0, as nn.Embedding promises"


@dataclass(frozen=True)
class PolicyOptions:
    """Options of the presets (``initlab.plan(model, **options)``).

    Attributes:
        mode: fan used by He rules, ``"fan_in"`` (forward variance, He et al. 2015) or
            ``"fan_out"`` (backward variance, as torchvision's ResNet).
        output_init: ``"xavier"`` (Glorot uniform) or ``"lecun"`` (LeCun normal) for the layer
            that produces the output.
        relu_bias: constant bias of layers followed by a ReLU-family activation (0.01 or 0.1
            keeps units active at the start; 0 by default).
        classifier_bias: constant bias of the output layer.
        forget_bias: LSTM forget-gate bias (Jozefowicz et al. 2015: 1.0).
        zero_init_residual: zero the last norm weight of each residual branch (Goyal et al.
            2017, "Accurate, Large Minibatch SGD", Sec. 5.1); needs ``example_input``.
        scale_residual: scale residual-branch output projections by 1/sqrt(number of branches)
            = 1/sqrt(2 n_layers) for transformers (Radford et al. 2019, GPT-2, Sec. 2.3).
        embedding_std: std of embedding weights (auto: 1.0, and 1/sqrt(dim) for an embedding
            tied to the output layer and the embeddings of its width, 1.0 again when the model
            rescales that layer's input by dim^-1/2 as T5 does; gpt2 and bert: ``std``). Given,
            it applies to every embedding, tied or not (not to T5's relative attention bias,
            an ``nn.Embedding`` that holds attention-score biases).
        std: the initializer range of the gpt2 and bert presets; ``None`` (default) reads the
            model's ``config.initializer_range`` as Hugging Face's ``_init_weights`` does (0.02
            where the model has no config with it).
        include_frozen: also initialize parameters with ``requires_grad=False``.
    """

    mode: str = "fan_in"
    output_init: str = "xavier"
    relu_bias: float = 0.0
    classifier_bias: float = 0.0
    forget_bias: float = 1.0
    zero_init_residual: bool = False
    scale_residual: bool = False
    embedding_std: float | None = None
    std: float | None = None
    include_frozen: bool = False

    def __post_init__(self) -> None:
        _named(one_of, "mode", self.mode, ("fan_in", "fan_out"))
        _named(one_of, "output_init", self.output_init, ("lecun", "xavier"))
        for name in ("relu_bias", "classifier_bias", "forget_bias"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number; got {name}={value!r}")
        for name in ("std", "embedding_std"):
            if getattr(self, name) is not None:
                _named(non_negative, name, getattr(self, name))

    @classmethod
    def from_kwargs(cls, **options) -> PolicyOptions:
        """Build options from keyword arguments, rejecting unknown names with a suggestion."""
        known = [f.name for f in dataclasses.fields(cls)]
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise TypeError(f"unknown policy option {key!r}{hint}; options are {known}")
        return cls(**options)


def _norms() -> list[Rule]:
    return [
        Rule("norm weight = 1", "constant", kinds=("norm",), roles=("weight",), value=1.0),
        Rule("norm bias = 0", "constant", kinds=("norm",), roles=("bias",)),
    ]


def _auto(o: PolicyOptions) -> list[Rule]:
    xavier = {"init": "variance_scaling", "mode": "fan_avg", "distribution": "uniform"}
    rules = []
    if o.zero_init_residual:
        rules.append(
            Rule(
                "residual norm = 0",
                "constant",
                kinds=("norm",),
                roles=("weight",),
                residual_end=True,
                note="last norm of a residual branch starts at 0 (Goyal et al. 2017)",
            )
        )
    rules += _norms()
    rules += _unscaled_attention()
    if o.embedding_std is None:
        rules += _tied_embeddings()
    rules += [
        Rule(
            "embedding N(0, std)",
            "normal",
            kinds=("embedding",),
            roles=("weight",),
            std=1.0 if o.embedding_std is None else o.embedding_std,
            zero_rows="padding_idx",
            note="one input is active per row, so no fan scaling; a padding row stays 0",
        ),
        Rule(
            "LSTM forget bias",
            "forget_gate",
            kinds=("lstm",),
            roles=("bias_ih",),
            value=o.forget_bias,
            note="forget gate open at start (Jozefowicz et al. 2015)",
        ),
        Rule("recurrent bias = 0", "constant", kinds=_RECURRENT, roles=("bias_ih", "bias_hh")),
        Rule(
            "recurrent input: Xavier per gate",
            kinds=_RECURRENT,
            roles=("weight_ih", "weight_hr"),
            note="Glorot and Bengio 2010, each gate block its own matrix",
            **xavier,
        ),
        Rule(
            "recurrent hidden: orthogonal per gate",
            "orthogonal",
            kinds=_RECURRENT,
            roles=("weight_hh",),
            note="norm-preserving recurrence (Saxe et al. 2014)",
        ),
        Rule(
            "attention q/k/v: Xavier per block",
            kinds=("attention",),
            roles=_QKV,
            note="Vaswani et al. 2017 / nn.Transformer",
            **xavier,
        ),
        Rule(
            "attention bias_k/v",
            "variance_scaling",
            kinds=("attention",),
            roles=("bias_k", "bias_v"),
            mode="fan_avg",
            per_block=False,
        ),
        Rule(
            "attention bias = 0",
            "constant",
            kinds=("attention", "attention_out"),
            roles=("in_proj_bias", "bias"),
        ),
    ]
    if o.scale_residual:
        rules.append(
            Rule(
                "residual projection: Xavier / sqrt(branches)",
                kinds=("attention_out", *_WEIGHTED),
                roles=("weight",),
                activations=("none", "output"),
                residual_end=True,
                residual_scale=True,
                note="GPT-2 (Radford et al. 2019) scaling of residual projections",
                **xavier,
            )
        )
    rules.append(Rule("attention output: Xavier", kinds=("attention_out",), min_ndim=2, **xavier))
    rules.append(
        Rule(
            "attention q/k/v blocks: Xavier per block",
            kinds=("linear",),
            roles=("weight",),
            fused=True,
            note="a fused q/k/v projection (Hugging Face's Conv1D c_attn) split into blocks, "
            "each its own matrix as in nn.MultiheadAttention (Vaswani et al. 2017)",
            **xavier,
        )
    )
    rules += _auto_weights(o, xavier)
    return rules


def _unscaled_attention() -> list[Rule]:
    # T5's scores are q k^T with no 1/sqrt(d_kv) (Raffel et al. 2020; Mesh TensorFlow folds it
    # into q's init). With LeCun-normal q and k, q.k over d_kv has variance d_kv: at d_kv = 64
    # logits of std 8 and near one-hot attention. q drawn with variance 1/(d_kv d_model) and k
    # with 1/d_model give q.k variance 1 for unit-RMS inputs (T5's RMSNorm precedes them),
    # whatever n_heads * d_kv is: the std Hugging Face's T5PreTrainedModel._init_weights draws.
    where = {"unscaled_attention": True, "roles": ("weight",)}
    return [
        Rule("unscaled attention q: N(0, 1/(d_kv d_model))", "variance_scaling",
             param=r"re:(^|\.)q\.weight$", scale="1/head_dim", note="scores q.k are not "
             "divided by sqrt(d_kv) (T5): q takes that factor, so that they have unit variance "
             "(Hugging Face T5PreTrainedModel._init_weights, Mesh TensorFlow)", **where),
        Rule("unscaled attention k: N(0, 1/d_model)", "variance_scaling",
             param=r"re:(^|\.)k\.weight$", note="LeCun normal, unit-variance keys for the "
             "unscaled scores q.k (Hugging Face T5PreTrainedModel._init_weights)", **where),
        Rule("relative attention bias: N(0, 1/d_model)", "variance_scaling", mode="model_dim",
             param=r"re:relative_attention_bias\.weight$", note="a bias added to the scores "
             "per head and distance bucket, small beside their unit variance (Hugging Face "
             "T5PreTrainedModel._init_weights: std d_model^-1/2)", **where),
    ]  # fmt: skip


def _tied_embeddings() -> list[Rule]:
    # Why 1/dim: tied, E (V, dim) is also the output layer, logits = h @ E^T. A final norm
    # gives h unit-variance entries, so Var(logit) = dim * Var(E): N(0, 1) gives variance dim
    # (GPT-2 at dim 64, V = 1000: initial loss 30, ln V = 6.9); 1/dim gives unit variance.
    draw = {"kinds": ("embedding",), "roles": ("weight",), "tied_output": True,
            "mode": "fan_out", "zero_rows": "padding_idx"}  # fmt: skip
    return [
        Rule(
            "tied embedding, rescaled head (T5): N(0, 1)",
            "normal",
            kinds=("embedding",),
            roles=("weight",),
            tied_output=True,
            rescaled_tied_head=True,
            zero_rows="padding_idx",
            note="the model multiplies the tied head's input by "
            "dim^-1/2 (T5's scale_decoder_outputs), so N(0, 1) gives unit-variance logits "
            "(Raffel et al. 2020; Hugging Face T5PreTrainedModel._init_weights)",
        ),  # fmt: skip
        Rule(
            "tied embedding: N(0, 1/dim)",
            "variance_scaling",
            tied=True,
            note="input and output embedding tied (Press and Wolf 2017): variance 1/dim gives "
            "unit-variance logits from a normalized hidden state (initial loss about ln V + "
            "1/2), the logits T5 gets from N(0, 1) and its dim^-1/2 rescale (Raffel et al. "
            "2020), where N(0, 1) gives logit variance dim",
            **draw,
        ),
        Rule(
            "embedding beside a tied one: N(0, 1/dim)",
            "variance_scaling",
            note="summed with an embedding tied to the output layer (positions, token types: "
            "the same width), so it takes the same std, as GPT-2 and BERT give all embeddings "
            "one std",
            **draw,
        ),
    ]


def _auto_weights(o: PolicyOptions, xavier: dict) -> list[Rule]:
    out = (
        Rule(
            "output layer: Xavier",
            kinds=_WEIGHTED,
            roles=("weight",),
            activations=("output",),
            note="produces the output (logits), no activation after it: Glorot and Bengio 2010",
            **xavier,
        )
        if o.output_init == "xavier"
        else Rule(
            "output layer: LeCun normal",
            "variance_scaling",
            kinds=_WEIGHTED,
            roles=("weight",),
            activations=("output",),
            note="produces the output (logits), no activation after it: LeCun et al. 1998",
        )
    )
    weights = {"kinds": _WEIGHTED, "roles": ("weight",)}
    return [
        Rule("output bias", "constant", kinds=_WEIGHTED, activations=("output",),
             roles=("bias",), value=o.classifier_bias),
        Rule("bias before ReLU", "constant", kinds=_WEIGHTED, roles=("bias",),
             activations=("relu_family",), value=o.relu_bias),
        Rule("bias = 0", "constant", kinds=_WEIGHTED, roles=("bias",)),
        out,
        Rule("ReLU family: He", "variance_scaling", scale="activation", mode=o.mode,
             activations=("relu_family",), note="He et al. 2015, gain sqrt(2/(1+slope^2))",
             **weights),
        Rule("tanh/sigmoid family: Xavier", scale="activation", activations=("saturating",),
             note="Glorot and Bengio 2010, with the activation's gain", **weights,
             **xavier),
        Rule("SELU: LeCun normal", "variance_scaling", activations=("selu",),
             note="self-normalizing (Klambauer et al. 2017)", **weights),
        Rule("no activation: Xavier", activations=("none",),
             note="linear layer (projection) before no activation: Glorot and Bengio 2010",
             **weights, **xavier),
        Rule("other activation: He with its gain", "variance_scaling", scale="activation",
             mode=o.mode, activations=("any",),
             note="variance preserving, gain 1/sqrt(E[phi(z)^2]) (compute_gain)", **weights),
        Rule("residual branch scalars = 0", "constant", param="*branch_scalars.*",
             note="the residual-branch protocol of initlab.datadriven.fixup: scalar biases "
             "and multipliers (1 + s) start at 0"),
        Rule("LayerScale gate = 0.1", "constant", param=r"re:(^|\.)gate_\w+$", value=0.1,
             min_ndim=1, note="per-channel residual gate, CaiT's eps for depth <= 18 "
             "(Touvron et al. 2021, Sec. 3)"),
        Rule("residual gate = 0", "constant", param=r"re:(^|\.)gate_\w+$",
             note="scalar residual gate: ReZero (Bachlechner et al. 2020), SkipInit (De and "
             "Smith 2020): every block starts as the identity"),
        Rule("position embedding / class token", "truncated_normal",
             param=r"re:(^|\.)(pos_emb\w*|cls_token|position_embeddings?)$", std=0.02,
             bound=2.0, note="ViT (Dosovitskiy et al. 2021) as timm and Hugging Face draw it: "
             "trunc_normal_(std=0.02) with PyTorch's absolute bounds a=-2, b=2 (100 std, so "
             "in effect N(0, 0.02^2))"),
    ]  # fmt: skip


def _torch(o: PolicyOptions) -> list[Rule]:
    # torch.nn.Linear/ConvNd.reset_parameters: kaiming_uniform_(a=sqrt(5)) gives the variance
    # scale gain^2 = 2 / (1 + 5) = 1/3 on the stored fan_in, i.e. U(-1/sqrt(fan_in), ...).
    default = {"init": "variance_scaling", "scale": 1 / 3, "distribution": "uniform",
               "per_block": False}  # fmt: skip
    return [
        Rule("nn.Transformer: Xavier uniform (whole)", "variance_scaling", within=nn.Transformer,
             min_ndim=2, mode="fan_avg", distribution="uniform", per_block=False,
             note="nn.Transformer._reset_parameters re-draws every matrix inside it"),
        Rule("BatchNorm/InstanceNorm: own reset", "keep", module=RUNNING_STATS_NORM_TYPES,
             note="reset_parameters(): weight 1, bias 0 and, as a fresh module, running "
             "statistics and num_batches_tracked reset (reset_running_stats)"),
        *_norms(),
        Rule("Embedding N(0, 1)", "normal", kinds=("embedding",), roles=("weight",),
             module=nn.Embedding, zero_rows="padding_idx"),
        Rule("RNN U(+-1/sqrt(hidden))", kinds=_RECURRENT, mode="hidden",
             module=(nn.RNNBase, nn.RNNCellBase),
             **default),
        Rule("MHA in_proj Xavier (whole)", "variance_scaling", kinds=("attention",),
             roles=_QKV, mode="fan_avg", distribution="uniform", per_block=False),
        Rule("MHA bias_k/v Xavier normal", "variance_scaling", kinds=("attention",),
             roles=("bias_k", "bias_v"), mode="fan_avg", per_block=False),
        Rule("MHA biases 0", "constant", kinds=("attention", "attention_out"),
             roles=("in_proj_bias", "bias")),
        Rule("Linear/Conv default U(+-1/sqrt(fan_in))", kinds=("linear", "conv",
             "conv_transpose", "attention_out"), module=(nn.Linear, nn.Conv1d, nn.Conv2d,
             nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
             note="kaiming_uniform_(a=sqrt(5)); bias from the weight's fan_in", **default),
        Rule("own reset_parameters", "keep", note="the module's own default"),
    ]  # fmt: skip


def _hf(o: PolicyOptions, *, scaled: bool) -> list[Rule]:
    # Hugging Face PreTrainedModel._init_weights: std = config.initializer_range or 0.02 for
    # every Linear/Conv weight and Embedding (padding row 0), biases 0, norms 1 and 0.
    std = (
        {"std": 0.02, "std_from": "initializer_range"} if o.std is None else {"std": o.std}
    )  # fmt: skip
    rules = []
    if scaled:
        rules.append(
            Rule(
                "GPT-2 residual projection",
                "normal",
                param="*c_proj.weight",
                residual_scale=True,
                residual_layers="n_layer",
                note="std / sqrt(2 config.n_layer): two residual branches per layer (Radford et "
                "al. 2019, Sec. 2.3; Hugging Face GPT2PreTrainedModel._init_weights, which "
                "scales a cross-attention's c_proj by it too)",
                **std,
            )
        )
    weighted = ("linear", "conv", "conv_transpose")
    embedding = std if o.embedding_std is None else {"std": o.embedding_std}
    return rules + [
        *_norms(),
        Rule("embedding N(0, std)", "normal", kinds=("embedding",), roles=("weight",),
             zero_rows="padding_idx", **embedding),
        Rule("weights N(0, std)", "normal", kinds=weighted, roles=("weight",),
             note="Hugging Face PreTrainedModel._init_weights", **std),
        Rule("biases 0", "constant", kinds=weighted, roles=("bias",)),
        Rule("BERT LM head bias 0", "constant", module="BertLMPredictionHead", roles=("bias",),
             note="BertPreTrainedModel._init_weights zeroes it (the decoder's bias, untied "
             "when tie_word_embeddings=False)"),
        *_auto(o),
    ]  # fmt: skip


def _keras(o: PolicyOptions) -> list[Rule]:
    glorot = {"init": "variance_scaling", "mode": "fan_avg", "distribution": "uniform",
              "per_block": False}  # fmt: skip
    return [
        *_norms(),
        Rule("Embedding U(+-0.05)", "uniform", kinds=("embedding",), roles=("weight",),
             bound=0.05, zero_rows="padding_idx", note=_PAD_NOTE),
        Rule("unit forget bias", "forget_gate", kinds=("lstm",), roles=("bias_ih",), value=1.0),
        Rule("PReLU alpha 0", "constant", kinds=("prelu",), roles=("weight",),
             note="keras.layers.PReLU alpha_initializer='zeros'"),
        Rule("bias zeros", "constant", min_ndim=1, roles=("bias", "bias_ih", "bias_hh",
             "in_proj_bias", "bias_k", "bias_v")),
        Rule("recurrent kernel orthogonal", "orthogonal", kinds=_RECURRENT, roles=("weight_hh",),
             per_block=False),
        Rule("MHA q/k/v Glorot uniform, head-split kernel", kinds=("attention",), roles=_QKV,
             split_heads=True, note="keras.layers.MultiHeadAttention: each projection an "
             "EinsumDense kernel (in, heads, head_dim), fans heads*in and head_dim*in",
             **{**glorot, "per_block": True}),
        Rule("MHA output Glorot uniform, head-split kernel", kinds=("attention_out",),
             roles=("weight",), split_heads=True, note="keras.layers.MultiHeadAttention: "
             "output kernel (heads, head_dim, out), fans heads*head_dim and heads*out",
             **glorot),
        Rule("kernel Glorot uniform", min_ndim=2, kinds=(*_WEIGHTED, *_RECURRENT,
             "attention_out"), **glorot),
    ]  # fmt: skip


def _flax(o: PolicyOptions) -> list[Rule]:
    lecun = {"init": "variance_scaling", "distribution": "truncated_normal"}
    return [
        *_norms(),
        Rule("Embed N(0, 1/features)", "variance_scaling", kinds=("embedding",),
             roles=("weight",), mode="fan_out", zero_rows="padding_idx", note=_PAD_NOTE),
        Rule("bias zeros", "constant", min_ndim=1, roles=("bias", "bias_ih", "bias_hh",
             "in_proj_bias", "bias_k", "bias_v")),
        Rule("PReLU slope 0.01", "constant", kinds=("prelu",), roles=("weight",), value=0.01,
             note="flax.linen.PReLU negative_slope_init=0.01"),
        Rule("recurrent kernel orthogonal per gate", "orthogonal", kinds=_RECURRENT,
             roles=("weight_hh",)),
        Rule("kernel LeCun normal (truncated)", min_ndim=2, kinds=(*_WEIGHTED, *_RECURRENT,
             "attention", "attention_out"), **lecun),
    ]  # fmt: skip


PRESETS = {
    "auto": _auto,
    "torch": _torch,
    "gpt2": lambda o: _hf(o, scaled=True),
    "bert": lambda o: _hf(o, scaled=False),
    "keras": _keras,
    "flax": _flax,
}


def preset_rules(policy: str = "auto", **options) -> RuleSet:
    """Return the ordered rules of a named preset (first match wins) as a printable tuple.

    ``print(preset_rules("auto"))`` shows one line per rule: its conditions, its
    initialization and why; the result is otherwise a tuple of :class:`Rule`.

    Args:
        policy: one of ``auto``, ``torch``, ``gpt2``, ``bert``, ``keras``, ``flax``.
        **options: :class:`PolicyOptions` fields.

    Raises:
        ValueError: unknown ``policy`` (with a close match) or an invalid option value.
        TypeError: unknown option name.
    """
    _named(one_of, "policy", policy, PRESETS)
    return RuleSet(PRESETS[policy](PolicyOptions.from_kwargs(**options)))


def _named(check, argument: str, *args):
    """Run ``check(argument, *args)`` (a check of :mod:`initlab._checks`); re-raise its
    ValueError as an :class:`ArgumentError` naming ``argument`` with the same message, so that
    a command line can name the flag that set it."""
    try:
        return check(argument, *args)
    except ArgumentError:
        raise
    except ValueError as error:
        raise ArgumentError(argument, str(error)) from None
