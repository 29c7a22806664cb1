"""Downloads against a local HTTP server: verified files land atomically, bad ones never do."""

import functools
import gzip
import http.server
import logging
import threading
from pathlib import Path

import pytest
import torch

from initlab.datasets import download
from initlab.datasets import families as datasets
from initlab.datasets.download import DownloadError, fetch, resolve_mirrors
from initlab.datasets.families import FILE_NAMES, load_dataset

SHARED = Path("/work/shared/data")
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Serve good/ (the real MNIST files), bad/ (corrupted copies) and nothing under missing/."""
    source = SHARED / "mnist"
    if not source.is_dir():
        pytest.skip(f"real data directory {source} is missing (see shared/data/SOURCES.md)")
    root = tmp_path_factory.mktemp("mirror")
    (root / "good").mkdir()
    (root / "bad").mkdir()
    for name in FILE_NAMES:
        (root / "good" / f"{name}.gz").symlink_to(source / f"{name}.gz")
    (root / "bad" / "train-images-idx3-ubyte.gz").symlink_to(source / "train-images-idx3-ubyte.gz")
    labels = bytearray(gzip.decompress((source / "train-labels-idx1-ubyte.gz").read_bytes()))
    labels[8] = 3  # first label 5 -> 3: a valid IDX file with the wrong checksum
    (root / "bad" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    packed = (source / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (root / "bad" / "t10k-labels-idx1-ubyte.gz").write_bytes(packed[:1000])  # cut short
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # A proxy configured on the machine must not intercept requests to the local server.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_fetch_writes_a_temporary_file_beside_the_target_then_renames(server, tmp_path):
    seen = []

    def verify(path: Path, url: str) -> None:
        seen.append((path, url, path.read_bytes()))

    cache = tmp_path / "cache"
    path = fetch("t10k-labels-idx1-ubyte.gz", cache, [f"{server}/good/"], verify)
    original = (SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    assert path == cache / "t10k-labels-idx1-ubyte.gz"
    assert path.read_bytes() == original
    [(partial, url, content)] = seen
    assert partial.parent == cache and partial.name.endswith(".part")
    assert url == f"{server}/good/t10k-labels-idx1-ubyte.gz"
    assert content == original
    assert sorted(p.name for p in cache.iterdir()) == ["t10k-labels-idx1-ubyte.gz"]


def test_download_verifies_and_loads(server, tmp_path, monkeypatch, mnist_test_labels):
    monkeypatch.setenv(download.MIRRORS_ENV, f"{server}/good/")
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    loaded = load_dataset("mnist", data_dir=tmp_path / "empty", download=True)
    cache = tmp_path / "cache" / "mnist"
    assert loaded.source == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in FILE_NAMES)
    assert torch.equal(loaded.test_labels, mnist_test_labels)
    # A second load finds the cache and never touches the (now dead) mirror.
    monkeypatch.setenv(download.MIRRORS_ENV, f"{server}/missing/")
    again = load_dataset("mnist", data_dir=tmp_path / "empty", download=True)
    assert again.source == str(cache)


@pytest.fixture(scope="module")
def mnist_test_labels():
    labels = load_dataset("mnist", data_dir=SHARED / "mnist").test_labels
    assert torch.bincount(labels).tolist() == MNIST_TEST_COUNTS
    return labels


def test_corrupted_download_is_deleted_and_named(server, tmp_path, monkeypatch):
    monkeypatch.setenv(download.MIRRORS_ENV, f"{server}/bad/")
    cache = tmp_path / "cache"
    expected = datasets.DATASETS["mnist"].files[1].sha256
    url = f"{server}/bad/train-labels-idx1-ubyte.gz"
    message = rf"from any mirror:\n  {url}: .*is [0-9a-f]{{64}}, expected {expected}"
    with pytest.raises(DownloadError, match=message) as info:
        load_dataset("mnist", data_dir=tmp_path / "empty", download=True, cache_dir=cache)
    assert "set INITLAB_MIRRORS to a working mirror" in str(info.value)
    assert str(info.value).count(url) == 1
    # The good first file stays; the corrupted one and every temporary file are gone.
    assert [p.name for p in (cache / "mnist").iterdir()] == ["train-images-idx3-ubyte.gz"]


def test_truncated_download_is_deleted(server, tmp_path):
    verify = _mnist_verify("t10k-labels-idx1-ubyte")
    url = f"{server}/bad/t10k-labels-idx1-ubyte.gz"
    with pytest.raises(DownloadError, match=rf"{url}: .*corrupted or truncated gzip data"):
        fetch("t10k-labels-idx1-ubyte.gz", tmp_path, [f"{server}/bad/"], verify)
    assert list(tmp_path.iterdir()) == []


def test_next_mirror_is_tried_after_missing_and_corrupted(server, tmp_path, caplog):
    verify = _mnist_verify("train-labels-idx1-ubyte")
    mirrors = [f"{server}/missing/", f"{server}/bad", f"{server}/good/"]
    with caplog.at_level(logging.WARNING, logger="initlab.datasets.download"):
        path = fetch("train-labels-idx1-ubyte.gz", tmp_path, mirrors, verify)
    assert path.read_bytes() == (SHARED / "mnist" / "train-labels-idx1-ubyte.gz").read_bytes()
    assert f"download of {server}/missing/train-labels-idx1-ubyte.gz failed: HTTP Error 404" in (
        caplog.text
    )
    assert f"download of {server}/bad/train-labels-idx1-ubyte.gz failed: " in caplog.text
    assert "checksum mismatch" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["train-labels-idx1-ubyte.gz"]


def _mnist_verify(name):
    """The verification load_dataset applies to a downloaded MNIST file."""
    info = datasets.DATASETS["mnist"]
    return datasets._verifier(info, next(f for f in info.files if f.name == name))


@pytest.mark.parametrize(
    ("mirrors", "message"),
    [
        (
            ["file:///etc/"],
            r"a mirror must be an http:// or https:// URL; got mirror='file:///etc/'",
        ),
        ([], r"mirrors must list at least one base URL; got mirrors=\[\]"),
    ],
)
def test_bad_mirror_lists_are_rejected(tmp_path, mirrors, message):
    with pytest.raises(ValueError, match=message):
        fetch("x.gz", tmp_path, mirrors, lambda path, url: None)


def test_mirror_override_from_environment(monkeypatch):
    monkeypatch.setenv(download.MIRRORS_ENV, "http://a/, http://b/\nhttp://c/")
    assert resolve_mirrors(("http://default/",)) == ("http://a/", "http://b/", "http://c/")
    monkeypatch.setenv(download.MIRRORS_ENV, "  ")
    assert resolve_mirrors(("http://default/",)) == ("http://default/",)
