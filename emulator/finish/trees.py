"""The files one host's container left in a directory (/opt/ml/model, /opt/ml/output/data), as
the packer reads them: directly, or through the engine when the emulator may not.

A root training container may keep its files to itself: a 0700 directory (what
``tempfile.mkdtemp`` makes), a 0600 file (write-to-temp-then-rename), a 0000 file. An emulator
run by root reads them anyway; one run by a non-root user of the Docker group cannot. So every
entry below the directory is checked first (``FolderTree.scan``: directories listed, entries
stat'ed, regular files readable). When all pass, the files are read in place: the fast path,
always taken as root. Otherwise ``open_tree`` asks ``read_as_root`` for a tar of the directory
(the engine reads it as root: ``DockerEngine.read_tree_as_root``), spools it to an anonymous
temporary file and serves the entries from it (``ArchiveTree``), with the owners and modes they
were written with. An entry that still cannot be read is an ``UnreadableFile`` error naming
it, before anything is packed: never a silent omission.

Entries are files, symlinks (never followed) and special files; directories only hold them.
Both trees give them in the same order (``packing_order``): a directory's own entries by name,
then its subdirectories by name. A hard link read from the engine's archive becomes a file of
its own with the same content.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from emulator.errors import EmulatorError, SourceError

# Writes a tar of everything below a directory, read with the rights its files were written
# with, into the file; False when it cannot (no engine on this machine).
RootReader = Callable[[Path, IO[bytes]], bool]
COPY_CHUNK = 1024 * 1024


class UnreadableFile(SourceError):
    """An entry the container wrote that could not be read by any means: the job fails."""

    def __init__(self, path: Path, reason: str, detail: str = "") -> None:
        super().__init__(
            f"the job's files cannot all be packed: {path} cannot be read ({reason}){detail}"
        )
        self.path = path


class Tree(Protocol):
    """One host's entries (relative '/'-separated paths, in ``packing_order``)."""

    @property
    def relatives(self) -> list[str]: ...

    def add_to(self, tar: tarfile.TarFile, relative: str) -> None:
        """Add the entry to ``tar`` under its relative name."""

    def copy_to(self, relative: str, target: Path) -> None:
        """Write a regular file or a symlink at ``target``; other kinds are not copied."""


def packing_order(relative: str) -> tuple[tuple[int, str], ...]:
    """A directory's own entries first (by name), then each subdirectory's (by name)."""
    *folders, name = relative.split("/")
    return (*((1, folder) for folder in folders), (0, name))


class _Refused(Exception):
    """What the scan could not read: the path, relative to the tree ("" for the tree itself)."""

    def __init__(self, relative: str, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.relative = relative
        self.path = path
        self.reason = reason

    def error(self, detail: str = "") -> UnreadableFile:
        return UnreadableFile(self.path, self.reason, detail)


class FolderTree:
    """The entries of a directory the emulator can read itself (a missing one is empty)."""

    def __init__(self, root: Path, relatives: list[str]) -> None:
        self.root = root
        self.relatives = relatives

    @classmethod
    def scan(cls, root: Path) -> FolderTree:
        """Every entry below ``root``, each checked readable; ``_Refused`` names the first
        that is not."""
        if not root.is_dir():
            return cls(root, [])
        found: list[str] = []
        pending = [""]
        while pending:
            folder = pending.pop()
            path = root / folder if folder else root
            try:
                with os.scandir(path) as listing:
                    items = list(listing)
            except OSError as exc:
                raise _Refused(folder, path, exc.strerror or str(exc)) from exc
            for item in items:
                relative = f"{folder}/{item.name}" if folder else item.name
                try:
                    mode = item.stat(follow_symlinks=False).st_mode
                except OSError as exc:
                    raise _Refused(relative, Path(item.path), exc.strerror or str(exc)) from exc
                if stat.S_ISDIR(mode):
                    pending.append(relative)
                    continue
                if stat.S_ISREG(mode) and not os.access(item.path, os.R_OK):
                    raise _Refused(relative, Path(item.path), "Permission denied")
                found.append(relative)
        return cls(root, sorted(found, key=packing_order))

    def add_to(self, tar: tarfile.TarFile, relative: str) -> None:
        tar.add(self.root / relative, arcname=relative, recursive=False)

    def copy_to(self, relative: str, target: Path) -> None:
        source = self.root / relative
        mode = source.lstat().st_mode
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(source), target)
        elif stat.S_ISREG(mode):
            shutil.copyfile(source, target)
        # FIFOs, sockets and devices have no uncompressed form: not copied.


class ArchiveTree:
    """The entries of a tar the engine made of a directory (``read_tree_as_root``): members
    are named ``<top>/<relative>``."""

    def __init__(self, tar: tarfile.TarFile, origin: Path) -> None:
        self.tar = tar
        self.origin = origin  # the directory it was made of, for messages
        self.members: dict[str, tarfile.TarInfo] = {}
        self.folders: set[str] = set()
        for member in tar.getmembers():
            relative = member.name.partition("/")[2]
            if not relative:
                continue  # the directory itself
            parts = PurePosixPath(relative).parts
            if relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise SourceError(f"the engine's archive of {origin} names {member.name!r}")
            if member.isdir():
                self.folders.add(relative)
            else:
                self.members[relative] = member
        self.relatives = sorted(self.members, key=packing_order)

    def holds(self, relative: str) -> bool:
        return relative in self.members or relative in self.folders

    def add_to(self, tar: tarfile.TarFile, relative: str) -> None:
        member = self.members[relative]
        info = tarfile.TarInfo(relative)  # fresh: the member's pax "path" would take priority
        info.mode = stat.S_IMODE(member.mode)
        info.uid, info.gid, info.uname, info.gname = (
            member.uid,
            member.gid,
            member.uname,
            member.gname,
        )
        info.mtime = member.mtime
        if member.isreg() or member.islnk():
            source = self._content_member(member)
            info.type, info.size = tarfile.REGTYPE, source.size
            with self._open(source) as content:
                tar.addfile(info, content)
            return
        info.type, info.linkname = member.type, member.linkname
        info.devmajor, info.devminor = member.devmajor, member.devminor
        tar.addfile(info)

    def copy_to(self, relative: str, target: Path) -> None:
        member = self.members[relative]
        if member.issym():
            os.symlink(member.linkname, target)
        elif member.isreg() or member.islnk():
            with self._open(self._content_member(member)) as content, open(target, "wb") as out:
                shutil.copyfileobj(content, out, COPY_CHUNK)

    def _content_member(self, member: tarfile.TarInfo) -> tarfile.TarInfo:
        """The member holding a file's bytes: itself, or the one a hard link names."""
        if not member.islnk():
            return member
        try:
            return self.tar.getmember(member.linkname)
        except KeyError:
            raise SourceError(
                f"the engine's archive of {self.origin} links {member.name!r} to "
                f"{member.linkname!r}, which it does not hold"
            ) from None

    def _open(self, member: tarfile.TarInfo) -> IO[bytes]:
        content = self.tar.extractfile(member)
        if content is None:  # not a file: cannot happen for the members given
            raise SourceError(f"the engine's archive of {self.origin}: {member.name} has no data")
        return content


@contextmanager
def open_tree(root: Path, scratch: Path, read_as_root: RootReader | None) -> Iterator[Tree]:
    """The entries below ``root``: read in place when the emulator can read them all, else
    from ``read_as_root``'s tar, spooled in ``scratch`` (an anonymous file, gone on exit).
    ``UnreadableFile`` when an entry cannot be read either way."""
    try:
        folder = FolderTree.scan(root)
    except _Refused as exc:
        refused = exc
    else:
        yield folder
        return
    if read_as_root is None:
        raise refused.error()
    with tempfile.TemporaryFile(dir=scratch) as spool:
        try:
            done = read_as_root(root, spool)
        except EmulatorError as exc:
            raise refused.error(f"; reading it through the Docker engine failed: {exc}") from exc
        if not done:
            raise refused.error(
                "; the Docker engine is not on this machine, so it cannot read it as root either"
            )
        spool.seek(0)
        with ExitStack() as opened:
            try:
                archive = opened.enter_context(tarfile.open(fileobj=spool, mode="r:"))
                tree = ArchiveTree(archive, root)  # reads every member's header
            except (tarfile.TarError, OSError) as exc:
                detail = f"; the Docker engine's archive of it is unreadable: {exc}"
                raise refused.error(detail) from exc
            if refused.relative and not tree.holds(refused.relative):
                raise refused.error("; the Docker engine's archive of it lacks it too")
            yield tree
