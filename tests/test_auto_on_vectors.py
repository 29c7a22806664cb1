"""The ``auto`` scheme on data that are not 28x28 images: its fit check traces the data's inputs.

``auto`` plans by tracing an example input through the model. The check that every scheme fits
the model before anything is written must trace the data's own inputs: a zero MNIST image
would refuse ``auto`` on any model of vector inputs (``shape '[2, 20]' is invalid for input
of size 1568``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from initlab._checks import ArgumentError
from initlab.cli import main
from initlab.schemes.registry import check_fits
from initlab.zoo.models import build_model


def _npz(path):
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.normal(size=(96, 20)).astype("float32"),
        y_train=rng.integers(0, 3, 96),
        x_test=rng.normal(size=(32, 20)).astype("float32"),
        y_test=rng.integers(0, 3, 32),
    )
    return path


def test_check_fits_traces_the_batch_it_is_given():
    model = build_model("mlp", in_features=20, num_classes=3)
    with pytest.raises(ArgumentError, match=r"invalid for input of size 1568"):
        check_fits(model, "auto", "mlp")  # no batch: the 28x28 probe, which this model refuses
    check_fits(model, "auto", "mlp", batch=torch.zeros(4, 20))  # the data's shape: fits


def test_compare_runs_auto_on_vectors(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compare", "--data", str(_npz(tmp_path / "v.npz")), "--model", "mlp"]
    argv += ["--model-arg", "in_features=20", "--schemes", "auto,xavier_uniform", "--seeds", "1"]
    argv += ["--epochs", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert (out / "results.jsonl").read_text().count('"scheme": "auto"') >= 2  # init + epoch


def test_a_scheme_that_does_not_fit_is_still_refused_before_any_file(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compare", "--data", str(_npz(tmp_path / "v.npz")), "--model", "mlp"]
    argv += ["--model-arg", "in_features=20", "--schemes", "fixup", "--seeds", "1"]
    argv += ["--epochs", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 2
    assert "scheme 'fixup' does not apply to model 'mlp'" in capsys.readouterr().err
    assert not out.exists()
