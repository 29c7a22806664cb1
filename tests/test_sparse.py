"""sparse_: PyTorch's per-column zero pattern (default) and Martens' per-row pattern."""

import math

import pytest
import torch

import initlab as il


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("cols", "sparsity"), [(40, 0.1), (30, 0.5), (8, 0.0), (7, 0.99)])
def test_per_row_zeros_per_row_and_values(cols, sparsity):
    # Martens (2010) Sec. 5: every output unit (row of the (out, in) weight) keeps the same
    # number of incoming weights. (40, .1) -> 4 zeros, (30, .5) -> 15, (8, 0) -> 0, (7, .99) -> 7
    w = il.sparse_(
        torch.empty(25, cols), sparsity=sparsity, std=0.3, per="row", generator=_seeded(0)
    )
    zeros = math.ceil(sparsity * cols)
    assert ((w == 0).sum(dim=1) == zeros).all()
    # the nonzero values are the normal draws that come first from the same generator
    draws = torch.empty(25, cols).normal_(0, 0.3, generator=_seeded(0))
    assert torch.equal(w[w != 0], draws[w != 0])


def test_martens_fifteen_incoming_weights_per_unit():
    w = il.sparse_(
        torch.empty(500, 784), sparsity=(784 - 15) / 784, per="row", generator=_seeded(1)
    )
    assert ((w != 0).sum(dim=1) == 15).all()
    # the per-row pattern does not fix the count per column: here it varies (mean 500*15/784)
    assert (w != 0).sum(dim=0).unique().numel() > 1


def test_default_is_per_column_like_pytorch():
    w = il.sparse_(torch.empty(10, 300), sparsity=0.3, generator=_seeded(2))
    assert ((w == 0).sum(dim=0) == 3).all()
    assert (w == 0).sum(dim=1).unique().numel() > 1  # rows differ: not Martens' pattern
    same = il.sparse_(torch.empty(10, 300), sparsity=0.3, per="column", generator=_seeded(2))
    assert torch.equal(w, same)


def test_per_row_zero_columns_are_uniform():
    # 6 zeros among 20 columns per row: each column is zero with probability 0.3; over 20 000
    # rows the frequency has standard error sqrt(0.3 * 0.7 / 20 000) = 0.0032, band 5 SE
    w = il.sparse_(torch.empty(20_000, 20), sparsity=0.3, per="row", generator=_seeded(3))
    frequency = (w == 0).double().mean(dim=0)
    assert (frequency - 0.3).abs().max() <= 5 * math.sqrt(0.3 * 0.7 / 20_000)


@pytest.mark.parametrize("per", ["column", "row"])
def test_reproducible_and_global_generator_untouched(per):
    state = torch.get_rng_state()
    a = il.sparse_(torch.empty(12, 9), sparsity=0.4, per=per, generator=_seeded(4))
    b = il.sparse_(torch.empty(12, 9), sparsity=0.4, per=per, generator=_seeded(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    c = il.sparse_(torch.empty(12, 9), sparsity=0.4, per=per, generator=_seeded(5))
    assert not torch.equal(a, c)


def test_unknown_per_is_named():
    with pytest.raises(ValueError, match=r"per must be one of \['column', 'row'\]; got per='rows'"):
        il.sparse_(torch.empty(4, 3), sparsity=0.5, per="rows")
