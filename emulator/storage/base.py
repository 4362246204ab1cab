"""One small interface over every place channel bytes come from.

A ``Source`` is the resolved content of one channel's DataSource: a sorted list of ``Entry``
objects (one per object/file) and ways to read them. Implementations: ``local.py`` (paths and
file:// URIs), ``s3.py`` (s3:// and https:// URIs via boto3), ``manifest.py`` (ManifestFile over
either). Errors a user can fix are raised as ``SourceError``; a missing object is
``FileNotFoundError``.
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
