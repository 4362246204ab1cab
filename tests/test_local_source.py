"""The contract every Source keeps, as one shared suite run against every backend.

In the style of fsspec's abstract tests: each test is written once against a ``Backend``
(how to store files and open a Source over them) and runs for local paths, file:// URIs,
moto S3, SeaweedFS S3, and ManifestFiles over local and S3 objects. Prefix resolution (a URI
is a string prefix of names) is checked on the backends that list prefixes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from emulator.errors import SourceError
from emulator.request.spec import DataSourceSpec
from emulator.storage import Source, open_source
from emulator.storage.base import Entry
from tests.fixtures.s3 import RecordingProgress, S3Server, digests, tree_digests

FILES = {
    "b.txt": b"bravo\n",
    "a/one.bin": bytes(range(256)) * 40,
    "a/deeper/zero": b"",
    "ünïcödé/日本 語.txt": "テキスト".encode(),
    "big.bin": bytes(reversed(range(256))) * 8192,  # 2 MiB
}


class Store(Protocol):
    def new_root(self) -> str:
        """The URI of a fresh, empty folder or bucket, ending in '/'."""

    def put(self, root: str, files: Mapping[str, bytes]) -> None:
        """Store ``files`` below ``root`` (a name ending in '/' is an empty folder)."""

    def remove(self, root: str, name: str) -> None: ...


@dataclass
class LocalStore:
    base: Path
    as_uri: bool

    def new_root(self) -> str:
        root = self.base / uuid.uuid4().hex[:8]
        root.mkdir()
        return (root.as_uri() if self.as_uri else str(root)) + "/"

    def _path(self, root: str, name: str) -> Path:
        return Path(root.removeprefix("file://")) / name

    def put(self, root: str, files: Mapping[str, bytes]) -> None:
        for name, body in files.items():
            path = self._path(root, name)
            if name.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)

    def remove(self, root: str, name: str) -> None:
        self._path(root, name).unlink()


@dataclass
class S3Store:
    server: S3Server

    def new_root(self) -> str:
        return f"s3://{self.server.shared_bucket}/{uuid.uuid4().hex[:8]}/"

    def put(self, root: str, files: Mapping[str, bytes]) -> None:
        bucket, _, prefix = root.removeprefix("s3://").partition("/")
        self.server.put_objects(bucket, {prefix + name: body for name, body in files.items()})

    def remove(self, root: str, name: str) -> None:
        bucket, _, prefix = root.removeprefix("s3://").partition("/")
        self.server.client.delete_object(Bucket=bucket, Key=prefix + name)


@dataclass
class Backend:
    store: Store
    manifest: bool = False

    def make(self, files: Mapping[str, bytes]) -> tuple[Source, str]:
        """A Source whose objects are exactly ``files``; and the root they are stored under."""
        root = self.store.new_root()
        self.store.put(root, {f"data/{name}": body for name, body in files.items()})
        if not self.manifest:
            return open_source(DataSourceSpec("S3Prefix", root + "data/")), root
        listing = json.dumps([{"prefix": root + "data/"}, *files]).encode()
        self.store.put(root, {"manifest.json": listing})
        return open_source(DataSourceSpec("ManifestFile", root + "manifest.json")), root


def _store(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if name in ("moto", "seaweedfs"):
        server: S3Server = request.getfixturevalue(f"{name}_s3")
        return S3Store(server)
    return LocalStore(tmp_path, as_uri=name == "file-uri")


PREFIX_BACKENDS = [
    pytest.param("path", id="local-path"),
    pytest.param("file-uri", id="file-uri"),
    pytest.param("moto", id="moto", marks=pytest.mark.s3),
    pytest.param("seaweedfs", id="seaweedfs", marks=pytest.mark.s3),
]
MANIFEST_BACKENDS = [
    pytest.param("path", id="manifest-local"),
    pytest.param("moto", id="manifest-moto", marks=pytest.mark.s3),
]


@pytest.fixture(params=PREFIX_BACKENDS)
def prefix_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(_store(request.param, request, tmp_path))


@pytest.fixture(params=[*PREFIX_BACKENDS, *MANIFEST_BACKENDS])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    manifest = request.node.callspec.id.startswith("manifest")
    return Backend(_store(request.param, request, tmp_path), manifest=manifest)


# -- every Source ---------------------------------------------------------------------------------


def test_entries_are_every_object_sorted_with_sizes(backend: Backend) -> None:
    source, _ = backend.make(FILES)
    entries = source.entries()
    assert [(e.relative_path, e.size) for e in entries] == sorted(
        (name, len(body)) for name, body in FILES.items()
    )


def test_download_is_byte_exact_and_reports_progress(backend: Backend, tmp_path: Path) -> None:
    source, _ = backend.make(FILES)
    progress = RecordingProgress()
    source.download(source.entries(), tmp_path / "out", progress)
    assert tree_digests(tmp_path / "out") == digests(FILES)
    assert progress.objects == len(FILES)
    assert progress.bytes == sum(map(len, FILES.values()))


def test_download_writes_only_the_given_entries(backend: Backend, tmp_path: Path) -> None:
    source, _ = backend.make(FILES)
    chosen = [e for e in source.entries() if e.relative_path.startswith("a/")]
    source.download(chosen, tmp_path / "out")
    assert tree_digests(tmp_path / "out") == digests(
        {k: FILES[k] for k in ("a/one.bin", "a/deeper/zero")}
    )


def test_download_of_nothing_writes_nothing(backend: Backend, tmp_path: Path) -> None:
    source, _ = backend.make({"x": b"x"})
    (tmp_path / "out").mkdir()
    source.download([], tmp_path / "out", RecordingProgress())
    assert not any((tmp_path / "out").iterdir())


def test_open_streams_each_object(backend: Backend) -> None:
    source, _ = backend.make(FILES)
    for entry in source.entries():
        digest = hashlib.sha256()
        with source.open(entry) as stream:
            while chunk := stream.read(4096):
                digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(FILES[entry.relative_path]).hexdigest()


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 1), (3, 500), (1000, 10_000), (10_230, 100), (10_240, 5), (20_000, 7)],
)
def test_read_range(backend: Backend, offset: int, length: int) -> None:
    source, _ = backend.make({"r.bin": FILES["a/one.bin"]})
    [entry] = source.entries()
    assert source.read_range(entry, offset, length) == FILES["a/one.bin"][offset : offset + length]


def test_a_vanished_object_is_file_not_found(backend: Backend) -> None:
    source, root = backend.make({"keep": b"k", "gone": b"g"})
    entries = {e.relative_path: e for e in source.entries()}
    backend.store.remove(root, "data/gone")
    with pytest.raises(FileNotFoundError):
        source.open(entries["gone"]).read()
    with pytest.raises(FileNotFoundError):
        source.read_range(entries["gone"], 0, 1)
    with source.open(entries["keep"]) as stream:
        assert stream.read() == b"k"


# -- prefix resolution (S3Prefix over S3 and the local file system alike) ----------------------


def names(entries: list[Entry]) -> list[str]:
    return [e.relative_path for e in entries]


def open_prefix(uri: str) -> Source:
    return open_source(DataSourceSpec("S3Prefix", uri))


def test_uri_is_a_string_prefix_of_names(prefix_backend: Backend) -> None:
    store = prefix_backend.store
    root = store.new_root()
    store.put(root, {"d/train/x.csv": b"x", "d/trainer.csv": b"t", "d/test/y.csv": b"y"})
    assert names(open_prefix(root + "d/tra").entries()) == ["in/x.csv", "iner.csv"]
    assert names(open_prefix(root + "d/train/").entries()) == ["x.csv"]
    assert names(open_prefix(root + "d/").entries()) == ["test/y.csv", "train/x.csv", "trainer.csv"]
    assert names(open_prefix(root).entries()) == ["d/test/y.csv", "d/train/x.csv", "d/trainer.csv"]


def test_a_single_object_keeps_its_base_name(prefix_backend: Backend) -> None:
    store = prefix_backend.store
    root = store.new_root()
    store.put(root, {"d/only.csv": b"1,2"})
    entries = open_prefix(root + "d/only.csv").entries()
    assert [(e.relative_path, e.size) for e in entries] == [("only.csv", 3)]


def test_nothing_there_is_a_source_error(prefix_backend: Backend) -> None:
    store = prefix_backend.store
    root = store.new_root()
    store.put(root, {"d/x": b"x", "empty/": b""})
    for missing in ("nothing/", "nothing/at/all", "empty/"):
        with pytest.raises(SourceError):
            open_prefix(root + missing).entries()
