"""The diagnosis verdicts on a panel of standard architectures under their standard inits.

None of them may be flagged, except where the init is genuinely wrong (kept beside, as the
positive controls that show the verdicts still fire). Before the gradient verdict compared
per-example norms (:mod:`initlab.diagnostics.verdicts`): a CNN with global average pooling got
``vanishing_gradients`` (the per-element RMS falls by the pool's ``H W`` across it) and a
pre-LN language model with tied embeddings under ``auto``/``gpt2`` got
``exploding_gradients`` (the stream gradient grows as the stream's scale falls toward the
small embedding).
"""

import math
import warnings

import pytest
import torch
from torch import nn

import initlab
from initlab.diagnostics.diagnose import diagnose
from initlab.diagnostics.statistics import example_norm
from initlab.experiments.diagnosis import diagnose_schemes, load_batch

CE = nn.functional.cross_entropy


def _codes(d):
    return [v.code for v in d.verdicts]


def _rows(d):
    return {r.name: r for r in d.layers}


def _init(model, scheme, example_input=None):
    """``torch``: the modules' own init; ``kaiming``: He normal on every weight, biases 0;
    otherwise an initlab preset."""
    if scheme == "kaiming":
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
    elif scheme != "torch":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            initlab.plan(model, scheme, example_input=example_input).apply(seed=0)
    return model


class GapCNN(nn.Module):
    """torchvision-like: conv stages (stride 2 between), global average pooling, a hidden
    Linear and the head. ``pool``: ``"module"`` (nn.AdaptiveAvgPool2d) or ``"mean"``
    (``x.mean((2, 3))``, as torchvision's MobileNet pools functionally)."""

    def __init__(self, c=8, norm=False, pool="module"):
        super().__init__()
        layers, cin = [], 3
        for i, cout in enumerate([c, c, 2 * c, 2 * c]):
            layers.append(nn.Conv2d(cin, cout, 3, padding=1, stride=2 if i == 2 else 1))
            layers += [nn.BatchNorm2d(cout)] if norm else []
            layers.append(nn.ReLU())
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool, self.avgpool = pool, nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(cin, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        x = self.features(x)
        x = x.mean((2, 3)) if self.pool == "mean" else self.avgpool(x).flatten(1)
        return self.classifier(x)


def _images(size, n=32):
    g = torch.Generator().manual_seed(0)
    # a smooth image (low-frequency content) plus noise, like natural images more than noise
    base = nn.functional.interpolate(torch.randn(n, 3, 4, 4, generator=g), size=(size, size))
    return base + 0.5 * torch.randn(n, 3, size, size, generator=g), torch.randint(
        0, 10, (n,), generator=g
    )


@pytest.mark.parametrize("size", [8, 32])
@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("pool", ["module", "mean"])
@pytest.mark.parametrize("scheme", ["kaiming", "auto"])
def test_gap_cnn_is_not_flagged(size, norm, pool, scheme):
    torch.manual_seed(0)
    model = _init(GapCNN(norm=norm, pool=pool), scheme)
    x, y = _images(size)
    d = diagnose(model, (x, y), loss_fn=CE)
    # Without norms, the ReLU after the hidden Linear may have about half its units dead for the
    # whole batch: pooled ReLU features are positive with a common mean, so w . f has the sign
    # of w . mean for every example. That is what the batch sees (dead_layers, by its rule),
    # not a gradient or activation scale the pooling fakes.
    allowed = ["healthy"] if norm else ["healthy", "dead_layers"]
    assert set(_codes(d)) <= set(allowed), [v.message for v in d.verdicts]
    assert all(v.layers == ("classifier.1",) for v in d.verdicts if v.code == "dead_layers")
    rows = _rows(d)
    # What the old rule read: the per-element RMS across the pool falls by about H W / 4.
    old = rows["features.0"].grad_rms / rows["classifier.0"].grad_rms
    if size == 32 and not norm:
        assert old < 0.1
    if pool == "module":
        assert rows["avgpool"].pooled == (size // 2) ** 2
    else:  # the functional mean is measured: the norm before it over after it
        fc = rows["classifier.0"]
        assert fc.reduced == (size // 2) ** 2 and fc.grad_in_norm > 0


def test_gap_cnn_with_torch_default_init():
    # With batch norm: healthy. Without: PyTorch's default U(+-1/sqrt(fan_in)) has 1/6 of
    # the variance ReLU needs (He et al. 2015), so each of the 4 layers between the compared
    # ones multiplies the back-propagated norm by about sqrt(1/6) = 0.41: 0.41^4 = 0.028, a
    # genuine vanishing signal, as in a plain ReLU MLP of that depth (below).
    torch.manual_seed(0)
    x, y = _images(32)
    assert _codes(diagnose(GapCNN(norm=True), (x, y), loss_fn=CE)) == ["healthy"]
    torch.manual_seed(0)
    d = diagnose(GapCNN(norm=False), (x, y), loss_fn=CE)
    assert "vanishing_gradients" in _codes(d)


def test_gap_cnn_with_tiny_weights_is_still_flagged():
    # Positive control: N(0, 0.01^2) convolutions (fan_in 72-144) shrink the back-propagated
    # signal by about 0.1 per layer.
    torch.manual_seed(0)
    model = GapCNN()
    with torch.no_grad():
        for m in model.features:
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, 0.01)
    x, y = _images(32)
    d = diagnose(model, (x, y), loss_fn=CE)
    assert "vanishing_gradients" in _codes(d)
    (v,) = [v for v in d.verdicts if v.code == "vanishing_gradients"]
    assert "from classifier.0 back to features.0" in v.message
    assert "(times 16, undoing the pooling between them)" in v.message  # sqrt(16 x 16)


class PreLNLM(nn.Module):
    """GPT-style decoder: token + learned position embeddings, pre-LN blocks, a final norm and
    a head tied to the token embedding."""

    def __init__(self, vocab=200, d=32, depth=6, length=16):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(length, d)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d, 4, 4 * d, dropout=0.0, batch_first=True, norm_first=True, activation="gelu"
            )
            for _ in range(depth)
        )
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, ids):
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1])
        for block in self.blocks:
            h = block(h, src_mask=mask, is_causal=True)
        return self.head(self.ln(h))


def _lm_loss(logits, ids):
    return CE(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


@pytest.mark.parametrize("scheme", ["torch", "auto", "gpt2"])
def test_pre_ln_lm_with_tied_embeddings_is_not_flagged(scheme):
    torch.manual_seed(0)
    ids = torch.randint(0, 200, (8, 16), generator=torch.Generator().manual_seed(1))
    model = _init(PreLNLM(), scheme, example_input=ids)
    d = diagnose(model, (ids, ids), loss_fn=_lm_loss)
    assert _codes(d) == ["healthy"], [v.message for v in d.verdicts]
    rows = _rows(d)
    assert "tok" not in d.residual_ends or rows["tok"].grad_norm is not None
    # the token lookup starts the stream: it is never a compared layer
    assert "tok" not in d.verdicts[0].message


def _hf_models():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    v, t, d, depth = 200, 16, 64, 6
    return {
        "gpt2": lambda: transformers.GPT2LMHeadModel(
            transformers.GPT2Config(vocab_size=v, n_positions=t, n_embd=d, n_layer=depth, n_head=4)
        ),
        "bert": lambda: transformers.BertForMaskedLM(
            transformers.BertConfig(
                vocab_size=v,
                hidden_size=d,
                num_hidden_layers=depth,
                num_attention_heads=4,
                intermediate_size=2 * d,
                max_position_embeddings=t,
            )
        ),  # fmt: skip
        "llama": lambda: transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                vocab_size=v,
                hidden_size=d,
                num_hidden_layers=depth,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=2 * d,
                max_position_embeddings=t,
                tie_word_embeddings=True,
            )
        ),  # fmt: skip
    }


@pytest.mark.parametrize("arch", ["gpt2", "bert", "llama"])
@pytest.mark.parametrize("scheme", ["hf", "auto", "gpt2"])
def test_hugging_face_tiny_configs_are_not_flagged(arch, scheme):
    build = _hf_models()[arch]
    torch.manual_seed(0)
    ids = torch.randint(0, 200, (4, 16), generator=torch.Generator().manual_seed(1))
    model = build()
    if scheme != "hf":
        _init(model, scheme, example_input={"input_ids": ids})
    d = diagnose(model, {"input_ids": ids, "labels": ids}, loss_fn=lambda out: out.loss)
    assert _codes(d) == ["healthy"], [v.message for v in d.verdicts]
    assert "gradients keep their scale" in d.verdicts[0].message  # judged, not skipped


@pytest.fixture(scope="module")
def mnist():
    return load_batch("mnist", size=64)


ZOO = [
    ("mlp", {}),
    ("mlp-784-128-10", {}),
    ("cnn", {}),
    ("resnet", {}),
    # Before: torch_default got exploding_activations (x14) from the stem's small output
    # to the stream that the norm-ended branches' unit variance builds.
    ("resmlp", {"norm": "layer"}),
    ("resmlp", {"norm": "batch"}),
    ("lstm", {}),
    ("transformer", {}),
]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("model", "params"), ZOO)
@pytest.mark.parametrize("scheme", ["torch_default", "kaiming_normal", "auto"])
def test_zoo_models_are_not_flagged(mnist, model, params, scheme):
    (result,) = diagnose_schemes(model, [scheme], mnist, model_params=params, seed=0)
    d = result.diagnosis
    assert _codes(d) == ["healthy"], [v.message for v in d.verdicts]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("scheme", ["kaiming_normal", "auto"])
def test_residual_mlp_without_normalization_under_he_is_genuinely_flagged(mnist, scheme):
    # Positive control: with no norm, each He-initialized block doubles the stream's variance
    # (8 blocks: activation std x 20-40, output std 15, an initial loss of 23-27 against
    # ln 10 = 2.3); the fix the hint names is fixup.
    (result,) = diagnose_schemes("resmlp", [scheme], mnist, seed=0)
    codes = _codes(result.diagnosis)
    assert {"exploding_activations", "exploding_gradients", "large_output"} <= set(codes)
    assert _codes(diagnose_schemes("resmlp", ["fixup"], mnist, seed=0)[0].diagnosis) == ["healthy"]


@pytest.mark.filterwarnings("ignore")
def test_deep_relu_mlp_with_torch_default_init_is_genuinely_flagged(mnist):
    # Positive control: 1/6 of He's variance per ReLU layer, 8 layers: 0.41^7 = 0.002.
    (result,) = diagnose_schemes("mlp", ["torch_default"], mnist, model_params={"depth": 8})
    assert "vanishing_gradients" in _codes(result.diagnosis)
    (kaiming,) = diagnose_schemes("mlp", ["kaiming_normal"], mnist, model_params={"depth": 8})
    assert _codes(kaiming.diagnosis) == ["healthy"]


def test_example_norm_against_a_hand_computation():
    g = torch.arange(24.0).reshape(2, 3, 4)
    per_example = [math.sqrt(float(g[b].pow(2).sum())) for b in range(2)]
    expected = math.sqrt((per_example[0] ** 2 + per_example[1] ** 2) / 2)
    assert example_norm(g, 0) == pytest.approx(expected, rel=1e-12)
    # a (T, B, H) output: the batch is dim 1
    t = g.transpose(0, 1).contiguous()
    assert example_norm(t, 1) == pytest.approx(expected, rel=1e-12)
    assert example_norm(torch.tensor([3.0, -4.0]), 0) == pytest.approx(math.sqrt(12.5))


def test_average_pool_divides_the_norm_by_sqrt_k_exactly():
    # The math the verdict undoes: dy / k on each of k positions.
    y = torch.randn(4, 3, 8, 8, requires_grad=True)
    pooled = nn.AdaptiveAvgPool2d(1)(y).flatten(1)
    g = torch.randn(4, 3)
    (grad,) = torch.autograd.grad(pooled, y, g)
    assert example_norm(grad, 0) == pytest.approx(example_norm(g, 0) / 8, rel=1e-6)
