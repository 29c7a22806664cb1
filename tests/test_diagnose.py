"""diagnose: verdicts on constructed cases, exact statistics, and a model left untouched."""

import json
import math

import pytest
import torch
from torch import nn

from initlab.diagnostics.diagnose import diagnose
from initlab.introspect.hooks import _denormals_flushed


def _mlp(depth, activation, init, width=64, in_features=32):
    layers = []
    for i in range(depth):
        layers += [nn.Linear(in_features if i == 0 else width, width), activation()]
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.bias.zero_()
                init(m.weight, generator)
    return model


def _batch(n=256, features=32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, features, generator=g), torch.randint(0, 10, (n,), generator=g)


def _codes(d):
    return [v.code for v in d.verdicts]


def _normal(std):
    return lambda w, g: w.normal_(0.0, std, generator=g)


def _he(gain):
    return lambda w, g: w.normal_(0.0, gain / math.sqrt(w.shape[1]), generator=g)


CE = nn.functional.cross_entropy


def test_vanishing_activations_and_gradients():
    # N(0, 0.01^2) with fan_in 64: each layer multiplies the std by about 0.01 * 8 = 0.08.
    d = diagnose(_mlp(10, nn.Tanh, _normal(0.01)), _batch(), loss_fn=CE)
    assert _codes(d) == ["vanishing_activations", "vanishing_gradients"]
    # lsuv is no longer hinted: on a 50-layer tanh MLP it explodes the gradients (ratio ~60).
    assert "kaiming_normal" in d.verdicts[0].hint and "lecun_normal" in d.verdicts[0].hint


def test_exploding_activations_and_gradients():
    # ReLU with std 3 / sqrt(fan_in): the variance grows by 9 / 2 per layer, so the logits
    # reach a std of about sqrt(4.5)^10 = 1800, far above unit scale as well.
    d = diagnose(_mlp(10, nn.ReLU, _he(3.0)), _batch(), loss_fn=CE)
    assert _codes(d) == ["exploding_activations", "exploding_gradients", "large_output"]


def test_healthy_kaiming_relu():
    d = diagnose(_mlp(10, nn.ReLU, _he(math.sqrt(2.0))), _batch(), loss_fn=CE)
    assert _codes(d) == ["healthy"] and d.healthy


def test_constant_init_is_symmetric_but_a_zero_last_branch_layer_is_not():
    d = diagnose(_mlp(3, nn.Tanh, lambda w, g: w.fill_(0.05)), _batch())
    assert "unbroken_symmetry" in _codes(d)
    assert [p.symmetric_fraction for p in d.params if p.name.endswith("weight")] == [1.0] * 4
    # A zero weight whose outgoing weights differ (fixup's last branch layer) is not symmetric:
    # its units feed distinct columns of the next layer, so their gradients differ.
    model = _mlp(3, nn.Tanh, _normal(0.2))
    with torch.no_grad():
        model[2].weight.zero_()
    d = diagnose(model, _batch())
    assert "unbroken_symmetry" not in _codes(d)
    assert d.params[2].symmetric_fraction == 0.0


def test_dead_fraction_is_exact():
    model = nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 2))
    with torch.no_grad():
        # Inputs are N(0, 1) and weights U(+-1/sqrt(8)), so w.x has std sqrt(8 / 24) = 0.58:
        # these 6 of 10 units never fire and the other 4 always do (8.6 sigma), with outputs
        # small enough (std < 10) to raise no large_output verdict.
        model[0].bias[:6] = -100.0
        model[0].bias[6:] = 5.0
    d = diagnose(model, _batch(64, 8)[0])
    assert d.layers[1].dead_fraction == pytest.approx(0.6, abs=0)
    assert _codes(d) == ["dead_layers"] and d.verdicts[0].layers == ("1",)


def test_saturated_fraction_is_exact():
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Tanh(), nn.Linear(4, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(4))
    # |tanh(x)| > 0.99 iff |x| > atanh(0.99) = 2.647: 5 of these 8 values (not 0.1, 0, 2.6).
    x = torch.tensor([[3.0, -3.0, 0.1, 2.7], [10.0, 0.0, -2.7, 2.6]])
    d = diagnose(model, x)
    assert d.layers[1].saturated_fraction == 5 / 8
    assert "saturated_layers" in _codes(d)
    sig = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Sigmoid())
    with torch.no_grad():
        sig[0].weight.copy_(torch.eye(4))
    # sigmoid(x) > 0.99 iff x > 4.595; < 0.01 iff x < -4.595: 2 of 8.
    d = diagnose(sig, torch.tensor([[5.0, -5.0, 0.0, 4.5], [1.0, 2.0, 3.0, -4.0]]))
    assert d.layers[1].saturated_fraction == 2 / 8


def test_statistics_and_output_gradients_match_a_manual_pass():
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(inplace=True), nn.Linear(16, 10))
    x, y = _batch()
    h = model[0](x)
    h.retain_grad()
    out = model[2](torch.relu(h))
    CE(out, y).backward()
    expected_grad_rms = h.grad.double().pow(2).mean().sqrt().item()
    expected_grad = model[0].weight.grad.clone()
    model.zero_grad(set_to_none=True)
    d = diagnose(model, (x, y), loss_fn=CE)
    first = d.layers[0]
    # Read at hook time, before the in-place ReLU rectified the tensor.
    assert first.mean == pytest.approx(h.double().mean().item(), rel=1e-9)
    assert first.std == pytest.approx(h.double().std(correction=0).item(), rel=1e-9)
    assert first.grad_rms == pytest.approx(expected_grad_rms, rel=1e-6)
    assert d.params[0].grad_norm == pytest.approx(expected_grad.double().norm().item(), rel=1e-6)
    assert model[0].weight.grad is None  # restored


def test_variance_ratio_is_one_for_independent_inputs():
    model = nn.Sequential(nn.Linear(512, 512))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 512, generator=g)
    d = diagnose(model, x)
    # Var(y) / (fan_in E[W^2] E[x^2] + E[b^2]) for N(0, 1) inputs: the estimate averages
    # 512 x 1024 outputs whose per-unit variances spread by sqrt(2 / 1024) = 4.4 %, so its
    # error is about 4.4 % / sqrt(512) = 0.2 %; 1 % is a 5-sigma bound.
    assert d.layers[0].variance_ratio == pytest.approx(1.0, abs=0.01)


def test_spectrum_and_jacobian_of_a_linear_map():
    model = nn.Sequential(nn.Linear(6, 4, bias=False))
    w = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model[0].weight.copy_(w)
    d = diagnose(model, torch.randn(8, 6), jacobian=2)
    s = torch.linalg.svdvals(w.double())
    p = d.params[0]
    assert p.sigma_max == pytest.approx(s[0].item()) and p.sigma_min == pytest.approx(s[-1].item())
    assert p.condition == pytest.approx((s[0] / s[-1]).item())
    # The input-output Jacobian of x -> W x is W itself, for every example.
    assert d.jacobian_singular_values == pytest.approx(s.tolist() * 2, rel=1e-5)


def test_model_left_unchanged():
    model = nn.Sequential(
        nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10)
    )
    model.train()
    model[4].eval()
    x, y = _batch()
    CE(model(x), y).backward()  # existing gradients must survive
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: (p.grad, p.grad.clone()) for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    flushed = _denormals_flushed()
    # jacobian with train-mode BatchNorm runs the whole batch again (running stats restored)
    d = diagnose(model, (x, y), loss_fn=CE, jacobian=2)
    assert len(d.jacobian_singular_values) == 2 * 10
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]) and p.grad is grads[n][0]
        assert torch.equal(p.grad, grads[n][1])
    for n, b in model.named_buffers():
        assert torch.equal(b, buffers[n]), n  # BatchNorm running stats not updated
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)  # dropout drew from a restored generator
    assert _denormals_flushed() == flushed


class _Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        self.fc(x)
        raise RuntimeError("boom")


def test_hooks_removed_and_state_restored_on_exceptions():
    model, x = _Boom(), torch.randn(4, 4)
    model.train()
    rng = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="boom"):
        diagnose(model, x)
    assert not model.fc._forward_hooks and not model._forward_hooks
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert not _denormals_flushed()


def test_table_and_dict():
    d = diagnose(_mlp(3, nn.Tanh, _normal(0.01)), _batch(), loss_fn=CE)
    text = d.table()
    assert "vanishing_activations:" in text and "hint:" in text and "0.weight" in text
    data = json.loads(json.dumps(d.to_dict()))
    assert data["verdicts"][0]["code"] == "vanishing_activations"
    assert len(data["layers"]) == 7 and data["loss"] == pytest.approx(math.log(10), rel=0.01)


def test_errors_name_the_argument():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(TypeError, match="batch must be the model's input.*got a str input"):
        diagnose(model, ("not a tensor", torch.ones(4)))
    with pytest.raises(
        ValueError, match=r"at least 2 examples for statistics; got input shape \(1, 4\)"
    ):
        diagnose(model, torch.ones(1, 4))
    with pytest.raises(ValueError, match="loss_fn must return a scalar tensor"):
        diagnose(model, torch.ones(4, 4), loss_fn=lambda out: out)
    with pytest.raises(ValueError, match="jacobian must be >= 0; got jacobian=-1"):
        diagnose(model, torch.ones(4, 4), jacobian=-1)
    for bad in (1.5, True):  # one integer check (initlab._checks): a count, not a flag
        with pytest.raises(TypeError, match=f"jacobian must be an int; got jacobian={bad}"):
            diagnose(model, torch.ones(4, 4), jacobian=bad)


def test_cli_prints_tables_verdicts_mean_field_and_writes_the_figure(tmp_path, capsys):
    from initlab.cli import main

    argv = ["diagnose", "--depth", "3", "--width", "16", "--activation", "tanh"]
    argv += ["--schemes", "normal,lsuv", "--batch-size", "64", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "== normal ==" in out and "== lsuv ==" in out
    # normal: std 0.01 * sqrt(16) = 0.04 per layer, the signal vanishes within 3 layers.
    assert "normal: vanishing_activations" in out and "mean field (tanh)" in out
    assert (tmp_path / "depth_profiles.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "diagnoses.json").read_text())
    assert set(saved) == {"normal", "lsuv"} and len(saved["lsuv"]["layers"]) == 7


def test_cli_reports_an_unknown_scheme(capsys):
    from initlab.cli import main

    assert main(["diagnose", "--depth", "1", "--schemes", "kaiming_nromal"]) == 2
    assert "did you mean 'kaiming_normal'" in capsys.readouterr().err


def test_cli_names_the_flag_of_a_library_argument_error(tmp_path, monkeypatch, capsys):
    import initlab.experiments.diagnosis as diagnosis
    from initlab._checks import ArgumentError
    from initlab.cli import main

    def refuse(dataset, *, size, data_dir, download):
        raise ArgumentError("data_dir", f"data_dir={data_dir!r} holds no IDX files")

    monkeypatch.setattr(diagnosis, "load_batch", refuse)
    argv = ["diagnose", "--depth", "1", "--data-dir", "nowhere", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err  # the library's message, unchanged, after the flag
    assert (
        err
        == "initlab diagnose: error: argument --data-dir: data_dir='nowhere' holds no IDX files\n"
    )


def test_compare_stores_the_init_diagnosis_and_reports_verdicts(tmp_path):
    from initlab.experiments.sweep import CompareConfig, read_results, run_sweep
    from initlab.experiments.trainer import TrainConfig

    config = CompareConfig(
        schemes=("seed", "zeros"),
        seeds=1,
        train_subset=256,
        test_subset=100,
        train=TrainConfig(epochs=1, max_steps=2),
    )
    run_sweep(config, tmp_path, progress=False)
    init = [line for line in read_results(tmp_path / "results.jsonl") if line["type"] == "init"]
    assert init[0]["verdicts"] == ["healthy"]
    # Zero weights: every unit of fc1 equals every other (unbroken symmetry), the signal is 0.
    assert "unbroken_symmetry" in init[1]["verdicts"]
    saved = json.loads((tmp_path / "diagnosis" / "zeros-0.json").read_text())
    assert saved["params"][0]["name"] == "fc1.weight"
    assert saved["params"][0]["symmetric_fraction"] == 1.0
    report = (tmp_path / "report.md").read_text()
    assert "## Diagnosis at initialization" in report and "- `zeros`: " in report


def test_table_columns_line_up_with_long_names():
    # Names longer than the old fixed widths (22 characters for layers, 26 for parameters).
    model = nn.Sequential()
    model.add_module("encoder_block_with_a_long_name", nn.Sequential(nn.Linear(32, 16), nn.ReLU()))
    model.add_module("head", nn.Linear(16, 10))
    d = diagnose(model, _batch(), loss_fn=CE)
    layer_part, param_part = d.table().split("\n\n")[:2]
    for part, rows, label in ((layer_part, d.layers, "layer"), (param_part, d.params, "parameter")):
        header, *lines = part.splitlines()
        offset = max(len(r.name) for r in rows) + 1  # the name column and one space
        assert offset > 27 and header[:offset].rstrip() == label
        assert [line[:offset] for line in lines] == [r.name.ljust(offset) for r in rows]
        assert {len(line) for line in lines} == {len(header)}  # fixed widths after the name
    offset = max(len(r.name) for r in d.layers) + 1
    types = [line[offset:].split()[0] for line in layer_part.splitlines()]
    assert types == ["type", "Linear", "ReLU", "Linear"]
