"""``torchrun -m initlab compare``: runs split across two local ranks, one report on rank 0;
an interrupted two-rank sweep resumes every rank's runs."""

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from initlab.cli import main
from initlab.experiments.distributed import Ranks, is_main_process, session
from initlab.experiments.sweep import CompareConfig, read_results, run_sweep
from initlab.experiments.trainer import TrainConfig
from tests.rounding import accuracy_tolerance, band

ARGS = [
    "compare",
    "--schemes",
    "seed,zeros,normal:std=1e20",
    "--seeds",
    "2",
    "--epochs",
    "1",
    "--train-subset",
    "500",
    "--test-subset",
    "200",
    "--no-progress",
]
# Each rank stacks its 3 runs, the single process all 6: products of other shapes, rounded
# otherwise (and the ranks run 1 thread, the test process maybe more), so losses agree within
# the float32 band of a run's 8 steps (ceil(500 / 64)) and accuracies over the 200 test images
# within its near-ties (tests/rounding.py).
STEPS, TEST_IMAGES = 8, 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    for _ in range(3):  # the free port may be taken before torchrun binds it: try another
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            "-m",
            "initlab",
            *args,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        if "address already in use" not in done.stderr.lower():
            return done
    return done


def _keyed(path):
    return {
        (ln["type"], ln["run"], ln.get("epoch")): ln
        for ln in read_results(path)
        if ln["type"] != "init"
    }


def test_two_ranks_gather_one_report_equal_to_a_single_process_run(tmp_path, capsys):
    done = _torchrun([*ARGS, "--out", str(tmp_path / "dist")])
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*ARGS, "--out", str(tmp_path / "single")]) == 0
    single_out = capsys.readouterr().out

    dist, single = tmp_path / "dist", tmp_path / "single"
    lines = read_results(dist / "results.jsonl")
    # rank 0 trained runs 0, 2, 4 of the grid and wrote them first; rank 1's (1, 3, 5) follow
    runs = [ln["run"] for ln in lines if ln["type"] == "status"]
    assert set(runs[:3]) == {"seed/0", "normal:std=1e20/0", "zeros/1"}
    assert set(runs[3:]) == {"zeros/0", "seed/1", "normal:std=1e20/1"}
    assert not list(dist.glob("results.rank*.jsonl"))  # the rank files were gathered, then removed
    assert len(list((dist / "diagnosis").glob("*.json"))) == 6  # both ranks wrote their runs'

    got, want = _keyed(dist / "results.jsonl"), _keyed(single / "results.jsonl")
    assert got.keys() == want.keys()
    for key, line in want.items():
        if key[0] == "status":  # finished, or diverged at the same epoch and step
            assert [got[key].get(k) for k in ("status", "epoch", "step")] == [
                line.get(k) for k in ("status", "epoch", "step")
            ]
        else:
            assert got[key]["steps"] == line["steps"]
            assert got[key]["train_loss"] == pytest.approx(line["train_loss"], rel=band(STEPS))
            assert got[key]["test_accuracy"] == pytest.approx(
                line["test_accuracy"], abs=accuracy_tolerance(STEPS, TEST_IMAGES)
            )

    with open(dist / "summary.csv") as f:
        dist_rows = list(csv.DictReader(f))
    with open(single / "summary.csv") as f:
        single_rows = list(csv.DictReader(f))
    assert [r["scheme"] for r in dist_rows] == ["seed", "zeros", "normal:std=1e20"]
    for a, b in zip(single_rows, dist_rows, strict=True):
        assert (b["runs"], b["diverged"]) == (a["runs"], a["diverged"])
        if a["final_accuracy_mean"]:
            assert float(b["final_accuracy_mean"]) == pytest.approx(
                float(a["final_accuracy_mean"]), abs=accuracy_tolerance(STEPS, TEST_IMAGES)
            )
    # one table, printed by rank 0 only, with the single process's rows
    assert done.stdout.count("final test acc") == 1
    assert done.stdout.splitlines()[1].split()[0] == single_out.splitlines()[1].split()[0]
    assert (dist / "report.md").is_file() and (dist / "test_error.png").is_file()


def test_an_error_on_rank_0_ends_the_command_with_its_message(tmp_path):
    # A second sweep into the same directory is refused on rank 0. (torchrun stops the other
    # rank as soon as one fails, so whether rank 1 printed too is a race; that rank 1 gets the
    # error rather than waiting forever is checked below, without torchrun.)
    out = ["--out", str(tmp_path)]
    quick = ["compare", "--schemes", "seed", "--seeds", "1", "--train-subset", "100"]
    quick += ["--test-subset", "50", "--epochs", "1", "--no-progress"]
    assert main([*quick, *out]) == 0
    done = _torchrun([*quick, *out], timeout=120)
    assert done.returncode != 0
    assert "initlab compare: error:" in done.stderr, done.stderr[-3000:]
    assert "resume it with --resume" in done.stderr


def _two_ranks(rank, port, out_dir):
    """One of two gloo processes: rank 0's error and gathered values reach the other rank."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    try:
        with session() as ranks:  # joins the group initialized above
            try:
                ranks.from_main((Path(out_dir) / "missing" / "config.json").read_text)
            except FileNotFoundError as error:
                message = f"{type(error).__name__}: {error.filename}"
            values = ranks.from_main(lambda: {"pending": ["seed/0", "zeros/0", "seed/1"]})
            gathered = ranks.gather(ranks.shard(values["pending"]))
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps([message, gathered]))
    finally:
        torch.distributed.destroy_process_group()


def test_the_errors_a_rank_sends_to_the_others_survive_pickling(tmp_path):
    # Ranks.from_main pickles rank 0's exception for the others: an error whose constructor
    # takes other arguments than its message must still come back whole (type, text, argument).
    import pickle

    from initlab._checks import ArgumentError
    from initlab.datasets.families import DataNotFoundError, load_dataset
    from initlab.experiments.results import (
        NothingToResumeError,
        OutDirInUseError,
        ResultsExistError,
    )

    with pytest.raises(DataNotFoundError) as missing:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    errors = [
        ArgumentError("schemes", "no such scheme"),
        missing.value,
        missing.value.reworded("pretrain.data_dir", fetchable=False, context="source: "),
        ResultsExistError(tmp_path),
        NothingToResumeError(tmp_path),
        OutDirInUseError(tmp_path, {"pid": 7, "host": "h", "started": "now"}),
    ]
    for error in errors:
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
        assert getattr(back, "argument", None) == getattr(error, "argument", None)


def _spawn_two(function, *args, hang):
    """Run ``function(rank, port, *args)`` in two processes; fail with ``hang`` if one waits."""
    spawned = torch.multiprocessing.spawn(
        function, args=(_free_port(), *args), nprocs=2, join=False
    )
    deadline = time.monotonic() + 90  # both ranks finish in seconds; a rank left waiting hangs
    while not spawned.join(timeout=1):
        if time.monotonic() > deadline:
            for process in spawned.processes:
                process.kill()
            pytest.fail(hang)


def test_rank_0_sends_its_error_and_its_values_and_gathers_every_share(tmp_path):
    _spawn_two(
        _two_ranks,
        str(tmp_path),
        hang="a rank is still waiting: rank 0's error or values never reached it",
    )
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    missing = str(tmp_path / "missing" / "config.json")
    # the same error on both ranks, although only rank 0 tried to open the file
    assert rank0[0] == rank1[0] == f"FileNotFoundError: {missing}"
    # rank 0 gets every rank's share in rank order; the others get None
    assert rank0[1] == [["seed/0", "seed/1"], ["zeros/0"]]
    assert rank1[1] is None


# 1000 training images = 16 steps of 64 per epoch; 3 epochs, so that an interrupt after
# epoch 2 leaves an epoch to train. Runs in grid order: seed/0, xavier_normal/0, seed/1,
# xavier_normal/1; rank 0 trains the seed runs, rank 1 the xavier_normal runs.
THREE = CompareConfig(
    schemes=("seed", "xavier_normal"),
    seeds=2,
    train_subset=1000,
    test_subset=200,
    train=TrainConfig(epochs=3),
)


def _stop_second_runs(run, record):
    """Each rank's second run (seed 1) stops after epoch 2; its first run has finished."""
    if run.endswith("/1") and record.epoch == 2:
        raise KeyboardInterrupt


def _interrupted_rank(rank, port, out_dir, threads):
    """One rank of a two-process sweep interrupted like a Ctrl-C to torchrun."""
    torch.set_num_threads(threads)  # the parent's: the same float reductions, bit for bit
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2
    )
    try:
        run_sweep(THREE, out_dir, progress=False, on_epoch=_stop_second_runs)
    except KeyboardInterrupt:
        pass
    finally:
        torch.distributed.destroy_process_group()


def _comparable(lines):
    """Lines without wall times, keyed so that line order does not matter."""
    return {
        (ln["type"], ln["run"], ln.get("epoch")): {
            k: v for k, v in ln.items() if k != "wall_time_s"
        }
        for ln in lines
    }


def test_resume_continues_every_ranks_runs_of_an_interrupted_session(tmp_path):
    cut = tmp_path / "cut"
    _spawn_two(
        _interrupted_rank,
        str(cut),
        torch.get_num_threads(),
        hang="a rank of the interrupted sweep is still waiting",
    )
    # what the interrupt leaves: rank 1's lines in its own file, one checkpoint per cut run
    mine = {ln["run"] for ln in read_results(cut / "results.rank1.jsonl")}
    assert mine == {"xavier_normal/0", "xavier_normal/1"}
    assert len(list((cut / "checkpoints").glob("*.pt"))) == 2

    trained = []
    run_sweep(
        None, cut, resume=True, progress=False, on_epoch=lambda r, e: trained.append((r, e.epoch))
    )
    # both ranks' finished runs are kept and both cut runs train only their third epoch
    assert trained == [("seed/1", 3), ("xavier_normal/1", 3)]
    assert not list(cut.glob("results.rank*.jsonl")) and not (cut / "checkpoints").exists()
    run_sweep(THREE, tmp_path / "full", progress=False)
    resumed = read_results(cut / "results.jsonl")
    full = read_results(tmp_path / "full" / "results.jsonl")
    assert len(resumed) == len(full) == 4 * 5  # init, 3 epochs, status per run; none twice
    assert _comparable(resumed) == _comparable(full)


def test_outside_torchrun_a_sweep_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    with session() as ranks:
        assert ranks == Ranks(0, 1)
        assert ranks.shard(["a", "b", "c"]) == ["a", "b", "c"]
        assert ranks.from_main(lambda: 42) == 42
        assert ranks.gather("x") == ["x"]
    assert is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()


def test_rank_r_of_w_takes_every_wth_run_from_r():
    grid = [f"run{i}" for i in range(7)]
    shares = [Ranks(r, 3).shard(grid) for r in range(3)]
    assert shares == [["run0", "run3", "run6"], ["run1", "run4"], ["run2", "run5"]]
    assert sorted(sum(shares, [])) == sorted(grid)
