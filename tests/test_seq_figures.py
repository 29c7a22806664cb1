"""A sequence model's trace (early gradient norms, attention and output logit scales) and its
figures in the compare report: recorded by both trainers, checked by hand on a tiny model."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import pytest
import torch

from initlab.experiments.config import CompareConfig, TrainConfig
from initlab.experiments.core import TRACE_EVERY, TensorData, logit_scales, trace_lines, traced
from initlab.experiments.stacked import train_group
from initlab.experiments.sweep import run_sweep
from initlab.experiments.trainer import train
from initlab.reports.figures import SEQUENCE_FIGURES, report_figures
from initlab.zoo.models import build_model
from initlab.zoo.recurrent import SeqRNN
from initlab.zoo.transformer import CharTransformer

WORDS = ["the", "king", "queen", "lord", "sweet", "night", "day", "love", "death", "and", "of"]
STEPS = 12  # one epoch of 12 steps: per-step norms at 1..12, probes at steps 0 and 10


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A tiny char-lm comparison: 2 schemes x 1 seed, stacked."""
    root = tmp_path_factory.mktemp("seq")
    rng = random.Random(0)
    words = []
    while sum(len(w) + 1 for w in words) < 21_000:  # datasets.text's minimum is 20,500
        words.append(rng.choice(WORDS))
    (root / "corpus.txt").write_text(" ".join(words) + "\n", encoding="utf-8")
    config = CompareConfig(
        task="char-lm",
        model="char-gpt",
        model_params={"d_model": 16, "n_layer": 1, "n_head": 2},
        schemes=("gpt2", "xavier_uniform"),
        seeds=1,
        text_file=str(root / "corpus.txt"),
        seq_len=16,
        train=TrainConfig(epochs=1, batch_size=8, max_steps=STEPS),
    )
    run_sweep(config, root / "out", progress=False, vectorize=True)
    return root / "out"


def epoch_lines(out):
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return {line["run"]: line for line in lines if line["type"] == "epoch"}


def test_a_char_lm_report_draws_the_trace_and_bpc_and_no_test_error(sweep):
    text = (sweep / "report.md").read_text()
    for file in (*SEQUENCE_FIGURES.values(), "test_bpc.png"):
        assert f"]({file})" in text
        assert (sweep / file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # 1 - next-character accuracy is no language model's measure: neither drawn nor listed
    assert "test_error.png" not in text and not (sweep / "test_error.png").exists()
    assert "largest attention logit" in text


def test_a_char_lm_config_json_records_its_corpus_and_no_image_settings(sweep):
    saved = json.loads((sweep / "config.json").read_text())
    assert saved["corpus"] == saved["text_file"] and saved["corpus"].endswith("corpus.txt")
    image_only = {"dataset", "data", "data_dir", "download", "standardize", "target_accuracy"}
    assert not (image_only | {"pretrain"}) & saved.keys()
    config = CompareConfig.from_json((sweep / "config.json").read_text())
    assert CompareConfig.from_json(config.to_json()) == config  # what resume reads back
    embedded = json.loads(CompareConfig.for_task("char-lm").to_json())
    assert embedded["corpus"] == "shakespeare (embedded)" and "text_file" not in embedded
    assert json.loads(CompareConfig.for_task("vit").to_json())["dataset"] == "fashion-mnist"


def test_the_trace_has_every_early_step_and_a_probe_every_ten_steps(sweep):
    lines = epoch_lines(sweep)
    assert lines.keys() == {"gpt2/0", "xavier_uniform/0"}
    for line in lines.values():
        trace = line["trace"]
        assert trace["grad_steps"] == list(range(1, STEPS + 1))
        assert trace["logit_steps"] == [0, TRACE_EVERY]
        assert trace["grad_norms"].keys() == line["grad_norms"].keys()
        # the epoch's mean gradient norm is the mean of the per-step norms it was made from
        for name, norms in trace["grad_norms"].items():
            assert sum(norms) / STEPS == pytest.approx(line["grad_norms"][name], rel=1e-5)
    # gpt2 draws N(0, 0.02^2): its logits at step 0 are far smaller than Xavier's
    gpt2, xavier = lines["gpt2/0"]["trace"], lines["xavier_uniform/0"]["trace"]
    assert gpt2["logit_rms"][0] < 0.1 * xavier["logit_rms"][0]


def test_stacked_and_sequential_trainers_record_the_same_trace():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 7, (64, 9), generator=g)
    data = TensorData(tokens[:48, :-1], tokens[:48, 1:], tokens[48:, :-1], tokens[48:, 1:])
    config = TrainConfig(epochs=2, batch_size=8, max_steps=6)  # steps 1..12, probes 0 and 10

    def models():
        torch.manual_seed(1)
        return [CharTransformer(7, 8, d_model=8, n_layer=1, n_head=2) for _ in range(2)]

    stacked = train_group(models(), data, config, [0, 1])
    alone = [train(m, data, replace(config, seed=s)) for m, s in zip(models(), [0, 1], strict=True)]
    for group_run, run in zip(stacked, alone, strict=True):
        first, second = (e.trace for e in group_run.epochs), (e.trace for e in run.epochs)
        for a, b in zip(first, second, strict=True):
            assert a.keys() == b.keys()
            assert a["grad_steps"] == b["grad_steps"] and a["logit_steps"] == b["logit_steps"]
            # The same products summed in another order (batched matrix products): a few ulp
            # per step. The key bias's gradient is 0 but for rounding (softmax ignores a shift
            # shared by a query's scores), and Adam turns that noise into steps of up to lr in
            # either trainer: the pre-softmax scores drift apart by q . (b_k - b_k'), measured
            # 3.4e-4 relative after 10 steps, hence 2e-3 for the attention logit; the output
            # logits and the gradient norms move with the loss, within 1e-4 (a k.bias norm of
            # 1e-10 is pure rounding: abs 1e-7).
            assert a["attn_logit_max"] == pytest.approx(b["attn_logit_max"], rel=2e-3)
            for key in ("logit_rms", "logit_max"):
                assert a[key] == pytest.approx(b[key], rel=1e-4), key
            for name, norms in a["grad_norms"].items():
                assert norms == pytest.approx(b["grad_norms"][name], rel=1e-4, abs=1e-7), name
    epoch1, epoch2 = stacked[0].epochs[0].trace, stacked[0].epochs[1].trace
    assert (epoch1["grad_steps"], epoch1["logit_steps"]) == ([1, 2, 3, 4, 5, 6], [0])
    assert (epoch2["grad_steps"], epoch2["logit_steps"]) == ([7, 8, 9, 10, 11, 12], [10])


def test_a_run_that_diverges_leaves_the_stack_and_the_others_keep_their_trace():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 7, (64, 9), generator=g)
    data = TensorData(tokens[:48, :-1], tokens[:48, 1:], tokens[48:, :-1], tokens[48:, 1:])
    torch.manual_seed(1)
    models = [CharTransformer(7, 8, d_model=8, n_layer=1, n_head=2) for _ in range(3)]
    with torch.no_grad():
        models[1].head.weight.fill_(math.inf)  # every logit inf or nan: the first loss is nan
    config = TrainConfig(epochs=1, batch_size=8, max_steps=6)
    ok, bad, also_ok = train_group(models, data, config, [0, 1, 2])
    assert bad.status == "diverged" and bad.epochs == () and bad.diverged_step == 1
    for result in (ok, also_ok):
        (record,) = result.epochs
        assert record.trace["grad_steps"] == [1, 2, 3, 4, 5, 6]
        assert record.trace["logit_steps"] == [0]
        assert all(math.isfinite(v) for v in record.trace["logit_rms"])


def hand_model() -> CharTransformer:
    """d = 2, one head, one pre-LN block whose branches add nothing: every number by hand.

    Token 0 embeds as (1, -1), token 1 as (-1, 1), positions 0: LayerNorm (variance 1, eps 1e-5)
    maps them to +-(u, -u) with u = 1 / sqrt(1 + 1e-5). W_q = [[2, 0], [0, 0]], W_k =
    [[3, 0], [0, 0]], biases 0: q = (2 s u, 0), k = (3 s' u, 0), so every score is
    6 s s' u^2 / sqrt(d_head = 2). v, proj and the MLP are 0, so the trunk's output is the
    embedding and ln_f gives +-(u, -u) again; the head [[1, 0], [0, 2], [1, 1]] gives the logits
    +-(u, -2u, 0): RMS u sqrt(5/3), largest |logit| 2u.
    """
    model = CharTransformer(vocab_size=3, seq_len=4, d_model=2, n_layer=1, n_head=1)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in (model.blocks[0].ln1, model.blocks[0].ln2, model.ln_f):
            ln.weight.fill_(1.0)
        model.tok_emb.weight[:2] = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
        model.blocks[0].attn.q.weight[0, 0] = 2.0
        model.blocks[0].attn.k.weight[0, 0] = 3.0
        model.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    return model


def test_logit_scales_equal_the_hand_computation():
    u = 1 / math.sqrt(1 + 1e-5)
    tokens = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0]])
    attention, rms, largest = logit_scales(hand_model(), tokens).tolist()
    assert attention == pytest.approx(6 * u**2 / math.sqrt(2), rel=1e-6)
    assert rms == pytest.approx(u * math.sqrt(5 / 3), rel=1e-6)
    assert largest == pytest.approx(2 * u, rel=1e-6)


def test_a_causal_attentions_masked_pairs_do_not_count():
    torch.manual_seed(3)  # a seed whose largest score is at a masked (future) pair
    model = CharTransformer(vocab_size=5, seq_len=6, d_model=8, n_layer=2, n_head=2)
    tokens = torch.randint(0, 5, (3, 6))
    scores = []
    model.blocks[1].attn.score.register_forward_hook(lambda m, i, out: scores.append(out))
    model.blocks[0].attn.score.register_forward_hook(lambda m, i, out: scores.append(out))
    with torch.no_grad():
        model(tokens)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    below = max(float(s.abs()[..., causal].max()) for s in scores)
    every = max(float(s.abs().max()) for s in scores)
    assert every > below
    assert float(logit_scales(model, tokens)[0]) == pytest.approx(below, rel=1e-6)


def test_which_models_are_traced_and_the_attention_column_only_for_attention():
    assert traced(build_model("char-gpt", vocab_size=5, seq_len=4, d_model=4, n_layer=1))
    assert traced(SeqRNN(hidden=4))
    assert not traced(build_model("mlp-784-128-10"))
    rnn = logit_scales(SeqRNN(hidden=4), torch.zeros(2, 28, 28))
    assert math.isnan(float(rnn[0])) and float(rnn[1]) > 0
    lines = trace_lines(["w"], [1], [torch.tensor([[0.5]])], [0], [rnn[None]], attention=False)
    assert lines == [
        {
            "grad_steps": [1],
            "grad_norms": {"w": [0.5]},
            "logit_steps": [0],
            "logit_rms": [pytest.approx(float(rnn[1]))],
            "logit_max": [pytest.approx(float(rnn[2]))],
        }
    ]


def test_report_figures_per_task():
    image, lm = CompareConfig(), CompareConfig(task="char-lm", schemes=("gpt2",), model="char-gpt")
    assert "test_error.png" in report_figures(image).values()
    assert not set(SEQUENCE_FIGURES.values()) & set(report_figures(image).values())
    files = list(report_figures(lm).values())
    assert files[1] == "test_bpc.png" and "test_error.png" not in files
    assert set(SEQUENCE_FIGURES.values()) <= set(files)
