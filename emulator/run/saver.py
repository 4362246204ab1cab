"""The job's record written to the store off the job's path.

Each status transition updates the record in the store, where ``emulator describe``, ``list``
and ``stop`` of other processes read it. A write is a SQLite commit, and a commit waits for
the disk: a millisecond on an idle machine, 10-20 ms while the engine writes too (it does, as
it creates and starts containers), and a trivial job has five transitions. So transitions are
handed to a thread of their own (``save``): the job goes on at once, and the thread writes the
latest record it was given (a burst of transitions is one write). The final record is written
by the job's own thread (``save_now``), after every pending write, so that nothing older can
overwrite it, and before the run returns.

A write that failed in the thread is raised by the next ``save``, as it would have been had
the job written it itself; the final record supersedes it.
"""

from __future__ import annotations

import threading
from typing import Any

from emulator.state.store import JobStore


class RecordSaver:
    """Writes a job's record to ``store``: transitions in the background, the last in front."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self._changed = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    def save(self, record: dict[str, Any]) -> None:
        """Have ``record`` written soon (it replaces one given before and not written yet)."""
        with self._changed:
            self._raise_error()
            self._pending = record
            if self._thread is None or self._closing:
                self._closing = False
                self._thread = threading.Thread(target=self._write, name="record", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def save_now(self, record: dict[str, Any]) -> None:
        """Write ``record`` before returning, after what is pending: the final record, which
        supersedes a transition whose write failed (its own failure is raised)."""
        self.close()
        self._store.update(record)

    def close(self) -> None:
        """Write what is pending and end the thread. A failure not raised yet is dropped:
        the final record supersedes it, or an error already ends the run."""
        with self._changed:
            self._closing = True
            thread = self._thread
            self._changed.notify_all()
        if thread is not None:
            thread.join()
        self._thread = None
        self._error = None

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _write(self) -> None:
        while True:
            with self._changed:
                while self._pending is None and not self._closing:
                    self._changed.wait()
                record, self._pending = self._pending, None
                if record is None:
                    return  # closing, and nothing left to write
            try:
                self._store.update(record)
            except Exception as exc:  # raised in the job's thread by its next save
                with self._changed:
                    self._error = self._error or exc
