"""The engine client's HTTP layer (emulator/engine/http.py, client.py) against a real HTTP
server on a unix socket: keep-alive reuse, chunked bodies, streamed lines, the hijacked attach
stream and its frames, the error mapping, an engine that closes connections or never answers,
and a trivial job's imports without docker-py, requests or urllib3."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from emulator.engine import DockerEngine, OutputStream
from emulator.engine.client import EngineClient, connect, container_config, host_config
from emulator.engine.errors import Kind, classify, engine_call
from emulator.engine.http import EngineAnswer, EngineUnreachable, UnixTransport
from emulator.errors import EnvironmentProblem
from tests.fixtures.sockets import SocketServer, unix_listener

# (method, path, body) -> the raw bytes to answer, or None to close the connection unanswered
Responder = Callable[[str, str, bytes], bytes | None]


def answer(status: int, body: object = None, *, reason: str = "OK", extra: str = "") -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nApi-Version: 1.41\r\n{extra}\r\n"
    )
    return head.encode() + data


def chunked(pieces: list[bytes], status: int = 200) -> bytes:
    head = f"HTTP/1.1 {status} OK\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    body = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces)
    return head + body + b"0\r\n\r\n"


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">II", stream << 24, len(payload)) + payload


class FakeEngine(SocketServer):
    """An HTTP/1.1 server on a unix socket: keep-alive, one thread per connection."""

    def __init__(self, path: Path, respond: Responder) -> None:
        self.path = path
        self.respond = respond
        self.requests: list[tuple[str, str]] = []
        self.connections = 0
        super().__init__(unix_listener(path))

    def connected(self, client: socket.socket) -> None:
        self.connections += 1
        threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        buffered = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = client.recv(65536)
                    if not data:
                        return
                    buffered += data
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, target, _ = lines[0].split(" ")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                while len(buffered) < length:
                    buffered += client.recv(65536)
                body, buffered = buffered[:length], buffered[length:]
                self.requests.append((method, target))
                reply = self.respond(method, target, body)
                if reply is None:
                    client.close()
                    return
                client.sendall(reply)
        except OSError:
            return


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Responder], FakeEngine]]:
    engines: list[FakeEngine] = []

    def start(respond: Responder) -> FakeEngine:
        engine = FakeEngine(tmp_path / f"engine{len(engines)}.sock", respond)
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        engine.close()


def test_requests_share_one_kept_alive_connection_and_the_version_is_negotiated(
    serve: Callable[[Responder], FakeEngine],
) -> None:
    def respond(method: str, target: str, body: bytes) -> bytes:
        if target == "/_ping":
            return answer(200, None, extra="Api-Version: 1.41\r\n")
        if target.startswith("/v1.41/containers/create"):
            return answer(201, {"Id": "abc", "Echo": json.loads(body), "Target": target})
        if target.startswith("/v1.41/containers/json"):
            return answer(200, [{"Target": target}])
        return answer(200, {"Target": target})

    engine = serve(respond)
    client = connect(f"unix://{engine.path}")
    try:
        assert client.api_version == "1.41"
        assert client.info() == {"Target": "/v1.41/info"}
        config = container_config(
            "img", host_config(mounts=[], network_mode="none"), environment={"A": "1"}
        )
        created = client.create_container(config, name="job-algo-1")
        assert created["Target"] == "/v1.41/containers/create?name=job-algo-1"
        assert created["Echo"]["Env"] == ["A=1"]
        assert created["Echo"]["HostConfig"] == {
            "Mounts": [],
            "NetworkMode": "none",
            "Privileged": False,
        }
        listed = client.containers(all=True, filters={"label": ["a=b", "c"]})
        query = parse_qs(urlsplit(listed[0]["Target"]).query)
        assert query == {"all": ["1"], "filters": ['{"label": ["a=b", "c"]}']}
    finally:
        client.close()
    assert engine.connections == 1
    assert [m for m, _ in engine.requests] == ["GET", "GET", "POST", "GET"]


def test_a_chunked_body_and_a_stream_of_lines_cut_anywhere(
    serve: Callable[[Responder], FakeEngine],
) -> None:
    documents = [{"read": f"sample {n}", "n": n} for n in range(5)]
    text = b"".join(json.dumps(d).encode() + b"\n" for d in documents)
    cuts = [text[i : i + 7] for i in range(0, len(text), 7)]  # chunks end mid-line

    def respond(method: str, target: str, body: bytes) -> bytes:
        if target.endswith("/stats?stream=1"):
            return chunked(cuts)
        return chunked([b'{"Id": ', b'"x", "Name"', b': "y"}'])

    engine = serve(respond)
    transport = UnixTransport(str(engine.path))
    client = EngineClient(transport, "1.41")
    try:
        assert client.inspect_container("x") == {"Id": "x", "Name": "y"}
        stream = client.stats("x", timeout=5)
        assert [json.loads(line) for line in stream.lines()] == documents
        stream.close()
        assert client.inspect_container("x") == {"Id": "x", "Name": "y"}  # the pool still works
    finally:
        client.close()


def test_the_attach_stream_is_demultiplexed_whatever_came_with_the_head(
    serve: Callable[[Responder], FakeEngine],
) -> None:
    frames = frame(1, b"out 1\n") + frame(2, b"err 1\n") + frame(1, b"out 2\n" * 1000)

    def respond(method: str, target: str, body: bytes) -> bytes:
        head = (
            b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream"
            b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        )
        return head + frames  # the first frames in the same segment as the head

    engine = serve(respond)
    client = EngineClient(UnixTransport(str(engine.path)), "1.41")
    stream = OutputStream(client.attach_socket("abc", {"stdout": 1, "stream": 1}))
    chunks: list[tuple[int, bytes]] = []
    reader = threading.Thread(target=lambda: chunks.extend(stream))
    reader.start()
    deadline = time.monotonic() + 5
    while sum(len(c) for _, c in chunks) < 6 + 6 + 6000 and time.monotonic() < deadline:
        time.sleep(0.01)
    stream.close()  # the engine keeps the connection open: close wakes the reader
    reader.join(5)
    assert not reader.is_alive()
    out = b"".join(c for s, c in chunks if s == 1)
    err = b"".join(c for s, c in chunks if s == 2)
    assert out == b"out 1\n" + b"out 2\n" * 1000
    assert err == b"err 1\n"
    assert engine.requests == [("POST", "/v1.41/containers/abc/attach?stdout=1&stream=1")]
    client.close()


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (404, "No such image: nope:latest", Kind.IMAGE_MISSING),
        (404, "No such container: abc", Kind.NOT_FOUND),
        (409, "removal of container abc is already in progress", Kind.CONFLICT),
        (409, "Conflict. The container name is already in use", Kind.CONFLICT),
        (500, "could not select device driver with capabilities: [[gpu]]", Kind.NO_GPU_DRIVER),
        (403, "Pool overlaps with other one on this address space", Kind.SUBNET_TAKEN),
        (500, "OCI runtime create failed", Kind.REFUSED),
    ],
)
def test_error_answers_are_classified_with_the_engine_s_words(
    serve: Callable[[Responder], FakeEngine], status: int, message: str, kind: Kind
) -> None:
    engine = serve(lambda *_: answer(status, {"message": message}, reason="Error"))
    client = EngineClient(UnixTransport(str(engine.path)), "1.41")
    try:
        with pytest.raises(EngineAnswer) as raised:
            client.inspect_container("abc")
        assert raised.value.status_code == status
        assert raised.value.explanation == message
        assert classify(raised.value) is kind
        expected = f"failed to inspect it: {re.escape(message)}"
        with pytest.raises(EnvironmentProblem, match=expected), engine_call("inspect it"):
            client.inspect_container("abc")
        with engine_call("inspect it", tolerate={kind}) as call:
            client.inspect_container("abc")
        assert call.failure is not None and call.failure.detail == message
        assert str(status) in call.failure.error
    finally:
        client.close()


def test_an_error_answer_to_an_attach_is_an_engine_answer(
    serve: Callable[[Responder], FakeEngine],
) -> None:
    engine = serve(lambda *_: chunked([b'{"message": "No such container: gone"}'], status=404))
    client = EngineClient(UnixTransport(str(engine.path)), "1.41")
    with pytest.raises(EngineAnswer, match="No such container: gone") as raised:
        client.attach_socket("gone")
    assert classify(raised.value) is Kind.NOT_FOUND
    client.close()


def test_an_engine_that_closes_connections(serve: Callable[[Responder], FakeEngine]) -> None:
    calls: list[str] = []

    def respond(method: str, target: str, body: bytes) -> bytes | None:
        calls.append(target)
        if len(calls) in (2, 3):
            return None  # closes the connection unanswered
        return answer(200, {"n": len(calls)})

    engine = serve(respond)
    client = EngineClient(UnixTransport(str(engine.path)), "1.41")
    try:
        assert client.info() == {"n": 1}
        with pytest.raises(EngineUnreachable) as raised:
            client.info()
        assert classify(raised.value) is Kind.UNREACHABLE
        with (
            pytest.raises(EnvironmentProblem, match="check that it is running"),
            engine_call("describe itself"),
        ):
            client.info()
        assert client.info() == {"n": 4}  # a new connection: the broken one was not reused
    finally:
        client.close()


def test_an_idle_connection_the_engine_closed_is_not_reused(
    serve: Callable[[Responder], FakeEngine],
) -> None:
    engine = serve(lambda *_: answer(200, {"ok": True}))
    client = EngineClient(UnixTransport(str(engine.path)), "1.41")
    try:
        assert client.info() == {"ok": True}
        for sock in engine._open[1:]:  # the engine drops its idle connections
            sock.shutdown(socket.SHUT_RDWR)
        time.sleep(0.05)
        assert client.info() == {"ok": True}
        assert engine.connections == 2
    finally:
        client.close()


@pytest.mark.parametrize(
    ("raw", "body", "reused"),
    [
        # HTTP/1.0 without keep-alive, no length: the body runs to the end of the connection
        (b'HTTP/1.0 200 OK\r\n\r\n{"to": "the end"}', {"to": "the end"}, False),
        # the engine asks to close after this answer
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
            {},
            False,
        ),
        # an interim answer first, then the real one
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",
            [],
            True,
        ),
        # no body at all, whatever the head says
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", None, True),
        # chunk extensions and trailers
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1;ext=1\r\n[\r\n1\r\n]\r\n0\r\nTrailer: x\r\n\r\n",
            [],
            True,
        ),
    ],
)
def test_every_framing_of_an_answer_is_read_and_the_connection_reused_only_when_it_can(
    serve: Callable[[Responder], FakeEngine], raw: bytes, body: object, reused: bool
) -> None:
    def respond(method: str, target: str, request_body: bytes) -> bytes | None:
        if len(engine.requests) > 1:
            return answer(200, {"second": True})
        if reused:
            return raw
        engine._open[-1].sendall(raw)
        return None  # and the engine closes the connection

    engine = serve(respond)
    transport = UnixTransport(str(engine.path))
    try:
        assert transport.request("GET", "/v1.41/info", timeout=10).json() == body
        assert transport.request("GET", "/v1.41/info", timeout=10).json() == {"second": True}
    finally:
        transport.close()
    assert engine.connections == (1 if reused else 2)


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",  # not HTTP
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  # closed inside the body
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk size
    ],
)
def test_an_answer_that_is_not_http_or_ends_early_is_an_unreachable_engine(
    serve: Callable[[Responder], FakeEngine], raw: bytes
) -> None:
    def respond(method: str, target: str, body: bytes) -> bytes | None:
        engine._open[-1].sendall(raw)
        return None  # and close

    engine = serve(respond)
    transport = UnixTransport(str(engine.path))
    with pytest.raises(EngineUnreachable):
        transport.request("GET", "/v1.41/info", timeout=10)
    transport.close()


def test_an_engine_that_never_answers_times_out(serve: Callable[[Responder], FakeEngine]) -> None:
    def respond(method: str, target: str, body: bytes) -> bytes:
        time.sleep(2)
        return answer(200, {})

    engine = serve(respond)
    transport = UnixTransport(str(engine.path))
    started = time.monotonic()
    with pytest.raises(EngineUnreachable, match="in time"):
        transport.request("GET", "/v1.41/info", timeout=0.2)
    assert time.monotonic() - started < 1.5
    transport.close()


def test_no_engine_at_docker_host_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DOCKER_HOST points at a socket nobody listens on (tests/conftest.py)
    with pytest.raises(EnvironmentProblem, match="No Docker engine answers at unix://"):
        DockerEngine()
    closed = tmp_path / "closed.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(closed))
    listener.close()  # the file stays; nothing accepts
    monkeypatch.setenv("DOCKER_HOST", f"unix://{closed}")
    with pytest.raises(EnvironmentProblem, match=f"No Docker engine answers at unix://{closed}"):
        DockerEngine()


IMPORTS_OF_A_JOB = """
import sys, threading, socket, json
from pathlib import Path
path = sys.argv[1]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen()
def serve():
    client, _ = listener.accept()
    while client.recv(65536):
        body = json.dumps({"NCPU": 3}).encode()
        client.sendall(b"HTTP/1.1 200 OK\\r\\nApi-Version: 1.41\\r\\nContent-Length: "
                       + str(len(body)).encode() + b"\\r\\n\\r\\n" + body)
threading.Thread(target=serve, daemon=True).start()
import emulator.cli.main, emulator.api, emulator.run.job, emulator.engine.stats
from emulator.engine import DockerEngine
engine = DockerEngine()
assert engine.cpu_count() == 3
heavy = ("docker", "requests", "urllib3", "http.client", "ssl")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def test_a_job_on_the_unix_socket_imports_neither_docker_py_nor_http_client(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    env = {**os.environ, "DOCKER_HOST": f"unix://{path}"}
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS_OF_A_JOB, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
