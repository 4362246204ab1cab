"""Channel data from the local file system: plain paths and file:// URIs.

Resolution mirrors S3Prefix: a directory is the prefix ``dir/`` (every file below it, path kept
relative to it); a file is one object named by its base name; anything else is a string prefix
of the names in its parent directory, as ``s3://bucket/data/tra`` matches ``data/train/x``.

What a channel's directory may hold, one rule for every input mode (File, Pipe and FastFile all
list through ``LocalSource.entries``), applied when the channel is listed, before the job
starts. S3 holds only objects, so only regular files are data:

    regular file, or a symlink to one      data (the link is followed: the target's bytes,
                                           under the link's name)
    directory, or a symlink to one         walked (links are followed, as ``aws s3 sync``
                                           does; a link back to a directory it lies in is a
                                           loop: skipped)
    dangling symlink, symlink loop,        skipped; ``LocalSource.skipped`` names them and the
    FIFO, socket, device                   job says so in one notice (count and first names)
    a file or directory that cannot be     the run is refused (SourceError, exit 2) naming each
    read (permissions)                     one and what to do

Files reached through links are checked against the sensitive host paths like any other
(``plan/safety.py``).

Every other OSError of the file system (a name too long, a full disk) becomes a SourceError
naming the path and the system's message; except that ``open``/``read_range`` of a vanished
file raise FileNotFoundError, the Source protocol's "missing object" (FastFile answers ENOENT
with it). A File-mode download is ``storage.copying.copy_files``: a few threads, the bytes
copied by the kernel; on the first error (or Ctrl-C) the copies not yet begun are left and
those under way stop at their next chunk before it re-raises.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from emulator.errors import SourceError, running_user
from emulator.progress import NO_PROGRESS, Progress
from emulator.storage.base import Entry, Source, safe_relative_path
from emulator.storage.copying import FileCopy, copy_files

SHOWN = 5  # entries named in a message; the rest are counted
_SPECIAL = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


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


@dataclass(frozen=True, order=True)
class Skipped:
    """An entry of a channel's directory that is not data: ``name`` relative to the channel's
    location (as its object would be named), ``kind`` what it is (FIFO, dangling symlink...)."""

    name: str
    kind: str


def describe_skipped(skipped: list[Skipped]) -> str:
    """``2 entries that are not regular files (FIFO a/f, dangling symlink l)``: the count and
    the first few."""
    shown = ", ".join(f"{item.kind} {item.name}" for item in skipped[:SHOWN])
    more = f" and {len(skipped) - SHOWN} more" if len(skipped) > SHOWN else ""
    if len(skipped) == 1:
        return f"1 entry that is not a regular file ({shown})"
    return f"{len(skipped)} entries that are not regular files ({shown}{more})"


# os.access checks the real user by default; the effective one is who opens the files.
_EFFECTIVE_IDS = os.access in os.supports_effective_ids
_Pending = tuple[str, str, tuple[tuple[int, int], ...]]  # path, name, ancestor directories


class _Listing:
    """The channel-entry rule (module docstring) applied to the paths of one location.

    Iterative, with os.scandir and plain strings: 20,000 files list in well under a second
    and no depth of folders overflows the stack."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.files: list[tuple[str, str, int]] = []  # (relative name, path, size)
        self.skipped: list[Skipped] = []
        self.unreadable: list[str] = []  # "path (reason)"

    def add(self, path: str, name: str, ancestors: tuple[tuple[int, int], ...] = ()) -> None:
        """List ``path``: a file named ``name``, or a directory whose children are named
        ``name/child`` (``child`` when ``name`` is empty). A link to one of the ``ancestors``
        (device, inode) is a loop."""
        pending: list[_Pending] = [(path, name, ancestors)]
        while pending:
            path, name, ancestors = pending.pop()
            info = self._stat(path, name)
            if info is None:
                continue
            if stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key in ancestors:
                    self._skip(path, name, "symlink loop")
                    continue
                prefix = f"{name}/" if name else ""
                inner = (*ancestors, key)
                pending += [
                    (child, prefix + child_name, inner)
                    for child, child_name in reversed(self.children(path))
                ]
            elif stat.S_ISREG(info.st_mode):
                if os.access(path, os.R_OK, effective_ids=_EFFECTIVE_IDS):
                    self.files.append((name, path, info.st_size))
                else:
                    self.unreadable.append(f"{_shown(path)} (file: permission denied)")
            else:
                kind = next((k for test, k in _SPECIAL if test(info.st_mode)), "special file")
                self._skip(path, name, kind)

    def _stat(self, path: str, name: str) -> os.stat_result | None:
        """The entry's stat, links followed; None when it is skipped, unreadable or gone."""
        try:
            return os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                self._skip(path, name, "dangling symlink")
            return None  # else removed while we looked
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._skip(path, name, "symlink loop")
            elif exc.errno in (errno.EACCES, errno.EPERM):
                self.unreadable.append(f"{_shown(path)} ({exc.strerror})")
            else:
                raise os_error(self.uri, exc) from exc
            return None

    def children(self, directory: str) -> list[tuple[str, str]]:
        """(path, name) of the entries of ``directory``, sorted by name; [] when it cannot
        be read (recorded) or is gone."""
        if not os.access(directory, os.R_OK | os.X_OK, effective_ids=_EFFECTIVE_IDS):
            self.unreadable.append(f"{_shown(directory)} (directory: permission denied)")
            return []
        try:
            with os.scandir(directory) as found:
                return sorted(((child.path, child.name) for child in found), key=lambda c: c[1])
        except FileNotFoundError:
            return []
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                self.unreadable.append(f"{directory} ({exc.strerror})")
                return []
            raise os_error(self.uri, exc) from exc

    def _skip(self, path: str, name: str, kind: str) -> None:
        self.skipped.append(Skipped(name or os.path.basename(path), kind))

    def check_readable(self) -> None:
        """Refuse the channel when some entry could not be read."""
        if not self.unreadable:
            return
        count = len(self.unreadable)
        shown = ", ".join(self.unreadable[:SHOWN])
        more = f" and {count - SHOWN} more" if count > SHOWN else ""
        raise SourceError(
            f"{self.uri}: {count} {'entry' if count == 1 else 'entries'} cannot be read by "
            f"the user running the emulator ({running_user()}): {shown}{more}; make them readable "
            "(chmod a+r for a file, a+rx for a directory) or move them out of the channel's "
            "directory"
        )


def _shown(path: str) -> str:
    """``path``, and where it leads when it is a link."""
    return f"{path} -> {os.path.realpath(path)}" if os.path.islink(path) else path


class LocalSource(Source):
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.path = local_path(uri)
        self.skipped: list[Skipped] = []  # what the last ``entries()`` left out, sorted

    def entries(self) -> list[Entry]:
        try:
            listing = self._resolve()
        except OSError as exc:
            raise os_error(self.uri, exc) from exc
        listing.check_readable()
        self.skipped = sorted(listing.skipped)
        if not listing.files:
            skipped = f" (skipped {describe_skipped(self.skipped)})" if self.skipped else ""
            raise SourceError(
                f"{self.uri}: no files found{skipped}; point the channel at a non-empty "
                "directory or a file"
            )
        return sorted(
            Entry(safe_relative_path(rel), path, size) for rel, path, size in listing.files
        )

    def _resolve(self) -> _Listing:
        listing = _Listing(self.uri)
        path = self.path
        if path.is_dir():
            listing.add(str(path), "")
            return listing
        if path.is_file():
            listing.add(str(path), path.name)
            return listing
        parent = path.parent
        if not parent.is_dir():
            raise SourceError(f"{self.uri}: no such file or directory")
        # A string prefix of names, as S3 matches keys: only entries of the parent whose name
        # starts with the prefix can match, so only those are listed (an odd entry named
        # exactly so among them). The parent is the listing's root: a link to it is a loop.
        root = parent.stat()
        for child, child_name in listing.children(str(parent)):
            if child_name.startswith(path.name):
                rest = child_name[len(path.name) :]
                # A directory's files are named rest/...; a file keeps its whole name when
                # it is the prefix itself.
                name = rest if rest or os.path.isdir(child) else child_name
                listing.add(child, name, ((root.st_dev, root.st_ino),))
        return listing

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
        def failure(copy: FileCopy, exc: OSError) -> SourceError:
            name = os.path.relpath(copy.target, dest)
            return os_error(f"{self.uri}: copying {name} to {copy.target} failed", exc)

        def size_changed(copy: FileCopy, copied: int) -> SourceError:
            return SourceError(
                f"{copy.source}: copied {copied} bytes but the file had {copy.size} when "
                "listed; was it modified during the copy?"
            )

        root = str(dest)  # plain strings: a Path per file costs more than its copy
        copies = [
            FileCopy(entry.location, os.path.join(root, entry.relative_path), entry.size)
            for entry in entries
        ]
        try:
            copy_files(copies, progress=progress, failure=failure, size_changed=size_changed)
        except OSError as exc:  # making the folders
            raise os_error(f"{self.uri}: copying to {dest} failed", exc) from exc
