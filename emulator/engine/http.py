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
``EngineUnreachable``. ``errors.py`` classifies both.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlencode

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


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


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
        self._idle: list[_UnixConnection] = []
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
        connection = self._fresh(timeout) if dedicated else self._take(timeout)
        reusable = False
        try:
            response = self._send(connection, method, url, body)
            data = response.read()
            reusable = not dedicated and not response.will_close
        except (OSError, http.client.HTTPException) as error:
            raise self._unreachable(error) from None
        finally:
            if reusable:
                self._give(connection)
            else:
                connection.close()
        if response.status >= 400:
            raise EngineAnswer(response.status, response.reason, url, explanation_of(data))
        return Reply(response.status, data, dict(response.getheaders()))

    def stream(
        self, method: str, path: str, *, query: Query = None, timeout: float | None = None
    ) -> Streamed:
        url = target(path, query)
        connection = self._fresh(timeout)
        try:
            response = self._send(connection, method, url, None)
            if response.status >= 400:
                data = response.read()
                raise EngineAnswer(response.status, response.reason, url, explanation_of(data))
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise self._unreachable(error) from None
        except BaseException:
            connection.close()
            raise
        return _UnixStream(connection, response)

    def hijack(self, path: str, *, query: Query = None) -> socket.socket:
        url = target(path, query)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(DEFAULT_TIMEOUT)
            sock.connect(self.path)
            sock.sendall(
                f"POST {url} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode()
            )
            status, reason, headers = _read_head(sock)
            if status >= 400:
                data = _read_body(sock, headers)
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

    def _send(
        self, connection: _UnixConnection, method: str, url: str, body: Any
    ) -> http.client.HTTPResponse:
        headers = {}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PUT"):
            headers["Content-Length"] = "0"
        connection.request(method, url, body=payload, headers=headers)
        return connection.getresponse()

    def _fresh(self, timeout: float | None) -> _UnixConnection:
        return _UnixConnection(self.path, timeout)

    def _take(self, timeout: float | None) -> _UnixConnection:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._fresh(timeout)
            if connection.sock is not None and not _dropped(connection.sock):
                connection.timeout = timeout
                connection.sock.settimeout(timeout)
                return connection
            connection.close()

    def _give(self, connection: _UnixConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < POOL_SIZE:
                self._idle.append(connection)
                return
        connection.close()

    def _unreachable(self, error: BaseException) -> EngineUnreachable:
        if isinstance(error, TimeoutError | socket.timeout):
            return EngineUnreachable(f"no answer from {self.where} in time ({error})")
        words = str(error) or type(error).__name__
        return EngineUnreachable(f"the connection to {self.where} failed ({words})")


class _UnixStream:
    """A streamed answer on its own connection."""

    def __init__(self, connection: _UnixConnection, response: http.client.HTTPResponse) -> None:
        self._connection = connection
        self._response = response
        self._sock = connection.sock

    def lines(self) -> Iterator[bytes]:
        try:
            while line := self._response.readline():
                yield line.rstrip(b"\r\n")
        except (OSError, http.client.HTTPException) as error:
            raise EngineUnreachable(f"the engine's stream broke off ({error})") from None

    def chunks(self, size: int) -> Iterator[bytes]:
        try:
            while chunk := self._response.read1(size):
                yield chunk
        except (OSError, http.client.HTTPException) as error:
            raise EngineUnreachable(f"the engine's stream broke off ({error})") from None

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked elsewhere
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
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


def _read_head(sock: socket.socket) -> tuple[int, str, dict[str, str]]:
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
            raise http.client.HTTPException("the engine's answer has no end of head")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise http.client.BadStatusLine(status_line)
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


def _read_body(sock: socket.socket, headers: Mapping[str, str]) -> bytes:
    """An error answer's body (Content-Length, else up to the end of the connection)."""
    length = headers.get("content-length", "")
    if length.isdigit():
        return _recv_exactly(sock, int(length))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(sock)
    parts = []
    with contextlib.suppress(OSError):
        while part := sock.recv(HEAD_LIMIT):
            parts.append(part)
    return b"".join(parts)


def _read_chunked(sock: socket.socket) -> bytes:
    """A chunked body, read a byte at a time up to its last chunk (error bodies are short)."""
    parts: list[bytes] = []
    while True:
        line = b""
        while not line.endswith(b"\r\n"):
            line += _recv_exactly(sock, 1)
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return b"".join(parts)
        parts.append(_recv_exactly(sock, size))
        _recv_exactly(sock, 2)
