"""One sweep per output directory: a second `compare` on a held directory is refused untouched.

Before the lock, two `initlab compare --resume DIR` of one directory both ran: the later one
trimmed and rewrote `results.jsonl` under the earlier one (whose lines were lost) and deleted
`checkpoints/` under it. The holder here is simulated either by another process that holds the
lock file with plain `filelock` (as a running sweep does) or by `lock_out_dir` in this process.
"""

import json
import os
import socket
import subprocess
import sys

import filelock
import pytest

from initlab.cli import main
from initlab.experiments import sweep
from initlab.experiments.sweep import (
    HOLDER_FILE,
    LOCK_FILE,
    CompareConfig,
    OutDirInUseError,
    lock_out_dir,
    run_sweep,
)
from initlab.experiments.trainer import TrainConfig

# 200 training images = 4 steps of 64 (the last one short) per epoch: a quick sweep.
TINY = {"train_subset": 200, "test_subset": 100, "train": TrainConfig(epochs=2)}
CONFIG = CompareConfig(schemes=("seed", "zeros"), seeds=1, **TINY)

# Another process holding the directory's lock as a running sweep does: flock on the lock file,
# its own holder record beside it; it holds until its stdin closes.
HOLDER = f"""
import json, os, socket, sys
import filelock
out = sys.argv[1]
lock = filelock.FileLock(out + "/{LOCK_FILE}", timeout=0)
lock.acquire()
record = {{"pid": os.getpid(), "host": socket.gethostname(), "started": "then"}}
with open(out + "/{HOLDER_FILE}", "w") as f:
    json.dump(record, f)
print("held", flush=True)
sys.stdin.read()
"""


def _snapshot(directory):
    """Every file under ``directory`` with its bytes and modification time (nanoseconds)."""
    return {
        path.relative_to(directory).as_posix(): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _interrupted(out):
    """A sweep stopped after seed/0's first epoch: a checkpoint and lines a resume would trim."""

    def stop(run, record):
        if (run, record.epoch) == ("seed/0", 1):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(CONFIG, out, progress=False, on_epoch=stop)
    assert len(list((out / "checkpoints").glob("*.pt"))) == 1


def _lock_is_free(out) -> bool:
    lock = filelock.FileLock(str(out / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        return False
    lock.release()
    return True


def test_a_resume_of_a_directory_another_process_holds_is_refused_untouched(tmp_path, capsys):
    out = tmp_path / "cut"
    _interrupted(out)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _snapshot(out)
        with pytest.raises(OutDirInUseError) as refused:
            run_sweep(None, out, resume=True, progress=False)
        message = str(refused.value)
        assert message.startswith(f"out_dir {str(out)!r} is in use by another sweep (pid ")
        assert f"pid {holder.pid} on host {socket.gethostname()}, started then" in message
        assert refused.value.holder["pid"] == holder.pid
        # the CLI names its flag, and a new sweep into the held directory is refused alike
        assert main(["compare", "--resume", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            f"initlab compare: error: --resume {out} is in use by another initlab compare "
            f"(pid {holder.pid} on host {socket.gethostname()}, started then); nothing was "
            "changed."
        )
        assert "out_dir" not in err and "Traceback" not in err
        assert main(["compare", "--schemes", "seed", "--out", str(out), "--no-progress"]) == 2
        assert f"error: --out {out} is in use by another initlab compare (pid" in (
            capsys.readouterr().err
        )
        assert _snapshot(out) == before  # not a byte nor a modification time changed
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    # the holder's end releases the lock (the operating system's, not a protocol of ours)
    assert _lock_is_free(out)


def test_a_new_sweep_into_a_held_directory_names_the_holder_and_writes_nothing(tmp_path):
    out = tmp_path / "new"
    with lock_out_dir(out):
        record = json.loads((out / HOLDER_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        before = _snapshot(out)
        with pytest.raises(OutDirInUseError, match=rf"\(pid {os.getpid()} on host "):
            run_sweep(CONFIG, out, progress=False)
        assert _snapshot(out) == before
    assert not (out / "config.json").exists() and not (out / "results.jsonl").exists()
    assert not (out / HOLDER_FILE).exists()  # the record goes with the lock
    assert _lock_is_free(out)


def test_a_missing_holder_record_is_said_so(tmp_path):
    out = tmp_path / "o"
    with lock_out_dir(out):
        (out / HOLDER_FILE).write_text("not json")
        with pytest.raises(OutDirInUseError, match="holder not recorded: .* is missing or unread"):
            run_sweep(CONFIG, out, progress=False)


class Boom(Exception):
    pass


@pytest.mark.parametrize("stop", [None, Boom, KeyboardInterrupt])
def test_the_lock_is_held_during_the_sweep_and_released_however_it_ends(tmp_path, stop):
    out = tmp_path / "o"
    seen = []

    def hook(run, record):
        # during the sweep: the lock is held, recorded as this process's, and refuses another
        seen.append(json.loads((out / HOLDER_FILE).read_text())["pid"])
        assert not _lock_is_free(out)
        with pytest.raises(OutDirInUseError), lock_out_dir(out):
            pass
        if stop is not None:
            raise stop

    if stop is None:
        run_sweep(CONFIG, out, progress=False, on_epoch=hook)
    else:
        with pytest.raises(stop):
            run_sweep(CONFIG, out, progress=False, on_epoch=hook)
    assert seen and set(seen) == {os.getpid()}
    assert _lock_is_free(out)
    assert not (out / HOLDER_FILE).exists()


def test_a_new_sweep_that_fails_its_checks_creates_no_directory(tmp_path):
    # the lock of a directory that does not exist yet is taken only once the checks pass
    out = tmp_path / "absent"
    with pytest.raises(ValueError, match="scheme 'fixup' does not apply to model 'mlp-784-128-10'"):
        run_sweep(CompareConfig(schemes=("fixup",), seeds=1, **TINY), out, progress=False)
    assert not out.exists()
    assert sweep.LOCK_FILE == ".initlab-compare.lock"  # documented name (README, docstring)
