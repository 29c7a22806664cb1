"""Time stacked training of the sequence models against plain PyTorch loops.

The goal: for the character-level transformer (``char-gpt``) and LSTM (``char-rnn``) of the
``char-lm`` task, a sweep of 4 schemes x 3 seeds trained stacked at least 3 times faster than
12 sequential runs of a plain PyTorch loop of the same model. Per model, on the task's data
(the embedded Shakespeare cut into windows of the task's ``seq_len``, 64 characters; batch 32;
AdamW lr 1e-3, weight decay 0.01, as ``initlab compare --task char-lm`` trains):

- initlab: :func:`initlab.experiments.stacked.train_group` trains the 12 runs as one stack for
  one epoch of ``--steps`` optimizer steps, then evaluates every run on the validation and test
  windows, as ``initlab compare`` does after each epoch. The runs are built and initialized
  first (:func:`~initlab.experiments.trainer.build_initialized`, as the sweep builds them;
  not timed). Its training part is read at the last progress call (``on_step``), which comes
  right after the last optimizer step, before the evaluation.
- plain, same model: the same class with its own forward (for ``char-rnn`` the written-out
  LSTM, :func:`initlab.zoo.recurrent.recurrent_forward`), initialized by the same scheme and
  seed, trained by the loop one writes by hand: ``DataLoader(TensorDataset(x, y),
  batch_size, shuffle=True)``, ``loss = F.cross_entropy(model(x).flatten(0, 1),
  y.flatten())``, ``zero_grad``, ``backward``, ``step`` (AdamW with PyTorch's default
  implementation), ``loss.item()`` per step, for ``--steps`` steps; then one pass over the
  validation and test windows in batches of 1000 under ``no_grad``.
- plain, fused LSTM (``char-rnn`` only): the same architecture as a practitioner writes it,
  ``Embedding -> nn.LSTM -> Linear`` with the fused ``nn.LSTM`` forward, loaded with the same
  initialized weights (the parameter names are the same), in the same loop.

The plain loops are timed on ``--plain-runs`` runs (default 3, cycling through the schemes and
seeds in the sweep's order) and their mean run time is multiplied by the sweep's 12 runs; the
script says so. Each ratio is plain / stacked (above 1: stacked is faster), end to end
(training and evaluation) and for the training steps alone. ``--repeats N`` alternates the
plain and stacked measurements N times and takes each one's median. All run in one process
with the same torch thread count; the script prints the CPU model and the threads. Run it
alone (nothing else on the CPU):

    .venv/bin/python benchmarks/bench_sequence.py
    .venv/bin/python benchmarks/bench_sequence.py --model char-rnn --repeats 3
    .venv/bin/python benchmarks/bench_sequence.py --smoke  # a few steps: checks it runs

The first line is the measurement the goal refers to.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from initlab.experiments.config import TrainConfig
from initlab.experiments.core import TensorData
from initlab.experiments.data import lm_data, lm_params
from initlab.experiments.stacked import train_group
from initlab.experiments.tasks import TASKS
from initlab.experiments.trainer import build_initialized, init_batch
from initlab.zoo.recurrent import CharRNN

#: The 4 schemes of each model's sweep: char-gpt's are the char-lm task's defaults; char-rnn's
#: replace the transformer-only ones (gpt2, small_init) by the recurrent ones.
SCHEMES = {
    "char-gpt": ("torch_default", "xavier_uniform", "gpt2", "small_init"),
    "char-rnn": ("torch_default", "xavier_uniform", "rnn_orthogonal", "orthogonal"),
}
SEEDS = 3
GOAL = 3.0  # the speed-up to reach, plain / stacked
WEIGHT_DECAY = 0.01  # TrainConfig's default, as initlab compare --task char-lm trains
EVAL_BATCH = 1000  # TrainConfig's default eval_batch_size


class FusedCharRNN(nn.Module):
    """``CharRNN``'s architecture with the fused ``nn.LSTM`` forward: what one writes by hand.

    Tokens ``(B, T)`` int64 -> ``emb`` -> ``rnn`` (``nn.LSTM``, batch first, zero initial
    states) -> ``head`` -> logits ``(B, T, vocab)``. Same parameter names as
    :class:`~initlab.zoo.recurrent.CharRNN`, so its state dict loads as is.
    """

    def __init__(self, source: CharRNN) -> None:
        super().__init__()
        rnn = source.rnn
        self.emb = nn.Embedding(source.emb.num_embeddings, source.emb.embedding_dim)
        self.rnn = nn.LSTM(rnn.input_size, rnn.hidden_size, rnn.num_layers, batch_first=True)
        self.head = nn.Linear(source.head.in_features, source.head.out_features)
        self.load_state_dict(source.state_dict())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.emb(tokens))[0])


@dataclass
class Timing:
    """Wall seconds of one measurement: training steps, and everything (steps + evaluation)."""

    train: float
    total: float


def machine() -> str:
    """The CPU (model name, family and model from /proc/cpuinfo where there is one), logical
    CPUs, the torch build and its threads."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            fields = dict(line.split(":", 1) for line in info if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "model name" in fields:
            cpu = f"{fields['model name']} (family {fields.get('cpu family', '?')}, model "
            cpu += f"{fields.get('model', '?')})"
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def sweep_runs(model: str) -> list[tuple[str, int]]:
    """The sweep's (scheme, seed) runs in the sweep's order: seeds outer, schemes inner."""
    return [(scheme, seed) for seed in range(SEEDS) for scheme in SCHEMES[model]]


def build_runs(model: str, params: dict, data: TensorData, runs: list[tuple[str, int]]) -> list:
    """Each run's model, built and initialized as ``initlab compare`` builds it."""
    batch = init_batch(data)
    return [
        build_initialized(model, scheme, seed=seed, model_params=params, batch=batch)
        for scheme, seed in runs
    ]


def time_stacked(
    models: list[nn.Module], seeds: list[int], data: TensorData, config: TrainConfig
) -> Timing:
    """Train ``models`` (run seeds ``seeds``) as one stack for one epoch, then evaluate them;
    time the training steps and the whole."""
    marks: list[float] = []
    start = time.perf_counter()
    results = train_group(
        models,
        data,
        config,
        seeds,
        on_step=lambda _: marks.append(time.perf_counter()),
    )
    total = time.perf_counter() - start
    bpc = [r.epochs[-1].test_bpc for r in results if r.epochs]
    print(f"    stacked: test bpc {min(bpc):.3f} .. {max(bpc):.3f}, {total:.2f} s")
    return Timing(marks[-1] - start, total)


def time_plain(
    model: nn.Module, data: TensorData, steps: int, batch_size: int, lr: float, seed: int
) -> Timing:
    """The hand-written loop: ``steps`` AdamW steps, then the validation and test pass."""
    torch.manual_seed(seed)  # the DataLoader's shuffle draws from the global RNG
    loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size, shuffle=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    model.train()
    start = time.perf_counter()
    running = 0.0
    for step, (x, y) in enumerate(loader):
        if step == steps:
            break
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        optimizer.step()
        running += loss.item()
    trained = time.perf_counter() - start
    model.eval()
    nats = {}
    with torch.no_grad():
        for name, xs, ys in (("val", data.val_x, data.val_y), ("test", data.test_x, data.test_y)):
            total = 0.0
            for i in range(0, len(xs), EVAL_BATCH):
                logits = model(xs[i : i + EVAL_BATCH])
                y = ys[i : i + EVAL_BATCH].flatten()
                total += F.cross_entropy(logits.flatten(0, 1), y, reduction="sum").item()
            nats[name] = total / ys.numel()
    elapsed = time.perf_counter() - start
    bpc = nats["test"] / torch.log(torch.tensor(2.0)).item()
    print(f"      loss {running / steps:.4f}, test bpc {bpc:.3f}, {elapsed:.2f} s")
    return Timing(trained, elapsed)


def plain_runs(
    make: Callable[[nn.Module], nn.Module],
    models: list[nn.Module],
    runs: list[tuple[str, int]],
    data: TensorData,
    config: TrainConfig,
    label: str,
) -> Timing:
    """Time the plain loop on each of ``models`` (copies built by ``make``); mean per run."""
    timings = []
    for model, (scheme, seed) in zip(models, runs, strict=True):
        print(f"    {label}: {scheme}, seed {seed}")
        timings.append(
            time_plain(make(model), data, config.max_steps, config.batch_size, config.lr, seed)
        )
    return Timing(
        statistics.mean(t.train for t in timings), statistics.mean(t.total for t in timings)
    )


def same(model: nn.Module) -> nn.Module:
    """The model itself: the plain loop trains the zoo model with its own forward."""
    return model


def load_data(seq_len: int, eval_windows: int | None) -> tuple[TensorData, int]:
    """The char-lm task's windows; with ``eval_windows``, only that many val and test ones."""
    data, vocab = lm_data(None, seq_len)
    if eval_windows is not None:
        n = eval_windows
        data = TensorData(
            data.train_x,
            data.train_y,
            data.test_x[:n],
            data.test_y[:n],
            data.val_x[:n],
            data.val_y[:n],
        )
    return data, vocab


def bench_model(name: str, data: TensorData, vocab: int, config: TrainConfig, args) -> None:
    """Measure one model: stacked against each plain loop, ``args.repeats`` times, alternating."""
    task = TASKS["char-lm"]
    seq_len = data.train_x.shape[1]
    params = lm_params(name, task.model_params if name == task.model else {}, vocab, seq_len)
    runs = sweep_runs(name)
    plain = runs[: args.plain_runs]
    peers: dict[str, Callable[[nn.Module], nn.Module]] = {"plain loop, same model": same}
    if name == "char-rnn":
        peers["plain loop, fused nn.LSTM"] = FusedCharRNN
    print(f"\n{name} {params}: {len(SCHEMES[name])} schemes {SCHEMES[name]} x {SEEDS} seeds")
    # Warm-up (not timed): one short stack and one short plain run of each kind.
    warm = TrainConfig(epochs=1, batch_size=config.batch_size, lr=config.lr, max_steps=2)
    few = load_data(seq_len, 8)[0]
    time_stacked(build_runs(name, params, few, runs[:2]), [0, 0], few, warm)
    for make in peers.values():
        time_plain(make(build_runs(name, params, few, runs[:1])[0]), few, 2, 8, config.lr, 0)
    stacked: list[Timing] = []
    measured: dict[str, list[Timing]] = {label: [] for label in peers}
    for repeat in range(args.repeats):
        print(f"  repeat {repeat + 1}/{args.repeats}")
        for label, make in peers.items():
            models = build_runs(name, params, data, plain)
            measured[label].append(plain_runs(make, models, plain, data, config, label))
        print(f"    initlab, {len(runs)} runs stacked")
        models = build_runs(name, params, data, runs)
        stacked.append(time_stacked(models, [seed for _, seed in runs], data, config))
    steps = config.max_steps
    median_train = statistics.median(t.train for t in stacked)
    median_total = statistics.median(t.total for t in stacked)
    print(
        f"  {name}: initlab stacked, {len(runs)} runs x {config.max_steps} steps: "
        f"{median_total:.1f} s end to end, {median_train:.1f} s training, "
        f"{median_train / steps:.3f} s per stacked step (measured, median of {args.repeats})"
    )
    for label, timings in measured.items():
        train = statistics.median(t.train for t in timings) * len(runs)
        total = statistics.median(t.total for t in timings) * len(runs)
        print(
            f"  {name}: {label}: {total:.1f} s end to end, {train:.1f} s training (mean of "
            f"{len(plain)} runs x {len(runs)}, scaled; median of {args.repeats}); speed-up "
            f"{total / median_total:.2f}x end to end, {train / median_train:.2f}x training "
            f"(goal: >= {GOAL:g}x); {train / len(runs) / steps:.4f} s per step of one run"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    task = TASKS["char-lm"]
    parser.add_argument(
        "--model",
        action="append",
        choices=sorted(SCHEMES),
        help="model to measure, repeatable (default: both)",
    )
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps (default: 100)")
    parser.add_argument(
        "--plain-runs", type=int, default=3, help="plain-loop runs timed (default: 3)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternating measurements, median (default: 1)"
    )
    parser.add_argument(
        "--seq-len", type=int, default=task.seq_len, help=f"(default: {task.seq_len})"
    )
    parser.add_argument(
        "--batch-size", type=int, default=task.batch_size, help=f"(default: {task.batch_size})"
    )
    parser.add_argument(
        "--eval-windows",
        type=int,
        default=None,
        help="validation and test windows evaluated (default: all)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for all (default: torch's)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="3 steps, 1 plain run, 32 eval windows: checks it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.plain_runs, args.repeats, args.eval_windows = 3, 1, 1, 32
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data, vocab = load_data(args.seq_len, args.eval_windows)
    per_epoch = -(-len(data.train_x) // args.batch_size)
    if not 1 <= args.steps <= per_epoch:
        parser.error(f"--steps must be in 1..{per_epoch} (one epoch); got {args.steps}")
    if not 1 <= args.plain_runs <= len(SCHEMES["char-gpt"]) * SEEDS:
        parser.error(f"--plain-runs must be in 1..12; got {args.plain_runs}")
    config = TrainConfig(epochs=1, batch_size=args.batch_size, lr=task.lr, max_steps=args.steps)
    print(f"machine: {machine()}")
    print(
        f"data: {len(data.train_x)} training windows of {args.seq_len} characters, "
        f"{len(data.val_x)} validation, {len(data.test_x)} test; batch {args.batch_size}, "
        f"{args.steps} steps, AdamW lr {task.lr:g}"
    )
    for name in args.model or sorted(SCHEMES):
        bench_model(name, data, vocab, config, args)


if __name__ == "__main__":
    main()
