"""``emulator logs --follow``: a job's log files read as the job writes them, from any process.

The files are polled (a read at their end costs a system call when nothing came), each host's
new lines given as they arrive, interleaved between hosts poll by poll. The job's record says
when to stop: once it is no longer InProgress/Stopping (or the emulator running it is gone),
what is left in the files is read and the lines end. The record is final only once every line
has reached the files (run/job.py waits for the log readers first), so nothing is missed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import BinaryIO

from emulator.observe.resources import job_hosts
from emulator.state.store import JobStore, process_alive

RUNNING_STATUSES = ("InProgress", "Stopping")
POLL_SECONDS = 0.1  # between two reads of the files
STATUS_SECONDS = 0.5  # between two looks at the job's record


def job_running(store: JobStore, name: str) -> bool:
    """Whether the job runs: InProgress or Stopping, and its emulator process alive."""
    status = store.get(name).get("TrainingJobStatus")
    return status in RUNNING_STATUSES and process_alive(store.owner_pid(name))


def record_hosts(store: JobStore, name: str) -> list[str]:
    """The job's hosts from its record, algo-1 first."""
    return [host for host, _ in job_hosts(store.get(name))]


def follow_logs(
    store: JobStore,
    name: str,
    hosts: Sequence[str],
    *,
    prefix: bool,
    running: Callable[[], bool] | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> Iterator[str]:
    """``hosts``' lines (``[algo-N] ``-prefixed when ``prefix``) as they are written, until
    ``running`` (default: ``job_running``) says the job has ended and the rest is read."""
    is_running = running or (lambda: job_running(store, name))
    readers = {host: _HostLog(store, name, host, prefix) for host in hosts}
    with ExitStack() as files:
        for reader in readers.values():
            files.callback(reader.close)
        last_look = -STATUS_SECONDS
        alive = True
        while True:
            now = time.monotonic()
            if now - last_look >= STATUS_SECONDS:  # before the reads: an end seen here
                alive = is_running()  # means the reads below get every last line
                last_look = now
            for reader in readers.values():
                yield from reader.new_lines()
            if not alive:
                for reader in readers.values():
                    yield from reader.rest()
                return
            time.sleep(poll_seconds)


class _HostLog:
    """One host's log file, read from where the last read stopped."""

    def __init__(self, store: JobStore, name: str, host: str, prefix: bool) -> None:
        self._path = store.log_path(name, host)
        self._prefix = f"[{host}] " if prefix else ""
        self._file: BinaryIO | None = None
        self._partial = b""  # a line not ended yet

    def new_lines(self) -> Iterator[str]:
        if self._file is None:
            try:
                self._file = open(self._path, "rb")  # noqa: SIM115 - kept open between reads
            except FileNotFoundError:
                return  # the host has not started yet
        data = self._file.read()
        if not data:
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            yield self._prefix + line.decode("utf-8", errors="replace")

    def rest(self) -> Iterator[str]:
        """The last line when the file does not end with a newline."""
        if self._partial:
            yield self._prefix + self._partial.decode("utf-8", errors="replace")
            self._partial = b""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
