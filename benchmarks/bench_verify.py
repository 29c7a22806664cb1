"""Time ``initlab.policy.verify.verify`` on a GPT-2-small-sized model against one ``normal_``
fill of its parameters (target: at most 2x).

The model is Hugging Face's ``GPT2LMHeadModel`` with the GPT-2 small config (n_embd 768, 12
layers, 12 heads, vocabulary 50257, 1024 positions: 124.4M parameters, the token embedding
tied to the head), built on the meta device and materialized by ``to_empty`` so that its
construction costs nothing; the baseline is ``p.normal_(0, 0.02)`` over every parameter once
(what any initialization costs at least). Three contenders alternate (A, B, C, A, ...) after
one untimed warm-up each, so that machine noise hits all alike:

* ``normal_``: the baseline fill;
* ``verify``: ``verify(model)``, the model alone;
* ``verify+receipt``: ``verify(model, receipt)`` against a receipt of the same values (every
  hash compared, the tie checked).

It prints every time, the medians and the median ratios to the baseline. Run it alone:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_verify.py     # one thread
    .venv/bin/python benchmarks/bench_verify.py --n-embd 128 --n-layer 2 --vocab 1000  # smoke

Needs ``transformers`` (installed in the test environment) and about 1.5 GB of memory at full
size.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import transformers

from initlab.policy.receipt import record_model
from initlab.policy.verify import verify


def build(n_embd: int, n_layer: int, vocab: int) -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=vocab, n_positions=1024, n_embd=n_embd, n_layer=n_layer, n_head=12
    )
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(config)
    model.to_empty(device="cpu")
    model.tie_weights()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-embd", type=int, default=768)
    parser.add_argument("--n-layer", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    model = build(args.n_embd, args.n_layer, args.vocab)
    params = list(model.parameters())  # unique: the tied head once
    count = sum(p.numel() for p in params)

    def fill():
        with torch.no_grad():
            for p in params:
                p.normal_(0.0, 0.02)

    fill()
    receipt = record_model(model)  # noqa: F841 (read by the verify+receipt closure)
    contenders = {
        "normal_": fill,
        "verify": lambda: verify(model),
        "verify+receipt": lambda: verify(model, receipt),
    }
    for fn in contenders.values():  # warm-up
        fn()
    # each fill draws new values: the receipt is made again from them before each
    # verify+receipt run, outside the timing (the closure reads the current `receipt`)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.reps):
        for name, fn in contenders.items():
            if name == "verify+receipt":
                receipt = record_model(model)
            start = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - start)
            if name == "verify+receipt":
                assert result.ok, result.table(only_problems=True)
    print(
        f"GPT-2 n_embd={args.n_embd} n_layer={args.n_layer} vocab={args.vocab}: "
        f"{count / 1e6:.1f}M parameters, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)"
    )
    base = statistics.median(times["normal_"])
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:15s} median {median:.3f} s  ratio {median / base:.2f}  "
            f"(runs: {', '.join(f'{v:.3f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
