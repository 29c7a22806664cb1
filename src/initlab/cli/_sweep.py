"""What ``initlab compare`` and ``initlab train --out`` say when a sweep cannot start or stops.

Both commands run :func:`~initlab.experiments.sweep.run_sweep`; its refusals name library
arguments (``out_dir``, ``resume=True``), and a Ctrl-C leaves a directory that can be resumed.
:func:`call_sweep` maps each of these to the command's own flags and exit status, once for both.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["call_sweep"]

T = TypeVar("T")


def call_sweep(
    command: str, out: str | Path, resume: bool, call: Callable[[], T], *, what: str = "sweep"
) -> T | int:
    """Return ``call()``, or the exit status after saying why the sweep in ``out`` stopped.

    Args:
        command: the subcommand (``"compare"``, ``"train"``), named in every message.
        out: the output directory (``--out`` or ``--resume``).
        resume: whether ``out`` came from ``--resume``.
        call: runs the sweep.
        what: what ``--resume`` continues, in words (``"sweep"``, ``"run"``).

    Returns:
        ``call()``'s result; 130 after Ctrl-C (saying how to continue when anything was
        written); 2 when the directory is in use, already holds results, or has nothing to
        resume. Other errors propagate.
    """
    from initlab.experiments.results import (
        NothingToResumeError,
        OutDirInUseError,
        ResultsExistError,
    )

    out = Path(out)
    flag = "--resume" if resume else "--out"
    try:
        return call()
    except KeyboardInterrupt:
        if (out / "config.json").is_file():
            message = (
                "Interrupted; finished epochs are kept in results.jsonl, unfinished runs "
                f"continue from their last finished epoch with: initlab {command} --resume {out}"
            )
        else:  # stopped before the sweep wrote anything: there is nothing to resume
            message = "Interrupted before anything was written; run the same command again"
        print(f"\n{message}", file=sys.stderr)
        return 130
    except OutDirInUseError as error:  # the library's message names out_dir, not the flag
        message = (
            f"{flag} {out} is in use by another initlab {command} ({error.describe_holder()}); "
            "nothing was changed. Wait for it to end, or stop it and continue it with "
            f"initlab {command} --resume {out}, or give another --out"
        )
    except ResultsExistError:  # the library names resume=True and out_dir: say the flags
        message = (
            f"{out / 'results.jsonl'} exists; resume it with --resume {out} or pick another --out"
        )
    except NothingToResumeError:
        message = (
            f"argument --resume: {out} has no config.json, so there is no {what} to resume; "
            f"start one with initlab {command} --out {out}"
        )
    print(f"initlab {command}: error: {message}", file=sys.stderr)
    return 2
