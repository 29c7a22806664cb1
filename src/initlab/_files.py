"""Writing files so that a reader never sees half of one: the one atomic write of initlab."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
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

    Permissions: a new file gets the mode a plain ``open(path, "w")`` would give it
    (``0o666 & ~umask``, applied by the kernel: the temporary file is created with
    ``os.open(..., 0o666)`` rather than ``tempfile.mkstemp``, whose files are always 0600, so the
    umask is never read or changed); overwriting keeps the existing file's mode bits.

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
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as file:
            with contextlib.suppress(FileNotFoundError):  # keep an existing file's mode
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
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


def _create_temporary(path: Path) -> tuple[int, str]:
    """Create ``.<name>.<random>.tmp`` beside ``path`` exclusively, mode ``0o666 & ~umask``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {path} after 100 tries")
