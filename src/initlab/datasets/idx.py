"""The IDX file format of MNIST and its relatives, gzip-compressed or raw.

An IDX file is a 4-byte magic ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32
dimension sizes, then ``prod(dims)`` big-endian values of the given type, and nothing else.
Source: LeCun, Cortes, Burges, "The MNIST database of handwritten digits",
http://yann.lecun.com/exdb/mnist/ (section "The IDX file format").
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np
import torch

__all__ = ["IDXError", "decompress_if_gzip", "parse_idx", "read_idx"]

# Type codes of the IDX spec -> big-endian numpy dtype.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """A file is not a well-formed IDX file (bad magic, type code, length or gzip stream)."""


def decompress_if_gzip(raw: bytes, *, source: str = "<bytes>") -> bytes:
    """Return ``raw`` decompressed if it starts with the gzip magic bytes, else ``raw`` itself.

    gzip is detected by its magic ``1f 8b`` (RFC 1952, Sec. 2.3.1), not by a file extension,
    so a raw file named ``*.gz`` or a compressed file without the extension both work.

    Args:
        raw: the bytes of a file.
        source: the file name, for error messages.

    Returns:
        The uncompressed bytes.

    Raises:
        IDXError: the gzip stream is corrupted or truncated, or its CRC-32 or length is wrong.
    """
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise IDXError(
            f"{source}: corrupted or truncated gzip data ({error}); download the file again"
        ) from error


def parse_idx(data: bytes, *, source: str = "<bytes>") -> torch.Tensor:
    """Decode uncompressed IDX bytes into a tensor of shape ``dims``, in native byte order.

    The dtype follows the type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64 (all stored big-endian).

    Args:
        data: the whole uncompressed file.
        source: the file name, for error messages.

    Returns:
        A tensor of shape ``(d0, d1, ...)`` and the dtype of the type code; it owns its memory.

    Raises:
        IDXError: bad magic, unknown type code, zero dimensions, a header cut short, a payload
            shorter or longer than ``prod(dims) * itemsize``.

    Example:
        >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])).tolist()
        [7, 9]
    """
    if len(data) < 4:
        raise IDXError(f"{source}: {len(data)} bytes is too short for an IDX header (4 bytes)")
    if data[:2] != b"\x00\x00":
        raise IDXError(
            f"{source}: bad magic {data[:4].hex(' ')}; an IDX file starts with 00 00 <type> "
            "<ndim> (is it an IDX file at all?)"
        )
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        accepted = ", ".join(f"0x{c:02X} ({d.name})" for c, d in _DTYPES.items())
        raise IDXError(f"{source}: unknown IDX type code 0x{code:02X}; accepted: {accepted}")
    if ndim == 0:
        raise IDXError(f"{source}: the IDX header declares 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(
            f"{source}: truncated header: {ndim} dimensions need {header} bytes, "
            f"the file has {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise IDXError(
            f"{source}: truncated payload: dims {list(dims)} of {dtype.name} need {expected} "
            f"bytes after the header, the file has {found}"
        )
    if found > expected:
        raise IDXError(
            f"{source}: {found - expected} trailing bytes after the {expected}-byte payload "
            f"of dims {list(dims)} ({dtype.name}); the file is corrupted or not IDX"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    # One copy to native byte order also makes the array writable, which torch requires.
    return torch.from_numpy(values.astype(dtype.newbyteorder("="), copy=True))


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file, gzip-compressed or raw, into a tensor.

    Format: see the module docstring (LeCun, Cortes, Burges, MNIST database, "The IDX file
    format"). Compression is detected by the gzip magic bytes, not by the extension.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        A tensor of shape ``dims``: ``(N, H, W)`` uint8 for image files, ``(N,)`` uint8 for
        label files (the dataset loader converts labels to int64).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IDXError: the file is not well-formed IDX (see :func:`parse_idx`) or its gzip stream is
            corrupted.

    Example:
        >>> labels = read_idx("train-labels-idx1-ubyte.gz")  # doctest: +SKIP
        >>> labels.shape, labels.dtype
        (torch.Size([60000]), torch.uint8)
    """
    source = os.fspath(path)
    with open(path, "rb") as file:
        raw = file.read()
    return parse_idx(decompress_if_gzip(raw, source=source), source=source)
