"""Folders synced with a location while the job runs: CheckpointConfig (restored before the
job starts, synced back while it runs and at its end), and the folders SageMaker only uploads,
TensorBoardOutputConfig and DebugHookConfig (``FolderSync(..., restore=False)``: nothing is
restored and a file the container deletes stays in the location). One engine for all of them:
what follows says "checkpoints", and holds for every folder.

    check_checkpoint_location(spec)   preflight: the location can be used (nothing exists yet)
    sync = CheckpointSync(spec.checkpoint, {"algo-1": host_dir, ...}, notice)
    with sync:
        sync.restore()   before the containers start: every object under S3Uri is copied into
                         each host's checkpoint dir (bind-mounted at CheckpointConfig.LocalPath);
                         an empty or missing prefix restores nothing (a missing bucket is an
                         error, raised by the preflight check)
        sync.start()     a watchdog observer watches the hosts' dirs: new, changed and deleted
                         files are synced DEBOUNCE_SECONDS after the last change (at most
                         MAX_DELAY_SECONDS after the first one of a burst of writes). The
                         threads are ``checkpoints.watch.SyncThreads``: one observer and one
                         worker, shared by all the folders of a job (``group.SyncGroup``)
        ...              the job runs
        sync.finish()    (or leaving the block) the observer and the sync thread stop; then one
                         full reconciliation per host: new and changed files are sent, removed
                         ones deleted; SourceError if something could not be synced

Locations (``emulator.storage.location``): ``s3://bucket/prefix`` (or an AWS https URL) names
a folder: ``s3://b/ckpt`` and ``s3://b/ckpt/`` both mean the keys ``ckpt/<relative path>``
(unlike a channel's string prefix, ``ckpt-old/...`` is not restored). A local path or file://
URI is a directory, created when first written.

What is synced: regular files only. Symlinks, FIFOs, sockets and devices are skipped with a
notice: S3 has no such objects, and a symlink the container made names a path in the
container, which on the host would be the host's own file. Files are opened below the host dir
one path component at a time with O_NOFOLLOW, so a link swapped in meanwhile is refused too.
File names that are not UTF-8 cannot be S3 keys: skipped with a notice. (How the dirs are read:
``emulator.checkpoints.files``.)

Change detection: a file is sent when its (inode, size, mtime, ctime) differs from what was
last sent or restored. File times have a granularity (the kernel's clock tick): a file whose
times were within RACY_SECONDS of the moment it was read may have been written again with the
same times, so it is sent once more at the next sync (git's "racy clean" rule). A file read
while it is being written is sent torn (exactly the size seen when it was opened; see
``FixedSizeReader``); the writes that follow produce events and it is sent again. So the final
reconciliation leaves the location exactly as the hosts' dirs are.

Multi-host jobs: every host syncs into the same prefix, as SageMaker does (each instance's
LocalPath is synced to S3Uri; restore gives every host the whole prefix). A name written by
several hosts holds whichever copy was sent last. A host deletes only the objects it restored
or sent itself and no longer has: it never deletes what other hosts wrote, and a restored file
one host deletes is not brought back by hosts that still hold it unchanged.

Loss bound: the final reconciliation runs however the job ends (completed, failed, stopped,
MaxRuntimeExceeded, interrupted), after the containers have exited. Only when the emulator
itself is killed are the writes of the last ~MAX_DELAY_SECONDS (plus the upload time) lost.
During the job a failed sync is reported and retried RETRY_SECONDS later, and at the end.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from emulator.checkpoints.files import (
    Signature,
    Snapshot,
    fixed_size_file,
    open_below,
    scan,
    signature,
)
from emulator.checkpoints.watch import DEBOUNCE_SECONDS, SyncThreads, summary
from emulator.config import S3Settings
from emulator.errors import SourceError
from emulator.plan.layout import make_writable
from emulator.progress import NO_PROGRESS, Progress
from emulator.request.spec import CheckpointSpec, JobSpec
from emulator.storage import Location, Upload, location

__all__ = ["DEBOUNCE_SECONDS", "CheckpointSync", "FolderSync", "check_checkpoint_location"]

Notice = Callable[[str], None]


def _no_notice(message: str) -> None:
    pass


def check_checkpoint_location(spec: JobSpec, settings: S3Settings | None = None) -> None:
    """Preflight: refuse a CheckpointConfig.S3Uri (or the S3OutputPath of an output folder)
    that cannot be used (missing bucket, denied,
    unreachable endpoint, a local path that is not a writable directory). ``settings`` reach
    S3 (None: from the environment)."""
    if spec.checkpoint is not None:
        location(spec.checkpoint.uri, settings).check_writable("CheckpointConfig.S3Uri")
    for folder in spec.output_folders:  # TensorBoardOutputConfig, DebugHookConfig
        location(folder.uri, settings).check_writable(f"{folder.member}.S3OutputPath")


@dataclass(frozen=True)
class _Sent:
    """What the location holds of one file of a host dir, as far as this host knows."""

    signature: Signature
    racy: bool = False

    def differs(self, info: os.stat_result) -> bool:
        return self.racy or self.signature != signature(info)


@dataclass
class _Host:
    name: str
    root: Path
    sent: dict[str, _Sent] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)  # skipped names already reported


class FinishesOnExit:
    """A context manager that syncs a last time however its block ends (``finish``); when
    the block raised, a sync that fails too is only a notice: the block's error is the one
    that propagates."""

    notice: Notice

    def finish(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if error is None:
            self.finish()
            return
        try:  # the job broke off: still keep what the hosts wrote, without hiding why
            self.finish()
        except SourceError as exc:
            self.notice(str(exc))


class FolderSync(FinishesOnExit):
    """Restore, continuous sync and final reconciliation of one folder of every host with a
    location (see the module doc). ``uri=None`` makes every method a no-op. ``label`` names
    the folder in notices and errors ("checkpoint", "TensorBoard output"). Upload-only
    (``restore=False``): nothing is fetched at the start and deletions are not mirrored."""

    def __init__(
        self,
        uri: str | None,
        host_dirs: Mapping[str, Path] | Path,
        notice: Notice = _no_notice,
        progress: Progress = NO_PROGRESS,
        settings: S3Settings | None = None,
        *,
        label: str = "checkpoint",
        restore: bool = True,
    ) -> None:
        dirs = {"algo-1": host_dirs} if isinstance(host_dirs, Path) else dict(host_dirs)
        self.label = label
        self.restores = restore
        self.store: Location | None = location(uri, settings) if uri is not None else None
        self.notice = notice
        self.progress = progress
        self._hosts = {name: _Host(name, Path(root)) for name, root in dirs.items()}
        self._restored = False
        self._started = False
        self._finished = False
        self._threads: SyncThreads | None = None  # its own, when started alone
        self._lock = threading.Lock()  # one sync at a time

    # -- restore -------------------------------------------------------------------------

    def restore(self) -> None:
        """Copy everything under the location into every host's dir (before the start)."""
        if self.store is None:
            return
        entries = self.store.listing() if self.restores else []
        hosts = list(self._hosts.values())
        if entries and hosts:
            first = hosts[0].root
            total = sum(entry.size for entry in entries)
            self.progress.start(f"{self.label}s", total_bytes=total, total_objects=len(entries))
            try:
                self.store.download(entries, first, self.progress)
            finally:
                self.progress.finish()
            make_writable(first)
            for host in hosts[1:]:
                shutil.copytree(first, host.root, symlinks=True, dirs_exist_ok=True)
                make_writable(host.root)
            self.notice(
                f"Restored {len(entries)} {self.label} file(s) ({total} bytes) from "
                f"{self.store.uri}"
            )
        # Nothing writes the dirs until the containers start: what is there is what was fetched.
        for host in hosts:
            files, _ = scan(host.root)
            host.sent = {relative: _Sent(signature(info)) for relative, info in files.items()}
        self._restored = True

    # -- continuous sync -----------------------------------------------------------------

    def start(self) -> None:
        """Watch the hosts' dirs and sync changes in the background until ``finish`` (threads
        of its own; ``SyncGroup`` watches several folders with one observer and one worker)."""
        if self.claim():
            self._threads = SyncThreads([self], self.notice)
            self._threads.start()

    def claim(self) -> bool:
        """Hand the dirs to the job: True when they are to be watched from now on (once, and
        only with a location, before ``finish``)."""
        if self.store is None or self._started or self._finished:
            return False
        self._started = True
        self._restored = True  # from here on the dirs are the job's, restored or not
        return True

    def host_roots(self) -> dict[str, Path]:
        return {name: host.root for name, host in self._hosts.items()}

    def sync_host(self, host: str) -> list[str]:
        """Sync one host's dir now; the problems met (empty: in sync)."""
        return self._sync_host(self._hosts[host])

    def where(self) -> str:
        return self._uri()

    # -- the end -------------------------------------------------------------------------

    def finish(self) -> None:
        """Stop watching, then reconcile every host's dir with the location once more.

        Raises SourceError naming what could not be synced. The threads are stopped however
        it ends; calling it again does nothing."""
        if self._finished or self.store is None:
            return
        self._finished = True
        self._stop_threads()
        if not self._restored:
            return  # the dirs were never handed to a job
        errors: list[str] = []
        for host in self._hosts.values():
            errors += self._sync_host(host)
        if errors:
            raise SourceError(f"{self.label} sync to {self._uri()} failed: {summary(errors)}")

    def _stop_threads(self) -> None:
        if self._threads is not None:
            self._threads.stop()  # an upload in flight finishes first
            self._threads = None

    # -- one host ------------------------------------------------------------------------

    def _sync_host(self, host: _Host) -> list[str]:
        """Send new and changed files of one host, delete what it removed; return problems."""
        assert self.store is not None
        with self._lock:
            files, skipped = scan(host.root)
            self._report_skipped(host, skipped)
            problems: list[str] = []
            removed = sorted(relative for relative in host.sent if relative not in files)
            if removed and not self.restores:  # upload-only: what was sent stays there
                for relative in removed:
                    del host.sent[relative]
                removed = []
            if removed:
                failures = self.store.delete(removed)
                problems += map(str, failures.values())
                for relative in removed:
                    if relative not in failures:
                        del host.sent[relative]
            changed = [
                relative
                for relative, info in sorted(files.items())
                if relative not in host.sent or host.sent[relative].differs(info)
            ]
            snapshots: list[Snapshot] = []
            try:
                for relative in changed:
                    try:
                        snapshot = open_below(host.root, relative)
                    except OSError as exc:
                        problems.append(f"{host.root / relative}: cannot read it ({exc})")
                        continue
                    if snapshot is not None:  # gone meanwhile: a deletion for the next sync
                        snapshots.append(snapshot)
                failures = self._send(snapshots)
            finally:
                for snapshot in snapshots:
                    os.close(snapshot.fd)
            problems += map(str, failures.values())
            for snapshot in snapshots:
                if snapshot.relative not in failures:
                    host.sent[snapshot.relative] = _Sent(snapshot.signature, snapshot.racy)
            return problems

    def _send(self, snapshots: list[Snapshot]) -> dict[str, SourceError]:
        """Write the files as they were when opened; return what failed by relative path."""
        if not snapshots:
            return {}
        assert self.store is not None
        readers = [fixed_size_file(os.dup(s.fd), s.size) for s in snapshots]
        try:
            uploads = [
                Upload(s.relative, r, s.size) for s, r in zip(snapshots, readers, strict=True)
            ]
            return self.store.upload(uploads)
        finally:
            for reader in readers:
                reader.close()

    def _report_skipped(self, host: _Host, skipped: list[str]) -> None:
        new = [name for name in skipped if name not in host.reported]
        if not new:
            return
        host.reported.update(new)
        names = ", ".join(new[:5]) + (" ..." if len(new) > 5 else "")
        self.notice(
            f"{host.name} {self.label}s: {len(new)} symlink(s), special file(s) or non-UTF-8 "
            f"name(s) not synced (only regular files are): {names}"
        )

    def _uri(self) -> str:
        return self.store.uri if self.store is not None else ""


class CheckpointSync(FolderSync):
    """The hosts' checkpoint dirs and CheckpointConfig (``None``: every method a no-op)."""

    def __init__(
        self,
        checkpoint: CheckpointSpec | None,
        host_dirs: Mapping[str, Path] | Path,
        notice: Notice = _no_notice,
        progress: Progress = NO_PROGRESS,
        settings: S3Settings | None = None,
    ) -> None:
        uri = checkpoint.uri if checkpoint is not None else None
        super().__init__(uri, host_dirs, notice, progress, settings)
        self.checkpoint = checkpoint
