"""Changes under a code directory (``emulator run --code DIR --watch``), debounced, and the names
of the jobs that rerun it.

An editor's save is a burst of events (a temporary file written, renamed, a backup removed):
``CodeWatcher.next_change`` returns once DIR has been quiet for ``DEBOUNCE_SECONDS``, with the
files that changed. Reads are not changes (the running job reads its code through the bind
mount: inotify sees those opens too), and neither are editors' temporary and backup files,
__pycache__, .git and the caches of the usual tools.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath
from types import TracebackType

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

DEBOUNCE_SECONDS = 0.5
# Event types that change something: opens, closes and reads do not.
CHANGES = frozenset({"created", "modified", "moved", "deleted"})
IGNORED_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache",
     ".ipynb_checkpoints", ".idea", ".vscode"}
)  # fmt: skip
# Editors' swap, backup, lock and save-through files; compiled Python.
IGNORED_NAMES = (
    "*~", ".#*", "#*#", "*.swp", "*.swo", "*.swx", "4913", ".*.kate-swp", ".goutputstream-*",
    "*.tmp", "*.pyc", "*.pyo", ".DS_Store",
)  # fmt: skip
MAX_NAME_LENGTH = 63  # TrainingJobName


def ignored(relative: PurePath) -> bool:
    """Whether a change to ``relative`` (a path under the watched dir) is not worth a rerun."""
    if any(part in IGNORED_DIRS for part in relative.parts[:-1]):
        return True
    name = relative.name
    return name in IGNORED_DIRS or any(fnmatch.fnmatch(name, p) for p in IGNORED_NAMES)


class CodeWatcher:
    """Watch ``root`` recursively from ``start`` (or ``with``) until ``close``."""

    def __init__(self, root: Path, debounce_seconds: float = DEBOUNCE_SECONDS) -> None:
        self.root = root
        self.debounce_seconds = debounce_seconds
        self._changed: set[str] = set()
        self._new: set[str] = set()  # created during the current burst
        self._last = 0.0
        self._wake = threading.Condition()
        self._observer: BaseObserver | None = None

    def start(self, notice: Callable[[str], None] = lambda message: None) -> CodeWatcher:
        try:
            self._observer = self._watch(Observer())
        except OSError as exc:  # out of inotify watches or instances
            notice(f"--watch: inotify unavailable ({exc}); polling every second")
            self._observer = self._watch(PollingObserver(timeout=1))
        return self

    def _watch(self, observer: BaseObserver) -> BaseObserver:
        try:
            observer.schedule(_Handler(self), str(self.root), recursive=True)
            observer.start()
        except BaseException:
            _stop(observer)
            raise
        return observer

    def close(self) -> None:
        if self._observer is not None:
            _stop(self._observer)
            self._observer = None

    def __enter__(self) -> CodeWatcher:
        return self if self._observer is not None else self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def record(self, path: str, *, created: bool = False, gone: bool = False) -> None:
        """A change to ``path`` (absolute, under the root), unless it is ignored. A file
        created and gone again within one burst (an editor's or sed's temporary, renamed
        over the real file) is no change of its own."""
        try:
            relative = Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return
        if relative == "." or ignored(PurePath(relative)):
            return
        with self._wake:
            if gone and relative in self._new:
                self._new.discard(relative)
                self._changed.discard(relative)
            else:
                self._changed.add(relative)
                if created:
                    self._new.add(relative)
            self._last = time.monotonic()
            self._wake.notify_all()

    def next_change(self, timeout: float | None = None) -> list[str]:
        """The files changed (relative paths, sorted) once the root has been quiet for the
        debounce time; [] when nothing changed within ``timeout`` seconds (None: no limit).
        The changes returned are forgotten: the next call waits for new ones."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._wake:
            while True:
                now = time.monotonic()
                if self._changed and now >= self._last + self.debounce_seconds:
                    changed, self._changed, self._new = sorted(self._changed), set(), set()
                    return changed
                if deadline is not None and now >= deadline:
                    return []
                waits = [deadline - now] if deadline is not None else []
                if self._changed:  # until the quiet time is over (a new event wakes us)
                    waits.append(self._last + self.debounce_seconds - now)
                self._wake.wait(min(waits) if waits else None)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: CodeWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in CHANGES:
            return
        if event.is_directory and event.event_type == "modified":
            return  # a file inside changed: that file's own event counts
        kind = event.event_type
        source = _text(event.src_path)
        if kind == "moved":
            self._watcher.record(source, gone=True)
            self._watcher.record(_text(event.dest_path))
        else:
            self._watcher.record(source, created=kind == "created", gone=kind == "deleted")


def _text(path: str | bytes) -> str:
    return path if isinstance(path, str) else path.decode()


def _stop(observer: BaseObserver) -> None:
    observer.stop()
    if observer.is_alive():
        observer.join()


def rerun_names(base: str, taken: Callable[[str], bool]) -> Iterator[str]:
    """``base-1``, ``base-2``, ... skipping names ``taken`` says exist; each a valid
    TrainingJobName (``base`` cut, never ending in a hyphen, to leave room for the suffix)."""
    counter = 0
    while True:
        counter += 1
        suffix = f"-{counter}"
        name = base[: MAX_NAME_LENGTH - len(suffix)].rstrip("-") + suffix
        if not taken(name):
            yield name
