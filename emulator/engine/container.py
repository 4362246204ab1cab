"""One host's container (output, start, wait, signals, removal) and the data that plans it.

A job container removed from outside the emulator (``docker rm -f``) while the job runs counts
as a host that exited with code 137 (what the engine reports for a SIGKILL, which is how
``docker rm -f`` ends it), with ``Exit.removed`` set (or, when its kill was seen before the
removal, ``removed_from_outside`` says so): the job then fails with the reason "the container
of algo-N was removed from outside the emulator" (see ``run/supervisor.py``).

A container whose process cannot start (bad entrypoint, ...) raises ``StartFailed`` with the
engine's reason and the exit code ``docker run`` would report: the job fails, as SageMaker's
would. What the user must fix (an engine without the GPU driver asked for, an engine that stops
answering) is an ``EnvironmentProblem``.
"""

from __future__ import annotations

import contextlib
import math
import re
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from emulator.engine.client import EngineClient
from emulator.engine.errors import ANSWERED, GONE, Failure, Kind, engine_call, no_gpu_driver
from emulator.errors import EnvironmentProblem

EXIT_NOT_FOUND = 127  # what `docker run` reports when the command cannot be found
EXIT_NOT_EXECUTABLE = 126
EXIT_REMOVED = 137  # a container removed from outside (docker rm -f kills it: 128 + SIGKILL)
REMOVAL_SECONDS = 1.0  # how long a host killed from outside is watched for its removal
KEEP_EXIT_SECONDS = 30  # a kept container's SIGKILL takes effect well within this

_PORT_TAKEN = re.compile(r"port is already allocated|address already in use", re.IGNORECASE)
_EXEC_ERROR = re.compile(r'(exec: "[^"]*": [^:]+?)(?:: unknown)?$')


class StartFailed(Exception):
    """The container exists but its process could not start (bad entrypoint, ...)."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


@dataclass(frozen=True)
class Mount:
    target: str  # path inside the container
    source: Path  # path on the host
    read_only: bool = False


@dataclass(frozen=True)
class ContainerPlan:
    """What one host's container is: the job's image, command and mounts for that host."""

    job: str
    host: str
    image: str
    network: str
    entrypoint: list[str] | None
    command: list[str] | None
    environment: dict[str, str]
    mounts: list[Mount]
    gpus: int = 0  # -1 for all
    labels: dict[str, str] = field(default_factory=dict)
    address: str | None = None  # fixed IPv4 address on the job network
    hosts_file: dict[str, str] = field(default_factory=dict)  # name -> address, /etc/hosts
    nano_cpus: int | None = None  # CPU limit in 1e-9 CPUs
    memory_bytes: int | None = None  # memory limit
    # Container port -> port of 127.0.0.1 it is published on (None: the engine picks a free
    # one); never on another address (--publish).
    ports: dict[int, int | None] = field(default_factory=dict)
    # Started on the user's terminal by the docker CLI (--shell: engine/terminal.py): stdin
    # kept open (closed when the CLI lets go of it), a TTY when the user's stdin is one.
    interactive: bool = False
    tty: bool = False


@dataclass(frozen=True)
class Exit:
    """How a container's process ended: its exit code and when (seconds since the epoch)."""

    code: int
    finished_at: float
    removed: bool = False  # the container vanished: removed from outside the emulator


class MalformedOutput(Exception):
    """The engine's multiplexed output broke its framing (a header with unknown bits)."""


class FrameSplitter:
    """Docker's multiplexed output (a non-TTY attach or logs stream) in, payloads out.

    Each frame is an 8-byte header (stream id, three zero bytes, big-endian payload length)
    then the payload. ``feed`` takes bytes as they come off the socket, cut anywhere (inside a
    header, inside a payload), and returns (stream, chunk) pairs: the payloads of consecutive
    frames of one stream joined into one chunk, so a reader pays per read, not per frame (for
    a training loop printing a line a step, the engine's frames hold a few dozen to a few
    hundred bytes). A frame larger than the bytes fed so far comes out in pieces, never
    buffered whole. Empty frames give nothing."""

    def __init__(self) -> None:
        self._header = b""  # the first bytes of a header cut by a read's end
        self._stream = 0  # the stream of the frame being read
        self._left = 0  # its payload bytes still to come

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[int, bytes]]:
        view = memoryview(data).cast("B")
        size = len(view)
        out: list[tuple[int, bytes]] = []
        pieces: list[memoryview] = []  # payloads of the current run of one stream
        run = -1  # that stream
        position = 0
        while position < size:
            if self._left:
                take = min(self._left, size - position)
                if self._stream != run:
                    if pieces:
                        out.append((run, b"".join(pieces)))
                        pieces = []
                    run = self._stream
                pieces.append(view[position : position + take])
                position += take
                self._left -= take
                continue
            if self._header or size - position < _HEADER.size:
                need = _HEADER.size - len(self._header)
                self._header += bytes(view[position : position + need])
                position += need
                if len(self._header) < _HEADER.size:
                    break  # the rest of the header comes with the next read
                first, length = _HEADER.unpack(self._header)
                self._header = b""
            else:
                first, length = _HEADER.unpack_from(view, position)
                position += _HEADER.size
            stream = first >> 24
            if first & 0xFFFFFF or stream > _LAST_STREAM:
                raise MalformedOutput(
                    f"the engine's output stream is not framed as expected (header "
                    f"{first:08x} {length:08x}): the rest of the output cannot be read"
                )
            self._stream, self._left = stream, length
        if pieces:
            out.append((run, b"".join(pieces)))  # copies: the caller may reuse its buffer
        return out


_HEADER = struct.Struct(">II")  # (stream << 24 | three zero bytes), payload length
_LAST_STREAM = 3  # 0 stdin, 1 stdout, 2 stderr, 3 the engine's own error messages
READ_BYTES = 256 * 1024  # one read takes whatever the socket holds, up to this
GATHER_BYTES = 64 * 1024  # a read returns once this much is there ...
GATHER_SECONDS = 0.002  # ... or this long after it started waiting (with something)


class OutputStream:
    """Chunks of a container's attached output as (stream, chunk), stream 1 = stdout and
    2 = stderr (a TTY container's output is all stdout, unframed); the socket is ours to
    close, which ``close`` does.

    The socket is read in large reads and the frames split here (``FrameSplitter``):
    docker-py's ``frames_iter`` makes a poll and a read for each header and each payload, and
    every one of those system calls hands the GIL over (taking it back can wait for the
    switch interval, 5 ms, while the consumer thread computes metrics): for 1,000,000 lines
    its reader held the GIL 1.1 s and fell behind the container; this one 0.44 s, less with
    the gathering reads of ``_gather``."""

    def __init__(self, sock: Any, tty: bool = False) -> None:
        self._sock = sock
        self._tty = tty
        self._closed = False

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        read = _reader(self._sock)
        buffer = memoryview(bytearray(READ_BYTES))
        splitter = None if self._tty else FrameSplitter()
        while True:
            try:
                count = read(buffer)
            except (OSError, ValueError):
                if self._closed:  # closed between two reads: the end, as for a blocked one
                    return
                raise
            if not count:
                return
            if splitter is None:
                yield 1, bytes(buffer[:count])
            else:
                yield from splitter.feed(buffer[:count])

    def close(self) -> None:
        """Close the socket, waking a reader blocked on it (from any thread)."""
        # Over tcp docker-py hands out a SocketIO wrapper whose close() leaves the real
        # socket open; close both (and the HTTP response, where one is attached). A
        # shutdown first: close() alone does not wake a recv() blocked in another thread.
        self._closed = True
        parts = [p for p in (self._sock, getattr(self._sock, "_sock", None)) if p is not None]
        for part in parts:
            if hasattr(part, "shutdown"):
                with contextlib.suppress(OSError, ValueError):
                    part.shutdown(socket.SHUT_RDWR)
        for part in parts:
            with contextlib.suppress(OSError, ValueError):
                part.close()


def _reader(sock: Any) -> Callable[[memoryview], int]:
    """How to read ``sock`` into a buffer: the number of bytes read, 0 at the end."""
    raw = getattr(sock, "_sock", None) if isinstance(sock, socket.SocketIO) else sock
    if isinstance(raw, socket.socket):  # unix, TCP and TLS sockets: straight into the buffer
        if raw.gettimeout():  # the client's timeout: a quiet container is not an end
            # Blocking, a read is one system call releasing the GIL once (with a timeout,
            # a poll then the read: two), and each time the GIL is taken back, a busy
            # consumer thread may hold it for up to the switch interval (5 ms).
            raw.settimeout(None)
        _gather(raw)

        def read(buffer: memoryview) -> int:
            while True:
                try:
                    return raw.recv_into(buffer)
                except BlockingIOError:  # nothing came within GATHER_SECONDS: wait for data
                    _wait_readable(raw)

        return read

    def read_other(buffer: memoryview) -> int:  # SSH channels, named pipes: docker-py's way
        import docker.utils.socket  # only there: such streams come from docker-py (dockerpy.py)

        while (data := docker.utils.socket.read(sock, len(buffer))) is None:
            pass  # interrupted: read again
        if not data:  # the end ('' from a named pipe)
            return 0
        buffer[: len(data)] = data
        return len(data)

    return read_other


def _wait_readable(raw: socket.socket) -> None:
    if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select
        poll = select.poll()
        poll.register(raw, select.POLLIN | select.POLLPRI)
        poll.poll()
    else:
        select.select([raw], [], [])


def _gather(raw: socket.socket) -> None:
    """Let a read wait until GATHER_BYTES are there or GATHER_SECONDS have passed (Linux, unix
    sockets): the engine's frames are small, often one line each, and a reader woken for
    each pays a system call and a GIL handover every time (for 1M lines: about 1,500 reads
    instead of 50,000, the reader's user CPU down to a quarter). The wait is short enough
    that the engine's side never fills (a few KiB at a few MB/s). Not over TCP, where the
    low mark also holds back poll (a quiet container's last bytes would wait), nor TLS (a
    read cut by the timeout is an error there)."""
    if sys.platform != "linux" or raw.family != socket.AF_UNIX:
        return
    seconds = struct.pack("ll", 0, int(GATHER_SECONDS * 1_000_000))
    with contextlib.suppress(OSError):
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, seconds)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, GATHER_BYTES)


class Container:
    """One host's container: output, start, wait, signals, removal."""

    def __init__(self, api: EngineClient, container_id: str, host: str) -> None:
        self._api = api
        self.host = host
        self.id = container_id
        self._streams: list[OutputStream] = []

    def attach(self) -> OutputStream:
        """The container's output from its start to its exit. Call before ``start``.

        The stream ends when the container exits, or at the latest when it is removed (the
        engine never ends the stream of a container removed without having started)."""
        params = {"stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
        with engine_call(f"attach to the container of {self.host}"):
            stream = OutputStream(self._api.attach_socket(self.id, params=params))
        self._streams.append(stream)
        return stream

    def start(self) -> None:
        """Start the process; StartFailed when it cannot run, EnvironmentProblem when the
        engine lacks what the container asks for (a GPU driver) or does not answer."""

        def wording(failure: Failure) -> str:
            if failure.kind is Kind.NO_GPU_DRIVER:
                return no_gpu_driver(self.host, failure)
            return (
                f"The Docker engine failed to start the container of {self.host}: {failure.error}"
            )

        what = f"start the container of {self.host}"
        refusals = ANSWERED - {Kind.NO_GPU_DRIVER}
        with engine_call(what, tolerate=refusals, wording=wording) as call:
            self._api.start(self.id)
        if call.failure is None:
            return
        if call.failure.kind in GONE:
            raise StartFailed(self.removed_reason(), EXIT_REMOVED)
        if _PORT_TAKEN.search(call.failure.detail):  # --publish: the user's to fix
            raise EnvironmentProblem(
                f"A port published for {self.host} (--publish) is taken on 127.0.0.1: "
                f"choose another HOST_PORT, or give only the container port ({call.failure.detail})"
            )
        state = self._state()
        raise start_failure(call.failure, state.get("ExitCode") if state else None)

    def removed_reason(self) -> str:
        return f"the container of {self.host} was removed from outside the emulator"

    def exited(self) -> Exit | None:
        """How the process ended once it has (or could not start), else None; a container
        removed from outside counts as exited with EXIT_REMOVED (see the module doc)."""
        state = self._state()
        if state is None:
            return Exit(EXIT_REMOVED, time.time(), removed=True)
        if state.get("Running") or state.get("Status") in ("running", "paused", "restarting"):
            return None
        if state.get("Status") == "created" and not state.get("Error"):
            return None  # not started yet
        return Exit(int(state.get("ExitCode", -1)), _timestamp(state.get("FinishedAt")))

    def removed_from_outside(self, within: float = REMOVAL_SECONDS) -> bool:
        """Whether the container is gone or being removed, waiting up to ``within`` seconds:
        ``docker rm -f`` first kills the process (the exit, 137, is seen at once) and only
        then marks the container for removal."""
        deadline = time.monotonic() + within
        while True:
            state = self._state()
            if state is None or state.get("Status") == "removing":
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _state(self) -> dict[str, Any] | None:
        """The container's State (docker inspect), None once the container is gone."""
        with engine_call(f"inspect the container of {self.host}", tolerate=GONE):
            return dict(self._api.inspect_container(self.id)["State"])
        return None

    def inspect(self) -> dict[str, Any]:
        """The engine's full description of the container (docker inspect)."""
        with engine_call(f"inspect the container of {self.host}"):
            description = self._api.inspect_container(self.id)
        return dict(description)

    def signal(self, signal_name: str) -> None:
        """Send a signal if still running (a container that already exited, or was removed,
        is fine)."""
        with engine_call(
            f"send {signal_name} to the container of {self.host}",
            tolerate=GONE | {Kind.CONFLICT},
        ):
            self._api.kill(self.id, signal=signal_name)

    def keep(self) -> None:
        """What ``remove`` does for a job run with --keep, the removal left out: the process
        killed if it still runs (waited for, up to KEEP_EXIT_SECONDS), the output streams
        ended (a never-started container's would never end). Idempotent."""
        try:
            state = self._state()
            if state is not None and state.get("Status") in ("running", "paused", "restarting"):
                self.signal("SIGKILL")
                with engine_call(f"wait for the container of {self.host}", tolerate=GONE):
                    self._api.wait(self.id, timeout=KEEP_EXIT_SECONDS)
        finally:
            for stream in self._streams:
                stream.close()

    def remove(self) -> None:
        """Remove the container (killed if running) and end its output streams. Idempotent;
        a removal already under way (prune's, say) is fine too."""
        try:
            with engine_call(
                f"remove the container of {self.host}",
                tolerate=GONE | {Kind.CONFLICT},
            ):
                self._api.remove_container(self.id, force=True, v=True)
        finally:
            for stream in self._streams:
                stream.close()


def _timestamp(text: Any) -> float:
    """Seconds since the epoch of an engine time (RFC 3339, nanoseconds); unknown -> +inf."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return math.inf
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        return math.inf
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + float(f"0.{fraction or 0}")


def start_failure(failure: Failure, exit_code: int | None) -> StartFailed:
    match = _EXEC_ERROR.search(failure.detail.strip())
    reason = match.group(1) if match else failure.detail
    if not exit_code:  # the engine records 126/127 as `docker run` would; older ones may not
        exit_code = EXIT_NOT_EXECUTABLE if "permission denied" in reason else EXIT_NOT_FOUND
    return StartFailed(reason, exit_code)
