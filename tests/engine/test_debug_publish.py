"""`emulator run --publish` (issue 12): algo-1's container port reached from this machine on
127.0.0.1 only, a free port chosen and given as a notice when none is asked for; a taken port
or network isolation refused before anything exists."""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from typing import Any

import pytest

from emulator import EmulatorError, PublishedPort, RunOptions, api
from tests.fixtures.inspect import container_attrs
from tests.fixtures.jobs import PYTHON, JobRunner

pytestmark = pytest.mark.timeout(120)

# Serves the host's /opt/ml/input/config for one request (or 60 s), then ends the job.
SERVER = (
    "import http.server as h, os; os.chdir('/opt/ml/input/config'); "
    "s = h.HTTPServer(('', 8000), h.SimpleHTTPRequestHandler); s.timeout = 60; "
    "s.handle_request()"
)
NOTICE = re.compile(r"^algo-1:8000 -> 127\.0\.0\.1:(\d+)$")


def server_job(jobs: JobRunner) -> dict[str, Any]:
    return jobs.request(
        AlgorithmSpecification={
            "TrainingImage": PYTHON,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["python3", "-c", SERVER],
        }
    )


def start(jobs: JobRunner, request: dict[str, Any], options: RunOptions) -> dict[str, Any]:
    """Run the job in a thread; return (once the port's notice came) the dict that gets its
    record when it ends, and the notice's port under "port"."""
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(api.run(request, options)))
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and thread.is_alive():
        found = [m for m in map(NOTICE.match, jobs.notices) if m is not None]
        if found:
            result["port"] = int(found[0].group(1))
            result["thread"] = thread
            return result
        time.sleep(0.05)
    thread.join()
    raise AssertionError(f"no port notice: {jobs.notices}, {result}")


def get(port: int, path: str) -> bytes:
    deadline = time.monotonic() + 10
    while True:  # the server may not listen yet
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
                return bytes(reply.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_published_port_is_reached_on_a_free_port_of_loopback_only(jobs: JobRunner) -> None:
    request = server_job(jobs)
    name = request["TrainingJobName"]
    running = start(jobs, request, jobs.options(publish=(PublishedPort(8000),)))
    bindings = container_attrs(name, "algo-1")["HostConfig"]["PortBindings"]
    assert bindings == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}  # engine's pick
    assert b'"current_host": "algo-1"' in get(running["port"], "/resourceconfig.json").replace(
        b'":"', b'": "'
    )
    running["thread"].join(60)
    assert running["TrainingJobStatus"] == "Completed"
    assert jobs.leftovers(name) == []


def test_a_chosen_host_port_is_used(jobs: JobRunner) -> None:
    with socket.socket() as probe:  # a free port, released for the job
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = server_job(jobs)
    running = start(jobs, request, jobs.options(publish=(PublishedPort(8000, port),)))
    assert running["port"] == port
    bindings = container_attrs(request["TrainingJobName"], "algo-1")["HostConfig"]["PortBindings"]
    assert bindings == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert b"algo-1" in get(port, "/resourceconfig.json")
    running["thread"].join(60)
    assert running["TrainingJobStatus"] == "Completed"


def test_a_taken_port_and_network_isolation_are_refused_before_the_job(jobs: JobRunner) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        request = server_job(jobs)
        with pytest.raises(EmulatorError, match=f"port {port} of 127.0.0.1 is taken"):
            api.run(request, jobs.options(publish=(PublishedPort(8000, port),)))
    assert jobs.leftovers(request["TrainingJobName"]) == []
    isolated = {**server_job(jobs), "EnableNetworkIsolation": True}
    with pytest.raises(EmulatorError, match="cannot be used with EnableNetworkIsolation"):
        api.run(isolated, jobs.options(publish=(PublishedPort(8000),)))
    assert jobs.leftovers(isolated["TrainingJobName"]) == []
