"""The relay in front of the embedded store's S3 API (s3store.py): it makes SSE-KMS uploads work.

Real S3 accepts ``x-amz-server-side-encryption: aws:kms`` without a key id (the account's AWS
managed key); the SageMaker SDK v2 uploads its code that way by default. SeaweedFS 4.x cannot:
it refuses SSE-KMS without a key id whatever its configuration (``invalid KMS key ID format``),
and its only local KMS keeps master keys in memory, drawn at random at every start, so objects
it encrypted under a key id could not be read after a restart. SSE-S3 (``AES256``) it does well,
under a key the store keeps in its state dir.

So SSE-KMS requests become SSE-S3 requests on their way to weed: a request whose
``x-amz-server-side-encryption`` is ``aws:kms`` (or ``aws:kms:dsse``) and whose SigV4 signature
(Authorization header, the store's key) verifies here is re-signed with its SSE-KMS headers
replaced by ``x-amz-server-side-encryption: AES256``. The data stays real and encrypted at rest;
GetObject returns it as it does any object (answers say ``AES256``, not ``aws:kms``). Anything
else passes unchanged, and so does a request the relay cannot re-sign (a bad signature, a
presigned URL, chunk-signed streaming): weed answers it as it would have.

Only request heads are parsed (to find each request's end on a kept-alive connection); bodies,
and everything weed answers, are moved by the kernel (``splice``), not by Python. Unparsable
traffic is passed through raw for the rest of its connection.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from urllib.parse import quote, unquote, urlsplit

from emulator.server.auth import ALGORITHM, parse_auth

SSE = "x-amz-server-side-encryption"
SSE_KMS_HEADERS = frozenset(
    {SSE, f"{SSE}-aws-kms-key-id", f"{SSE}-context", f"{SSE}-bucket-key-enabled"}
)
MAX_HEAD_BYTES = 64 * 1024
CHUNK_BYTES = 1024 * 1024
PIPE_BYTES = 1024 * 1024
ACCEPT_POLL_SECONDS = 0.2
CONNECT_TIMEOUT_SECONDS = 10.0
_F_SETPIPE_SZ: int = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # bigger pipes: fewer splices
_WHITESPACE = re.compile(r"\s+")


class Unframed(Exception):
    """Traffic the relay cannot follow request by request: pass the rest through raw."""


class S3Relay:
    """Accepts on ``listeners`` (bound sockets) and relays each connection to ``upstream``
    (weed's S3 port, set before ``start``), re-signing SSE-KMS requests made with the store's
    key (``access_key_id``/``secret_access_key``) as SSE-S3 ones; see the module doc."""

    def __init__(
        self, listeners: list[socket.socket], access_key_id: str, secret_access_key: str
    ) -> None:
        self.listeners = listeners
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.upstream: tuple[str, int] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._acceptor: threading.Thread | None = None

    @property
    def port(self) -> int:
        port: int = self.listeners[0].getsockname()[1]
        return port

    def start(self) -> None:
        for listener in self.listeners:
            listener.listen(128)
            listener.setblocking(False)
        self._acceptor = threading.Thread(target=self._accept, name="s3-relay", daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        """Close the listeners and every relayed connection; idempotent."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join()
            self._acceptor = None
        for listener in self.listeners:
            listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    # -- connections -----------------------------------------------------------------------

    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            for listener in self.listeners:
                selector.register(listener, selectors.EVENT_READ, listener)
            while not self._stopping.is_set():
                for key, _ in selector.select(ACCEPT_POLL_SECONDS):
                    ready: socket.socket = key.data
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        client, _ = ready.accept()
                        client.setblocking(True)
                        self._spawn(self._relay, client)

    def _spawn(self, target: Callable[..., None], *args: socket.socket) -> threading.Thread:
        thread = threading.Thread(target=self._tracked, args=(target, *args), daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()
        return thread

    def _tracked(self, target: Callable[..., None], *args: socket.socket) -> None:
        try:
            target(*args)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    @contextlib.contextmanager
    def _registered(self, *sockets: socket.socket) -> Iterator[None]:
        with self._lock:
            self._open.update(sockets)
        try:
            yield
        finally:
            with self._lock:
                self._open.difference_update(sockets)
            for sock in sockets:
                sock.close()

    def _relay(self, client: socket.socket) -> None:
        assert self.upstream is not None, "set the relay's upstream before traffic"
        try:
            upstream = socket.create_connection(self.upstream, timeout=CONNECT_TIMEOUT_SECONDS)
        except OSError:
            client.close()  # weed is not up (yet): the client sees the connection drop
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._registered(client, upstream):
            answers = self._spawn(self._answers, upstream, client)
            try:
                self._requests(client, upstream)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    upstream.shutdown(socket.SHUT_WR)  # weed closes once it answered
            answers.join()

    def _answers(self, upstream: socket.socket, client: socket.socket) -> None:
        """weed's answers go to the client untouched, until weed closes the connection."""
        with contextlib.suppress(OSError):
            move(upstream, client, None)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # ends the request side too

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        reader = Reader(client)
        try:
            while (head := reader.head()) is not None:
                try:
                    length, chunked, head = self._rewrite(head)
                except Unframed:
                    reader.buffer[:0] = head  # sent on raw, as it came
                    raise
                upstream.sendall(head)
                if chunked:
                    reader.forward_chunked(upstream)
                else:
                    reader.forward(upstream, length)
        except Unframed:
            upstream.sendall(reader.drain())
            move(client, upstream, None)

    def _rewrite(self, head: bytes) -> tuple[int, bool, bytes]:
        """The body's framing (Content-Length, chunked) and the head to send on."""
        method, target, version, headers = parse_head(head)
        length, chunked = framing(headers)
        if any(n.lower() == SSE and v.lower().startswith("aws:kms") for n, v in headers):
            resigned = self.resign(method, target, headers)
            if resigned is not None:
                head = build_head(method, target, version, resigned)
        return length, chunked, head

    def resign(
        self, method: str, target: str, headers: list[tuple[str, str]]
    ) -> list[tuple[str, str]] | None:
        """``headers`` with SSE-KMS made SSE-S3 and signed anew, when their signature is
        the store's key's; None otherwise."""
        values = {n.lower(): v for n, v in headers}
        try:
            auth = parse_auth(values.get("authorization", ""))
        except ValueError:
            return None
        payload = values.get("x-amz-content-sha256", "")
        amz_date = values.get("x-amz-date", "")
        if (
            auth.access_key_id != self.access_key_id
            or auth.service != "s3"
            or not amz_date.startswith(auth.date)
            or not payload
            or payload.startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")  # chunks signed too
        ):
            return None
        scope = f"{auth.date}/{auth.region}/s3/aws4_request"
        key = signing_key(self.secret_access_key, auth.date, auth.region)
        path, _, query = target.partition("?")
        if urlsplit(target).scheme:  # an absolute-form target: weed signs its path only
            return None
        canonical_query = canonical_query_string(query)
        for canonical_path in dict.fromkeys((path, quote(unquote(path), safe="/~"))):
            request = canonical_request(
                method, canonical_path, canonical_query, headers, auth.signed_headers, payload
            )
            expected = signature(key, amz_date, scope, request)
            if hmac.compare_digest(expected, auth.signature):
                break
        else:
            return None
        kept = [(n, v) for n, v in headers if n.lower() not in SSE_KMS_HEADERS | {"authorization"}]
        kept.append((SSE, "AES256"))
        signed = sorted({*auth.signed_headers} - SSE_KMS_HEADERS | {SSE})
        request = canonical_request(method, canonical_path, canonical_query, kept, signed, payload)
        new_signature = signature(key, amz_date, scope, request)
        credential = f"{self.access_key_id}/{scope}"
        kept.append(
            (
                "Authorization",
                f"{ALGORITHM} Credential={credential}, SignedHeaders={';'.join(signed)}, "
                f"Signature={new_signature}",
            )
        )
        return kept


# -- HTTP/1.1 request heads ------------------------------------------------------------------


class Reader:
    """A client socket read request by request: heads parsed, bodies moved on."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def head(self) -> bytes | None:
        """The next request's head (through its blank line); None at a clean end."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise Unframed
            data = self.sock.recv(CHUNK_BYTES)
            if not data:
                if self.buffer.strip():
                    raise Unframed
                return None
            self.buffer += data
        head = bytes(self.buffer[: end + 4])
        del self.buffer[: end + 4]
        return head

    def drain(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def forward(self, upstream: socket.socket, length: int) -> None:
        """``length`` body bytes: the buffered ones, then the rest moved by the kernel."""
        buffered = min(length, len(self.buffer))
        if buffered:
            upstream.sendall(self.buffer[:buffered])
            del self.buffer[:buffered]
        if length > buffered:
            move(self.sock, upstream, length - buffered)

    def forward_chunked(self, upstream: socket.socket) -> None:
        """A chunked body: size lines parsed, chunks moved on, then the trailer section."""
        while True:
            line = self._line()
            upstream.sendall(line)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise Unframed from None
            if size == 0:
                break
            self.forward(upstream, size + 2)  # the chunk and its CRLF
        while (line := self._line()) != b"\r\n":  # trailers, up to the blank line
            upstream.sendall(line)
        upstream.sendall(line)

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise Unframed
            data = self.sock.recv(CHUNK_BYTES)
            if not data:
                raise Unframed
            self.buffer += data
        line = bytes(self.buffer[: end + 2])
        del self.buffer[: end + 2]
        return line


def parse_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    """Method, target, version and headers (in order, names as sent); Unframed if malformed."""
    lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise Unframed
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[0] in " \t":
            raise Unframed  # obsolete line folding, a name with spaces: not followed
        headers.append((name, value.strip(" \t")))
    return parts[0], parts[1], parts[2], headers


def framing(headers: list[tuple[str, str]]) -> tuple[int, bool]:
    """(Content-Length, chunked) of a request, as HTTP/1.1 frames its body."""
    encodings = [v for n, v in headers if n.lower() == "transfer-encoding"]
    if encodings:
        if ",".join(encodings).strip().lower() != "chunked":
            raise Unframed
        return 0, True
    lengths = {v for n, v in headers if n.lower() == "content-length"}
    if not lengths:
        return 0, False
    (length,) = lengths if len(lengths) == 1 else (None,)
    if length is None or not (length.isascii() and length.isdigit()):
        raise Unframed
    return int(length), False


def build_head(method: str, target: str, version: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {target} {version}", *(f"{n}: {v}" for n, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


# -- SigV4 (S3's: the path not normalized, the payload hash from x-amz-content-sha256) ------


def canonical_query_string(query: str) -> str:
    pairs = []
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        pairs.append((_encode(unquote(name)), _encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    signed: tuple[str, ...] | list[str],
    payload: str,
) -> str:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(_WHITESPACE.sub(" ", value.strip()))
    lines = [f"{name}:{','.join(values.get(name, []))}" for name in signed]
    return "\n".join([method, path, query, *lines, "", ";".join(signed), payload])


def signing_key(secret: str, date: str, region: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(key: bytes, amz_date: str, scope: str, request: str) -> str:
    """The request's parts are latin-1 text of the bytes received (or ASCII, once encoded):
    hashed as those bytes, as the client hashed them."""
    digest = hashlib.sha256(request.encode("latin-1", "replace")).hexdigest()
    text = f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


# -- moving bytes ----------------------------------------------------------------------------


def move(source: socket.socket, target: socket.socket, length: int | None) -> None:
    """``length`` bytes (None: up to end of stream) from ``source`` to ``target``, through a
    pipe with ``splice`` (no copy into Python); a plain copy where splice is missing."""
    if not hasattr(os, "splice"):
        _copy(source, target, length)
        return
    read_end, write_end = os.pipe()
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_BYTES)
        remaining = length
        while remaining is None or remaining > 0:
            wanted = CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining)
            moved = os.splice(source.fileno(), write_end, wanted, flags=os.SPLICE_F_MOVE)
            if moved == 0:
                if remaining is None:
                    return
                raise Unframed  # the client went away in the middle of a body
            if remaining is not None:
                remaining -= moved
            while moved:
                moved -= os.splice(read_end, target.fileno(), moved, flags=os.SPLICE_F_MOVE)
    finally:
        os.close(read_end)
        os.close(write_end)


def _copy(source: socket.socket, target: socket.socket, length: int | None) -> None:
    remaining = length
    while remaining is None or remaining > 0:
        wanted = CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining)
        data = source.recv(wanted)
        if not data:
            if remaining is None:
                return
            raise Unframed
        target.sendall(data)
        if remaining is not None:
            remaining -= len(data)
