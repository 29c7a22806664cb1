"""initlab.parameterize: each parameter's init std, multiplier and learning rate against the
tables (written out here by hand from the papers, not read from initlab's tables), for an MLP
and the zoo's char-gpt at two widths; the applied weights' measured std; the multipliers in the
forward pass (readout, attention logits, residual branches), their removal; bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from initlab._checks import ArgumentError
from initlab.parameterize import PARAMETERIZATIONS, parametrize
from initlab.policy import plan
from initlab.zoo.models import build_model

BASE = 32  # the MLP's base width
WIDTHS = (64, 256)
GPT = dict(vocab_size=11, seq_len=8, n_head=2)  # char-gpt sizes shared by every width
TOKENS = torch.arange(16).reshape(2, 8) % 11


def mlp(width: int, **kw) -> nn.Module:
    return build_model("mlp", depth=2, width=width, **kw)


def gpt(d_model: int, n_layer: int = 2) -> nn.Module:
    return build_model("char-gpt", d_model=d_model, n_layer=n_layer, **GPT)


# -- the MLP 784 -> w -> w -> 10 (ReLU), auto policy: He for hidden layers, Xavier for the head


def he(fan_in: int) -> float:
    return math.sqrt(2 / fan_in)


def xavier(fan_in: int, fan_out: int) -> float:
    return math.sqrt(2 / (fan_in + fan_out))


def expected_mlp(name: str, w: int) -> dict[str, dict[str, tuple]]:
    """Per parameter (init std, multiplier, Adam lr factor, SGD lr factor) at width w, base 32:
    hidden.0.0 is the input layer, hidden.1.0 the hidden one, head the output layer. From
    Tensor Programs IV Table 1 (SP, NTK), Tensor Programs V Table 8 (muP) and u-muP Table 2."""
    m = w / BASE
    if name == "sp":  # the policy at the model's width; nothing else changes
        return {
            "hidden.0.0.weight": (he(784), 1, 1, 1),
            "hidden.1.0.weight": (he(w), 1, 1, 1),
            "head.weight": (xavier(w, 10), 1, 1, 1),
        }
    if name == "ntk":  # base std, multiplier m^-1/2 where fan-in is a width
        return {
            "hidden.0.0.weight": (he(784), 1, 1, 1),
            "hidden.1.0.weight": (he(BASE), m**-0.5, 1, 1),
            "head.weight": (xavier(BASE, 10), m**-0.5, 1, 1),
        }
    if name == "mup":
        return {
            "hidden.0.0.weight": (he(784), 1, 1, m),  # input: SGD lr x fan_out mult
            "hidden.1.0.weight": (he(BASE) * m**-0.5, 1, 1 / m, 1),  # Adam lr / fan_in mult
            "head.weight": (xavier(BASE, 10), 1 / m, 1, m),  # readout 1/m, SGD lr x m
        }
    if name == "umup":  # absolute: N(0, 1), multipliers 1/sqrt(fan_in), 1/fan_in
        return {
            "hidden.0.0.weight": (1.0, 784**-0.5, w**-0.5, None),
            "hidden.1.0.weight": (1.0, w**-0.5, w**-0.5, None),
            "head.weight": (1.0, 1 / w, 1, None),
        }
    raise AssertionError(name)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["sp", "ntk", "mup", "umup"])
def test_mlp_rows_follow_the_table(name, width):
    base = mlp(BASE).to("meta")  # nothing allocated for the base
    p = parametrize(mlp(width), name, base=base)
    sgd = parametrize(mlp(width), name, base=base, optimizer="sgd") if name != "umup" else None
    for pname, (std, mult, adam_lr, sgd_lr) in expected_mlp(name, width).items():
        row = p[pname]
        assert row.init_std == pytest.approx(std, rel=1e-12), pname
        assert row.multiplier == pytest.approx(mult, rel=1e-12), pname
        assert row.lr_scale == pytest.approx(adam_lr, rel=1e-12), pname
        if sgd is not None:
            assert sgd[pname].lr_scale == pytest.approx(sgd_lr, rel=1e-12), pname
    assert [p[n].role for n in ("hidden.0.0.weight", "hidden.1.0.weight", "head.weight")] == [
        "input",
        "hidden",
        "output",
    ]
    # the plan the model is drawn from holds the same std
    assert p.plan["hidden.1.0.weight"].std == pytest.approx(p["hidden.1.0.weight"].init_std)
    # biases: zero under the auto policy; the head's bias (10 logits) has no width dim
    assert p["head.bias"].role == "fixed" and p["hidden.1.0.bias"].role == "bias"


@pytest.mark.parametrize("width", WIDTHS)
def test_mup_weight_decay_keeps_lr_times_decay_constant(width):
    # mup's rule: weight decay times the inverse of the width lr factor, so AdamW's decoupled
    # decay lr * wd of a hidden weight is the base's
    p = parametrize(mlp(width), "mup", base=mlp(BASE))
    row = p["hidden.1.0.weight"]
    assert row.lr_scale * row.weight_decay_scale == pytest.approx(1.0)
    assert row.weight_decay_scale == width / BASE


def _std_tolerance(n: int, kurtosis: float) -> float:
    # The sample variance of n iid draws has relative standard error sqrt((kurtosis - 1) / n),
    # so the sample std has about half of it: sqrt((kurtosis - 1) / (4 n)). Five standard
    # errors: a correct draw fails with probability below 1e-6.
    return 5 * math.sqrt((kurtosis - 1) / (4 * n))


@pytest.mark.parametrize("name", ["sp", "mup", "umup"])
def test_applied_weights_have_the_planned_std(name):
    width = 256
    model = mlp(width)
    p = parametrize(model, name, base=mlp(BASE)).apply_(seed=0)
    for row in p.rows:
        if row.init_std is None or row.init_std == 0:
            continue
        w = model.get_parameter(row.name).detach()
        kurtosis = {"normal": 3.0, "uniform": 1.8}[p.plan[row.name].distribution]
        tol = _std_tolerance(w.numel(), kurtosis)
        assert w.std().item() == pytest.approx(row.init_std, rel=tol), row.name
    p.remove()


def test_char_gpt_applied_weights_have_the_planned_std():
    model = gpt(64)
    p = parametrize(model, "mup", base=gpt(16).to("meta"), example_input=TOKENS).apply_(seed=0)
    checked = 0
    for row in p.rows:
        if not row.init_std:
            continue
        w = model.get_parameter(row.name).detach()
        distribution = p.plan[row.name].distribution
        # truncated at +-2 absolute, 100 std for pos_emb: in effect normal
        kurtosis = {"normal": 3.0, "truncated_normal": 3.0, "uniform": 1.8}[distribution]
        assert w.std().item() == pytest.approx(
            row.init_std, rel=_std_tolerance(w.numel(), kurtosis)
        )
        checked += 1
    assert checked == 2 * 6 + 3  # q, k, v, proj, fc, mlp.proj per block; embeddings, head
    p.remove()


def test_delta_finds_a_width_where_model_and_base_agree():
    # model and base both 32 wide: only the delta (64) shows the hidden layer's widths
    p = parametrize(mlp(BASE), "mup", base=mlp(BASE), delta=mlp(64))
    assert p["hidden.1.0.weight"].role == "hidden" and p["head.weight"].role == "output"
    assert p["head.weight"].multiplier == 1.0  # m = 32 / 32
    assert parametrize(mlp(BASE), "mup", base=mlp(BASE))["head.weight"].role == "fixed"


def test_apply_is_seeded_and_the_readout_multiplier_scales_the_input_not_the_bias():
    model, twin = mlp(64), mlp(64)
    p = parametrize(model, "mup", base=mlp(BASE)).apply_(seed=3)
    parametrize(twin, "mup", base=mlp(BASE)).apply_(seed=3)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        model.head.bias.fill_(0.5)
    x = torch.randn(5, 784, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = model.hidden(x)
        manual = features @ model.head.weight.T / 2 + 0.5  # m = 64 / 32 = 2
        assert torch.allclose(model(x), manual, atol=1e-6)
        p.remove()
        assert torch.allclose(model(x), features @ model.head.weight.T + 0.5, atol=1e-6)
    assert not p.attached


def test_apply_twice_attaches_once():
    model = mlp(64)
    p = parametrize(model, "mup", base=mlp(BASE))
    p.apply_(seed=0)
    p.apply_(seed=0)
    x = torch.randn(3, 784)
    with torch.no_grad():
        expected = model.hidden(x) @ model.head.weight.T / 2 + model.head.bias
        assert torch.allclose(model(x), expected, atol=1e-6)
    p.remove()


def test_param_groups_hold_every_parameter_once_with_its_lr():
    model = mlp(128)
    p = parametrize(model, "mup", base=mlp(BASE))
    groups = p.param_groups(lr=1e-3, weight_decay=0.1, eps=1e-8)
    names = [n for g in groups for n in g["names"]]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["hidden.1.0.weight"]["lr"] == pytest.approx(1e-3 / 4)
    assert by_name["hidden.1.0.weight"]["weight_decay"] == pytest.approx(0.4)
    assert by_name["head.weight"]["lr"] == 1e-3 and by_name["head.weight"]["eps"] == 1e-8
    for g in groups:
        params = dict(model.named_parameters())
        assert all(params[n] is q for n, q in zip(g["names"], g["params"], strict=True))
    opt = p.optimizer(torch.optim.AdamW, lr=1e-3, weight_decay=0.1)
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == len(groups)
    sgd = p.optimizer(torch.optim.SGD, lr=0.1)  # the groups follow the class's family
    by_name = {n: g for g in sgd.param_groups for n in g["names"]}
    assert (
        by_name["head.weight"]["lr"] == pytest.approx(0.4) and "eps" not in by_name["head.weight"]
    )


def test_one_training_step_runs_through_the_hooks():
    model = mlp(64)
    p = parametrize(model, "mup", base=mlp(BASE)).apply_(seed=0)
    opt = p.optimizer(torch.optim.Adam, lr=1e-2)
    x, y = torch.randn(8, 784), torch.randint(0, 10, (8,))
    before = [q.detach().clone() for q in model.parameters()]
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    p.remove()


# -- a parameter outside Linear/conv: the multiplier is a torch.nn.utils.parametrize


class RawMLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.inp = nn.Linear(4, width)
        self.w = nn.Parameter(torch.randn(width, width))  # used as x @ w.T: hidden
        self.out = nn.Linear(width, 2)

    def forward(self, x):
        return self.out(torch.relu(torch.relu(self.inp(x)) @ self.w.T))


@pytest.mark.filterwarnings("ignore:no rule covers")  # w: no rule, so its values stay
def test_multiplier_of_a_raw_parameter_is_a_removable_parametrization():
    model = RawMLP(64)
    p = parametrize(model, "ntk", base=RawMLP(16), example_input=torch.zeros(1, 4))
    assert p["w"].role == "hidden" and p["w"].multiplier == pytest.approx(0.5)  # (64/16)^-1/2
    p.apply_(seed=0)
    raw = model.parametrizations.w.original
    assert torch.allclose(model.w, raw * 0.5)
    groups = p.param_groups(lr=0.1)
    assert any(q is raw for g in groups for q in g["params"])
    p.remove()
    assert isinstance(model.w, nn.Parameter) and model.w is raw


# -- char-gpt at two widths: roles, stds, the attention logits 1/d_head, readout


@pytest.mark.parametrize("d_model", [32, 64])
def test_char_gpt_mup_rows(d_model):
    base = gpt(16).to("meta")
    model = gpt(d_model)
    p = parametrize(model, "mup", base=base, example_input=TOKENS)
    sp = plan(model, example_input=TOKENS)
    base_sp = plan(gpt(16))
    m = d_model / 16
    for name in ("blocks.0.attn.q.weight", "blocks.1.mlp.fc.weight", "blocks.1.mlp.proj.weight"):
        row = p[name]
        # fan-in rules scale with both widths alike: muP's hidden std is SP's at this width
        assert row.role == "hidden" and row.init_std == pytest.approx(sp[name].std, rel=1e-12)
        assert row.lr_scale == pytest.approx(1 / m) and row.multiplier == 1
    head = p["head.weight"]
    assert head.role == "output" and head.multiplier == pytest.approx(1 / m)
    assert head.init_std == pytest.approx(base_sp["head.weight"].std, rel=1e-12)
    emb = p["tok_emb.weight"]
    assert emb.role == "embedding" and emb.init_std == 1.0 and emb.lr_scale == 1
    assert p["pos_emb"].role == "embedding" and p["pos_emb"].init_std == pytest.approx(0.02)
    assert p["blocks.0.ln1.weight"].role == "norm" and p["blocks.0.ln1.weight"].lr_scale == 1
    assert p["blocks.0.attn.q.bias"].role == "bias"
    assert p.attention == {f"blocks.{i}.attn.score": pytest.approx(m**-0.5) for i in (0, 1)}


def test_char_gpt_logits_are_q_k_over_d_head():
    model = gpt(64)
    p = parametrize(model, "mup", base=gpt(16), example_input=TOKENS).apply_(seed=0)
    seen = {}
    attn = model.blocks[0].attn
    hooks = [
        attn.q.register_forward_hook(lambda m, a, o: seen.setdefault("q", o)),
        attn.k.register_forward_hook(lambda m, a, o: seen.setdefault("k", o)),
        attn.score.register_forward_hook(lambda m, a, o: seen.setdefault("score", o)),
    ]
    with torch.no_grad():
        model(TOKENS)
    for h in hooks:
        h.remove()
    d_head, d_base = 32, 8  # 64 / 2 heads; base 16 / 2 heads

    def heads(t):
        return t.reshape(2, 8, 2, d_head).transpose(1, 2)

    q, k = heads(seen["q"]), heads(seen["k"])
    expected = q @ k.transpose(-2, -1) / d_head * math.sqrt(d_base)  # 1/d, equal to SP at base
    assert torch.allclose(seen["score"], expected, atol=1e-5)
    p.remove()


# -- depth: residual blocks, branch multipliers, block learning rates and epsilon


@pytest.mark.parametrize(("name", "alpha"), [("depth-mup", 0.5), ("completep", 1.0)])
def test_depth_parameterizations(name, alpha):
    model = gpt(32, n_layer=4)
    p = parametrize(model, name, base=gpt(16, n_layer=2), example_input=TOKENS)
    assert (p.depth, p.base_depth) == (4, 2)
    ratio = 2.0  # L / L_base
    branch = ratio**-alpha
    assert set(p.branches) == {f"blocks.{i}.{s}.proj" for i in range(4) for s in ("attn", "mlp")}
    assert all(v == pytest.approx(branch) for v in p.branches.values())
    q = p["blocks.3.attn.q.weight"]
    assert q.lr_scale == pytest.approx(0.5 * ratio ** (alpha - 1))  # width 1/m, depth
    assert p["blocks.3.attn.proj.bias"].branch_multiplier == pytest.approx(branch)
    assert p["ln_f.weight"].lr_scale == 1 and p["ln_f.weight"].block is None
    if name == "completep":  # Dey et al. 2025 Table 1: eps m_in^-1 L^-alpha, vectors L^-alpha
        assert q.eps_scale == pytest.approx(0.5 / ratio)
        assert p["blocks.0.ln1.weight"].eps_scale == pytest.approx(1 / ratio)
    else:
        assert q.eps_scale == 1
    # the hook scales the branch's output
    p.apply_(seed=0)
    seen = []
    proj = model.blocks[1].mlp.proj
    h = proj.register_forward_hook(lambda m, a, o: seen.append((a[0], o)))
    with torch.no_grad():
        model(TOKENS)
        x, out = seen[0]
        unhooked = nn.functional.linear(x, proj.weight, proj.bias)
        assert torch.allclose(out, branch * unhooked, atol=1e-6)
    h.remove()
    p.remove()


def test_depth_against_a_base_of_another_width_and_depth():
    # the zoo's residual MLP: blocks.i.{fc1, fc2} and 0-dim Fixup scalars; the base has 2
    # blocks of width 32, the model 8 of width 64: its blocks match the base's by block name
    model = build_model("resmlp", width=64, depth=8)
    base = build_model("resmlp", width=32, depth=2).to("meta")
    p = parametrize(model, "depth-mup", base=base, example_input=torch.zeros(2, 784))
    assert (p.depth, p.base_depth) == (8, 2)
    assert p["blocks.7.fc1.weight"].base_shape == (32, 32)
    assert p["blocks.7.fc1.weight"].lr_scale == pytest.approx(0.5 * 4**-0.5)
    assert p["blocks.7.branch_scalars.0"].role == "fixed"
    assert p.branches and all(v == pytest.approx(0.5) for v in p.branches.values())  # 4^-1/2
    assert p["stem.0.weight"].lr_scale == 1 and p["stem.0.weight"].block is None


def test_depth_given_explicitly():
    p = parametrize(gpt(32, n_layer=2), "completep", base=gpt(16, n_layer=2),
                    example_input=TOKENS, depth=8, base_depth=2)  # fmt: skip
    assert p.branches["blocks.0.attn.proj"] == pytest.approx(0.25)


# -- bad input


def test_unknown_parameterization_lists_the_valid_ones():
    with pytest.raises(ValueError, match="parameterization must be one of") as info:
        parametrize(mlp(64), "mu-p", base=mlp(BASE))
    for name in PARAMETERIZATIONS:
        assert repr(name) in str(info.value)


def test_unsupported_optimizer_is_refused_naming_the_supported():
    with pytest.raises(ArgumentError, match=r"umup covers optimizers \['adam', 'adamw'\]"):
        parametrize(mlp(64), "umup", base=mlp(BASE), optimizer="sgd")
    with pytest.raises(ValueError, match=r"optimizer must be one of \['adam', 'adamw', 'sgd'\]"):
        parametrize(mlp(64), "mup", base=mlp(BASE), optimizer="lamb")
    p = parametrize(mlp(64), "mup", base=mlp(BASE))
    with pytest.raises(ArgumentError, match="torch.optim.SGD, torch.optim.Adam or"):
        p.optimizer(torch.optim.RMSprop, lr=1e-3)
    c = parametrize(gpt(32), "completep", base=gpt(16), example_input=TOKENS)
    with pytest.raises(ArgumentError, match=r"covers optimizers \['adam', 'adamw'\]"):
        c.optimizer(torch.optim.SGD, lr=0.1)


def test_unmatchable_shapes_name_the_parameter_and_both_shapes():
    class Conv(nn.Module):
        def __init__(self, c, k):
            super().__init__()
            self.conv = nn.Conv2d(3, c, k)

    with pytest.raises(ArgumentError, match=r"'conv.weight' has shape \(8, 3, 5, 5\) in the "
                                            r"model and \(4, 3, 3, 3\) in the base"):  # fmt: skip
        parametrize(Conv(8, 5), "mup", base=Conv(4, 3))
    # a parameter missing from the base: a third hidden layer the 2-layer base lacks
    with pytest.raises(ArgumentError, match=r"'hidden.2.0.weight' \(shape \(64, 64\)\)"):
        parametrize(build_model("mlp", depth=3, width=64), "mup", base=mlp(BASE))
    with pytest.raises(ArgumentError, match="different number of dimensions"):
        parametrize(nn.Linear(4, 4), "mup", base=nn.Bilinear(4, 4, 4, bias=False))


def test_base_is_required_and_depth_needs_a_trace():
    with pytest.raises(ArgumentError, match="mup needs base="):
        parametrize(mlp(64), "mup")
    with pytest.raises(ArgumentError, match="needs example_input="):
        parametrize(gpt(32), "depth-mup", base=gpt(16))
    with pytest.raises(ArgumentError, match="no residual branch"):
        parametrize(mlp(64), "completep", base=mlp(BASE), example_input=torch.zeros(2, 784))
    assert parametrize(mlp(64), "sp")["head.weight"].role == "fixed"  # base = the model


def test_table_lists_every_parameter_and_the_notes():
    mha = nn.ModuleDict({"attn": nn.MultiheadAttention(32, 2), "out": nn.Linear(32, 3)})
    base = nn.ModuleDict({"attn": nn.MultiheadAttention(16, 2), "out": nn.Linear(16, 3)})
    p = parametrize(mha, "mup", base=base)
    text = p.table()
    assert all(r.name in text for r in p.rows)
    assert "attention 'attn' exposes no logit hook" in text
    assert p["out.weight"].role == "output"


class TiedLM(nn.Module):
    """Embedding and output layer share one weight (Press and Wolf 2017)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, d)
        self.mix = nn.Linear(d, d)
        self.head = nn.Linear(d, 11, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tokens):
        return self.head(torch.relu(self.mix(self.emb(tokens))))


def test_tied_readout_takes_the_output_multiplier_on_its_input():
    model = TiedLM(64)
    p = parametrize(model, "mup", base=TiedLM(16), example_input=TOKENS)
    assert p["emb.weight"].role == "embedding" and p["emb.weight"].multiplier == 1
    assert p.readouts == {"head": pytest.approx(0.25)}  # 1 / (64 / 16)
    assert any("head.weight is emb.weight (tied)" in n for n in p.notes)
    p.apply_(seed=0)
    with torch.no_grad():
        features = torch.relu(model.mix(model.emb(TOKENS)))
        assert torch.allclose(model(TOKENS), features @ model.emb.weight.T / 4, atol=1e-6)
    p.remove()


def test_to_dict_is_json():
    import json

    p = parametrize(gpt(32), "completep", base=gpt(16), example_input=TOKENS)
    data = json.loads(json.dumps(p.to_dict()))
    assert data["name"] == "completep" and len(data["rows"]) == len(p.rows)
    assert data["rows"][0]["name"] == p.rows[0].name


def test_depth_mup_sgd_keeps_the_lr_in_depth_and_a_meta_model_is_traced_on_meta():
    with torch.device("meta"):  # nothing allocated: the trace runs on meta tensors
        model, base = gpt(32, n_layer=4), gpt(16, n_layer=2)
    p = parametrize(model, "depth-mup", base=base, example_input=TOKENS, optimizer="sgd")
    assert p.depth == 4 and p.branches["blocks.3.mlp.proj"] == pytest.approx(2**-0.5)
    # SGD: muP's width factors only (hidden m_out / m_in = 1, vectors x m = 2)
    assert p["blocks.3.attn.q.weight"].lr_scale == 1
    assert p["blocks.3.ln1.weight"].lr_scale == pytest.approx(2)
