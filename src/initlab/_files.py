"""Writing files so that a reader never sees half of one: the one atomic write of initlab."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write"]


def atomic_write(
    path: str | os.PathLike, data: str | bytes | Callable[[IO[bytes]], None], *, fsync: bool = True
) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory, then rename.

    ``os.replace`` within one directory is atomic on POSIX and Windows, so ``path`` holds either
    its old content or all of the new one, also after a crash or Ctrl-C; the temporary file is
    removed on any error.

    Args:
        path: the file to (over)write; its directory must exist.
        data: text (written as UTF-8), bytes, or a function that writes into the open binary
            file (e.g. ``lambda f: torch.save(obj, f)``).
        fsync: flush the file to disk before the rename (what a resume relies on).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OSError: the directory does not exist or is not writable (the temporary file is gone).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            if callable(data):
                data(file)
            else:
                file.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
