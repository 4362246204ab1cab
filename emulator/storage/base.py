"""The two small interfaces over every place bytes live.

A ``Source`` is the resolved content of one channel's DataSource: a sorted list of ``Entry``
objects (one per object/file) and ways to read them. Implementations: ``local.py`` (paths and
file:// URIs), ``s3/`` (s3:// and https:// URIs via boto3), ``manifest.py`` (ManifestFile over
either).

A ``Location`` is a folder the emulator reads and writes (checkpoints, job outputs): list,
open, read a range, download, upload, delete, check writable. Implementations:
``local_folder.LocalFolder`` (a directory) and ``s3.folder.S3Folder`` (a key prefix);
``emulator.storage.location`` chooses by URI.

Errors a user can fix are raised as ``SourceError``; a missing object is ``FileNotFoundError``.
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from emulator.errors import SourceError
from emulator.progress import NO_PROGRESS, Progress


@dataclass(frozen=True, order=True)
class Entry:
    """One object of a channel.

    ``relative_path`` is where it lands inside the channel directory ('/'-separated, already
    checked by ``safe_relative_path``); ``location`` is what the source needs to read it (an S3
    key, an absolute local path); entries sort by ``relative_path`` (key order).
    """

    relative_path: str
    location: str
    size: int
    etag: str | None = None


def safe_relative_path(name: str) -> str:
    """Return ``name`` if it stays inside the channel directory, else raise SourceError.

    Refused: empty names, absolute paths, empty segments ('a//b'), '.' and '..' segments,
    NUL bytes. SageMaker keys keep their path relative to the prefix; a key that would escape
    the channel directory is never written.
    """
    segments = name.split("/")
    bad = (
        not name
        or "\x00" in name
        or name.startswith("/")
        or any(segment in ("", ".", "..") for segment in segments)
    )
    if bad or posixpath.normpath(name) != name:
        raise SourceError(
            f"object name {name!r} would escape the channel directory "
            "(absolute path, empty, '.' or '..' segment); rename or remove it"
        )
    return name


class Source(ABC):
    """The objects of one channel and how to read them."""

    uri: str

    @abstractmethod
    def entries(self) -> list[Entry]:
        """Every object, sorted by relative_path. Raises SourceError when the location is
        missing, empty, or unreadable."""

    @abstractmethod
    def open(self, entry: Entry) -> BinaryIO:
        """A sequential binary stream of the entry's bytes (caller closes it)."""

    @abstractmethod
    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer only at the end of the object)."""

    @abstractmethod
    def download(self, entries: list[Entry], dest: Path, progress: Progress = NO_PROGRESS) -> None:
        """Copy ``entries`` into ``dest``/relative_path concurrently, byte-exact, sizes checked."""


@dataclass(frozen=True)
class Upload:
    """One object to write at ``name`` (relative to a Location; a key to ``upload_objects``):
    from a file path, or from an open seekable binary file (which may change meanwhile:
    ``checkpoints.files.fixed_size_file``); the caller closes it."""

    name: str
    source: Path | BinaryIO
    size: int | None = None  # known size; else found by seeking
    # The caller gives the file up: a local location may rename it into place, not copy it.
    movable: bool = False


class Location(Protocol):
    """A folder: ``s3://b/ckpt`` and ``s3://b/ckpt/`` both mean the keys ``ckpt/<name>`` (unlike
    a channel's string prefix); a local directory is created when first written. Names are
    '/'-separated and relative to the folder."""

    uri: str  # as the user wrote it, for messages
    # Whether a symlink can be stored as one (a file system), not only regular files (S3).
    holds_symlinks: bool

    def check_writable(self, what: str) -> None:
        """Raise SourceError, naming the request member ``what``, when the location cannot be
        written at all (missing bucket, denied, unreachable, not a writable directory)."""

    def scratch_dir(self) -> Path | None:
        """Where to prepare ``movable`` uploads so that writing them is a rename (created when
        needed); None when there is no such place (S3)."""

    def listing(self) -> list[Entry]:
        """Every object (regular files only, locally), sorted; [] when empty or missing."""

    def open(self, entry: Entry) -> BinaryIO:
        """A sequential binary stream of a listed entry (caller closes it)."""

    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` of a listed entry."""

    def download(self, entries: list[Entry], dest: Path, progress: Progress = NO_PROGRESS) -> None:
        """Copy listed ``entries`` into ``dest``/relative_path."""

    def upload(
        self, uploads: list[Upload], progress: Progress = NO_PROGRESS
    ) -> dict[str, SourceError]:
        """Write every upload, each replacing its name whole; return the failures by name."""

    def replace_folder(self, name: str, uploads: list[Upload]) -> dict[str, SourceError]:
        """Make the sub-folder ``name`` hold exactly ``uploads`` (named relative to it): what
        an earlier writer left there goes. Returns the failures by upload name."""

    def delete(self, names: list[str]) -> dict[str, SourceError]:
        """Delete the names (a missing one is fine); return the failures by name."""

    def uri_of(self, name: str) -> str:
        """The URI of ``name`` in this location (a trailing '/' names a sub-folder)."""
