"""What a finished job leaves behind: model.tar.gz, output.tar.gz, and the failure reason.

The model of every host is merged into one archive, hosts in order (algo-1 first); when two
hosts write the same path, the lower-numbered host's file is kept and the clash is reported
(also when one host's file or symlink stands where another host has a directory).
Archives hold paths relative to /opt/ml/model (or /opt/ml/output/data), sorted.

Symlinks are kept as symlinks, to files and to directories alike, and never followed: their
targets name paths inside the container, and following them on the host would read (or, for
later hosts, write) the host's own files.

Every file the container wrote is packed or the job fails naming it: files a root container
kept to itself (an emulator run by a non-root user) are read through the engine, and what
cannot be read by any means is an ``UnreadableFile`` error (``trees.py``).
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from emulator.finish.trees import RootReader, Tree, UnreadableFile, open_tree

__all__ = ["PackResult", "RootReader", "UnreadableFile", "failure_reason", "merge_tree", "pack"]

FAILURE_REASON_CHARS = 1024


@dataclass
class PackResult:
    archive: Path
    files: int = 0
    clashes: list[str] = field(default_factory=list)  # relative paths written by several hosts


class _Merge:
    """The entries of several hosts' trees, first host winning every clash."""

    def __init__(self, result: PackResult) -> None:
        self.result = result
        self.taken: set[str] = set()  # files and symlinks already merged
        self.directories: set[str] = set()  # their parent directories

    def entries(self, trees: Sequence[Tree]) -> Iterator[tuple[Tree, str]]:
        for tree in trees:
            for relative in tree.relatives:
                if self._claim(relative):
                    yield tree, relative

    def _claim(self, relative: str) -> bool:
        parents = [str(p) for p in PurePosixPath(relative).parents][:-1]  # without '.'
        if (
            relative in self.taken
            or relative in self.directories
            or any(parent in self.taken for parent in parents)
        ):
            self.result.clashes.append(relative)
            return False
        self.taken.add(relative)
        self.directories.update(parents)
        self.result.files += 1
        return True


def pack(
    sources: Sequence[Path], archive: Path, read_as_root: RootReader | None = None
) -> PackResult:
    """Tar and gzip the files below each source directory into ``archive``, first source
    winning. Files the emulator cannot read come from ``read_as_root`` (``trees.py``); one
    that cannot be read that way either raises ``UnreadableFile`` before the archive exists."""
    result = PackResult(archive)
    with ExitStack() as opened:
        trees = [opened.enter_context(open_tree(s, archive.parent, read_as_root)) for s in sources]
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            for tree, relative in _Merge(result).entries(trees):
                tree.add_to(tar, relative)
    return result


def merge_tree(
    sources: Sequence[Path], destination: Path, read_as_root: RootReader | None = None
) -> PackResult:
    """Copy the files below each source into ``destination`` (uncompressed model output),
    reading them as ``pack`` does. FIFOs, sockets and devices have no uncompressed form: they
    are not copied."""
    result = PackResult(destination)
    with ExitStack() as opened:
        scratch = destination.parent
        trees = [opened.enter_context(open_tree(s, scratch, read_as_root)) for s in sources]
        for tree, relative in _Merge(result).entries(trees):
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            tree.copy_to(relative, target)
    return result


def failure_reason(exit_code: int, failure_file: Path) -> str:
    """SageMaker's FailureReason for an algorithm that exited non-zero."""
    return f"AlgorithmError: {_failure_message(failure_file)}, exit code: {exit_code}"


def _failure_message(failure_file: Path) -> str:
    """The first characters of the failure file the container wrote; "" without one.

    Only a regular file counts: the container made this path, and a symlink would name one of
    the host's files (its target is read on the host, not in the container), a FIFO would
    block forever. At most what the reason can hold is read, however large the file.
    """
    try:
        if not stat.S_ISREG(os.lstat(failure_file).st_mode):
            return ""
        descriptor = os.open(failure_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(descriptor, "rb") as file:
            head = file.read(FAILURE_REASON_CHARS * 4)  # UTF-8: at most 4 bytes a character
    except OSError:
        return ""
    return head.decode("utf-8", errors="replace")[:FAILURE_REASON_CHARS]
