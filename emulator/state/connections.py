"""SQLite connections to the state database, one per thread and file, kept open for reuse.

Opening a connection and closing it again costs about a millisecond in WAL mode (the last
close of a process checkpoints the log, deletes it and syncs the directory), and a job makes
a dozen small transactions, most of them on its critical path. So each thread keeps its
connection to a database file and reuses it; it closes when the thread ends (the
thread-local goes), at exit for the main thread, or when the thread has used KEPT_PER_THREAD
other files since (a process that opens many state dirs, a test suite say, keeps few files open).

Commits use ``synchronous=NORMAL``: in WAL mode a commit then does not wait for the disk. A
power cut may lose the last transactions, never corrupt the database.

A connection is never used for two transactions at once: a transaction opened inside another
in the same thread gets a connection of its own (closed after it). A connection is never used
by a process it was not made in (a fork's child opens its own), nor for a file that was
replaced (deleted and made again at the same path: the cached one would write into the
deleted file).
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_SECONDS = 30.0
KEPT_PER_THREAD = 4  # files a thread keeps a connection to, the most recently used


class _Kept:
    """One thread's connection to one file, and what it was opened on."""

    def __init__(self, connection: sqlite3.Connection, identity: tuple[int, int, int]) -> None:
        self.connection = connection
        self.identity = identity  # (pid, st_dev, st_ino): the process and the file
        self.busy = False

    def __del__(self) -> None:  # the thread ended, or the connection was dropped
        if self.identity[0] == os.getpid():
            self.connection.close()
        else:  # a fork's child: closing could disturb the parent's locks, so never free it
            _inherited.append(self)


class _PerThread(threading.local):
    def __init__(self) -> None:
        self.kept: dict[str, _Kept] = {}


_threads = _PerThread()
_inherited: list[_Kept] = []  # a fork's child never uses nor closes its parent's connections


def open_connection(path: Path) -> sqlite3.Connection:
    """A new connection to ``path`` (the caller closes it)."""
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


@contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to the database at ``path`` in a transaction: committed when the block
    ends, rolled back when it raises."""
    kept = _kept_for(path)
    if kept is None:  # nested in a transaction of this thread's: a connection of its own
        connection = open_connection(path)
        try:
            with connection:
                yield connection
        finally:
            connection.close()
        return
    kept.busy = True
    try:
        with kept.connection:
            yield kept.connection
    finally:
        kept.busy = False


def _kept_for(path: Path) -> _Kept | None:
    """This thread's connection to ``path``, made if needed; None while it is in use."""
    key = str(path)
    kept = _threads.kept.get(key)
    if kept is not None:
        if kept.busy:
            return None
        del _threads.kept[key]  # put back last (most recently used) below, if still good
        if kept.identity == file_identity(path):
            _threads.kept[key] = kept
            return kept
        # made in the parent process, or for a replaced file: dropped (_Kept.__del__)
    connection = open_connection(path)
    kept = _threads.kept[key] = _Kept(connection, file_identity(path))
    surplus = len(_threads.kept) - KEPT_PER_THREAD
    if surplus > 0:
        idle = [name for name, other in _threads.kept.items() if not (other.busy or other is kept)]
        for name in idle[:surplus]:  # the least recently used first
            del _threads.kept[name]
    return kept


def file_identity(path: Path) -> tuple[int, int, int]:
    """(this process, the file's device and inode): (pid, 0, 0) while there is no file."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return (os.getpid(), 0, 0)
    return (os.getpid(), stat.st_dev, stat.st_ino)


def close_this_threads() -> None:
    """Close the connections the calling thread keeps (the main thread's, at exit)."""
    _threads.kept.clear()


atexit.register(close_this_threads)
