"""Docker's errors reach the user as EmulatorError (exit 2, one clear line), never as a
traceback: an engine that is not there, one that stops answering half-way through ``prune``,
and a missing image given by digest (whose hint must be a command that can work).

The engine that stops answering is real: a unix socket in front of the real engine forwards the
first requests, then closes every connection (what a dying engine does to its clients)."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.cleanup.prune import prune_leftovers
from emulator.engine import DockerEngine
from emulator.errors import EnvironmentProblem
from emulator.state.store import JobStore
from tests.fixtures.cli import EMULATOR
from tests.fixtures.sockets import SocketServer, engine_connection, unix_listener

DIGEST = "sha256:" + "0" * 64
ENGINE_GONE = (
    r"The Docker engine failed to (list its containers|remove container|list its networks)"
)

pytestmark = pytest.mark.docker


class DyingEngine(SocketServer):
    """A unix socket that relays the first ``answers`` HTTP requests to the real engine, then
    closes the connection of the next one and of every later connection."""

    def __init__(self, path: Path, engine: str, answers: int) -> None:
        self.path = path
        self.address = f"unix://{path}"
        self._engine = engine
        self._left = answers
        self._lock = threading.Lock()
        super().__init__(unix_listener(path))

    def connected(self, client: socket.socket) -> None:
        engine = engine_connection(self._engine)
        self.track(engine)
        threading.Thread(target=self._requests, args=(client, engine), daemon=True).start()
        threading.Thread(target=self._relay, args=(engine, client), daemon=True).start()

    def _answer(self, chunk: bytes) -> bool:
        """Whether the requests starting in ``chunk`` are still answered."""
        with self._lock:
            self._left -= chunk.count(b" HTTP/1.1\r\n")
            return self._left >= 0

    def _requests(self, client: socket.socket, engine: socket.socket) -> None:
        try:
            while chunk := client.recv(65536):
                if not self._answer(chunk):
                    break
                engine.sendall(chunk)
        except OSError:
            pass
        for sock in (client, engine):
            sock.close()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass


@pytest.fixture
def engine_socket() -> str:
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not where.startswith("unix://"):
        pytest.skip("the engine is not reached through a unix socket")
    return where.removeprefix("unix://")


@pytest.fixture
def dying_engine(
    request: pytest.FixtureRequest, tmp_path: Path, engine_socket: str
) -> Iterator[DyingEngine]:
    # /version (docker-py negotiates the API version: that answer is the ping), then prune's
    # own requests
    engine = DyingEngine(tmp_path / "engine.sock", engine_socket, answers=request.param)
    try:
        yield engine
    finally:
        engine.close()


@pytest.mark.parametrize("dying_engine", [1, 2], indirect=True)
def test_prune_against_an_engine_that_stops_answering_is_a_clear_error(
    dying_engine: DyingEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", dying_engine.address)
    with pytest.raises(EnvironmentProblem, match=ENGINE_GONE) as raised:
        prune_leftovers(JobStore(tmp_path / "home"), tmp_path / "work")
    assert "check that it is running (`docker info`)" in str(raised.value)


@pytest.mark.parametrize("dying_engine", [2], indirect=True)
def test_the_prune_command_against_a_dying_engine_exits_2_without_a_traceback(
    dying_engine: DyingEngine, tmp_path: Path
) -> None:
    env = {**os.environ, "DOCKER_HOST": dying_engine.address, "EMULATOR_HOME": str(tmp_path)}
    result = subprocess.run([*EMULATOR, "prune"], env=env, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "The Docker engine failed to" in result.stderr
    assert "check that it is running (`docker info`)" in result.stderr


def test_no_engine_at_docker_host_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = tmp_path / "closed.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(closed))
    listener.close()  # the socket file stays; nothing accepts on it
    monkeypatch.setenv("DOCKER_HOST", f"unix://{closed}")
    with pytest.raises(EnvironmentProblem, match=f"No Docker engine answers at unix://{closed}"):
        DockerEngine()
    # docker-py drops the socket of a refused connection unclosed: collect it here, quietly,
    # rather than in whichever test the garbage collector happens to run next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.mark.parametrize("tag", ["", ":1.0"])
def test_a_missing_image_given_by_digest_gets_a_hint_that_can_work(tag: str) -> None:
    repository = "sagemaker-emulator/not-built-here"
    image = f"{repository}{tag}@{DIGEST}"
    engine = DockerEngine()
    try:
        with pytest.raises(EnvironmentProblem) as raised:
            engine.require_image(image)
    finally:
        engine.close()
    message = str(raised.value)
    assert f"Image {image!r} is not present on the local Docker engine" in message
    assert "never pulls" in message
    assert "cannot be built locally" in message
    assert f"`docker pull {image}`" in message
    assert f"`docker build -t {repository}:local .`" in message
    assert "docker load" in message
    assert "@" not in message.partition("docker build -t ")[2].partition("`")[0]
