"""The folders of one job synced together: its checkpoints and the output folders SageMaker
uploads while it runs (TensorBoard, debugger), each a ``FolderSync``, restored, started and
finished as one, watched by one observer and synced by one worker thread (``SyncThreads``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from emulator.checkpoints.sync import FinishesOnExit, FolderSync
from emulator.checkpoints.watch import SyncThreads
from emulator.errors import SourceError


class SyncGroup(FinishesOnExit):
    """Several FolderSyncs behind the interface of one (``restore``, ``start``, ``finish``,
    and a context manager that syncs a last time however the block ends)."""

    def __init__(self, syncs: Sequence[FolderSync], notice: Callable[[str], None]) -> None:
        self.syncs = list(syncs)
        self.notice = notice
        self._threads: SyncThreads | None = None

    def restore(self) -> None:
        for sync in self.syncs:
            sync.restore()

    def start(self) -> None:
        """Watch every folder with a location, all with the same two threads."""
        if self._threads is not None:
            return
        watched = [sync for sync in self.syncs if sync.claim()]
        if watched:
            self._threads = SyncThreads(watched, self.notice)
            self._threads.start()

    def finish(self) -> None:
        """Every folder reconciled (each one, whatever the others do); SourceError naming
        every folder that could not be synced."""
        if self._threads is not None:
            self._threads.stop()  # an upload in flight finishes first
            self._threads = None
        problems = []
        for sync in self.syncs:
            try:
                sync.finish()
            except SourceError as exc:
                problems.append(str(exc))
        if problems:
            raise SourceError("; ".join(problems))
