"""The "small datasets: prefer pretrained" claim as a curve: the gap against data size.

Runs ``initlab compare`` once per training-set size (by default 1%, 10% and 100% of
Fashion-MNIST's 60,000 training images), each with the ``pretrained`` scheme (the same model
pretrained on MNIST, then fine-tuned with a new head) against the same model from scratch, 3
seeds; then plots, per size, the difference in final test accuracy between ``pretrained`` and
each from-scratch scheme with its 95% Welch interval over seeds
(:func:`initlab.reports.stats.welch_interval`).

Usage (repository root, Fashion-MNIST in the standard IDX files)::

    python examples/pretrained_vs_data_size.py --data-dir ../shared/data/fashion-mnist

Each size is its own ``initlab compare`` output directory under ``--out`` (results, report,
figures; rerunning resumes), and ``--out``/``data_size.png`` is the curve. Smaller sets train
for more epochs so that every size trains to about its plateau: ``--epochs`` pairs with
``--sizes``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from matplotlib.figure import Figure

from initlab.reports.stats import welch_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="Fashion-MNIST IDX directory")
    parser.add_argument("--sizes", default="600,6000,60000", help="training-set sizes")
    parser.add_argument("--epochs", default="20,10,5", help="epochs per size")
    parser.add_argument("--schemes", default="pretrained,xavier-then-he,kaiming_uniform")
    parser.add_argument("--model", default="mlp-784-128-10")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="runs/pretrained-vs-size")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    epochs = [int(e) for e in args.epochs.split(",")]
    if len(sizes) != len(epochs):
        parser.error(f"--epochs needs one value per size; got {args.epochs!r} for {args.sizes!r}")
    out = Path(args.out)
    finals: dict[int, dict[str, list[float]]] = {}
    for size, n_epochs in zip(sizes, epochs, strict=True):
        target = out / f"train-{size}"
        command = [
            sys.executable, "-m", "initlab", "compare", "--dataset", "fashion-mnist",
            "--data-dir", args.data_dir, "--model", args.model, "--schemes", args.schemes,
            "--seeds", str(args.seeds), "--epochs", str(n_epochs), "--no-progress",
            "--out", str(target),
        ]  # fmt: skip
        if size < 60000:
            command += ["--train-subset", str(size)]
        if (target / "config.json").exists():  # continue (or just re-read) a finished size
            command = [*command[:4], "--resume", str(target)]
        subprocess.run(command, check=True)
        finals[size] = _final_accuracies(target / "results.jsonl")
    _plot(out / "data_size.png", finals, args.schemes.split(","))
    print(f"wrote {out / 'data_size.png'}")


def _final_accuracies(path: Path) -> dict[str, list[float]]:
    """``{scheme: [final test accuracy of each finished run]}`` from a results file."""
    last: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("type") == "epoch":
            last[record["run"]] = record
    per_scheme: dict[str, list[float]] = {}
    for record in last.values():
        per_scheme.setdefault(record["scheme"], []).append(record["test_accuracy"])
    return per_scheme


def _plot(path: Path, finals: dict[int, dict[str, list[float]]], schemes: list[str]) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    sizes = sorted(finals)
    for index, scratch in enumerate(s for s in schemes if s != "pretrained"):
        gaps = [welch_interval(finals[n]["pretrained"], finals[n][scratch]) for n in sizes]
        mids = [100 * g.difference for g in gaps]
        errors = [100 * g.half_width for g in gaps]
        for n, gap in zip(sizes, gaps, strict=True):
            print(f"{n:>6} images: pretrained - {scratch} = {100 * gap.difference:+.2f} "
                  f"± {100 * gap.half_width:.2f} points (95% Welch)")  # fmt: skip
        dodged = [n * 1.06**index for n in sizes]  # side by side, not on top of each other
        ax.errorbar(dodged, mids, yerr=errors, marker="os^"[index % 3], capsize=3,
                    label=f"pretrained - {scratch}")  # fmt: skip
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("Fashion-MNIST training images")
    ax.set_ylabel("test accuracy gap (points)")
    ax.set_title("Pretrained on MNIST minus from scratch (95% Welch intervals)")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    main()
