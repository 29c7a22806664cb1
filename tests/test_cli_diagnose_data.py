"""`initlab diagnose --data/--dataset/--standardize/--task`: step zero on the user's own batch.

Each diagnosis is checked against the batch built here by hand from the arrays written to the
file: the loss at initialization in ``diagnoses.json`` must equal the cross-entropy of the same
initialized model on that batch, which holds only for the first ``--batch-size`` training
examples, scaled (and standardized) as training scales them, with the head fitted to the
data's classes.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from initlab.cli import main
from initlab.datasets.text import char_corpus, load_text
from initlab.experiments.tasks import TASKS
from initlab.schemes.registry import initialize
from initlab.zoo.models import build_model

SIZE, CLASSES, BATCH = 12, 5, 40  # 12x12 images, 5 classes, 40 of the 60 training images


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    rng = np.random.default_rng(7)
    data = {
        "x_train": rng.integers(0, 256, (60, SIZE, SIZE), dtype=np.uint8),
        "y_train": rng.integers(0, CLASSES, 60),
        "x_test": rng.integers(0, 256, (20, SIZE, SIZE), dtype=np.uint8),
        "y_test": rng.integers(0, CLASSES, 20),
    }
    data["y_train"][:CLASSES] = np.arange(CLASSES)  # every class present: 5 outputs
    path = tmp_path_factory.mktemp("npz") / "mine.npz"
    np.savez(path, **data)
    return path, data


def _loss_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Cross-entropy at init of diagnose's model for scheme ``kaiming_normal``, seed 0: constructed
    under torch.manual_seed(0), initialized with a generator seeded 0 (diagnose_schemes)."""
    torch.manual_seed(0)
    net = build_model("mlp", depth=1, width=32, in_features=SIZE * SIZE, num_classes=CLASSES)
    initialize(net, "kaiming_normal", generator=torch.Generator().manual_seed(0))
    inputs = torch.from_numpy(x).float().unsqueeze(1)
    with torch.no_grad():
        return F.cross_entropy(net(inputs), torch.from_numpy(y).long()).item()


def _diagnose(argv, out) -> dict:
    status = main(["diagnose", *argv, "--schemes", "kaiming_normal", "--out", str(out)])
    assert status == 0
    return json.loads((out / "diagnoses.json").read_text())


ARGS = ["--depth", "1", "--width", "32", "--model-arg", f"in_features={SIZE * SIZE}"]


def test_the_batch_is_the_first_training_examples_of_the_npz(arrays, tmp_path, capsys):
    path, data = arrays
    got = _diagnose(["--data", str(path), "--batch-size", str(BATCH), *ARGS], tmp_path)
    # pixels / 255, the first 40 training images; the head has the data's 5 classes
    want = _loss_by_hand(data["x_train"][:BATCH] / 255.0, data["y_train"][:BATCH])
    # float32 sums of the same terms, maybe in another order: a few ulps apart
    assert got["kaiming_normal"]["loss"] == pytest.approx(want, rel=1e-6)
    assert got["kaiming_normal"]["layers"][0]["shape"] == [BATCH, 32]
    assert "verdicts: kaiming_normal:" in capsys.readouterr().out


def test_standardize_uses_the_whole_training_split_statistics(arrays, tmp_path):
    path, data = arrays
    argv = ["--data", str(path), "--standardize", "--batch-size", str(BATCH), *ARGS]
    got = _diagnose(argv, tmp_path)
    # one channel: mean and population std over all 60 training images, in float64
    pixels = data["x_train"] / 255.0
    x = (pixels[:BATCH] - pixels.mean()) / pixels.std()
    want = _loss_by_hand(x.astype(np.float32), data["y_train"][:BATCH])
    assert got["kaiming_normal"]["loss"] == pytest.approx(want, rel=1e-6)
    unscaled = _loss_by_hand(data["x_train"][:BATCH] / 255.0, data["y_train"][:BATCH])
    assert abs(want - unscaled) > 1e-3  # the check above can tell the two batches apart


def test_a_dataset_factory_is_read_as_compare_reads_it(tmp_path):
    # 120 training images of 6x6, 3 classes (tests/data_factories.py)
    argv = ["--dataset", "tests.data_factories:pair", "--batch-size", "16", "--depth", "1"]
    argv += ["--model-arg", "in_features=36", "--schemes", "normal", "--out", str(tmp_path)]
    assert main(["diagnose", *argv]) == 0
    layers = json.loads((tmp_path / "diagnoses.json").read_text())["normal"]["layers"]
    assert layers[0]["shape"][0] == 16
    assert [r["shape"] for r in layers if r["name"] == "head"] == [[16, 3]]  # head: 3 classes


def test_task_char_lm_diagnoses_its_schemes_on_windows_of_the_corpus(tmp_path, capsys):
    argv = ["--task", "char-lm", "--batch-size", "4", "--seq-len", "16", "--out", str(tmp_path)]
    assert main(["diagnose", *argv]) == 0
    got = json.loads((tmp_path / "diagnoses.json").read_text())
    assert list(got) == list(TASKS["char-lm"].schemes)  # the task's schemes, in order
    # a (4, 16) batch of tokens: the head's output is (4, 16, vocab)
    head = [r for r in got["torch_default"]["layers"] if r["name"] == "head"][0]
    assert head["shape"][:2] == [4, 16]
    # the vocabulary filled in from the corpus (the embedded Shakespeare's characters)
    assert head["shape"][2] == char_corpus(load_text()).vocab_size
    assert "verdicts: torch_default:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--task", "char-lm", "--data", "x.npz"],
            "argument --dataset: task 'char-lm' reads a text corpus (--text-file), not a "
            "dataset; drop --dataset, --data and --standardize",
        ),
        (
            ["--text-file", "x.txt"],
            "argument --text-file: --text-file is for --task char-lm; task 'image' reads "
            "--dataset / --data",
        ),
    ],
)
def test_options_of_another_task_are_refused_before_anything_is_written(
    argv, message, tmp_path, capsys
):
    assert main(["diagnose", *argv, "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"initlab diagnose: error: {message}\n"
    assert not (tmp_path / "o").exists()


def test_labels_beyond_the_head_are_refused_naming_the_model(arrays, tmp_path, capsys):
    path, _ = arrays
    argv = ["--data", str(path), *ARGS, "--model-arg", "num_classes=3", "--out", str(tmp_path)]
    assert main(["diagnose", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("initlab diagnose: error: argument --model")
    assert not (tmp_path / "diagnoses.json").exists()
