"""Channel data from the local file system: plain paths and file:// URIs.

Resolution mirrors S3Prefix: a directory is the prefix ``dir/`` (every file below it, path kept
relative to it); a file is one object named by its base name; anything else is a string prefix
of the names in its parent directory, as ``s3://bucket/data/tra`` matches ``data/train/x``.
Symbolic links to files are followed; links to directories are not (no loops, no escapes).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from emulator.errors import SourceError
from emulator.progress import NO_PROGRESS, Progress
from emulator.sources.base import Entry, Source, safe_relative_path

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


def _walk_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_file():
                found.append(path)
    return found


class LocalSource(Source):
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.path = local_path(uri)

    def entries(self) -> list[Entry]:
        pairs = self._resolve()
        if not pairs:
            raise SourceError(
                f"{self.uri}: no files found; point the channel at a non-empty directory or a file"
            )
        entries = [
            Entry(safe_relative_path(rel), str(path), path.stat().st_size) for rel, path in pairs
        ]
        return sorted(entries)

    def _resolve(self) -> list[tuple[str, Path]]:
        path = self.path
        try:
            if path.is_dir():
                return [(p.relative_to(path).as_posix(), p) for p in _walk_files(path)]
            if path.is_file():
                return [(path.name, path)]
            parent = path.parent
            if not parent.is_dir():
                raise SourceError(f"{self.uri}: no such file or directory")
            pairs = []
            for candidate in _walk_files(parent):
                rel = candidate.relative_to(parent).as_posix()
                if rel.startswith(path.name):
                    pairs.append((rel[len(path.name) :].lstrip("/"), candidate))
            return pairs
        except PermissionError as exc:
            raise SourceError(f"{self.uri}: permission denied ({exc.filename})") from exc

    def open(self, entry: Entry) -> BinaryIO:
        return open(entry.location, "rb")

    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        with open(entry.location, "rb") as handle:
            return os.pread(handle.fileno(), length, offset)

    def download(self, entries: list[Entry], dest: Path, progress: Progress = NO_PROGRESS) -> None:
        def copy(entry: Entry) -> None:
            target = dest / entry.relative_path
            target.parent.mkdir(parents=True, exist_ok=True)
            copied = 0
            with open(entry.location, "rb") as src, open(target, "wb") as dst:
                while chunk := src.read(COPY_CHUNK):
                    dst.write(chunk)
                    copied += len(chunk)
                    progress.advance(len(chunk))
            if copied != entry.size:
                raise SourceError(
                    f"{entry.location}: copied {copied} bytes but the file had {entry.size} "
                    "when listed; was it modified during the copy?"
                )
            progress.object_done()

        with ThreadPoolExecutor(max_workers=COPY_WORKERS) as pool:
            for future in [pool.submit(copy, entry) for entry in entries]:
                future.result()
