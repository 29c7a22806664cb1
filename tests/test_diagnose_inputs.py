"""diagnose takes what a plan's example_input takes: token ids, dicts and tuples of inputs."""

import pytest
import torch
from torch import nn

from initlab.diagnostics.diagnose import diagnose

transformers = pytest.importorskip("transformers")

VOCAB, WIDTH, T, B = 50, 16, 8, 4


def _ids(n=B, seed=0):
    return torch.randint(0, VOCAB, (n, T), generator=torch.Generator().manual_seed(seed))


def _rows(d):
    return {r.name: r for r in d.layers}


def _std(t):
    return t.detach().double().std(correction=0).item()


class TinyLM(nn.Module):
    """Token ids (B, T) -> logits (B, T, VOCAB): embedding, 2 encoder layers, a head."""

    def __init__(self):
        super().__init__()
        self.clip = Clip()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        layer = nn.TransformerEncoderLayer(WIDTH, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, ids):
        return self.head(self.encoder(self.embed(self.clip(ids))))  # (B, T, VOCAB)


class Clip(nn.Module):
    """An integer-valued leaf module: its output gets no row."""

    def forward(self, ids):
        return ids.clamp(0, VOCAB - 1)


def _next_token_loss(logits, targets):
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def test_token_ids_with_a_loss():
    torch.manual_seed(0)
    model, ids = TinyLM(), _ids()
    d = diagnose(model, (ids, _ids(seed=1)), loss_fn=_next_token_loss)
    rows = _rows(d)
    assert "clip" not in rows  # integer output: no statistics
    assert rows["embed"].std == pytest.approx(_std(model.embed.weight[ids]), rel=1e-12)
    assert rows["embed"].grad_rms > 0 and rows["embed"].shape == (B, T, WIDTH)
    with torch.no_grad():
        logits = model(ids)
    assert d.output_std == pytest.approx(_std(logits), rel=1e-9)
    assert d.loss == pytest.approx(_next_token_loss(logits, _ids(seed=1)).item(), rel=1e-6)
    assert {"encoder.layers.0.linear2", "encoder.layers.1.linear2"} <= set(d.residual_ends)
    assert ids.equal(_ids())  # the input is not modified


def _bert():
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=T, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()  # eval: dropout off, as in the manual pass


def test_bert_from_a_config_on_a_dict_batch():
    model, ids = _bert(), _ids()
    batch = {"input_ids": ids, "attention_mask": torch.ones(B, T, dtype=torch.long)}
    d = diagnose(model, batch, loss_fn=lambda out: out.last_hidden_state[:, 0].sum())
    rows = _rows(d)
    word = rows["embeddings.word_embeddings"]
    assert word.std == pytest.approx(_std(model.embeddings.word_embeddings.weight[ids]), rel=1e-12)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # the ModelOutput's first tensor
    assert d.output_std == pytest.approx(_std(hidden), rel=1e-9)
    # HF's GELUActivation module is an activation row, so the signal verdict has rows.
    assert rows["encoder.layer.0.intermediate.intermediate_act_fn"].kind == "activation"
    ends = {f"encoder.layer.{i}.{p}.dense" for i in (0, 1) for p in ("attention.output", "output")}
    assert set(d.residual_ends) == ends
    # Every weight layer but the pooler (not on the loss's path) has an output gradient.
    weights = [r for r in d.layers if r.kind == "weight"]
    assert [r.name for r in weights if r.grad_rms is None] == ["pooler.dense"]
    assert [v.code for v in d.verdicts] == ["healthy"]


def test_gpt2_conv1d_layers_are_weight_rows_with_their_own_fan_in():
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=WIDTH, n_layer=2, n_head=2, n_positions=T,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model, ids = transformers.GPT2Model(config).eval(), _ids()
    seen = {}
    handle = model.h[0].attn.c_attn.register_forward_hook(
        lambda m, args, out: seen.update(x=args[0].detach(), y=out.detach())
    )
    with torch.no_grad():
        model(input_ids=ids)
    handle.remove()
    d = diagnose(model, {"input_ids": ids})
    row = _rows(d)["h.0.attn.c_attn"]
    # Conv1D stores its weight (in, out) = (16, 48): fan_in is 16, not 48.
    c_attn = model.h[0].attn.c_attn
    w, b = c_attn.weight.detach().double(), c_attn.bias.detach().double()
    predicted = 16 * w.pow(2).mean() * seen["x"].double().pow(2).mean() + b.pow(2).mean()
    expected = seen["y"].double().var(correction=0) / predicted
    assert row.kind == "weight" and row.variance_ratio == pytest.approx(expected.item(), rel=1e-9)
    assert {"h.0.mlp.c_proj", "h.1.mlp.c_proj"} <= set(d.residual_ends)


def test_a_tuple_input_inside_the_batch_is_positional():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(5, 2)

        def forward(self, x, z):
            return self.a(x) + self.b(z)

    g = torch.Generator().manual_seed(0)
    x, z, y = torch.randn(8, 3, generator=g), torch.randn(8, 5, generator=g), torch.arange(8) % 2
    model = TwoInputs()
    d = diagnose(model, ((x, z), y), loss_fn=nn.functional.cross_entropy)
    assert [r.name for r in d.layers] == ["a", "b"]
    assert d.loss == pytest.approx(nn.functional.cross_entropy(model(x, z), y).item(), rel=1e-6)


def test_input_errors_name_the_argument():
    model = TinyLM()
    with pytest.raises(ValueError, match=r"at least 2 examples.*got input shape \(1, 8\)"):
        diagnose(model, {"ids": _ids(1)})
    with pytest.raises(ValueError, match="jacobian > 0 needs a single floating-point input"):
        diagnose(model, _ids(), jacobian=1)
    with pytest.raises(TypeError, match="batch must be the model's input.*got a NoneType input"):
        diagnose(model, None)


def _conv1d_stack(weights):
    """Conv1D(8, 4) -> tanh -> Conv1D(8, 8) -> tanh -> Conv1D(3, 8), zero biases, and the
    nn.Linear stack with the same map (each weight transposed to (out, in))."""
    conv1d = transformers.pytorch_utils.Conv1D
    stack = nn.Sequential(conv1d(8, 4), nn.Tanh(), conv1d(8, 8), nn.Tanh(), conv1d(3, 8))
    mirror = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    with torch.no_grad():
        for i, w in zip((0, 2, 4), weights, strict=True):
            stack[i].weight.copy_(w)  # (in, out)
            mirror[i].weight.copy_(w.T)
            stack[i].bias.zero_()
            mirror[i].bias.zero_()
    return stack, mirror


def _sym(d):
    return [p.symmetric_fraction for p in d.params if p.name.endswith("weight")]


def _weight(n_in, n_out, kind, seed):
    """An (in, out) Conv1D weight: ``const`` (every unit and every input feature equal),
    ``cols`` (distinct units, i.e. columns, with equal input features, i.e. rows), ``rand``."""
    g = torch.Generator().manual_seed(seed)
    if kind == "const":
        return torch.full((n_in, n_out), 0.3)
    if kind == "cols":
        return torch.randn(1, n_out, generator=g).expand(n_in, n_out)
    return torch.randn(n_in, n_out, generator=g)


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        # Every unit has the same incoming and outgoing weights (the last is never flagged).
        (("const", "const", "const"), [1.0, 1.0, 1.0]),
        # Distinct units whose input features are interchangeable: nothing is symmetric.
        (("cols", "cols", "cols"), [0.0, 0.0, 0.0]),
        # Equal incoming weights, but the next layer reads each unit with its own weights.
        (("const", "rand", "const"), [0.0, 0.0, 1.0]),
    ],
)
def test_conv1d_units_are_its_columns(kinds, expected):
    # A Conv1D weight is (in, out): its units are columns, and the next Conv1D's rows are
    # their outgoing weights. The nn.Linear stack computing the same map is the oracle.
    shapes = ((4, 8), (8, 8), (8, 3))
    weights = [
        _weight(*shape, kind, i) for i, (shape, kind) in enumerate(zip(shapes, kinds, strict=True))
    ]
    stack, mirror = _conv1d_stack(weights)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(3))
    d, oracle = diagnose(stack, x), diagnose(mirror, x)
    assert _sym(d) == expected and _sym(oracle) == expected
    flagged = [v.layers for v in d.verdicts if v.code == "unbroken_symmetry"]
    expected_flags = tuple(f"{i}.weight" for i in (0, 2) if expected[i // 2] > 0.5)
    assert flagged == ([expected_flags] if expected_flags else [])


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (("const", "const", "const"), [1.0, 1.0, 1.0]),
        (("cols", "cols", "cols"), [0.0, 0.0, 0.0]),
        (("const", "rand", "const"), [0.0, 0.0, 1.0]),
    ],
)
def test_transposed_convolution_units_are_its_second_dim(kinds, expected):
    # A ConvTranspose weight is (in, out, *kernel): with 1x1 kernels the stack computes the
    # map of the Conv2d stack holding the transposed weights, the oracle.
    shapes = ((4, 8), (8, 8), (8, 3))
    weights = [
        _weight(*shape, kind, i) for i, (shape, kind) in enumerate(zip(shapes, kinds, strict=True))
    ]
    stack = nn.Sequential(*(nn.ConvTranspose2d(*s, 1, bias=False) for s in shapes))
    mirror = nn.Sequential(*(nn.Conv2d(*s, 1, bias=False) for s in shapes))
    with torch.no_grad():
        for t, c, w in zip(stack, mirror, weights, strict=True):
            t.weight.copy_(w[:, :, None, None])
            c.weight.copy_(w.T[:, :, None, None])
    x = torch.randn(16, 4, 3, 3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(stack(x), mirror(x))
    assert _sym(diagnose(stack, x)) == expected == _sym(diagnose(mirror, x))


def test_grouped_transposed_weight_is_regrouped_by_output_unit():
    from initlab.diagnostics.statistics import out_in

    layer = nn.ConvTranspose2d(4, 6, 1, groups=2, bias=False)  # weight (4, 3, 1, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(12.0).reshape(4, 3, 1, 1))
    # group 0: inputs 0-1 -> outputs 0-2; group 1: inputs 2-3 -> outputs 3-5
    expected = [[0, 3], [1, 4], [2, 5], [6, 9], [7, 10], [8, 11]]
    assert out_in(layer).flatten(1).tolist() == [[float(v) for v in r] for r in expected]
