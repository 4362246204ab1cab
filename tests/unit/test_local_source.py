"""The contract every Source keeps, as one shared suite run against every backend.

In the style of fsspec's abstract tests: each test is written once against a ``Backend``
(how to store files and open a Source over them) and runs for local paths, file:// URIs,
moto S3, SeaweedFS S3, and ManifestFiles over local and S3 objects. Prefix resolution (a URI
is a string prefix of names) is checked on the backends that list prefixes. The contract of
a Location (a folder the emulator writes: checkpoints, outputs) runs on the same stores, and
so does the one classification of URIs (S3, local, refused).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from emulator.errors import SourceError
from emulator.request.spec import DataSourceSpec
from emulator.storage import Source, Upload, location, open_source, open_uri, uri_kind
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


# -- URIs: one classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("s3://bucket/key", "s3"),
        ("https://bucket.s3.us-west-2.amazonaws.com/key", "s3"),
        ("file:///abs/path", "local"),
        ("/abs/path", "local"),
        ("relative/path", "local"),
        ("data:train", "local"),  # a colon is no scheme without '://'
        ("http://bucket/x", "unsupported"),  # refused by request validation too
        ("ftp://host/x", "unsupported"),
        ("S3://bucket/x", "unsupported"),
    ],
)
def test_every_uri_is_s3_local_or_refused(uri: str, kind: str) -> None:
    assert uri_kind(uri) == kind


def test_storage_refuses_unsupported_uris() -> None:
    for uri in ("http://bucket/x", "ftp://host/x"):
        with pytest.raises(SourceError, match="unsupported URI scheme"):
            open_source(DataSourceSpec("S3Prefix", uri))
        with pytest.raises(SourceError, match="unsupported URI scheme"):
            open_uri(uri)
        with pytest.raises(SourceError, match="unsupported URI scheme"):
            location(uri)


# -- every Location -----------------------------------------------------------------------------


def read_all(folder_uri: str) -> dict[str, bytes]:
    folder = location(folder_uri)
    found = {}
    for entry in folder.listing():
        with folder.open(entry) as stream:
            found[entry.relative_path] = stream.read()
    return found


def test_a_location_writes_lists_reads_and_deletes(prefix_backend: Backend, tmp_path: Path) -> None:
    store = prefix_backend.store
    root = store.new_root()
    folder = location(root + "ckpt")  # a folder, with or without the final '/'
    folder.check_writable("CheckpointConfig.S3Uri")
    assert folder.listing() == []  # nothing there yet: not an error
    source = tmp_path / "one.bin"
    source.write_bytes(FILES["a/one.bin"])
    progress = RecordingProgress()
    uploads = [
        Upload("a/one.bin", source),
        Upload("ünïcödé/日本 語.txt", io.BytesIO(FILES["ünïcödé/日本 語.txt"])),
        Upload("a/deeper/zero", io.BytesIO(b""), 0),
    ]
    assert folder.upload(uploads, progress) == {}
    assert progress.objects == 3
    assert source.read_bytes() == FILES["a/one.bin"]  # not movable: left in place
    store.put(root, {"ckpt-old/x": b"a sibling with the same string prefix"})
    expected = {name: FILES[name] for name in ("a/one.bin", "a/deeper/zero", "ünïcödé/日本 語.txt")}
    assert read_all(root + "ckpt/") == expected
    entries = {e.relative_path: e for e in folder.listing()}
    assert folder.read_range(entries["a/one.bin"], 10, 20) == FILES["a/one.bin"][10:30]
    folder.download(list(entries.values()), tmp_path / "restored", progress)
    assert tree_digests(tmp_path / "restored") == digests(expected)
    assert folder.delete(["a/one.bin", "never-written"]) == {}
    assert sorted(read_all(root + "ckpt")) == ["a/deeper/zero", "ünïcödé/日本 語.txt"]
    assert folder.uri_of("model.tar.gz").endswith("/ckpt/model.tar.gz")
    assert folder.uri_of("model/").endswith("/ckpt/model/")


def test_replace_folder_leaves_exactly_the_new_objects(prefix_backend: Backend) -> None:
    root = prefix_backend.store.new_root()
    folder = location(root + "out")
    before = {"model/stale.bin": b"old", "model/keep.bin": b"old", "output.tar.gz": b"o"}
    assert folder.upload([Upload(k, io.BytesIO(v)) for k, v in before.items()]) == {}
    new = {"keep.bin": b"new", "nested/n.bin": b"n"}
    assert folder.replace_folder("model", [Upload(k, io.BytesIO(v)) for k, v in new.items()]) == {}
    assert read_all(root + "out") == {
        "model/keep.bin": b"new",
        "model/nested/n.bin": b"n",
        "output.tar.gz": b"o",
    }


def test_a_local_location_keeps_symlinks_moves_what_it_is_given_and_reports_failures(
    tmp_path: Path,
) -> None:
    folder = location(str(tmp_path / "out"))
    assert folder.holds_symlinks
    scratch = folder.scratch_dir()
    assert scratch == tmp_path / "out" and scratch.is_dir()
    packed = scratch / "packed"
    packed.write_bytes(b"archive")
    link = tmp_path / "link"
    link.symlink_to("/opt/ml/model/elsewhere")  # names a path in the container
    uploads = [Upload("model.tar.gz", packed, movable=True), Upload("latest", link)]
    assert folder.upload(uploads) == {}
    assert not packed.exists()  # renamed into place, not copied
    assert (tmp_path / "out" / "model.tar.gz").read_bytes() == b"archive"
    assert os.readlink(tmp_path / "out" / "latest") == "/opt/ml/model/elsewhere"
    assert [e.relative_path for e in folder.listing()] == ["model.tar.gz"]  # regular files only
    (tmp_path / "out" / "model").write_text("a file where a folder goes")
    failures = folder.upload([Upload("model/x", io.BytesIO(b"x"))])
    assert list(failures) == ["model/x"] and isinstance(failures["model/x"], SourceError)
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []


def test_a_local_location_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(SourceError, match=r"OutputDataConfig.S3OutputPath .* is not a directory"):
        location(str(afile)).check_writable("OutputDataConfig.S3OutputPath")
    with pytest.raises(SourceError, match="is not a writable directory"):
        location(str(afile / "below")).check_writable("OutputDataConfig.S3OutputPath")
    location(str(tmp_path / "new" / "dir")).check_writable("X")  # created when written
