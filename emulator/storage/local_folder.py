"""A local directory as a ``Location`` (checkpoints, job outputs): a path or a file:// URI.

The directory is created when first written. Every file is written under a temporary name in
its final folder and renamed into place, so a reader never sees half a file; an upload marked
``movable`` is renamed straight into place when it is on the same file system. Symlinks are
stored as symlinks (never followed). Listing sees regular files only (``scan``).

Temporary names (``temporary_name``) carry the pid of the emulator that made them:
``.partial-<pid>-<16 hex>`` (a file being written), ``.replacing-<pid>-<16 hex>`` (a folder
being built), ``.packing-<pid>-<16 hex>`` (archives being packed, finish/publish.py). A
SIGKILL can leave them behind; ``remove_dead_temporaries`` removes those whose maker is gone,
and nothing else (``emulator prune``).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from emulator.errors import SourceError
from emulator.progress import NO_PROGRESS, Progress
from emulator.storage.base import Entry, Location, Upload
from emulator.storage.local import local_path, os_error

COPY_CHUNK = 1024 * 1024
FILE_MODE = 0o644
# What each kind of temporary is: a folder, or a file (a symlink being placed is one too).
TEMPORARY_KINDS = {"packing": True, "replacing": True, "partial": False}
_TEMPORARY = re.compile(r"\.(packing|replacing|partial)-([1-9][0-9]*)-[0-9a-f]{16}")


def temporary_name(kind: str) -> str:
    """A new temporary name of ``kind`` (``TEMPORARY_KINDS``) owned by this process."""
    assert kind in TEMPORARY_KINDS
    return f".{kind}-{os.getpid()}-{os.urandom(8).hex()}"  # not secrets: its import is 5 ms


def temporary_owner(name: str) -> int | None:
    """The pid of the emulator that made the temporary ``name``; None for any other name."""
    match = _TEMPORARY.fullmatch(name)
    return int(match.group(2)) if match else None


def remove_dead_temporaries(
    root: Path, alive: Callable[[int], bool]
) -> tuple[list[Path], list[str]]:
    """Remove the temporaries below ``root`` whose emulator process is gone; return (what was
    removed, what could not be, with the reason). Only names of ``temporary_name``'s form
    with the right type (a folder, a file or symlink) are touched; symlinks are never
    followed; a live process's temporaries are left alone."""
    removed: list[Path] = []
    failed: list[str] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                children = list(listing)
        except OSError:
            continue  # missing, not a folder, unreadable: nothing of ours to find there
        for child in children:
            is_dir = child.is_dir(follow_symlinks=False)
            owner = temporary_owner(child.name)
            if owner is None or TEMPORARY_KINDS[child.name[1:].partition("-")[0]] != is_dir:
                if is_dir:
                    pending.append(Path(child.path))
                continue
            if alive(owner):
                continue
            try:
                if is_dir:
                    shutil.rmtree(child.path, onerror=_unless_missing)
                else:
                    os.unlink(child.path)
            except FileNotFoundError:
                pass  # another prune got there first
            except OSError as exc:
                failed.append(f"{child.path}: {exc.strerror or exc}")
                continue
            removed.append(Path(child.path))
    return removed, failed


def scan(root: Path) -> tuple[dict[str, os.stat_result], list[str]]:
    """Regular files below ``root`` by '/'-separated relative path (symlinks never followed),
    and the names skipped: symlinks, special files, names that are not UTF-8 (no S3 key)."""
    files: dict[str, os.stat_result] = {}
    skipped: list[str] = []
    pending = [""]
    while pending:
        folder = pending.pop()
        try:
            listing = os.scandir(root / folder if folder else root)
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed (or replaced) while we looked
        with listing:
            for item in listing:
                relative = f"{folder}/{item.name}" if folder else item.name
                try:
                    info = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    pending.append(relative)
                elif stat.S_ISREG(info.st_mode) and _is_utf8(relative):
                    files[relative] = info
                else:
                    skipped.append(relative)
    return files, sorted(skipped)


def _unless_missing(
    _function: object, _path: object, exc_info: tuple[type[BaseException], BaseException, object]
) -> None:
    """shutil.rmtree's error handler: what another process removed meanwhile is fine."""
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of the file name, as surrogates
        return False
    return True


class LocalFolder(Location):
    holds_symlinks = True

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.root = local_path(uri)

    def check_writable(self, what: str) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise SourceError(
                f"{what} {self.uri}: {self.root} is not a directory; name a directory (it is "
                "created when missing)"
            )
        existing = next((p for p in (self.root, *self.root.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
            raise SourceError(
                f"{what} {self.uri}: {existing} is not a writable directory; choose a location "
                "you can write"
            )

    def scratch_dir(self) -> Path | None:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def listing(self) -> list[Entry]:
        if not self.root.is_dir():
            return []
        files, _ = scan(self.root)
        return sorted(
            Entry(relative, str(self.root / relative), info.st_size)
            for relative, info in files.items()
        )

    def open(self, entry: Entry) -> BinaryIO:
        try:
            return open(entry.location, "rb")
        except FileNotFoundError:
            raise  # the protocol's "missing object"
        except OSError as exc:
            raise os_error(f"{self.uri}: cannot open {entry.relative_path}", exc) from exc

    def read_range(self, entry: Entry, offset: int, length: int) -> bytes:
        try:
            with open(entry.location, "rb") as handle:
                return os.pread(handle.fileno(), length, offset)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise os_error(f"{self.uri}: cannot read {entry.relative_path}", exc) from exc

    def download(self, entries: list[Entry], dest: Path, progress: Progress = NO_PROGRESS) -> None:
        for entry in entries:
            target = dest / entry.relative_path
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(entry.location, target, follow_symlinks=False)
            except OSError as exc:
                raise SourceError(f"{entry.location}: cannot copy it ({exc})") from exc
            progress.advance(entry.size)
            progress.object_done()

    def upload(
        self, uploads: list[Upload], progress: Progress = NO_PROGRESS
    ) -> dict[str, SourceError]:
        failures: dict[str, SourceError] = {}
        for upload in uploads:
            target = self.root / upload.name
            try:
                size = upload.size
                if size is None and isinstance(upload.source, Path):
                    size = upload.source.lstat().st_size
                target.parent.mkdir(parents=True, exist_ok=True)
                _place(upload, target)
            except OSError as exc:
                failures[upload.name] = SourceError(f"{target}: {exc}")
                continue
            progress.advance(size or 0)
            progress.object_done()
        return failures

    def replace_folder(self, name: str, uploads: list[Upload]) -> dict[str, SourceError]:
        """Builds the new folder beside the old one, then swaps them."""
        target = self.root / name.rstrip("/")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            building = self.root / temporary_name("replacing")
            building.mkdir()  # the mode a folder gets (it becomes ``name``), not mkdtemp's 0700
        except OSError as exc:
            return dict.fromkeys((u.name for u in uploads), os_error(str(target), exc))
        failures: dict[str, SourceError] = {}
        try:
            for upload in uploads:
                path = building / upload.name
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    _place(upload, path)
                except OSError as exc:
                    failures[upload.name] = SourceError(f"{target / upload.name}: {exc}")
            if not failures:
                shutil.rmtree(target, ignore_errors=True)
                os.replace(building, target)
        except OSError as exc:
            failures = dict.fromkeys((u.name for u in uploads), os_error(str(target), exc))
        finally:
            shutil.rmtree(building, ignore_errors=True)
        return failures

    def delete(self, names: list[str]) -> dict[str, SourceError]:
        failures: dict[str, SourceError] = {}
        for name in names:
            target = self.root / name
            try:
                target.unlink(missing_ok=True)
            except OSError as exc:
                failures[name] = SourceError(f"{target}: {exc}")
                continue
            for parent in target.parents:  # folders left empty go too, up to the root
                if parent == self.root or self.root not in parent.parents:
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break
        return failures

    def uri_of(self, name: str) -> str:
        uri = (self.root / name).absolute().as_uri()
        return uri + "/" if name.endswith("/") else uri


def _place(upload: Upload, target: Path) -> None:
    """Write ``upload`` at ``target`` whole: a temporary name, then a rename."""
    source = upload.source
    if isinstance(source, Path) and upload.movable:
        try:
            os.replace(source, target)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise  # else another file system: copied below
    temporary = target.parent / temporary_name("partial")
    try:
        if isinstance(source, Path) and source.is_symlink():
            os.symlink(os.readlink(source), temporary)
        elif isinstance(source, Path):
            shutil.copyfile(source, temporary, follow_symlinks=False)
            os.chmod(temporary, FILE_MODE)
        else:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(descriptor, "wb") as out:
                shutil.copyfileobj(source, out, COPY_CHUNK)
            os.chmod(temporary, FILE_MODE)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
