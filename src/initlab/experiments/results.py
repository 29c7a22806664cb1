"""A comparison's output directory: its result lines, summary file and lock.

- ``results.jsonl`` holds one JSON object per line, appended and fsync'ed as the sweep goes
  (:func:`append_line`), so a crash or power loss keeps every line written so far; a torn last
  line (the process died while writing it) is skipped on reading (:func:`read_results`).
  Rewrites (a resume trimming the lines its runs continue from) are atomic
  (:func:`write_lines`). Under torchrun, ranks > 0 write ``results.rank<r>.jsonl`` until the
  end; a session stopped before then leaves them, and :func:`merge_rank_files` appends them.
- ``summary.csv``: one row per scheme, written atomically by
  :func:`initlab.reports.compare.write_summary`.
- ``.initlab-compare.lock``: one sweep at a time writes into a directory (:func:`lock_out_dir`).

Every whole-file write goes through :func:`initlab._files.atomic_write`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

import filelock

from initlab._checks import ArgumentError
from initlab._files import atomic_write

__all__ = [
    "CONFIG",
    "HOLDER_FILE",
    "LOCK_FILE",
    "RESULTS",
    "TERMINAL",
    "NothingToResumeError",
    "OutDirInUseError",
    "ResultsExistError",
    "append_line",
    "lock_out_dir",
    "merge_rank_files",
    "read_results",
    "refuse_existing",
    "require_config",
    "run_id",
    "terminal_runs",
    "write_lines",
]

log = logging.getLogger(__name__)

#: The comparison's resolved config (:class:`~initlab.experiments.config.CompareConfig`).
CONFIG = "config.json"
#: The result lines.
RESULTS = "results.jsonl"
#: The statuses after which a run is done; a resumed sweep keeps such runs.
TERMINAL = ("finished", "diverged")
#: The file whose exclusive lock a sweep holds on its output directory (see :func:`lock_out_dir`).
LOCK_FILE = ".initlab-compare.lock"
#: Beside it, while held: the holder's ``pid``, ``host`` and ``started`` time (JSON).
HOLDER_FILE = ".initlab-compare.holder.json"


def run_id(scheme: str, seed: int, lr: float | None = None) -> str:
    """Return the identifier of one run, e.g. ``"seed/0"``; in a learning-rate grid
    ``"seed@0.001/0"`` (the rate as ``repr`` writes it, so distinct rates stay distinct)."""
    return f"{scheme}/{seed}" if lr is None else f"{scheme}@{lr!r}/{seed}"


def read_results(path: str | os.PathLike) -> list[dict]:
    """Read ``results.jsonl``; a missing file is empty, a torn last line (crash) is skipped.

    Raises:
        ValueError: a line other than the last is not valid JSON (the message names it).
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    parsed = []
    for number, text in enumerate(lines, 1):
        try:
            parsed.append(json.loads(text))
        except json.JSONDecodeError:
            if number != len(lines):
                raise ValueError(f"{path}, line {number}: not valid JSON: {text[:80]!r}") from None
            log.warning("%s: skipping a torn last line (the sweep stopped while writing)", path)
    return parsed


def append_line(sink: TextIO, line: dict) -> None:
    """Append ``line`` as JSON to the open ``sink`` and fsync it: it survives a crash."""
    sink.write(json.dumps(line) + "\n")
    sink.flush()
    os.fsync(sink.fileno())


def write_lines(path: str | os.PathLike, lines: Iterable[dict]) -> None:
    """Replace the file at ``path`` by ``lines``, one JSON object per line, atomically."""
    atomic_write(path, "".join(json.dumps(line) + "\n" for line in lines))


def terminal_runs(lines: Iterable[dict]) -> set[str]:
    """The ids of the runs whose status line says they are done (:data:`TERMINAL`)."""
    return {
        line["run"] for line in lines if line["type"] == "status" and line["status"] in TERMINAL
    }


def merge_rank_files(out: Path) -> None:
    """Append the lines left in ``results.rank<r>.jsonl`` to ``results.jsonl``; delete the files.

    Ranks > 0 hand their lines to rank 0 only when the sweep ends; an interrupted or crashed
    torchrun session leaves them in their own files, where a resume would not see them (their
    runs would restart and the files be truncated). The lines are appended in rank order and
    fsync'ed before the files are deleted; a line ``results.jsonl`` already holds is skipped,
    so a merge cut short before the deletion adds nothing twice when it is repeated.
    """
    parts = sorted(
        (int(match[1]), path)
        for path in out.glob("results.rank*.jsonl")
        if (match := re.fullmatch(r"results\.rank(\d+)\.jsonl", path.name))
    )
    if not parts:
        return
    results = out / RESULTS
    held = {json.dumps(line, sort_keys=True) for line in read_results(results)}
    new = []
    for _, path in parts:
        for line in read_results(path):
            key = json.dumps(line, sort_keys=True)
            if key not in held:
                held.add(key)
                new.append(line)
    with open(results, "ab+") as sink:
        sink.seek(0)
        # a torn last line (read_results skipped it) would otherwise join the first new line
        sink.truncate(sink.read().rfind(b"\n") + 1)
        sink.write("".join(json.dumps(line) + "\n" for line in new).encode("utf-8"))
        sink.flush()
        os.fsync(sink.fileno())
    for _, path in parts:
        path.unlink()
    log.info(
        "appended %d line(s) of %d rank file(s) left by an interrupted torchrun session to %s",
        len(new),
        len(parts),
        results,
    )


class ResultsExistError(ArgumentError, FileExistsError):
    """A new sweep into an ``out_dir`` that already holds results (resume it instead).

    Attributes:
        argument: ``"out_dir"``.
        out_dir: the directory.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        super().__init__(
            "out_dir",
            f"{out_dir / RESULTS} exists; resume that sweep (resume=True) or give another out_dir",
        )

    def __reduce__(self):  # picklable (torchrun ranks send errors to each other)
        return (type(self), (self.out_dir,))


class NothingToResumeError(ArgumentError, FileNotFoundError):
    """A resume of an ``out_dir`` without a sweep's ``config.json``.

    Attributes:
        argument: ``"out_dir"``.
        out_dir: the directory.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        super().__init__(
            "out_dir",
            f"{out_dir} has no {CONFIG}, so there is no sweep to resume; start one there "
            "without resume=True",
        )

    def __reduce__(self):  # picklable (torchrun ranks send errors to each other)
        return (type(self), (self.out_dir,))


def require_config(out: Path) -> None:
    """Raise :class:`NothingToResumeError` unless ``out`` holds a sweep's ``config.json``."""
    if not (out / CONFIG).is_file():
        raise NothingToResumeError(out)


def refuse_existing(out: Path) -> None:
    """Raise :class:`ResultsExistError` if ``out`` already holds ``results.jsonl``."""
    if (out / RESULTS).exists():
        raise ResultsExistError(out)


class OutDirInUseError(RuntimeError):
    """Another sweep holds the output directory's lock; nothing in it was read or changed.

    Attributes:
        out_dir: the directory.
        holder: what the holder recorded in :data:`HOLDER_FILE` (``pid``, ``host``,
            ``started``), or ``None`` when that file is missing or unreadable.
    """

    def __init__(self, out_dir: Path, holder: dict | None) -> None:
        self.out_dir = out_dir
        self.holder = holder
        super().__init__(
            f"out_dir {str(out_dir)!r} is in use by another sweep ({self.describe_holder()}); "
            "nothing was changed. Wait for that sweep to end (or stop it), then resume it, or "
            f"give another out_dir (lock file: {out_dir / LOCK_FILE})"
        )

    def __reduce__(self):  # picklable (torchrun ranks send errors to each other)
        return (type(self), (self.out_dir, self.holder))

    def describe_holder(self) -> str:
        """The holder in words: ``pid 123 on host h, started 2024-05-01 12:00:00 UTC``."""
        holder = self.holder
        if not holder:
            return f"holder not recorded: {self.out_dir / HOLDER_FILE} is missing or unreadable"
        return (
            f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
            f"started {holder.get('started', '?')}"
        )


@contextlib.contextmanager
def lock_out_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``out_dir``'s sweep lock for the ``with`` block; refuse at once if another has it.

    The lock is an exclusive :class:`filelock.FileLock` on ``out_dir/``:data:`LOCK_FILE`
    (``flock`` on POSIX: the operating system releases it when the holder's process ends, even
    when killed), taken without waiting. While it is held, :data:`HOLDER_FILE` beside it
    records the holder (``pid``, ``host``, ``started`` as UTC time), because a file lock does
    not say who holds it; the record is removed before the lock is released. ``out_dir`` is
    created if missing; the lock file stays after release (removing it would let a process
    that opened it before the removal and one that creates it anew both hold "the" lock).

    Yields:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        OutDirInUseError: another process (or another :func:`lock_out_dir` in this one) holds
            the lock; nothing was written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(out / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise OutDirInUseError(out, _read_holder(out / HOLDER_FILE)) from None
    try:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
        atomic_write(out / HOLDER_FILE, json.dumps(holder) + "\n")
        try:
            yield out
        finally:
            (out / HOLDER_FILE).unlink(missing_ok=True)
    finally:
        lock.release()


def _read_holder(path: Path) -> dict | None:
    """The holder record at ``path`` (JSON, never executed), or ``None`` if unreadable."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None
