"""Fetch dataset files from public mirrors, safely: verify, then rename into place.

Each file is streamed over ``urllib`` (standard library) into a temporary file in the target
directory, checked by a caller-supplied ``verify`` function, and only then renamed to its final
name with :func:`os.replace` (atomic on one file system). A file that fails verification is
deleted, never left in the cache, and the next mirror is tried.

The mirror list of every dataset can be replaced by the environment variable
``INITLAB_MIRRORS``: base URLs separated by commas or whitespace (tests point it at a local
server; users at a closer mirror).
"""

from __future__ import annotations

import http.client
import logging
import os
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["MIRRORS_ENV", "DownloadError", "fetch", "resolve_mirrors"]

logger = logging.getLogger(__name__)

MIRRORS_ENV = "INITLAB_MIRRORS"
# Largest file accepted, far above any IDX dataset file (Fashion-MNIST's train images are 26 MB
# compressed), so that a misconfigured mirror that streams forever cannot fill the disk.
_MAX_BYTES = 1 << 30
_CHUNK = 1 << 20


class DownloadError(OSError):
    """No mirror delivered a file that passed verification."""


def resolve_mirrors(default: Sequence[str]) -> tuple[str, ...]:
    """Return the mirrors from ``$INITLAB_MIRRORS`` if it is set and non-empty, else ``default``.

    Args:
        default: the dataset's own base URLs.

    Returns:
        Base URLs, in the order they are tried.
    """
    override = os.environ.get(MIRRORS_ENV, "").replace(",", " ").split()
    return tuple(override) if override else tuple(default)


def fetch(
    filename: str,
    directory: str | os.PathLike,
    mirrors: Sequence[str],
    verify: Callable[[Path, str], None],
    *,
    timeout: float = 60.0,
) -> Path:
    """Download ``filename`` from the first mirror that serves a verified copy.

    For each base URL ``m`` in order, fetch ``m/filename`` into a temporary file in
    ``directory``, call ``verify(temporary_path, url)`` (it raises ``ValueError`` on a bad file),
    then rename the file to ``directory/filename``. Any failure deletes the temporary file and
    moves on to the next mirror.

    Args:
        filename: the file name on the mirrors and on disk, e.g. ``"train-images-idx3-ubyte.gz"``.
        directory: where the file goes; created if missing.
        mirrors: ``http://`` or ``https://`` base URLs.
        verify: checks the downloaded file; the second argument names it (the URL) for messages.
        timeout: seconds to wait for each connection or read.

    Returns:
        ``directory/filename``.

    Raises:
        ValueError: ``mirrors`` is empty or holds a URL that is not http(s).
        DownloadError: every mirror failed; the message lists each URL and why (for a corrupted
            file: the expected and actual checksums).

    Example:
        >>> fetch("t10k-labels-idx1-ubyte.gz", "cache", ["https://example.org/mnist/"],
        ...       verify=lambda path, url: None)  # doctest: +SKIP
    """
    urls = [_join(base, filename) for base in mirrors]
    if not urls:
        raise ValueError(f"mirrors must list at least one base URL; got mirrors={mirrors!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _fetch_one(url, directory / filename, verify, timeout)
        except (OSError, ValueError, http.client.HTTPException) as error:
            logger.warning("download of %s failed: %s", url, error)
            reason = str(error)  # verify names the URL itself; do not say it twice
            failures.append(f"  {reason}" if reason.startswith(url) else f"  {url}: {reason}")
        else:
            return directory / filename
    raise DownloadError(
        f"could not download {filename} from any mirror:\n" + "\n".join(failures) + "\n"
        f"Check the network, set {MIRRORS_ENV} to a working mirror, or fetch the files yourself "
        "and load them from their directory"
    )


def _join(base: str, filename: str) -> str:
    if urlsplit(base).scheme not in ("http", "https"):
        raise ValueError(f"a mirror must be an http:// or https:// URL; got mirror={base!r}")
    return base.rstrip("/") + "/" + filename


def _fetch_one(url: str, target: Path, verify: Callable[[Path, str], None], timeout: float):
    # Not initlab._files.atomic_write: ``verify`` reads the temporary file by its path before
    # the rename publishes it, and atomic_write keeps its temporary path to itself.
    descriptor, name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    partial = Path(name)
    try:
        logger.info("downloading %s", url)
        with os.fdopen(descriptor, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
            size = 0
            while chunk := r.read(_CHUNK):
                size += len(chunk)
                if size > _MAX_BYTES:
                    raise ValueError(f"more than {_MAX_BYTES} bytes; not a dataset file")
                out.write(chunk)
        verify(partial, url)
        os.replace(partial, target)
    finally:
        # After os.replace the temporary name is gone; otherwise never leave a partial file.
        partial.unlink(missing_ok=True)
    logger.info("saved %s", target)
