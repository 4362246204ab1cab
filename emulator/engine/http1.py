"""HTTP/1.1 on one socket, as much as the Docker engine's API uses: no more.

Why not ``http.client``: importing it costs a job about 14 ms (it brings ``email`` and
``ssl``), more than most of the job's engine calls. What the engine speaks is small: a request
with an optional JSON body; an answer with a head, then a body framed by Content-Length,
chunked, or running to the end of the connection (and none for 1xx, 204 and 304).

A ``Connection`` is one socket and one buffered reader over it; ``answer()`` reads the head of
the next answer and returns an ``Answer`` whose body is read whole (``read``), a piece at a
time (``read1``) or a line at a time (``readline``), the chunked framing taken off. Whether
the connection can carry another request is known once the body has been read to its end
(``reusable``). Framing errors are ``Malformed``, an OSError like every failure of the socket,
so a caller handles one kind of error.
"""

from __future__ import annotations

import contextlib
import socket
from io import BufferedReader
from typing import cast

HEAD_LIMIT = 64 * 1024  # the most a head (status line and fields) may hold
READ_SIZE = 64 * 1024  # bytes asked of the socket at a time when reading a whole body
_NO_BODY = {204, 304}


class Malformed(OSError):
    """The peer's bytes are not the HTTP/1.1 we expected."""


def request_head(method: str, target: str, headers: dict[str, str]) -> bytes:
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n".encode("latin-1")


def parse_head(head: bytes) -> tuple[int, str, dict[str, str], str]:
    """(status, reason, fields by lower-case name, version) of an answer's head."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise Malformed(f"not an HTTP answer: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon and name:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers, parts[0]


class Connection:
    """One connected socket, requests sent and answers read in turn."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = cast(BufferedReader, sock.makefile("rb", buffering=READ_SIZE))

    def send(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.sock.sendall(request_head(method, target, headers) + body)

    def answer(self, method: str) -> Answer:
        """The next answer's head read (an interim 1xx skipped), its body not yet."""
        while True:
            status, reason, headers, version = parse_head(self._read_head())
            if status >= 200 or status == 101:
                return Answer(self._reader, method, status, reason, headers, version)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._reader.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def _read_head(self) -> bytes:
        lines: list[bytes] = []
        size = 0
        while True:
            line = self._reader.readline(HEAD_LIMIT)
            if not line:
                raise ConnectionResetError("the engine closed the connection")
            if line in (b"\r\n", b"\n"):
                if lines:
                    return b"".join(lines).rstrip(b"\r\n")
                continue  # a stray empty line before a head (RFC 9112 2.2) is ignored
            size += len(line)
            if size > HEAD_LIMIT or not line.endswith(b"\n"):
                raise Malformed("the engine's answer has no end of head")
            lines.append(line.rstrip(b"\r\n") + b"\r\n")


class Answer:
    """An answer's status and head, and its body to read."""

    def __init__(
        self,
        reader: BufferedReader,
        method: str,
        status: int,
        reason: str,
        headers: dict[str, str],
        version: str,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._reader = reader
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._left: int | None = None  # bytes of the body (or chunk) still to read
        self._pending = b""  # read past a line's end by readline
        self._done = False
        length = headers.get("content-length", "")
        if method == "HEAD" or status in _NO_BODY or status < 200:
            self._chunked, self._left = False, 0
        elif self._chunked:
            self._left = 0  # of the current chunk: none yet
        elif length.isdigit():
            self._left = int(length)
        # else: to the end of the connection
        connection = headers.get("connection", "").lower()
        self._keep_alive = (
            status != 101
            and (self._chunked or self._left is not None)
            and "close" not in connection
            and (version != "HTTP/1.0" or "keep-alive" in connection)
        )

    @property
    def reusable(self) -> bool:
        """Whether the connection can carry another request: the body was read to its end
        and neither side asked to close."""
        return self._done and self._keep_alive

    def read(self) -> bytes:
        """The rest of the body."""
        parts = [self._pending]
        self._pending = b""
        while part := self._read_framed(READ_SIZE):
            parts.append(part)
        return b"".join(parts)

    def read1(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body, no more than one read of the socket; b"" at its
        end."""
        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        return self._read_framed(size)

    def readline(self) -> bytes:
        """The next line of the body with its b"\\n" (the last one may have none); b"" at
        its end."""
        while True:
            end = self._pending.find(b"\n")
            if end >= 0:
                line, self._pending = self._pending[: end + 1], self._pending[end + 1 :]
                return line
            part = self._read_framed(READ_SIZE)
            if not part:
                line, self._pending = self._pending, b""
                return line
            self._pending += part

    def _read_framed(self, size: int) -> bytes:
        if self._done:
            return b""
        if self._chunked:
            return self._read_chunk(size)
        if self._left is None:  # to the end of the connection
            data = self._reader.read1(size)
            self._done = not data
            return data
        if self._left == 0:
            self._done = True
            return b""
        return self._read_counted(size)

    def _read_counted(self, size: int) -> bytes:
        """Up to ``size`` of the ``_left`` bytes the framing still promises."""
        assert self._left is not None
        data = self._reader.read1(min(size, self._left))
        if not data:
            raise ConnectionResetError("the engine closed the connection inside an answer")
        self._left -= len(data)
        return data

    def _read_chunk(self, size: int) -> bytes:
        assert self._left is not None
        if self._left == 0:
            line = self._reader.readline(HEAD_LIMIT)
            if not line.endswith(b"\n"):
                raise ConnectionResetError("the engine closed the connection inside an answer")
            try:
                self._left = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise Malformed(f"not a chunk size: {line[:40]!r}") from None
            if self._left == 0:
                self._skip_trailers()
                self._done = True
                return b""
        data = self._read_counted(size)
        if self._left == 0 and self._reader.readline(HEAD_LIMIT).strip():
            raise Malformed("a chunk does not end where its size says")
        return data

    def _skip_trailers(self) -> None:
        while True:
            line = self._reader.readline(HEAD_LIMIT)
            if not line:
                raise ConnectionResetError("the engine closed the connection inside an answer")
            if line in (b"\r\n", b"\n"):
                return
