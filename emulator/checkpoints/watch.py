"""The threads of the sync engine: ONE watchdog observer for every host dir of every synced
folder of a job (checkpoints, TensorBoard, debugger output) and ONE worker thread that syncs
each (folder, host) DEBOUNCE_SECONDS after its last change, at most MAX_DELAY_SECONDS after the
first change of a burst, and RETRY_SECONDS after a failed sync. What a sync does is the
folder's (``FolderSync.sync_host``); a folder's syncs never overlap (its own lock)."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

DEBOUNCE_SECONDS = 0.5
MAX_DELAY_SECONDS = 2.0
RETRY_SECONDS = 5.0
JOIN_SECONDS = 30.0
# The worker's name, whatever folders it syncs (tests find leaked threads by it).
WORKER_NAME = "checkpoint-sync"
# watchdog event types that are not changes: reads (ours included) must not trigger syncs.
_NOT_CHANGES = frozenset({"opened", "closed_no_write"})
# What watchdog's inotify thread warns when it adds a watch it already holds (a folder made
# with its subfolders, or moved within the watched tree): see ``_quiet_watchdog``.
WATCHDOG_DOUBLE_WATCH = r"Callback with id .* already exists for watch"

# One folder of one host: (index of the folder in the watched list, host name).
_Key = tuple[int, str]


class Watched(Protocol):
    """A synced folder as the threads see it."""

    label: str

    def host_roots(self) -> Mapping[str, Path]: ...

    def sync_host(self, host: str) -> list[str]: ...

    def where(self) -> str: ...


class SyncThreads:
    """The observer and the worker of several folders; ``start`` then ``stop`` (once)."""

    def __init__(self, folders: Sequence[Watched], notice: Callable[[str], None]) -> None:
        self.folders = list(folders)
        self.notice = notice
        self._observer: BaseObserver | None = None
        self._worker: threading.Thread | None = None
        self._wake = threading.Condition()
        self._dirty: dict[_Key, tuple[float, float]] = {}  # key: (first, last) change
        self._retry_at: dict[_Key, float] = {}
        self._stopping = False

    def start(self) -> None:
        self._worker = threading.Thread(target=self._run, name=WORKER_NAME, daemon=True)
        self._worker.start()
        _quiet_watchdog()
        try:
            self._observer = self._watch(Observer())
        except OSError as exc:  # e.g. out of inotify watches or instances
            self.notice(f"sync: inotify unavailable ({exc}); polling every second")
            self._observer = self._watch(PollingObserver(timeout=1))

    def _watch(self, observer: BaseObserver) -> BaseObserver:
        try:
            for index, folder in enumerate(self.folders):
                for name, root in folder.host_roots().items():
                    handler = _EventHandler(self, (index, name))
                    observer.schedule(handler, str(root), recursive=True)
            observer.start()
        except BaseException:
            _stop_observer(observer)
            raise
        return observer

    def changed(self, key: _Key) -> None:
        now = time.monotonic()
        with self._wake:
            first, _ = self._dirty.get(key, (now, now))
            self._dirty[key] = (first, now)
            self._wake.notify()

    def _due(self) -> tuple[list[_Key], float | None]:
        """The keys due for a sync now, and seconds until the next one is (None: no other)."""
        now = time.monotonic()
        due: list[_Key] = []
        wait: float | None = None
        for key, (first, last) in self._dirty.items():
            settled = min(last + DEBOUNCE_SECONDS, first + MAX_DELAY_SECONDS)
            left = max(settled, self._retry_at.get(key, 0.0)) - now
            if left <= 0:
                due.append(key)
            elif wait is None or left < wait:
                wait = left
        return sorted(due), wait

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping:
                    due, wait = self._due()
                    if due:
                        break
                    self._wake.wait(wait)
                if self._stopping:
                    return
                for key in due:
                    del self._dirty[key]
            for key in due:
                self._sync(key)

    def _sync(self, key: _Key) -> None:
        index, host = key
        folder = self.folders[index]
        try:
            problems = folder.sync_host(host)
        except Exception as exc:  # e.g. no client: this thread must go on regardless
            problems = [str(exc) or type(exc).__name__]
        if not problems:
            return
        with self._wake:
            self._retry_at[key] = time.monotonic() + RETRY_SECONDS
        self.changed(key)  # again, after RETRY_SECONDS
        self.notice(
            f"{folder.label} sync to {folder.where()}: {summary(problems)}; retrying in "
            f"{RETRY_SECONDS:g} s"
        )

    def stop(self) -> None:
        """Stop watching; an upload in flight finishes first."""
        if self._observer is not None:
            _stop_observer(self._observer)
            self._observer = None
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._worker is not None:
            self._worker.join()
            self._worker = None


class _EventHandler(FileSystemEventHandler):
    """watchdog handler: any change below a host dir marks that folder of that host."""

    def __init__(self, threads: SyncThreads, key: _Key) -> None:
        super().__init__()
        self._threads = threads
        self._key = key

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.event_type not in _NOT_CHANGES:
            self._threads.changed(self._key)


def _quiet_watchdog() -> None:
    """Ignore watchdog's double-watch warning (harmless: the callback is replaced by itself).

    It is raised on watchdog's own inotify thread, which no ``catch_warnings`` reaches; left
    alone it reaches the user's terminal, and under an "error" warnings filter it stops the
    thread that reports every inotify event of the process. So the filter is installed when
    a watch starts (idempotent: an equal filter is replaced) and names only that message from
    watchdog's modules."""
    warnings.filterwarnings(
        "ignore", message=WATCHDOG_DOUBLE_WATCH, category=RuntimeWarning, module=r"watchdog\."
    )


def _stop_observer(observer: BaseObserver) -> None:
    observer.stop()
    if observer.is_alive():
        observer.join(JOIN_SECONDS)


def summary(problems: list[str]) -> str:
    shown = "; ".join(problems[:3])
    return shown + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
