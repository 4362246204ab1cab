"""An engine at a tcp:// DOCKER_HOST goes through docker-py (engine/dockerpy.py), the same
interface as the unix socket's own client: a real TCP relay in front of the real engine's
socket, a container's whole life on it (attach, start, wait, exit, removal) and a job."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest

from emulator.engine import DockerEngine
from tests.fixtures.jobs import BUSYBOX, JobRunner, busybox_container
from tests.fixtures.sockets import SocketServer, engine_connection

pytestmark = pytest.mark.docker


class TcpRelay(SocketServer):
    """127.0.0.1:<port> relayed to the engine's unix socket, one connection each."""

    def __init__(self, engine: str) -> None:
        self._engine = engine
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        super().__init__(listener)

    def connected(self, client: socket.socket) -> None:
        engine = engine_connection(self._engine)
        self.track(engine)
        for source, sink in ((client, engine), (engine, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@pytest.fixture
def tcp_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not where.startswith("unix://"):
        pytest.skip("the engine is not reached through a unix socket")
    relay = TcpRelay(where.removeprefix("unix://"))
    address = f"tcp://127.0.0.1:{relay.port}"
    monkeypatch.setenv("DOCKER_HOST", address)
    try:
        yield address
    finally:
        relay.close()


def test_a_container_s_life_through_docker_py(tcp_engine: str) -> None:
    engine = DockerEngine()
    container = busybox_container(engine, "echo out 1; echo err 1 >&2; echo out 2; exit 3")
    try:
        stream = container.attach()
        container.start()
        chunks = list(stream)
        engine.wait_for_exit(container)
        ended = container.exited()
        assert ended is not None and ended.code == 3
    finally:
        container.remove()
        engine.close()
    assert b"".join(c for s, c in chunks if s == 1) == b"out 1\nout 2\n"
    assert b"".join(c for s, c in chunks if s == 2) == b"err 1\n"
    gone = container.exited()
    assert gone is not None and gone.removed


def test_a_job_through_docker_py(tcp_engine: str, jobs: JobRunner) -> None:
    algorithm = {
        "TrainingImage": BUSYBOX,
        "TrainingInputMode": "File",
        "ContainerEntrypoint": ["sh", "-c", "echo hello from tcp; test -d /opt/ml/model"],
    }
    record = jobs.run(jobs.request(AlgorithmSpecification=algorithm), stop_grace_seconds=1)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert ("algo-1", "hello from tcp") in jobs.logs
    assert jobs.leftovers(record["TrainingJobName"]) == []
