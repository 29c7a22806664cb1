import pytest
import torch

from initlab import compute_fans


@pytest.mark.parametrize(
    ("shape", "kwargs", "expected"),
    [
        ((20, 10), {}, (10, 20)),
        ((64, 3, 7, 7), {}, (3 * 49, 64 * 49)),
        ((5, 5, 3, 8), {"in_axis": -2, "out_axis": -1}, (75, 200)),  # Flax (*kernel, in, out)
        ((4, 30, 20), {"in_axis": 2, "out_axis": 1, "batch_axis": 0}, (20, 30)),
    ],
)
def test_compute_fans_hand_computed(shape, kwargs, expected):
    assert compute_fans(shape, **kwargs) == expected
    assert compute_fans(torch.empty(shape, device="meta"), **kwargs) == expected


def test_compute_fans_rejects_bias():
    with pytest.raises(ValueError, match="bias rule"):
        compute_fans((10,))


def test_compute_fans_rejects_overlap_and_range():
    with pytest.raises(ValueError, match="must not overlap"):
        compute_fans((3, 4), in_axis=0, out_axis=0)
    with pytest.raises(ValueError, match="in_axis must be in"):
        compute_fans((3, 4), in_axis=5)
