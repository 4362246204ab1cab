"""HTTP to the Docker engine over its unix socket, with the standard library only.

``import docker`` costs a trivial job 150 ms (requests, urllib3, charset_normalizer): more than
the engine calls of the job. The engine at a ``unix://`` DOCKER_HOST (or the default socket) is
spoken to here; any other (tcp://, ssh://, TLS) through docker-py (``dockerpy.py``), imported
only then. Both are a ``Transport``; ``client.py`` builds the Engine API calls on top.

Connections: a request takes an idle keep-alive connection from a small pool (or opens one)
and puts it back once its answer is read whole; one that failed, or was cut short (a
KeyboardInterrupt included), is closed, never put back, so no signal can leave the pool in a
bad state (the lock is held only to take or give a connection). Streaming calls (attach,
stats, archive, wait) get a connection of their own. An idle connection the engine closed is
seen before reuse (readable with nothing to read) and dropped: requests are never re-sent.

Errors: an answer of 400 or more is an ``EngineAnswer`` (status, the engine's message); no
answer at all (no socket, refused, permission denied, closed, timeout) is
``EngineUnreachable``. ``errors.py`` classifies both. The HTTP/1.1 itself is ``http1.py``.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

from emulator.engine.http1 import Answer, Connection, Malformed, parse_head, request_head

DEFAULT_TIMEOUT = 120.0  # seconds without an answer before a call counts as failed
POOL_SIZE = 32  # idle connections kept for reuse
HEAD_LIMIT = 64 * 1024  # the most an upgraded answer's head may hold

Query = Mapping[str, str | int | bool] | None


class EngineError(Exception):
    """A failed engine call (the base of what ``errors.py`` classifies)."""


class EngineAnswer(EngineError):
    """The engine answered with an error status; ``explanation`` is its own message."""

    def __init__(self, status: int, reason: str, where: str, explanation: str) -> None:
        side = "Client" if status < 500 else "Server"
        words = f"{status} {side} Error for {where}: {reason}"
        super().__init__(f'{words} ("{explanation}")' if explanation else words)
        self.status_code = status
        self.explanation = explanation


class EngineUnreachable(EngineError):
    """No answer: no engine, the connection refused or closed, a timeout."""


class EngineDenied(EngineUnreachable):
    """The engine's socket is there but this user may not connect to it."""


class Reply:
    """A whole answer: its status and body."""

    def __init__(self, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        self.status = status
        self.data = data
        self.headers = {name.lower(): value for name, value in headers.items()}

    def json(self) -> Any:
        return json.loads(self.data) if self.data else None


class Streamed(Protocol):
    """An answer read as it comes, on a connection of its own; ``close`` works from any
    thread and wakes a blocked read."""

    def lines(self) -> Iterator[bytes]: ...

    def chunks(self, size: int) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """What ``client.py`` needs of a way to reach the engine."""

    where: str

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query = None,
        body: Any = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        dedicated: bool = False,
    ) -> Reply: ...

    def stream(
        self, method: str, path: str, *, query: Query = None, timeout: float | None = None
    ) -> Streamed: ...

    def hijack(self, path: str, *, query: Query = None) -> Any:
        """POST ``path`` with an upgrade to a raw stream; the socket-like object under it."""
        ...

    def close(self) -> None: ...


def _connect(path: str, timeout: float | None) -> Connection:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return Connection(sock)


def target(path: str, query: Query) -> str:
    """``path?query`` (booleans as 1/0, as the engine reads them)."""
    if not query:
        return path
    pairs = [(k, int(v) if isinstance(v, bool) else v) for k, v in query.items()]
    return f"{path}?{urlencode(pairs)}"


def explanation_of(data: bytes) -> str:
    """The engine's message in an error body (JSON ``message``, else the text)."""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        return str(json.loads(data)["message"])
    return data.decode("utf-8", "replace").strip()


class UnixTransport:
    """The engine at a unix socket (see the module doc)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = f"unix://{path}"
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query = None,
        body: Any = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        dedicated: bool = False,
    ) -> Reply:
        url = target(path, query)
        connection: Connection | None = None
        reusable = False
        try:
            connection = self._fresh(timeout) if dedicated else self._take(timeout)
            answer = self._send(connection, method, url, body)
            data = answer.read()
            reusable = not dedicated and answer.reusable
        except OSError as error:
            raise self._unreachable(error) from None
        finally:
            if connection is not None:
                if reusable:
                    self._give(connection)
                else:
                    connection.close()
        if answer.status >= 400:
            raise EngineAnswer(answer.status, answer.reason, url, explanation_of(data))
        return Reply(answer.status, data, answer.headers)

    def stream(
        self, method: str, path: str, *, query: Query = None, timeout: float | None = None
    ) -> Streamed:
        url = target(path, query)
        try:
            connection = self._fresh(timeout)
        except OSError as error:
            raise self._unreachable(error) from None
        try:
            answer = self._send(connection, method, url, None)
            if answer.status >= 400:
                data = answer.read()
                raise EngineAnswer(answer.status, answer.reason, url, explanation_of(data))
        except OSError as error:
            connection.close()
            raise self._unreachable(error) from None
        except BaseException:
            connection.close()
            raise
        return _UnixStream(connection, answer)

    def hijack(self, path: str, *, query: Query = None) -> socket.socket:
        url = target(path, query)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(DEFAULT_TIMEOUT)
            sock.connect(self.path)
            upgrade = {"Content-Length": "0", "Connection": "Upgrade", "Upgrade": "tcp"}
            sock.sendall(request_head("POST", url, upgrade))
            status, reason, headers, version = _read_head(sock)
            if status >= 400:
                # An error is a plain answer: its body is read like any other.
                with sock.makefile("rb") as reader:
                    data = Answer(reader, "POST", status, reason, headers, version).read()
                raise EngineAnswer(status, reason, url, explanation_of(data))
        except OSError as error:
            sock.close()
            raise self._unreachable(error) from None
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)  # a quiet container is no failure
        return sock

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = True
        for connection in idle:
            connection.close()

    def _send(self, connection: Connection, method: str, url: str, body: Any) -> Answer:
        headers = {}
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(len(payload))
        elif method in ("POST", "PUT"):
            headers["Content-Length"] = "0"
        connection.send(method, url, headers, payload)
        return connection.answer(method)

    def _fresh(self, timeout: float | None) -> Connection:
        return _connect(self.path, timeout)

    def _take(self, timeout: float | None) -> Connection:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._fresh(timeout)
            if not _dropped(connection.sock):
                connection.sock.settimeout(timeout)
                return connection
            connection.close()

    def _give(self, connection: Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < POOL_SIZE:
                self._idle.append(connection)
                return
        connection.close()

    def _unreachable(self, error: BaseException) -> EngineUnreachable:
        if isinstance(error, TimeoutError | socket.timeout):
            return EngineUnreachable(f"no answer from {self.where} in time ({error})")
        words = str(error) or type(error).__name__
        if isinstance(error, PermissionError):
            return EngineDenied(f"the connection to {self.where} was refused ({words})")
        return EngineUnreachable(f"the connection to {self.where} failed ({words})")


class _UnixStream:
    """A streamed answer on its own connection."""

    def __init__(self, connection: Connection, answer: Answer) -> None:
        self._connection = connection
        self._answer = answer

    def lines(self) -> Iterator[bytes]:
        try:
            while line := self._answer.readline():
                yield line.rstrip(b"\r\n")
        except (OSError, ValueError) as error:
            raise EngineUnreachable(f"the engine's stream broke off ({error})") from None

    def chunks(self, size: int) -> Iterator[bytes]:
        try:
            while chunk := self._answer.read1(size):
                yield chunk
        except (OSError, ValueError) as error:
            raise EngineUnreachable(f"the engine's stream broke off ({error})") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._connection.sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked elsewhere
        self._connection.close()


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle connection was closed by the engine (readable while idle: the end, or
    bytes nobody asked for)."""
    try:
        if hasattr(select, "poll"):  # no FD_SETSIZE limit, unlike select
            poll = select.poll()
            poll.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
            return bool(poll.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    parts = []
    while count > 0:
        part = sock.recv(count)
        if not part:
            raise ConnectionResetError("the engine closed the connection")
        parts.append(part)
        count -= len(part)
    return b"".join(parts)


def _read_head(sock: socket.socket) -> tuple[int, str, dict[str, str], str]:
    """Read an answer's head and not one byte more (the raw stream follows it): peek, then
    take what belongs to the head."""
    head = b""
    while True:
        peeked = sock.recv(HEAD_LIMIT, socket.MSG_PEEK)
        if not peeked:
            raise ConnectionResetError("the engine closed the connection")
        end = (head + peeked).find(b"\r\n\r\n")
        if end >= 0:
            head += _recv_exactly(sock, end + 4 - len(head))
            break
        head += _recv_exactly(sock, len(peeked))
        if len(head) > HEAD_LIMIT:
            raise Malformed("the engine's answer has no end of head")
    return parse_head(head[:-4])
