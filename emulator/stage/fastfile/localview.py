"""FastFile on a local directory without FUSE: a read-only bind mount of the directory itself.

The data of a local channel is already on the host, so a read-only view of it is lazy by nature;
putting it behind a FUSE process only adds copies and round trips. The container gets a
read-only bind mount of the channel's directory, and no FUSE process runs, when ALL of these
hold (checked when the host is staged, ``LocalViews.directory``):

1. the channel is an ``S3Prefix`` whose local URI names a directory (the prefix ``dir/``), not
   a file nor a string prefix of names;
2. the host gets every object of the listing: ``FullyReplicated``, or ``ShardedByS3Key`` with
   a single receiving host;
3. the directory tree IS the listing: walked without following links it holds only regular
   files and directories (no symlink, FIFO, socket or device: the listing follows links and
   skips the rest, and a link would resolve inside the container), its regular files are
   exactly the listed names with the listed sizes, and every directory holds a file somewhere
   below it (S3 has no empty folders);
4. everything is readable by any user (files ``o+r``, directories ``o+rx``): a bind mount shows
   the host's owners and modes, where the FUSE view shows ``0444``/``0555`` to every user, and
   the image may run as anyone;
5. nothing is mounted below it and it all lies on one device: Docker's read-only binds are not
   recursive before Docker 25, so a mount inside the directory would be writable in the
   container;
6. ``EMULATOR_FASTFILE_LOCAL`` is not ``fuse`` (``ENV_LOCAL_VIEW``; ``fuse`` serves every
   local channel through FUSE, as before, e.g. to compare the two).

Otherwise the FUSE server (``FastFileMount``) serves the host's objects: each host of a
sharded channel sees only its shard, and a listing that differs from the tree (links
followed, entries skipped) is shown as listed.

What the container sees is the same either way: a read-only POSIX view at
``/opt/ml/input/data/<channel>`` with the listed paths and sizes, writes failing with EROFS, and
``inputdataconfig.json`` saying FastFile. What differs: modes and owners are the host's (not
``0444``), and there are no block-cache counters (the ``user.emulator.fastfile.stats`` xattr).

The bind mount is live, not a snapshot: a file added, removed or rewritten in the directory
while the job runs is seen by the container, where SageMaker's view is the prefix as it was at
the start (the FUSE view fixes the names and sizes at the start, but reads the bytes live
too). Each view remembers the tree it checked (names, sizes, modification times, inodes);
``LocalViews.check_unchanged`` walks it again when the job's containers are gone and says in a
notice when it changed, so a result that depended on it is not mistaken for SageMaker's.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emulator.request.spec import ChannelSpec
from emulator.stage.fastfile.mounts import read_mounts
from emulator.storage.base import Entry, Source
from emulator.storage.local import LocalSource

__all__ = ["ENV_LOCAL_VIEW", "LocalViews", "Tree", "walk_tree"]

ENV_LOCAL_VIEW = "EMULATOR_FASTFILE_LOCAL"  # "fuse": no bind mounts for local channels

log = logging.getLogger("emulator.fastfile")

# What a file is, for "it changed": size, modification time (ns), inode.
FileState = tuple[int, int, int]


@dataclass(frozen=True)
class Tree:
    """A directory walked without following links: its regular files by '/'-separated name
    relative to it, and the first ``problem`` found that keeps it from being shown as it is
    (the walk goes on past it, into every folder it can read)."""

    files: dict[str, FileState]
    problem: str | None = None


def walk_tree(root: Path) -> Tree:
    """Walk ``root`` (conditions 3 to 5 of the module docstring, less the listing comparison)."""
    try:
        info = os.stat(root)
    except OSError as exc:
        return Tree({}, f"cannot stat {root}: {exc.strerror}")
    files: dict[str, FileState] = {}
    problem = _walk(str(root), info, files)
    return Tree(files, problem)


def _walk(root: str, info: os.stat_result, files: dict[str, FileState]) -> str | None:
    problems = [] if _readable(info) else [f"{root} is not readable by every user"]
    device = info.st_dev
    folders: list[str] = []
    pending = [(root, "")]
    while pending:
        path, prefix = pending.pop()
        try:
            with os.scandir(path) as found:
                children = [(child, child.stat(follow_symlinks=False)) for child in found]
        except OSError as exc:
            problems.append(f"cannot read {path}: {exc.strerror}")
            continue
        for child, child_info in children:
            name = prefix + child.name
            mode = child_info.st_mode
            if child_info.st_dev != device:
                problems.append(f"{name} is on another file system")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                problems.append(f"{name} is not a regular file or a directory")
            elif not _readable(child_info):
                problems.append(f"{name} is not readable by every user")
            if stat.S_ISDIR(mode):
                folders.append(name)
                pending.append((child.path, name + "/"))
            elif stat.S_ISREG(mode):
                files[name] = (child_info.st_size, child_info.st_mtime_ns, child_info.st_ino)
    holding = {name.rsplit("/", 1)[0] for name in files if "/" in name}
    holding |= {parent for name in holding for parent in _parents(name)}
    problems += [f"folder {name} holds no file" for name in sorted(set(folders) - holding)]
    return problems[0] if problems else None


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:depth]) for depth in range(1, len(parts))]


def _readable(info: os.stat_result) -> bool:
    if stat.S_ISDIR(info.st_mode):
        return info.st_mode & 0o005 == 0o005
    return bool(info.st_mode & 0o004)


def _mounted_below(root: Path) -> Path | None:
    """A mount point strictly inside ``root`` (this mount namespace's table), if any."""
    for record in read_mounts():
        if root in record.mountpoint.parents:
            return record.mountpoint
    return None


@dataclass(frozen=True)
class _View:
    name: str  # the channel's
    directory: Path | None  # None: not shown directly (``reason``)
    reason: str
    tree: Tree


class LocalViews:
    """The bind-mountable local directories of one job's FastFile channels, each checked once
    (``directory``), and checked again for changes at the end (``check_unchanged``)."""

    def __init__(self, notice: Callable[[str], None]) -> None:
        self.notice = notice
        self._views: dict[str, _View] = {}

    def directory(
        self,
        channel: ChannelSpec,
        source: Source | None,
        host_entries: Sequence[Entry],
        all_entries: Sequence[Entry],
    ) -> Path | None:
        """The directory to bind-mount read-only for one host's view of ``channel``, or None
        when that host needs the FUSE view (module docstring)."""
        if len(host_entries) != len(all_entries):  # a shard
            return None
        view = self._views.get(channel.name)
        if view is None:
            view = self._views[channel.name] = _check(channel, source, all_entries)
            if view.directory is None:
                log.info("FastFile channel %s served through FUSE: %s", channel.name, view.reason)
        return view.directory

    def reason(self, channel: str) -> str | None:
        """Why the channel's directory is not bind-mounted (None: it is, or not checked)."""
        view = self._views.get(channel)
        return None if view is None or view.directory is not None else view.reason

    def check_unchanged(self) -> None:
        """Say in a notice which bind-mounted directories changed since they were checked."""
        for view in self._views.values():
            if view.directory is None:
                continue
            change = _describe_change(view.tree, walk_tree(view.directory))
            if change:
                self.notice(
                    f"Channel {view.name}: {view.directory} changed while the job ran ({change});"
                    " a FastFile channel on a local directory is a read-only bind mount of it, "
                    "so the container may have seen the changes, where SageMaker's view is the "
                    "prefix as it was when the job started"
                )


def _check(channel: ChannelSpec, source: Source | None, entries: Sequence[Entry]) -> _View:
    def fuse(reason: str, tree: Tree = Tree({})) -> _View:
        return _View(channel.name, None, reason, tree)

    if os.environ.get(ENV_LOCAL_VIEW, "").lower() == "fuse":
        return fuse(f"{ENV_LOCAL_VIEW}=fuse")
    if channel.source.data_type != "S3Prefix" or not isinstance(source, LocalSource):
        return fuse("not a local S3Prefix channel")
    if not source.path.is_dir():
        return fuse("the URI is a file or a prefix of names, not a directory")
    root = Path(os.path.realpath(source.path))
    below = _mounted_below(root)
    if below is not None:
        return fuse(f"{below} is mounted inside it")
    tree = walk_tree(root)
    if tree.problem is not None:
        return fuse(tree.problem, tree)
    listed = {entry.relative_path: entry.size for entry in entries}
    if listed != {name: state[0] for name, state in tree.files.items()}:
        return fuse("its files are not exactly the listed objects", tree)
    return _View(channel.name, root, "", tree)


def _describe_change(before: Tree, after: Tree) -> str:
    """'2 added, 1 removed, 3 modified' (the parts that apply, and what now keeps the tree
    from being shown as it is), or '' when unchanged."""
    added = after.files.keys() - before.files.keys()
    removed = before.files.keys() - after.files.keys()
    modified = [
        n for n in before.files.keys() & after.files.keys() if before.files[n] != after.files[n]
    ]
    parts = [
        f"{len(names)} {what}"
        for names, what in ((added, "added"), (removed, "removed"), (modified, "modified"))
        if names
    ]
    if after.problem is not None and after.problem != before.problem:
        parts.append(after.problem)
    return ", ".join(parts)
