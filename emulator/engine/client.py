"""The Engine API calls the package makes, over a ``Transport`` (``http.py``, ``dockerpy.py``).

``connect`` picks the transport from DOCKER_HOST: ``unix://`` (or none: the default socket)
is ours, anything else (tcp://, ssh://, TLS through DOCKER_TLS_VERIFY/DOCKER_CERT_PATH) goes
through docker-py, imported only then. The API version is negotiated once per engine and
process: the engine's own (``/_ping`` says it), at most ``MAX_API_VERSION`` (docker-py 7's).

The calls keep docker-py's names and meanings where the package used them (``containers``,
``inspect_container``, ``remove_container``, ...); the bodies of ``create_container`` and
``create_network`` are the Engine API's own, built by ``container_config`` and friends.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from emulator.engine.http import DEFAULT_TIMEOUT, Query, Streamed, Transport, UnixTransport

DEFAULT_SOCKET = "/var/run/docker.sock"
MAX_API_VERSION = "1.45"  # docker-py 7's default; an older engine's own is used below it
MIN_API_VERSION = "1.24"  # docker-py 7's minimum
_VERSIONS: dict[str, str] = {}  # docker-py's engines: address -> the API version it speaks
_VERSIONS_LOCK = threading.Lock()


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def connect(where: str, timeout: float = DEFAULT_TIMEOUT) -> EngineClient:
    """A client of the engine at ``where``; its first call (the version, or a ping when the
    version is known) tells whether the engine answers (EngineError when not)."""
    transport: Transport
    if where.startswith("unix://"):
        transport = UnixTransport(where.removeprefix("unix://"))
        try:
            version = _negotiate(transport)  # one request: the ping says the version
        except BaseException:
            transport.close()
            raise
    else:
        from emulator.engine.dockerpy import DockerPyTransport  # docker-py: only here

        with _VERSIONS_LOCK:
            known = _VERSIONS.get(where)
        docker_py = DockerPyTransport(timeout, known)
        transport, version = docker_py, docker_py.api_version
    with _VERSIONS_LOCK:
        _VERSIONS[where] = version
    return EngineClient(transport, version)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _negotiate(transport: Transport) -> str:
    reply = transport.request("GET", "/_ping")
    engine = reply.headers.get("api-version", "")
    if not engine:  # an engine too old to say: ask its version
        engine = str((transport.request("GET", "/version").json() or {}).get("ApiVersion"))
    if not _version_key(engine):
        return MIN_API_VERSION
    return min(engine, MAX_API_VERSION, key=_version_key)


def _name(value: str) -> str:
    """A name or id as a path component (an image's may hold / and :)."""
    return quote(value, safe="/:@")


def filters_query(filters: Mapping[str, Any] | None) -> str | None:
    """Engine list filters as JSON (every value a list of strings)."""
    if not filters:
        return None
    converted = {}
    for key, value in filters.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        values = value if isinstance(value, list) else [value]
        converted[key] = [str(item) for item in values]
    return json.dumps(converted)


class EngineClient:
    """The Engine API, version ``api_version``, over ``transport``."""

    def __init__(self, transport: Transport, api_version: str) -> None:
        self.transport = transport
        self.api_version = api_version
        self._prefix = f"/v{api_version}"

    def close(self) -> None:
        self.transport.close()

    def _get(self, path: str, query: Query = None, **options: Any) -> Any:
        return self.transport.request("GET", self._prefix + path, query=query, **options).json()

    def _post(self, path: str, query: Query = None, body: Any = None, **options: Any) -> Any:
        reply = self.transport.request(
            "POST", self._prefix + path, query=query, body=body, **options
        )
        return reply.json()

    def _delete(self, path: str, query: Query = None) -> None:
        self.transport.request("DELETE", self._prefix + path, query=query)

    # -- the engine ----------------------------------------------------------------------------

    def ping(self) -> bool:
        self.transport.request("GET", "/_ping")
        return True

    def version(self) -> dict[str, Any]:
        return dict(self._get("/version"))

    def info(self) -> dict[str, Any]:
        return dict(self._get("/info"))

    # -- images and networks -------------------------------------------------------------------

    def inspect_image(self, image: str) -> dict[str, Any]:
        return dict(self._get(f"/images/{_name(image)}/json"))

    def inspect_network(self, network: str) -> dict[str, Any]:
        return dict(self._get(f"/networks/{_name(network)}"))

    def networks(self, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        query = {"filters": f} if (f := filters_query(filters)) else None
        return list(self._get("/networks", query) or [])

    def create_network(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._post("/networks/create", body=dict(body)) or {})

    def remove_network(self, network: str) -> None:
        self._delete(f"/networks/{_name(network)}")

    # -- containers ----------------------------------------------------------------------------

    def containers(
        self, all: bool = False, filters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        query: dict[str, str | int | bool] = {"all": all}
        if f := filters_query(filters):
            query["filters"] = f
        return list(self._get("/containers/json", query) or [])

    def create_container(
        self, config: Mapping[str, Any], name: str | None = None
    ) -> dict[str, Any]:
        query = {"name": name} if name else None
        return dict(self._post("/containers/create", query, body=dict(config)))

    def start(self, container: str) -> None:
        self._post(f"/containers/{_name(container)}/start")

    def wait(self, container: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the container's process ends (on a connection of its own)."""
        path = f"/containers/{_name(container)}/wait"
        return dict(self._post(path, timeout=timeout, dedicated=True) or {})

    def inspect_container(self, container: str) -> dict[str, Any]:
        return dict(self._get(f"/containers/{_name(container)}/json"))

    def kill(self, container: str, signal: str = "SIGKILL") -> None:
        self._post(f"/containers/{_name(container)}/kill", {"signal": signal})

    def remove_container(self, container: str, force: bool = False, v: bool = False) -> None:
        self._delete(f"/containers/{_name(container)}", {"force": force, "v": v})

    def attach_socket(self, container: str, params: Query = None) -> Any:
        """The raw stream of an attach (multiplexed frames without a TTY), socket-like."""
        return self.transport.hijack(
            f"{self._prefix}/containers/{_name(container)}/attach", query=params
        )

    def get_archive(self, container: str, path: str, chunk_size: int) -> Iterator[bytes]:
        """The tar stream of ``path`` in the container, in chunks of up to ``chunk_size``."""
        stream = self.transport.stream(
            "GET",
            f"{self._prefix}/containers/{_name(container)}/archive",
            query={"path": path},
            timeout=DEFAULT_TIMEOUT,
        )
        try:
            yield from stream.chunks(chunk_size)
        finally:
            stream.close()

    def stats(self, container: str, timeout: float | None) -> Streamed:
        """The stats stream (a JSON document a line), on a connection of its own."""
        path = f"{self._prefix}/containers/{_name(container)}/stats"
        return self.transport.stream("GET", path, query={"stream": 1}, timeout=timeout)


# -- bodies ------------------------------------------------------------------------------------


def bind_mount(target: str, source: str, read_only: bool = False) -> dict[str, Any]:
    return {"Target": target, "Source": source, "Type": "bind", "ReadOnly": read_only}


def device_request(
    count: int,
    capabilities: Sequence[Sequence[str]],
    *,
    driver: str = "",
    device_ids: Sequence[str] = (),
    options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "Driver": driver,
        "Count": count,
        "DeviceIDs": list(device_ids),
        "Capabilities": [list(c) for c in capabilities],
        "Options": dict(options or {}),
    }


def port_key(port: int) -> str:
    return f"{port}/tcp"


# Ports are published on 127.0.0.1 only: a debugger or profiler port open on every interface
# would hand the container to the whole network.
LOOPBACK = "127.0.0.1"


def port_bindings(ports: Mapping[int, int | None]) -> dict[int | str, Any]:
    """The port bindings of ``ports`` (container port -> host port or None) as
    ``host_config`` takes them: on 127.0.0.1 only; without a host port the engine
    picks a free one."""
    return {
        container: (LOOPBACK,) if host is None else (LOOPBACK, host)
        for container, host in ports.items()
    }


def host_config(
    *,
    mounts: Sequence[Mapping[str, Any]],
    network_mode: str,
    device_requests: Sequence[Mapping[str, Any]] = (),
    extra_hosts: Mapping[str, str] | None = None,
    nano_cpus: int | None = None,
    memory_bytes: int | None = None,
    port_bindings: Mapping[int | str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """A HostConfig: never privileged, no host namespace, no added capability."""
    config: dict[str, Any] = {
        "Mounts": [dict(m) for m in mounts],
        "NetworkMode": network_mode,
        "Privileged": False,
    }
    if device_requests:
        config["DeviceRequests"] = [dict(r) for r in device_requests]
    if extra_hosts:
        config["ExtraHosts"] = [f"{name}:{address}" for name, address in extra_hosts.items()]
    if nano_cpus:
        config["NanoCpus"] = nano_cpus
    if memory_bytes:
        config["Memory"] = memory_bytes
    if port_bindings:  # container port -> (address,) or (address, host port)
        config["PortBindings"] = {
            port_key(int(port)): [
                {"HostIp": binding[0], "HostPort": str(binding[1]) if len(binding) > 1 else ""}
            ]
            for port, binding in port_bindings.items()
        }
    return config


def container_config(
    image: str,
    host: Mapping[str, Any],
    *,
    entrypoint: Sequence[str] | None = None,
    command: Sequence[str] | None = None,
    environment: Mapping[str, str] | Sequence[str] | None = None,
    hostname: str | None = None,
    labels: Mapping[str, str] | None = None,
    networking: Mapping[str, Any] | None = None,
    ports: Sequence[int] = (),
    stdin_open: bool = False,
    tty: bool = False,
    user: str | None = None,
    working_dir: str | None = None,
    network_disabled: bool = False,
) -> dict[str, Any]:
    """A container's create body; stdout and stderr attachable, stdin once when kept open
    (it ends when the client attached to it lets go), as ``docker run`` makes them."""
    if isinstance(environment, Mapping):
        environment = [f"{key}={value}" for key, value in environment.items()]
    config: dict[str, Any] = {
        "Image": image,
        "Tty": tty,
        "OpenStdin": stdin_open,
        "StdinOnce": stdin_open,
        "AttachStdin": stdin_open,
        "AttachStdout": True,
        "AttachStderr": True,
        "NetworkDisabled": network_disabled,
        "HostConfig": dict(host),
    }
    optional: dict[str, Any] = {
        "Entrypoint": None if entrypoint is None else list(entrypoint),
        "Cmd": None if command is None else list(command),
        "Env": None if environment is None else list(environment),
        "Hostname": hostname,
        "Labels": None if labels is None else dict(labels),
        "NetworkingConfig": None if networking is None else dict(networking),
        "ExposedPorts": {port_key(p): {} for p in ports} or None,
        "User": user,
        "WorkingDir": working_dir,
    }
    config.update({key: value for key, value in optional.items() if value is not None})
    return config


def endpoints(network: str, aliases: Sequence[str], address: str | None) -> dict[str, Any]:
    """The NetworkingConfig of a container joining ``network`` (aliases, a fixed address)."""
    endpoint: dict[str, Any] = {"Aliases": list(aliases)}
    if address is not None:
        endpoint["IPAMConfig"] = {"IPv4Address": address}
    return {"EndpointsConfig": {network: endpoint}}
