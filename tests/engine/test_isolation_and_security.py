"""EnableNetworkIsolation and the security defaults: no way out of an isolated job's network
(its hosts still reach each other) and no credentials; containers never privileged, in no host
namespace, FastFile data read-only; sensitive host paths refused as channels, checkpoints or
output unless allowed."""

from __future__ import annotations

import http.server
import ipaddress
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from emulator.errors import RequestInvalid
from emulator.state.store import JobStore
from tests.fixtures.cli import EMULATOR
from tests.fixtures.inspect import inspecting_sink
from tests.fixtures.jobs import PROBE, JobRunner, channel, unique_name

MakeFiles = Callable[[dict[str, bytes]], Path]


def two_hosts() -> dict[str, Any]:
    return {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1}


def shell(script: str, **environment: str) -> dict[str, Any]:
    return {
        "AlgorithmSpecification": {
            "TrainingImage": PROBE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", 'eval "$SCRIPT"'],
        },
        "Environment": {"SCRIPT": script, **environment},
    }


@pytest.fixture
def host_server() -> Iterator[tuple[str, int, list[str]]]:
    """An HTTP server on the Docker bridge's gateway address (the host, as containers see it):
    (address, port, clients it answered)."""
    client = docker.from_env()
    try:
        [config] = client.networks.get("bridge").attrs["IPAM"]["Config"]
    finally:
        client.close()
    # docker0's address: the IPAM gateway, which the engine leaves out when it is the default
    # (the subnet's first address).
    gateway = config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    clients: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            clients.append(self.client_address[0])
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"host says hello\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((gateway, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway, server.server_address[1], clients
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


REACH = """
me=$(hostname); out=/opt/ml/model/$me; mkdir -p $out
peer=algo-1; [ $me = algo-1 ] && peer=algo-2
ping -c 1 -w 10 $peer > /dev/null 2>&1 && echo ok > $out/peer
printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $SERVER $PORT > $out/outbound 2>&1
env > $out/env
sleep 1  # the peer may still be pinging us
"""


@pytest.mark.docker
@pytest.mark.parametrize("isolated", [False, True], ids=["open", "isolated"])
def test_network_isolation_cuts_the_way_out_but_not_between_hosts(
    jobs: JobRunner,
    host_server: tuple[str, int, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    isolated: bool,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    address, port, clients = host_server
    request = jobs.request(
        ResourceConfig=two_hosts(),
        EnableNetworkIsolation=isolated,
        **shell(REACH, SERVER=address, PORT=str(port)),
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert record["EnableNetworkIsolation"] is isolated
    model = jobs.model(record)
    for host in ("algo-1", "algo-2"):
        answered = b"host says hello" in model[f"{host}/outbound"]
        assert answered is not isolated, model[f"{host}/outbound"]
        assert model[f"{host}/peer"] == b"ok\n"  # the hosts of one job always see each other
        assert b"AWS_ACCESS_KEY_ID" not in model[f"{host}/env"]
        assert b"AWS_SECRET_ACCESS_KEY" not in model[f"{host}/env"]
        assert b"AWS_SESSION_TOKEN" not in model[f"{host}/env"]
    assert len(clients) == (0 if isolated else 2)


ALONE = """
echo up; out=/opt/ml/model
ping -c 1 -w 5 algo-1 > /dev/null 2>&1 && echo ok > $out/self
printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $SERVER $PORT > $out/outbound 2>&1
true
"""


@pytest.mark.docker
@pytest.mark.parametrize("isolated", [False, True], ids=["open", "isolated"])
def test_a_single_host_resolves_itself_on_the_default_bridge_or_an_isolated_network(
    jobs: JobRunner, host_server: tuple[str, int, list[str]], isolated: bool
) -> None:
    """One host needs no network of its own (the engine's default bridge, as `docker run`),
    unless isolated: then its own network with no way out, as for several hosts."""
    address, port, clients = host_server
    seen: dict[str, dict[str, Any]] = {}
    request = jobs.request(
        EnableNetworkIsolation=isolated, **shell(ALONE, SERVER=address, PORT=str(port))
    )
    record = jobs.run(request, log_sink=inspecting_sink(jobs, request, seen))
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    model = jobs.model(record)
    assert model["self"] == b"ok\n"  # algo-1 resolves and answers, isolated or not
    assert (b"host says hello" in model["outbound"]) is not isolated, model["outbound"]
    assert len(clients) == (0 if isolated else 1)
    config = seen["algo-1"]["HostConfig"]
    if isolated:
        assert config["NetworkMode"].startswith(f"sm-{request['TrainingJobName']}-")
    else:
        assert config["NetworkMode"] in ("bridge", "default")
    assert seen["algo-1"]["Config"]["Hostname"] == "algo-1"
    assert jobs.leftovers(request["TrainingJobName"]) == []  # the default bridge stays


@pytest.mark.docker
def test_containers_are_unprivileged_in_no_host_namespace_with_fastfile_read_only(
    jobs: JobRunner, make_files: MakeFiles
) -> None:
    seen: dict[str, dict[str, Any]] = {}
    data = make_files({"a.txt": b"a"})
    request = jobs.request(
        ResourceConfig=two_hosts(),
        InputDataConfig=[
            channel("fast", data, InputMode="FastFile"),
            channel("file", data),
        ],
        **shell("echo up; touch /opt/ml/input/data/fast/new 2>/dev/null && exit 7; sleep 0.5"),
    )
    record = jobs.run(request, log_sink=inspecting_sink(jobs, request, seen))
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert set(seen) == {"algo-1", "algo-2"}
    for host, attrs in seen.items():
        config = attrs["HostConfig"]
        assert config["Privileged"] is False
        assert config["NetworkMode"].startswith(f"sm-{request['TrainingJobName']}-")
        assert config["PidMode"] == ""
        assert config["IpcMode"] in ("private", "shareable", "")
        assert config["UTSMode"] == ""
        assert config["UsernsMode"] == ""
        assert not config["CapAdd"]
        assert not config["Devices"]
        assert not config.get("Binds")
        assert attrs["Config"]["Hostname"] == host
        mounts = {m["Destination"]: m for m in attrs["Mounts"]}
        assert mounts["/opt/ml/input/data/fast"]["RW"] is False
        assert mounts["/opt/ml/input/data"]["RW"] is True  # File channels are writable
        assert mounts["/opt/ml/model"]["RW"] is True
        assert not [m for m in attrs["Mounts"] if "docker.sock" in m["Source"]]


def linked_to_key(make_files: MakeFiles, user_home: Path) -> Path:
    data = make_files({"ok.txt": b"ok"})
    (data / "key").symlink_to(user_home / ".ssh" / "id_ed25519")
    return data


@pytest.mark.docker
@pytest.mark.parametrize(
    ("case", "field", "secret"),
    [
        ("channel-ssh", "InputDataConfig[train]", ".ssh"),
        ("channel-home", "InputDataConfig[train]", ".aws"),
        ("channel-etc", "InputDataConfig[train]", "/etc"),
        ("channel-root", "InputDataConfig[train]", "/"),
        ("channel-docker-socket", "InputDataConfig[train]", "docker.sock"),
        ("channel-link-to-key", "InputDataConfig[train] file key", ".ssh"),
        ("checkpoint-aws", "CheckpointConfig.S3Uri", ".aws"),
        ("output-home", "OutputDataConfig.S3OutputPath", ".aws"),
    ],
)
def test_sensitive_host_paths_are_refused_before_anything_exists(
    jobs: JobRunner, user_home: Path, make_files: MakeFiles, case: str, field: str, secret: str
) -> None:
    members: dict[str, Any] = {}
    channel_at = {
        "channel-ssh": user_home / ".ssh",
        "channel-home": user_home,
        "channel-etc": Path("/etc"),
        "channel-root": Path("/"),
        "channel-docker-socket": Path("/var/run/docker.sock"),
    }
    if case in channel_at:
        members["InputDataConfig"] = [channel("train", channel_at[case])]
    elif case == "channel-link-to-key":
        members["InputDataConfig"] = [channel("train", linked_to_key(make_files, user_home))]
    elif case == "checkpoint-aws":
        members["CheckpointConfig"] = {"S3Uri": f"file://{user_home / '.aws'}"}
    else:
        members["OutputDataConfig"] = {"S3OutputPath": str(user_home)}
    request = jobs.request(**members)
    with pytest.raises(RequestInvalid) as refused:
        jobs.run(request)
    message = str(refused.value)
    assert field in message
    assert secret in message
    assert "--allow-sensitive-paths" in message
    assert JobStore(jobs.home).all_jobs() == []
    assert jobs.leftovers(request["TrainingJobName"]) == []


@pytest.mark.docker
def test_sensitive_paths_are_used_when_allowed(
    jobs: JobRunner, user_home: Path, make_files: MakeFiles
) -> None:
    request = jobs.request(InputDataConfig=[channel("train", linked_to_key(make_files, user_home))])
    record = jobs.run(request, allow_sensitive_paths=True)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert "./train/key" in jobs.probe(record, "data.sha256")


@pytest.mark.docker
def test_the_cli_refuses_a_sensitive_channel_unless_allowed(
    jobs: JobRunner, user_home: Path
) -> None:
    env = {
        **os.environ,
        "HOME": str(user_home),
        "EMULATOR_HOME": str(jobs.home),
        "TMPDIR": str(jobs.work_root),
    }
    command = [*EMULATOR, "run", "--quiet", "--image", PROBE, "--output", str(jobs.output)]
    command += ["--channel", f"train={user_home / '.aws'}"]
    refused = subprocess.run(
        [*command, "--job-name", unique_name()], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert "sensitive host path" in refused.stderr and "Traceback" not in refused.stderr
    allowed = subprocess.run(
        [*command, "--allow-sensitive-paths", "--job-name", unique_name()],
        env=env,
        capture_output=True,
        text=True,
    )
    assert allowed.returncode == 0, allowed.stderr
