"""ManifestFile and AugmentedManifestFile channels, over S3 or the local file system.

A ManifestFile is a JSON array: first ``{"prefix": PREFIX}``, then keys. Each object is the
string ``PREFIX + key`` and lands in the channel at ``key`` (checked by ``safe_relative_path``).
PREFIX is an S3 URI (``s3://bucket/p/``) or, for a manifest on the local disk, a path or a
``file://`` URI; a relative path is taken from the manifest's own folder. A manifest stored in
S3 may list S3 objects only (a remote file never makes the emulator read local files). Every
listed object must exist: its size is read (HEAD / stat) before the job starts.

An AugmentedManifestFile (JSON Lines) is consumed by Pipe mode, which reads it line by line
(``emulator.stage.pipe.items``); its Source is the manifest object itself, so the preflight
listing proves it exists. SageMaker allows it in Pipe mode only, so ``download`` refuses.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from emulator.errors import SourceError
from emulator.progress import NO_PROGRESS, Progress
from emulator.storage import open_uri
from emulator.storage.base import Entry, Source, safe_relative_path
from emulator.storage.local import LocalSource, local_path
from emulator.storage.uris import SUPPORTED, is_s3_uri, uri_kind

if TYPE_CHECKING:
    from emulator.config import S3Settings

MANIFEST_SHAPE = 'a JSON array: [{"prefix": "s3://bucket/prefix/"}, "key1", "key2", ...]'


def read_manifest(uri: str, settings: S3Settings | None = None) -> tuple[str, list[str]]:
    """The prefix and the keys of the ManifestFile at ``uri``."""
    with open_uri(uri, settings) as stream:
        raw = stream.read()
    return parse_manifest(raw, uri)


def parse_manifest(raw: bytes, uri: str) -> tuple[str, list[str]]:
    """Check the ManifestFile shape; return (prefix, keys). Raises SourceError."""
    try:
        document: Any = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise SourceError(f"{uri}: not a JSON manifest ({exc}); expected {MANIFEST_SHAPE}") from exc
    if not isinstance(document, list) or not document:
        raise SourceError(f"{uri}: a manifest must be {MANIFEST_SHAPE}")
    head, keys = document[0], document[1:]
    if not isinstance(head, dict) or not isinstance(head.get("prefix"), str) or not head["prefix"]:
        raise SourceError(f'{uri}: the first element must be {{"prefix": ...}}; {MANIFEST_SHAPE}')
    for index, key in enumerate(keys, start=1):
        if not isinstance(key, str):
            raise SourceError(f"{uri}: element {index} is {key!r}, not a key string")
    if not keys:
        raise SourceError(f"{uri}: the manifest lists no objects after its prefix")
    return head["prefix"], keys


class _ResolvedSource(Source):
    """A Source that reads through the S3 or local Source found by ``entries()``."""

    def __init__(self, uri: str, settings: S3Settings | None = None) -> None:
        self.uri = uri
        self.settings = settings  # None: from the environment
        self._backend: Source | None = None

    def _source(self) -> Source:
        if self._backend is None:
            self.entries()
        assert self._backend is not None  # entries() sets it or raises
        return self._backend

    def open(self, entry: Entry) -> BinaryIO:
        return self._source().open(entry)

    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        return self._source().read_range(entry, offset, length)

    def download(self, entries: list[Entry], dest: Path, progress: Progress = NO_PROGRESS) -> None:
        self._source().download(entries, dest, progress)


class ManifestSource(_ResolvedSource):
    """The objects a ManifestFile lists."""

    def entries(self) -> list[Entry]:
        prefix, keys = read_manifest(self.uri, self.settings)
        if is_s3_uri(prefix):
            from emulator.storage.s3 import S3Source  # boto3 only when S3 is used

            s3 = S3Source(prefix, self.settings)
            self._backend = s3
            return s3.stat_keys(keys, origin=self.uri)
        if is_s3_uri(self.uri):
            raise SourceError(
                f"{self.uri}: a manifest stored in S3 must have an S3 prefix, not {prefix!r}"
            )
        if uri_kind(prefix) == "unsupported":
            raise SourceError(f"{self.uri}: unsupported prefix {prefix!r}; {SUPPORTED}")
        return self._local_entries(_local_root(prefix, self.uri), keys)

    def _local_entries(self, root: str, keys: list[str]) -> list[Entry]:
        self._backend = LocalSource(root)
        entries, missing = [], []
        for key in keys:
            path = root + safe_relative_path(key)
            try:
                info = os.stat(path)
            except OSError:
                info = None
            if info is None or not stat.S_ISREG(info.st_mode):
                missing.append(path)
            else:
                entries.append(Entry(key, path, info.st_size))
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise SourceError(f"{self.uri}: file not found: {', '.join(missing[:5])}{more}")
        return sorted(entries)


def _local_root(prefix: str, manifest_uri: str) -> str:
    """The local PREFIX as an absolute path string, its trailing '/' kept (PREFIX + key)."""
    if prefix.startswith("file://"):
        root = str(local_path(prefix))
    else:  # relative to the manifest's folder; an absolute path replaces it
        root = str(local_path(manifest_uri).parent / Path(prefix).expanduser())
    return root + "/" if prefix.endswith("/") else root


class AugmentedManifestSource(_ResolvedSource):
    """The augmented manifest object itself (Pipe mode reads its lines)."""

    def entries(self) -> list[Entry]:
        if is_s3_uri(self.uri):
            from emulator.storage.s3 import S3Source, parse_s3_uri

            location = parse_s3_uri(self.uri)
            folder, name = posixpath.split(location.key)
            if not name:
                raise SourceError(f"{self.uri}: an AugmentedManifestFile URI names one object")
            s3 = S3Source(location.uri(folder + "/" if folder else ""), self.settings)
            self._backend = s3
            return s3.stat_keys([name], origin=self.uri)
        local = LocalSource(self.uri)
        if not local.path.is_file():
            raise SourceError(f"{self.uri}: no such augmented manifest file")
        self._backend = local
        return local.entries()

    def download(self, entries: list[Entry], dest: Path, progress: Progress = NO_PROGRESS) -> None:
        raise SourceError(
            f"{self.uri}: AugmentedManifestFile channels work in Pipe input mode only "
            "(as in SageMaker); set the channel's InputMode to Pipe"
        )
