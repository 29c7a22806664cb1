"""The zoo models added for the policy (lstm, transformer, resnet), the ``auto`` scheme and
``initlab plan``."""

import json
import math
import warnings

import pytest
import torch

from initlab.cli import main
from initlab.policy import InitPlan, plan
from initlab.schemes.registry import initialize
from initlab.zoo.models import MODELS, build_model

NEW = {
    "lstm": {"hidden": 16},
    "transformer": {"dim": 16, "heads": 2},
    "resnet": {"widths": (4, 8)},
}


@pytest.mark.parametrize("name", sorted(NEW))
@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (3, 28, 28), (3, 784)])
def test_new_zoo_models_accept_every_layout(name, shape):
    out = build_model(name, **NEW[name])(torch.zeros(shape))
    assert out.shape == (3, 10)


@pytest.mark.parametrize("name", sorted(NEW))
def test_auto_scheme_gives_finite_gradients_everywhere(name):
    model = build_model(name, **NEW[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no uncovered parameter, no failed trace
        initialize(model, "auto", generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    model(x).logsumexp(1).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


def test_auto_scheme_is_deterministic_per_generator_seed():
    a, b = build_model("lstm", hidden=8), build_model("lstm", hidden=8)
    initialize(a, "auto", generator=torch.Generator().manual_seed(3))
    initialize(b, "auto", generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_auto_rules_on_the_new_zoo():
    lstm = plan(build_model("lstm", hidden=16), example_input=torch.zeros(2, 784))
    assert lstm["lstm.weight_hh_l0"].rule == "recurrent hidden: orthogonal per gate"
    assert lstm["lstm.bias_ih_l0"].value == (0.0, 1.0, 0.0, 0.0)
    vit = plan(build_model("transformer", dim=16, heads=2), example_input=torch.zeros(2, 784))
    assert vit["encoder.layers.0.self_attn.in_proj_weight"].blocks == 3
    assert vit["encoder.layers.0.linear1.weight"].activation == "gelu"
    assert vit["pos_embed"].rule == "position embedding / class token"
    resnet = plan(build_model("resnet", widths=(4, 8)), example_input=torch.zeros(2, 784))
    convs = [r for r in resnet.rows if r.layer_kind == "conv"]
    assert {r.rule for r in convs} == {"ReLU family: He"}
    assert resnet["layers.0.conv1.weight"].std == pytest.approx(math.sqrt(2 / (4 * 9)))
    assert resnet["head.weight"].rule == "output layer: Xavier"


def test_every_zoo_model_is_fully_covered_by_auto():
    tokens = torch.zeros(2, 8, dtype=torch.int64)
    images = torch.zeros(2, 1, 28, 28)
    setups = [(name, {}) for name in MODELS]
    setups += [("char-gpt", {"gate": g, "norm": "post"}) for g in ("rezero", "layerscale")]
    setups += [("vit", {"gate": "layerscale"}), ("char-rnn", {"cell": "gru"})]
    for name, params in setups:
        token_model = getattr(MODELS[name], "input_kind", "image") == "tokens"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = build_model(name, **params)
            p = plan(model, example_input=tokens if token_model else images)
        assert p.source == "trace" and p.uncovered == [], (name, params)
    gated = plan(build_model("char-gpt", gate="rezero"), example_input=tokens)
    assert gated["blocks.0.gate_attn"].value == (0.0,)
    scaled = plan(build_model("vit", gate="layerscale"), example_input=images)
    assert scaled["blocks.0.gate_mlp"].value == (0.1,)
    assert plan(build_model("vit"), example_input=images)["pos_emb"].std == 0.02


def test_cli_plan_prints_and_writes_json(tmp_path, capsys):
    path = tmp_path / "plan.json"
    factory = "initlab.zoo.extra:SmallResNet"
    code = main(["plan", factory, "--input-shape", "2,1,28,28", "--json", str(path),
                 "--option", "zero_init_residual=true"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "layers.0.bn2.weight" in out and "residual norm = 0" in out
    assert "activations from trace" in out
    data = json.loads(path.read_text())
    model = build_model("resnet")
    restored = InitPlan.from_dict(data, model)
    assert restored["layers.0.bn2.weight"].value == (0.0,)


def test_cli_plan_errors(capsys):
    assert main(["plan", "no_such_module_xyz:f"]) == 2
    assert "No module named 'no_such_module_xyz'" in capsys.readouterr().err
    assert main(["plan", "torch.nn"]) == 2
    assert "MODULE:FACTORY" in capsys.readouterr().err
    assert main(["plan", "initlab.zoo.extra:SmallResNet", "--policy", "atuo"]) == 2
    assert "did you mean 'auto'" in capsys.readouterr().err
