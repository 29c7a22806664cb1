"""Tasks of ``initlab compare --task``: sequence outputs in the trainers, the char-LM task run
stacked and alone, misfits refused before anything is written, config.json with a task."""

from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from initlab._checks import ArgumentError
from initlab.cli import main
from initlab.cli._tasks import TASK_NAMES
from initlab.experiments.config import CompareConfig, TrainConfig
from initlab.experiments.core import EpochRecord, TensorData, evaluate_logits
from initlab.experiments.core import sequence_cross_entropy as seq_ce
from initlab.experiments.stacked import vectorizable
from initlab.experiments.sweep import _buffer_classes, run_sweep
from initlab.experiments.tasks import TASKS, resolve_task
from initlab.zoo.recurrent import SeqRNN

WORDS = ["the", "king", "queen", "lord", "sweet", "night", "day", "love", "death", "and", "of"]


@pytest.fixture
def text_file(tmp_path):
    """A corpus of 21,000+ characters (datasets.text's minimum is 20,500) from 11 words."""
    rng = random.Random(0)
    words = []
    while sum(len(w) + 1 for w in words) < 21_000:
        words.append(rng.choice(WORDS))
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(words) + "\n", encoding="utf-8")
    return str(path)


def lm_config(text_file, model, params, **overrides):
    fields = dict(
        task="char-lm",
        model=model,
        model_params=params,
        schemes=("torch_default", "xavier_uniform"),
        seeds=2,
        text_file=text_file,
        seq_len=16,
        train=TrainConfig(epochs=2, batch_size=8, max_steps=4),
    )
    return CompareConfig(**{**fields, **overrides})


def epoch_lines(out):
    text = (out / "results.jsonl").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    return {(e["run"], e["epoch"]): e for e in lines if e["type"] == "epoch"}


# --- the one loss -----------------------------------------------------------------------------


def test_sequence_cross_entropy_is_cross_entropy_for_classes_and_per_token_for_sequences():
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 6, 3, 3, 1])
    assert torch.equal(seq_ce(logits, labels), F.cross_entropy(logits, labels))  # bit for bit
    # (B, T, V): the mean over all B*T positions, by hand for two positions of uniform logits
    # (each -log(1/V)) and one of logits (0, ln 3, 0) with target 1: -log(3/5)
    lm = torch.zeros(1, 3, 3)
    lm[0, 2, 1] = math.log(3)
    loss = seq_ce(lm, torch.tensor([[0, 2, 1]]))
    assert loss.item() == pytest.approx((2 * math.log(3) - math.log(3 / 5)) / 3, rel=1e-6)
    with pytest.raises(ValueError, match=r"targets must have the logits' shape"):
        seq_ce(lm, torch.tensor([0, 2, 1]))


def test_evaluate_logits_counts_tokens_one_model_and_stacked():
    # 2 windows of 2 tokens, vocab 3; the "model" returns fixed logits: argmax 0 everywhere
    x = torch.zeros(2, 2, dtype=torch.int64)
    y = torch.tensor([[0, 1], [0, 0]])  # 3 of the 4 targets are 0: accuracy 3/4
    data = TensorData(x, y, x, y)
    logits = torch.tensor([2.0, 0.0, 0.0]).expand(2, 2, 3)
    (loss,), (acc,) = evaluate_logits(lambda b: logits[: len(b)], data, batch_size=1)
    expected = float(F.cross_entropy(logits.reshape(4, 3), y.reshape(4)))
    assert acc == 0.75 and loss == pytest.approx(expected, rel=1e-6)
    losses, accs = evaluate_logits(lambda b: logits[: len(b)].expand(3, -1, -1, -1), data, 2, 3)
    assert accs == [0.75] * 3 and losses == pytest.approx([expected] * 3, rel=1e-6)


def test_bpc_of_a_record_is_its_loss_over_ln2():
    record = EpochRecord(1, 2.0, 1.5, 0.4, {}, 0.1, 3, val_loss=0.7, val_accuracy=0.5)
    assert record.test_bpc == 1.5 / math.log(2) and record.val_bpc == 0.7 / math.log(2)
    assert EpochRecord(1, 2.0, 1.5, 0.4, {}, 0.1, 3).val_bpc is None


# --- char-lm through run_sweep ----------------------------------------------------------------


@pytest.mark.parametrize(
    "model, params",
    [
        ("char-gpt", {"d_model": 16, "n_layer": 1, "n_head": 2}),
        ("char-rnn", {"embed": 8, "hidden": 16}),
    ],
)
def test_char_lm_stacked_equals_one_by_one(tmp_path, text_file, caplog, model, params):
    config = lm_config(text_file, model, params)
    with caplog.at_level(logging.INFO, logger="initlab.experiments.sweep"):
        run_sweep(config, tmp_path / "stacked", progress=False, vectorize=True)
    assert "training 4 runs together, stacked" in caplog.text
    run_sweep(config, tmp_path / "alone", progress=False, vectorize=False)
    stacked, alone = epoch_lines(tmp_path / "stacked"), epoch_lines(tmp_path / "alone")
    assert stacked.keys() == alone.keys() and len(stacked) == 8  # 2 schemes x 2 seeds x 2
    # Stacked and single runs do the same float32 products summed in another order (batched
    # matrix products): each step differs by a few ulp (1.2e-7 relative), and the few steps of
    # these runs keep losses of about 3 nats within 1e-5 (about 30 ulp); an accuracy differs
    # only if a prediction flips, which these margins do not allow.
    for key, line in stacked.items():
        for name in ("train_loss", "test_loss", "val_loss", "test_accuracy"):
            assert line[name] == pytest.approx(alone[key][name], abs=1e-5), (key, name)
        # the line's bits per character are its losses over ln 2
        assert line["test_bpc"] == pytest.approx(line["test_loss"] / math.log(2), rel=1e-12)
        assert line["val_bpc"] == pytest.approx(line["val_loss"] / math.log(2), rel=1e-12)
        assert line["train_loss"] < math.log(40)  # trained: a uniform guess over 40 chars
    saved = json.loads((tmp_path / "stacked" / "config.json").read_text())
    # the vocabulary is filled for the runs, not written: config.json holds what was given
    assert saved["model_params"] == params and saved["task"] == "char-lm"


def test_config_json_round_trip_with_a_task_and_the_default_without_task_keys(text_file):
    config = lm_config(text_file, "char-rnn", {"hidden": 8}, metric="loss")
    raw = json.loads(config.to_json())
    assert (raw["task"], raw["seq_len"], raw["metric"]) == ("char-lm", 16, "loss")
    assert CompareConfig.from_json(config.to_json()) == config
    default = json.loads(CompareConfig().to_json())
    assert not {"task", "text_file", "seq_len", "metric"} & default.keys()
    assert CompareConfig.from_json(CompareConfig().to_json()) == CompareConfig()


def test_for_task_fills_the_tasks_defaults():
    config = CompareConfig.for_task("seq-mnist")
    task = TASKS["seq-mnist"]
    assert (config.model, config.model_params, config.schemes) == (
        task.model,
        task.model_params,
        task.schemes,
    )
    assert (config.dataset, config.train.epochs, config.train.max_steps) == (
        "mnist",
        task.epochs,
        task.max_steps,
    )
    assert config.resolved_metric == "accuracy"
    assert CompareConfig.for_task("char-lm").resolved_metric == "bpc"
    assert CompareConfig.for_task("seq-mnist", model="lstm").model_params == {}


# --- misfits ----------------------------------------------------------------------------------


def test_unknown_task_lists_the_tasks():
    with pytest.raises(
        ArgumentError, match=r"task must be one of \['char-lm', 'first-token', 'image'"
    ) as info:
        resolve_task("char_lm")
    assert info.value.argument == "task"
    assert set(TASK_NAMES) == set(TASKS)  # the CLI's list, kept without importing the library


@pytest.mark.parametrize(
    "task, model, listed",
    [
        ("char-lm", "cnn", "['char-gpt', 'char-rnn']"),
        ("image", "char-gpt", "'cnn'"),
        ("seq-mnist", "mlp", "['seq-rnn', 'lstm']"),
    ],
)
def test_a_zoo_model_that_does_not_fit_the_task_is_refused(task, model, listed):
    with pytest.raises(ArgumentError, match=f"model '{model}' does not fit task '{task}'") as info:
        CompareConfig(task=task, model=model, schemes=("torch_default",))
    assert info.value.argument == "model" and listed in str(info.value)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(seq_len=8), "seq_len"),
        (dict(text_file="a.txt"), "text_file"),
        (dict(metric="bpc"), "metric"),
    ],
)
def test_language_model_options_are_refused_for_an_image_task(kwargs, argument):
    with pytest.raises(ArgumentError) as info:
        CompareConfig(**kwargs)
    assert info.value.argument == argument


def classifier_factory():
    """A factory model that returns (B, classes): no language model."""
    return nn.Sequential(nn.Embedding(64, 8), nn.Flatten(), nn.Linear(16 * 8, 10))


def test_a_factory_that_is_no_language_model_is_refused_before_anything_is_written(
    tmp_path, text_file
):
    config = lm_config(text_file, "tests.test_tasks:classifier_factory", {})
    with pytest.raises(ValueError, match=r"does not fit task 'char-lm'.*not next-token logits"):
        run_sweep(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "config.json").exists()


def test_a_vocabulary_too_small_for_the_corpus_is_refused(tmp_path, text_file):
    config = lm_config(text_file, "char-rnn", {"vocab_size": 3, "hidden": 4})
    with open(text_file, encoding="utf-8") as f:
        chars = len(set(f.read()))  # 21: the words' letters, the space and the newline
    with pytest.raises(ArgumentError, match=f"vocab_size=3 but the corpus needs {chars} ") as info:
        run_sweep(config, tmp_path / "out", progress=False)
    assert info.value.argument == "model_params"


# --- stacking recurrent models and runs with different buffers --------------------------------


class FusedLSTM(nn.Module):
    """Reads MNIST rows with nn.LSTM's fused forward: cannot be stacked."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(28, 8, batch_first=True)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        out, _ = self.lstm(x.reshape(len(x), 28, 28))
        return self.head(out[:, -1])


def fused_lstm():
    return FusedLSTM()


def test_a_fused_lstm_trains_one_by_one_and_a_written_out_one_stacks(tmp_path, caplog):
    fused = [FusedLSTM(), FusedLSTM()]
    assert "recurrent layer's fused forward" in vectorizable(fused, torch.zeros(2, 1, 28, 28))
    assert vectorizable([SeqRNN(hidden=4), SeqRNN(hidden=4)], torch.zeros(2, 1, 28, 28)) is None
    config = CompareConfig(
        model="tests.test_tasks:fused_lstm",
        schemes=("torch_default",),
        seeds=2,
        train_subset=64,
        test_subset=32,
        train=TrainConfig(epochs=1, batch_size=32),
    )
    with caplog.at_level(logging.INFO, logger="initlab.experiments.sweep"):
        run_sweep(config, tmp_path / "out", progress=False, vectorize=True)
    assert "training 2 runs one after the other: torch.func.vmap failed" in caplog.text
    assert len(epoch_lines(tmp_path / "out")) == 2


class Scaled(nn.Module):
    """A linear classifier whose logits are scaled by a buffer drawn at construction (1 or 2),
    as deepnorm's residual_scale differs between the runs of one comparison."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)
        self.register_buffer("scale", 1.0 + torch.randint(0, 2, ()).float())

    def forward(self, x):
        return self.fc(x.flatten(1)) * self.scale


def scaled():
    return Scaled()


def test_runs_with_different_buffers_stack_per_class_of_equal_buffers(tmp_path, caplog):
    config = CompareConfig(
        model="tests.test_tasks:scaled",
        schemes=("torch_default",),
        seeds=6,
        train_subset=64,
        test_subset=32,
        train=TrainConfig(epochs=1, batch_size=16),
    )
    with caplog.at_level(logging.INFO, logger="initlab.experiments.sweep"):
        run_sweep(config, tmp_path / "stacked", progress=False, vectorize=True)
    assert "the runs' buffers differ: training 2 stacks of equal buffers" in caplog.text
    run_sweep(config, tmp_path / "alone", progress=False, vectorize=False)
    stacked, alone = epoch_lines(tmp_path / "stacked"), epoch_lines(tmp_path / "alone")
    assert stacked.keys() == alone.keys() and len(stacked) == 6
    for key, line in stacked.items():
        assert line["train_loss"] == pytest.approx(alone[key]["train_loss"], abs=1e-5)
        assert line["test_loss"] == pytest.approx(alone[key]["test_loss"], abs=1e-5)


def test_buffer_classes_partition_in_order_of_first_appearance():
    models = [Scaled() for _ in range(4)]
    for model, scale in zip(models, (2.0, 1.0, 2.0, 1.0), strict=True):
        model.scale.fill_(scale)
    assert _buffer_classes(models) == [[0, 2], [1, 3]]
    assert _buffer_classes(models[:1]) == [[0]]


# --- the command line -------------------------------------------------------------------------


def test_cli_compare_task_char_lm_fills_the_model_and_writes_the_task(tmp_path, text_file, capsys):
    out = tmp_path / "out"
    status = main(
        [
            "compare",
            "--task",
            "char-lm",
            "--text-file",
            text_file,
            "--seq-len",
            "16",
            "--schemes",
            "torch_default",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--model-arg",
            "d_model=16",
            "--model-arg",
            "n_layer=1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert status == 0, capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"] == "char-gpt" and saved["task"] == "char-lm"
    # the task's parameters, the typed ones winning; its batch size, since none was typed
    assert saved["model_params"] == {"d_model": 16, "n_layer": 1, "n_head": 4}
    assert saved["train"]["batch_size"] == TASKS["char-lm"].batch_size
    assert saved["train"]["epochs"] == 1 and saved["seq_len"] == 16


def test_cli_compare_refuses_a_model_that_does_not_fit_the_task(tmp_path, capsys):
    out = str(tmp_path / "o")
    status = main(["compare", "--task", "char-lm", "--model", "cnn", "--out", out])
    err = capsys.readouterr().err
    assert status == 2
    assert "argument --model: model 'cnn' does not fit task 'char-lm'" in err
    assert not (tmp_path / "o").exists()


def test_cli_train_task_char_lm_prints_bits_per_character(text_file, capsys):
    args = ["train", "--task", "char-lm", "--text-file", text_file, "--seq-len", "16"]
    args += ["--epochs", "2", "--max-steps", "3", "--model", "char-rnn", "--model-arg", "hidden=8"]
    assert main([*args, "--scheme", "torch_default"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[0].startswith("Epoch 1, Loss: ") and out[2].startswith("Epoch 2")
    for line in (out[1], out[3]):  # "Validation BPC: 4.2200, Test BPC: 4.2182"
        val, test = line.split(", ")
        assert val.startswith("Validation BPC: ") and test.startswith("Test BPC: ")
        # bits per character of a model that learned something: below log2 of the 21 characters
        assert 0 < float(test.split(": ")[1]) < math.log2(21)


def test_cli_train_out_keeps_the_task_and_prints_the_same_lines(tmp_path, text_file, capsys):
    args = ["train", "--task", "char-lm", "--text-file", text_file, "--seq-len", "16"]
    args += ["--epochs", "1", "--max-steps", "3", "--model", "char-rnn", "--model-arg", "hidden=8"]
    assert main([*args, "--scheme", "torch_default"]) == 0
    alone = capsys.readouterr().out.splitlines()
    assert main([*args, "--scheme", "torch_default", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == alone  # the same run, the same two lines
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["task"] == "char-lm" and saved["seq_len"] == 16
    assert saved["text_file"] == str(Path(text_file).resolve())


def test_the_task_picks_schemes_that_fit_the_model_and_train_runs_the_first(tmp_path, text_file):
    from initlab.cli import build_parser
    from initlab.cli._tasks import apply_task_defaults

    def filled(argv):
        args = build_parser().parse_args(argv)
        apply_task_defaults(args)
        return args

    lm = ["--task", "char-lm", "--text-file", text_file]
    assert filled(["compare", *lm]).schemes == "torch_default,xavier_uniform,gpt2,small_init"
    rnn = filled(["compare", *lm, "--model", "char-rnn"]).schemes  # gpt2 needs attention
    assert rnn == "torch_default,xavier_uniform,rnn_orthogonal,orthogonal"
    assert filled(["train", *lm]).scheme == "torch_default"  # not the MNIST example's scheme
    assert filled(["train", *lm, "--scheme", "gpt2"]).scheme == "gpt2"  # typed: kept
    assert filled(["train", "--task", "vit"]).scheme == "trunc_normal"
    assert filled(["train"]).scheme == "xavier-then-he"  # the image task fills nothing


def test_cli_train_refuses_a_language_model_for_the_image_task(capsys):
    assert main(["train", "--model", "char-gpt"]) == 2
    assert "argument --model: model 'char-gpt' does not fit task 'image'" in capsys.readouterr().err


def test_vit_without_its_files_says_the_task_needs_them(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = CompareConfig.for_task("vit", seeds=1, data_dir=str(empty))
    with pytest.raises(FileNotFoundError, match=r"task 'vit' trains on 'fashion-mnist'") as e:
        run_sweep(config, tmp_path / "out", progress=False)
    assert e.value.argument == "data_dir" and not (tmp_path / "out").exists()


def test_an_interrupted_char_lm_sweep_resumes_to_the_same_lines(tmp_path, text_file):
    config = lm_config(text_file, "char-rnn", {"embed": 4, "hidden": 8}, seeds=1)
    run_sweep(config, tmp_path / "whole", progress=False, vectorize=True)

    def stop(run, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, tmp_path / "cut", progress=False, vectorize=True, on_epoch=stop)
    # config.json alone gives the task, corpus and window back
    run_sweep(None, tmp_path / "cut", resume=True, progress=False, vectorize=True)
    whole, cut = epoch_lines(tmp_path / "whole"), epoch_lines(tmp_path / "cut")
    assert whole.keys() == cut.keys() and len(whole) == 4
    for key, line in whole.items():
        assert cut[key]["train_loss"] == line["train_loss"], key  # deterministic: equal
        assert cut[key]["test_bpc"] == line["test_bpc"], key
