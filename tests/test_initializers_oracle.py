"""Exact properties: bit-for-bit agreement with torch.nn.init, orthogonality, identities."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch.nn import init as torch_init

import initlab as il

SHAPES = [(20, 10), (10, 20), (7, 7), (1, 9), (9, 1), (64, 3, 3, 3), (5, 4, 2), (6, 8, 3, 2, 2)]
SEEDS = [0, 1, 123]


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# (ours, PyTorch's, options accepted by both)
ORACLES = [
    (il.xavier_uniform_, torch_init.xavier_uniform_, {}),
    (il.xavier_uniform_, torch_init.xavier_uniform_, {"gain": 5 / 3}),
    (il.xavier_normal_, torch_init.xavier_normal_, {}),
    (il.xavier_normal_, torch_init.xavier_normal_, {"gain": math.sqrt(2.0)}),
    (il.kaiming_uniform_, torch_init.kaiming_uniform_, {}),
    (il.kaiming_uniform_, torch_init.kaiming_uniform_, {"a": math.sqrt(5)}),  # nn.Linear's
    (il.kaiming_uniform_, torch_init.kaiming_uniform_, {"mode": "fan_out", "nonlinearity": "relu"}),
    (il.kaiming_normal_, torch_init.kaiming_normal_, {}),
    (il.kaiming_normal_, torch_init.kaiming_normal_, {"a": 0.2, "mode": "fan_out"}),
    (il.kaiming_normal_, torch_init.kaiming_normal_, {"nonlinearity": "tanh"}),
    (il.orthogonal_, torch_init.orthogonal_, {}),
    (il.orthogonal_, torch_init.orthogonal_, {"gain": 2.5}),
]


@pytest.mark.parametrize(
    ("ours", "theirs", "options"),
    ORACLES,
    ids=[f"{o.__name__}-{sorted(k.items())}" for o, _, k in ORACLES],
)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_bit_for_bit_equal_to_torch(ours, theirs, options, shape, dtype):
    for seed in SEEDS:
        expected = theirs(torch.empty(shape, dtype=dtype), generator=_seeded(seed), **options)
        actual = ours(torch.empty(shape, dtype=dtype), generator=_seeded(seed), **options)
        assert torch.equal(actual, expected)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_specializations_are_variance_scaling(shape):
    def both(fn, reference, **options):
        a = fn(torch.empty(shape, dtype=torch.float64), generator=_seeded(3), **options)
        b = reference(torch.empty(shape, dtype=torch.float64), generator=_seeded(3))
        # The named ones compute the std (or bound b) with other float operations: each entry is
        # equal up to rounding. A uniform entry is -b + 2b*u, so one near 0 carries an absolute
        # error of about one ulp of b (2.2e-16 b), which no relative tolerance covers (a
        # CPU's scalar kernels give 1.3e-14 relative there): atol is 8 ulps of the largest entry.
        scale = float(b.abs().max())
        torch.testing.assert_close(a, b, rtol=1e-14, atol=8 * 2.0**-52 * scale)

    vs = il.variance_scaling_
    gain = 5 / 3
    both(il.xavier_uniform_, lambda t, **k: vs(t, gain**2, "fan_avg", "uniform", **k), gain=gain)
    both(il.xavier_normal_, lambda t, **k: vs(t, 1.0, "fan_avg", "normal", **k))
    both(
        il.glorot_normal_,
        lambda t, **k: vs(t, 1.0, "fan_avg", "truncated_normal", **k),
        truncated=True,
    )
    both(
        il.kaiming_uniform_,
        lambda t, **k: vs(t, 2.0, "fan_out", "uniform", **k),
        nonlinearity="relu",
        mode="fan_out",
    )
    both(
        il.he_normal_,
        lambda t, **k: vs(t, 2.0 / (1 + 0.1**2), "fan_in", "truncated_normal", **k),
        a=0.1,
        truncated=True,
    )
    both(il.lecun_uniform_, lambda t, **k: vs(t, 1.0, "fan_in", "uniform", **k))
    both(il.lecun_normal_, lambda t, **k: vs(t, 1.0, "fan_in", "normal", **k))


def test_fans_option_overrides_the_shape():
    # a (12, 5) tensor initialized as if it were a (3, 20) weight: std = sqrt(2 / (20 + 3))
    expected = torch.empty(12, 5).normal_(0.0, math.sqrt(2 / 23), generator=_seeded(0))
    actual = il.xavier_normal_(torch.empty(12, 5), fans=(20, 3), generator=_seeded(0))
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=0)
    bias = il.variance_scaling_(torch.empty(7), fans=(4, 9), generator=_seeded(0))
    assert bias.abs().max() <= 2 * math.sqrt(1 / 4) / il.initializers.TRUNCATED_STD


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 6), min_size=2, max_size=5))
def test_compute_fans_agrees_with_torch(shape):
    # torch's private helper is the oracle for PyTorch's (out, in, *kernel) layout
    meta = torch.empty(shape, device="meta")
    assert il.compute_fans(meta) == torch_init._calculate_fan_in_and_fan_out(meta)


# --- orthogonality ---

ORTHO_SHAPES = [(30, 10), (10, 30), (16, 16), (8, 4, 5), (4, 8, 3, 3)]


ORTHO_METHODS = ["qr", "svd", "householder"]


@pytest.mark.parametrize("shape", ORTHO_SHAPES, ids=str)
@pytest.mark.parametrize("method", ORTHO_METHODS)
@pytest.mark.parametrize("gain", [1.0, 1.7, -0.5])
def test_orthogonal_gram_is_gain_squared_identity(shape, method, gain):
    w = il.orthogonal_(
        torch.empty(shape, dtype=torch.float64), gain=gain, method=method, generator=_seeded(0)
    )
    m = w.reshape(shape[0], -1)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    eye = torch.eye(gram.shape[0], dtype=torch.float64)
    assert (gram - gain**2 * eye).abs().max() <= 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_orthogonal_low_precision_is_orthogonal_to_its_precision(dtype):
    w = il.orthogonal_(torch.empty(20, 40, dtype=dtype), generator=_seeded(0)).double()
    # each entry carries a relative rounding error <= eps/2, so the Gram entries err by ~eps
    eps = torch.finfo(dtype).eps
    assert (w @ w.T - torch.eye(20, dtype=torch.float64)).abs().max() <= 4 * eps


def _first_entries(factor, n: int = 2000):
    generator = _seeded(4)
    return [factor(generator)[0, 0].item() for _ in range(n)]


@pytest.mark.parametrize("method", ORTHO_METHODS)
def test_orthogonal_is_haar(method):
    # For a Haar-random 3 x 3 orthogonal matrix the first column is uniform on the sphere S^2,
    # so each coordinate is uniform on [-1, 1] (Archimedes' hat-box theorem).
    entries = _first_entries(
        lambda g: il.orthogonal_(torch.empty(3, 3, dtype=torch.float64), method=method, generator=g)
    )
    assert stats.kstest(entries, stats.uniform(-1, 2).cdf).pvalue > 1e-4


def _haar_checks(draw, n: int = 2000) -> tuple[list[float], int]:
    """Return the KS p-values of 3 entries beyond the first column, and the count of det > 0."""
    generator = _seeded(5)
    mats = torch.stack([draw(generator) for _ in range(n)])
    uniform = stats.uniform(-1, 2).cdf  # Haar is invariant under row and column permutations:
    pvalues = [stats.kstest(mats[:, i, j].numpy(), uniform).pvalue for i, j in HAAR_ENTRIES]
    return pvalues, int((torch.linalg.det(mats) > 0).sum())  # every entry is uniform on [-1, 1]


HAAR_ENTRIES = [(2, 2), (0, 2), (1, 1)]
# det = +1 and -1 each with probability 1/2 under Haar measure on O(3): the count of +1 in 2000
# draws is Binomial(2000, 1/2), sd sqrt(2000) / 2 = 22.4; 5 sd = 112.
DET_BAND = 112


@pytest.mark.parametrize("method", ORTHO_METHODS)
def test_orthogonal_is_haar_beyond_first_column(method):
    # Stewart's first column is x_1 / ||x_1|| whatever the later reflections do, so the test
    # above cannot see them: later entries and the determinant's sign can.
    pvalues, positive = _haar_checks(
        lambda g: il.orthogonal_(torch.empty(3, 3, dtype=torch.float64), method=method, generator=g)
    )
    assert min(pvalues) > 1e-4
    assert abs(positive - 1000) <= DET_BAND


def test_haar_checks_catch_a_fixed_last_reflection():
    # Stewart's method without the random sign of the last, 1-dimensional step (H_3 = I
    # always): two reflections, so det is always (-1)^2 = +1.
    def draw(generator):
        q = il.orthogonal_(
            torch.empty(3, 3, dtype=torch.float64), method="householder", generator=generator
        )
        q[:, 2] *= torch.sign(torch.linalg.det(q))  # H_3 = diag(1, 1, -1) only flips column 3
        return q

    _, positive = _haar_checks(draw)
    assert abs(positive - 1000) > DET_BAND


@pytest.mark.parametrize("method", ORTHO_METHODS)
@pytest.mark.parametrize(
    "shape, entries", [((5, 2), [(4, 1), (0, 1), (2, 0)]), ((2, 5), [(1, 4), (1, 0), (0, 2)])]
)
def test_semi_orthogonal_entries_are_those_of_a_uniform_unit_vector(method, shape, entries):
    # A tall Haar semi-orthogonal matrix's columns (a wide one's rows) are uniform on S^4 in
    # R^5; a coordinate x of a uniform unit vector in R^m has (x + 1) / 2 ~ Beta((m-1)/2,
    # (m-1)/2), Beta(2, 2) here. Entries far from the first column/row and in the last rows
    # catch a sampler that fills only part of the matrix or leaves later reflections out.
    generator = _seeded(6)
    mats = torch.stack(
        [
            il.orthogonal_(
                torch.empty(shape, dtype=torch.float64), method=method, generator=generator
            )
            for _ in range(2000)
        ]
    )
    for i, j in entries:
        halves = ((mats[:, i, j] + 1) / 2).numpy()
        assert stats.kstest(halves, stats.beta(2, 2).cdf).pvalue > 1e-4, (i, j)


def test_haar_test_catches_missing_sign_correction():
    entries = _first_entries(
        lambda g: torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=g))[0]
    )
    assert stats.kstest(entries, stats.uniform(-1, 2).cdf).pvalue < 1e-4


@pytest.mark.parametrize("shape", [(16, 8, 3), (8, 8, 3, 3), (12, 4, 3, 3, 3), (8, 8, 4, 2)])
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2.0)])
def test_delta_orthogonal(shape, gain):
    w = il.delta_orthogonal_(
        torch.empty(shape, dtype=torch.float64), gain=gain, generator=_seeded(0)
    )
    taps = (slice(None), slice(None), *(k // 2 for k in shape[2:]))
    center = w[taps]
    assert (
        center.T @ center - gain**2 * torch.eye(shape[1], dtype=torch.float64)
    ).abs().max() <= 1e-6
    rest = w.clone()
    rest[taps] = 0
    assert (rest == 0).all()
    if all(k % 2 for k in shape[2:]):  # odd kernel: a "same" convolution preserves norms
        conv = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[len(shape)]
        x = torch.randn(
            2, shape[1], *[6] * (len(shape) - 2), dtype=torch.float64, generator=_seeded(1)
        )
        y = conv(x, w, padding=[k // 2 for k in shape[2:]])
        torch.testing.assert_close(y.norm(dim=1), gain * x.norm(dim=1), rtol=1e-12, atol=1e-12)


# --- identity, Dirac, sparse, per-block ---


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4)])
def test_identity_equals_torch_eye(shape):
    assert torch.equal(il.identity_(torch.empty(shape)), torch_init.eye_(torch.empty(shape)))
    assert torch.equal(il.eye_(torch.empty(shape)), torch_init.eye_(torch.empty(shape)))
    assert torch.equal(il.identity_(torch.empty(shape), gain=0.5), 0.5 * torch.eye(*shape))


@pytest.mark.parametrize(
    ("shape", "groups"),
    [((4, 4, 3), 1), ((6, 4, 5), 1), ((4, 6, 3, 3), 1), ((6, 2, 3, 3), 3), ((8, 8, 3, 4, 5), 2)],
)
def test_dirac_equals_torch(shape, groups):
    expected = torch_init.dirac_(torch.empty(shape), groups)
    assert torch.equal(il.dirac_(torch.empty(shape), groups=groups), expected)


@pytest.mark.parametrize(
    ("conv", "spatial", "groups"),
    [(F.conv1d, (5,), 1), (F.conv2d, (3, 3), 1), (F.conv2d, (3, 5), 2), (F.conv3d, (3, 3, 3), 1)],
)
def test_dirac_convolution_returns_its_input(conv, spatial, groups):
    channels = 4
    w = il.dirac_(torch.empty(channels, channels // groups, *spatial), groups=groups)
    x = torch.randn(2, channels, *[7] * len(spatial), generator=_seeded(0))
    y = conv(x, w, padding=[k // 2 for k in spatial], groups=groups)
    assert torch.equal(y, x)


@pytest.mark.parametrize(("rows", "sparsity"), [(15, 0.1), (10, 0.5), (8, 0.0), (7, 0.99)])
def test_sparse_zeros_per_column_and_values(rows, sparsity):
    w = il.sparse_(torch.empty(rows, 40), sparsity=sparsity, std=0.3, generator=_seeded(0))
    zeros = math.ceil(sparsity * rows)  # (15, 0.1) -> 2, (10, 0.5) -> 5, (8, 0) -> 0, (7, .99) -> 7
    assert ((w == 0).sum(dim=0) == zeros).all()
    # the nonzero values are the normal draws that come first from the same generator
    draws = torch.empty(rows, 40).normal_(0, 0.3, generator=_seeded(0))
    assert torch.equal(w[w != 0], draws[w != 0])


def test_sparse_zero_rows_are_uniform():
    # 3 zeros among 10 rows per column: each row is zero with probability 0.3; over 20 000
    # columns the frequency has standard error sqrt(0.3 * 0.7 / 20 000) = 0.0032, band 5 SE
    w = il.sparse_(torch.empty(10, 20_000), sparsity=0.3, generator=_seeded(0))
    frequency = (w == 0).double().mean(dim=1)
    assert (frequency - 0.3).abs().max() <= 5 * math.sqrt(0.3 * 0.7 / 20_000)


def test_per_block_initializes_each_gate_as_its_own_matrix():
    hidden = 16
    w = il.per_block_(
        torch.empty(4 * hidden, hidden, dtype=torch.float64),
        4,
        il.orthogonal_,
        generator=_seeded(0),
    )
    eye = torch.eye(hidden, dtype=torch.float64)
    blocks = w.split(hidden)
    for block in blocks:
        assert (block @ block.T - eye).abs().max() <= 1e-6
    assert not torch.equal(blocks[0], blocks[1])
    # whole-tensor orthogonal_ would instead give orthonormal columns over all 4 gates
    assert (w.T @ w - 4 * eye).abs().max() <= 1e-6


def test_per_block_calls_fn_in_order_with_the_same_generator():
    expected = torch.empty(6, 4)
    generator = _seeded(5)
    for block in expected.split(2):
        il.xavier_uniform_(block, generator=generator)
    actual = il.per_block_(torch.empty(6, 4), 3, il.xavier_uniform_, generator=_seeded(5))
    assert torch.equal(actual, expected)
