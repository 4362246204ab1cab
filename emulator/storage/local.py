"""Channel data from the local file system: plain paths and file:// URIs.

Resolution mirrors S3Prefix: a directory is the prefix ``dir/`` (every file below it, path kept
relative to it); a file is one object named by its base name; anything else is a string prefix
of the names in its parent directory, as ``s3://bucket/data/tra`` matches ``data/train/x``.
Symbolic links to files are followed; links to directories are not (no loops, no escapes).

Every OSError of the file system (denied access, a name too long, a file removed after the
listing, a full disk) becomes a SourceError naming the path and the system's message; except
that ``open``/``read_range`` of a vanished file raise FileNotFoundError, the Source protocol's
"missing object" (FastFile answers ENOENT with it).
A File-mode download copies with a few threads; on the first error (or Ctrl-C) the copies not
yet begun are cancelled and those under way stop at their next chunk before it re-raises.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from emulator.errors import SourceError
from emulator.progress import NO_PROGRESS, Progress
from emulator.storage.base import Entry, Source, safe_relative_path

COPY_CHUNK = 8 * 1024 * 1024
COPY_WORKERS = 4


def local_path(uri: str) -> Path:
    """The absolute path named by a plain path or a file:// URI."""
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise SourceError(f"{uri}: file:// URIs name a local path (file:///abs/path)")
        return Path(unquote(parsed.path))
    return Path(uri).expanduser().absolute()


def os_error(what: str, exc: OSError) -> SourceError:
    """A SourceError for an OSError: ``what`` failed, with the path and the system's reason."""
    path = f" ({exc.filename})" if exc.filename else ""
    return SourceError(f"{what}: {exc.strerror or exc}{path}")


class _Cancelled(Exception):
    """A copy stopped because another one failed (or the download was interrupted)."""


def _walk_files(directory: str, relative: str = "") -> Iterator[tuple[str, str, int]]:
    """(relative path, absolute path, size) of every file below ``directory``.

    os.scandir with plain strings: listing 20,000 files stays well under a second."""
    with os.scandir(directory) as found:
        children = sorted(found, key=lambda child: child.name)
    for child in children:
        name = f"{relative}{child.name}"
        if child.is_dir(follow_symlinks=False):
            yield from _walk_files(child.path, name + "/")
        elif child.is_file():
            yield name, child.path, child.stat().st_size


class LocalSource(Source):
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.path = local_path(uri)

    def entries(self) -> list[Entry]:
        try:
            found = self._resolve()
        except OSError as exc:
            raise os_error(self.uri, exc) from exc
        if not found:
            raise SourceError(
                f"{self.uri}: no files found; point the channel at a non-empty directory or a file"
            )
        return sorted(Entry(safe_relative_path(rel), path, size) for rel, path, size in found)

    def _resolve(self) -> list[tuple[str, str, int]]:
        path = self.path
        if path.is_dir():
            return list(_walk_files(str(path)))
        if path.is_file():
            return [(path.name, str(path), path.stat().st_size)]
        parent = path.parent
        if not parent.is_dir():
            raise SourceError(f"{self.uri}: no such file or directory")
        # A string prefix of names, as S3 matches keys: only entries of the parent whose name
        # starts with the prefix can match, so only those are walked.
        found = []
        with os.scandir(parent) as children:
            matching = sorted(
                (c for c in children if c.name.startswith(path.name)), key=lambda c: c.name
            )
        for child in matching:
            rest = child.name[len(path.name) :]
            if child.is_dir(follow_symlinks=False):
                base = f"{rest}/" if rest else ""
                found += list(_walk_files(child.path, base))
            elif child.is_file():
                found.append((rest or child.name, child.path, child.stat().st_size))
        return found

    def open(self, entry: Entry) -> BinaryIO:
        try:
            return open(entry.location, "rb")
        except FileNotFoundError:
            raise  # the Source protocol's "missing object" (sources/base.py)
        except OSError as exc:
            raise os_error(f"{self.uri}: cannot open {entry.relative_path}", exc) from exc

    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        try:
            with open(entry.location, "rb") as handle:
                return os.pread(handle.fileno(), length, offset)
        except FileNotFoundError:
            raise  # the Source protocol's "missing object" (sources/base.py)
        except OSError as exc:
            raise os_error(f"{self.uri}: cannot read {entry.relative_path}", exc) from exc

    def download(self, entries: list[Entry], dest: Path, progress: Progress = NO_PROGRESS) -> None:
        cancelled = threading.Event()

        def copy(entry: Entry) -> None:
            target = dest / entry.relative_path
            copied = 0
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(entry.location, "rb") as src, open(target, "wb") as dst:
                    while chunk := src.read(COPY_CHUNK):
                        if cancelled.is_set():
                            raise _Cancelled
                        dst.write(chunk)
                        copied += len(chunk)
                        progress.advance(len(chunk))
            except OSError as exc:
                raise os_error(
                    f"{self.uri}: copying {entry.relative_path} to {target} failed", exc
                ) from exc
            if copied != entry.size:
                raise SourceError(
                    f"{entry.location}: copied {copied} bytes but the file had {entry.size} "
                    "when listed; was it modified during the copy?"
                )
            progress.object_done()

        pool = ThreadPoolExecutor(max_workers=COPY_WORKERS)
        try:
            for future in [pool.submit(copy, entry) for entry in entries]:
                future.result()
        except BaseException:
            cancelled.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
