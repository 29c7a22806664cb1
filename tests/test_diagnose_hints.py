"""diagnose on zoo MLPs with MNIST: the gradient verdict and hints that the tool itself confirms.

Each case follows the new-user trial: a scheme is diagnosed, the verdict is checked against what
the measured profile and mean field say, and the scheme the verdict's hint names is applied to
the same model and must clear that verdict.
"""

import pytest

from initlab.diagnostics.verdicts import HINTS
from initlab.experiments.diagnosis import diagnose_schemes, load_batch


@pytest.fixture(scope="module")
def batch():
    return load_batch("mnist", size=256)


def _codes(batch, scheme, **model):
    (result,) = diagnose_schemes("mlp", [scheme], batch, model_params=model, seed=0)
    return [v.code for v in result.diagnosis.verdicts]


# (model, scheme, expected verdict, scheme named by that verdict's hint)
CASES = [
    # N(0, 0.01^2), fan_in 256: each layer multiplies the std by about 0.16.
    (dict(depth=50, activation="tanh"), "normal:std=0.01", "vanishing_gradients", "lecun_normal"),
    (dict(depth=50, activation="tanh"), "normal:std=0.01", "vanishing_activations", "orthogonal"),
    # sigma_w^2 = 2 and (5/3)^2 = 2.8 are chaotic for tanh (critical sigma_w^2 = 1 at sigma_b = 0).
    (dict(depth=50, activation="tanh"), "kaiming_normal", "exploding_gradients", "lecun_normal"),
    (dict(depth=50, activation="tanh"), "xavier_normal:gain=1.6667", "exploding_gradients",
     "orthogonal"),
    # Xavier on ReLU halves the variance per layer: 0.5^19 over 20 layers.
    (dict(depth=20, activation="relu"), "xavier_normal", "vanishing_gradients", "kaiming_normal"),
    # N(0, 0.2^2), fan_in 256, ReLU: the variance grows by 0.04 * 256 / 2 = 5.1 per layer.
    (dict(depth=20, activation="relu"), "normal:std=0.2", "exploding_activations",
     "kaiming_normal"),
    # N(0, 0.5^2), fan_in 256: pre-activation std 8, tanh pinned at +-1.
    (dict(depth=5, activation="tanh"), "normal:std=0.5", "saturated_layers", "lecun_normal"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "scheme", "code", "fix"), CASES)
def test_verdict_and_its_hint_clears_it(batch, model, scheme, code, fix):
    assert code in _codes(batch, scheme, **model)
    assert fix in HINTS[code]
    assert code not in _codes(batch, fix, **model)


@pytest.mark.parametrize("scheme", ["xavier_normal", "orthogonal", "lecun_normal"])
def test_deep_tanh_at_the_edge_of_chaos_is_healthy(batch, scheme):
    # fan_avg = fan_in on the 256x256 layers: sigma_w^2 = 1, the critical point, where mean
    # field predicts trainability to thousands of layers; the tool must agree.
    assert _codes(batch, scheme, depth=50, activation="tanh") == ["healthy"]


@pytest.mark.parametrize("scheme", ["xavier_normal", "orthogonal", "kaiming_normal"])
def test_shallow_relu_raises_no_false_gradient_alarm(batch, scheme):
    # Before: the 10-unit head's gradient against the 256-unit hidden layers gave ratios ~0.08.
    assert _codes(batch, scheme, depth=3, activation="relu") == ["healthy"]


def test_tanh_hints_do_not_recommend_the_chaotic_gain():
    assert not any("5/3" in hint for hint in HINTS.values())


def test_diagnosis_plot_writes_a_png(batch, tmp_path):
    a, b = diagnose_schemes("mlp", ["xavier_normal", "kaiming_normal"], batch, seed=0)
    path = a.diagnosis.plot(tmp_path / "sub" / "p.png", label="x", others={"k": b.diagnosis})
    assert path == tmp_path / "sub" / "p.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chaotic_tanh_verdict_agrees_with_the_mean_field_gradient_growth(batch):
    # He init on tanh: chi_1 = 1.105 > 1 (chaotic). The mean field's "trainable up to about
    # 131 layers" (6 xi_c) is about input correlations; the squared gradient grows by chi_1
    # per layer (Schoenholz et al. 2017, Sec. 4), the norm by 1.105^24.5 = 11.6 over 50
    # layers, and diagnose measures about 21: exploding_gradients is not a false alarm, and
    # the CLI prints the predicted growth beside the mean-field line.
    from initlab.cli.diagnose import _mean_field_gradient

    (result,) = diagnose_schemes(
        "mlp", ["kaiming_normal"], batch, model_params=dict(depth=50, activation="tanh"), seed=0
    )
    mf = result.mean_field
    assert mf.phase == "chaotic" and 100 < mf.trainable_depth < 160
    line = _mean_field_gradient(mf, result.diagnosis)
    growth = mf.chi_1**24.5
    assert 10 < growth < 13 and f"chi_1^((50 - 1) / 2) = {growth:.3g}" in line
    (v,) = [v for v in result.diagnosis.verdicts if v.code == "exploding_gradients"]
    assert "from hidden.49.0 back to hidden.0.0" in v.message
