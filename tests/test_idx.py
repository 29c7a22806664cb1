"""IDX parsing: every dtype of the spec, gzip by magic bytes, and every kind of damaged file."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from initlab.datasets.idx import IDXError, decompress_if_gzip, parse_idx, read_idx

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """Encode ``array`` by hand as IDX: magic 00 00 code ndim, big-endian dims and values."""
    big = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + big.tobytes()


@pytest.mark.parametrize(
    ("code", "values", "dtype"),
    [
        (0x08, [0, 1, 254, 255, 7, 9], torch.uint8),
        (0x09, [-128, -1, 0, 1, 127, 5], torch.int8),
        (0x0B, [-32768, -300, 0, 258, 32767, 1], torch.int16),
        (0x0C, [-(2**31), -70000, 0, 65537, 2**31 - 1, 3], torch.int32),
        (0x0D, [-1.5, 0.0, 0.1, 3.25, 1e30, -2.0], torch.float32),
        (0x0E, [-1.5, 0.0, 0.1, 3.25, 1e300, -2.0], torch.float64),
    ],
)
def test_every_type_code_decodes_big_endian_values(code, values, dtype):
    expected = torch.tensor(values, dtype=dtype).reshape(2, 3)
    data = idx_bytes(expected.numpy(), code)
    got = parse_idx(data)
    assert got.dtype == dtype
    assert got.shape == (2, 3)
    assert torch.equal(got, expected)


def test_big_endian_layout_by_hand():
    # int16 258 is bytes 01 02 big-endian; int32 1 is 00 00 00 01.
    assert parse_idx(bytes([0, 0, 0x0B, 1, 0, 0, 0, 1, 1, 2])).tolist() == [258]
    assert parse_idx(bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 0, 1])).tolist() == [1]


def test_result_is_writable_and_owns_memory():
    got = parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]))
    got[0] = 1  # would fail or warn on a read-only numpy buffer
    assert got.tolist() == [1, 9]


def test_read_idx_gzip_and_raw_detected_by_magic_not_extension(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(array, 0x08)
    (tmp_path / "raw.gz").write_bytes(data)  # raw despite the extension
    (tmp_path / "packed").write_bytes(gzip.compress(data))  # gzip without the extension
    for name in ("raw.gz", "packed"):
        got = read_idx(tmp_path / name)
        assert torch.equal(got, torch.from_numpy(array))


def test_decompress_if_gzip_passes_raw_bytes_through():
    data = bytes([0, 0, 8, 1, 0, 0, 0, 0])
    assert decompress_if_gzip(data) is data
    assert decompress_if_gzip(gzip.compress(data)) == data


def test_real_mnist_labels():
    path = SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz"
    if not path.is_file():
        pytest.skip(f"shared data missing: {path}")
    labels = read_idx(path)
    assert labels.shape == (10000,)
    assert labels.dtype == torch.uint8
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


GOOD = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00", "2 bytes is too short for an IDX header"),
        (b"\x08\x03\x00\x00" + GOOD[4:], r"bad magic 08 03 00 00"),
        (bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 5]), r"unknown IDX type code 0x0A; accepted: 0x08"),
        (bytes([0, 0, 8, 0]), "declares 0 dimensions"),
        (GOOD[:9], "truncated header: 2 dimensions need 12 bytes, the file has 9"),
        (GOOD[:-1], r"truncated payload: dims \[2, 3\] of uint8 need 6 bytes .* has 5"),
        (GOOD + b"\x00\x00", r"2 trailing bytes after the 6-byte payload"),
        # First dimension 3 instead of 2: the header promises 9 bytes, 6 follow.
        (GOOD[:4] + b"\x00\x00\x00\x03" + GOOD[8:], r"dims \[3, 3\] of uint8 need 9 bytes"),
    ],
    ids=["short", "magic", "type", "ndim0", "header", "payload", "trailing", "dims"],
)
def test_malformed_files_raise_idx_error_naming_the_file(tmp_path, data, message):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(IDXError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_good_reference_file_parses(tmp_path):
    # The file the malformed cases are cut from is itself valid, so each failure is the cut.
    assert parse_idx(GOOD).tolist() == [[1, 2, 3], [4, 5, 6]]


def _corrupt_crc(packed: bytes) -> bytes:
    # The gzip trailer is CRC-32 then ISIZE (RFC 1952, Sec. 2.3.1); flip one CRC bit.
    broken = bytearray(packed)
    broken[-8] ^= 0x01
    return bytes(broken)


def _corrupt_body(packed: bytes) -> bytes:
    broken = bytearray(packed)
    broken[12:20] = b"\xff" * 8  # inside the deflate stream, just after the 10-byte header
    return bytes(broken)


@pytest.mark.parametrize(
    "damage",
    [_corrupt_crc, _corrupt_body, lambda packed: packed[: len(packed) // 2]],
    ids=["crc", "deflate-body", "truncated"],
)
def test_damaged_gzip_raises_idx_error(tmp_path, damage):
    payload = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)
    packed = gzip.compress(idx_bytes(payload, 0x08))
    path = tmp_path / "damaged.gz"
    path.write_bytes(damage(packed))
    with pytest.raises(IDXError, match=r"damaged\.gz: corrupted or truncated gzip data"):
        read_idx(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nothing")
