"""The engine at a DOCKER_HOST that is not a unix socket (tcp://, ssh://, TLS through
DOCKER_TLS_VERIFY/DOCKER_CERT_PATH), through docker-py: it knows them all. Imported by
``client.connect`` only for such an engine, so a job on the local socket never pays for
``import docker`` (requests, urllib3, ...). It is a ``Transport`` like ``http.py``'s, and
turns docker-py's and requests' errors into ``EngineAnswer`` / ``EngineUnreachable``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import requests
import requests.exceptions

from emulator.engine.http import (
    DEFAULT_TIMEOUT,
    POOL_SIZE,
    EngineAnswer,
    EngineUnreachable,
    Query,
    Reply,
    explanation_of,
)

_FAILURES = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


class DockerPyTransport:
    """Requests through docker-py's session (its adapters for tcp, TLS and ssh)."""

    def __init__(self, timeout: float, version: str | None) -> None:
        try:
            # Without a version docker-py asks the engine for it: that answer is the ping.
            self._client = docker.from_env(
                timeout=int(timeout), max_pool_size=POOL_SIZE, version=version
            )
            self.api = self._client.api
            if version is not None:
                self.api.ping()
        except _FAILURES as error:
            raise _translated(error) from None
        self.where = str(self.api.base_url)
        self.api_version = str(self.api.api_version)

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
        try:
            response = self.api.request(
                method, self.where + path, params=_params(query), json=body, timeout=timeout
            )
        except _FAILURES as error:
            raise _translated(error) from None
        _check(response, path)
        return Reply(response.status_code, response.content, dict(response.headers))

    def stream(
        self, method: str, path: str, *, query: Query = None, timeout: float | None = None
    ) -> _Stream:
        try:
            response = self.api.request(
                method, self.where + path, params=_params(query), stream=True, timeout=timeout
            )
        except _FAILURES as error:
            raise _translated(error) from None
        _check(response, path)
        return _Stream(response)

    def hijack(self, path: str, *, query: Query = None) -> Any:
        headers = {"Connection": "Upgrade", "Upgrade": "tcp"}
        try:
            response = self.api.request(
                "POST", self.where + path, params=_params(query), headers=headers, stream=True
            )
            _check(response, path)
            get_socket = self.api._get_raw_response_socket  # type: ignore[attr-defined]
            return get_socket(response)  # docker-py's way to the socket, scheme by scheme
        except _FAILURES as error:
            raise _translated(error) from None

    def close(self) -> None:
        self._client.close()


class _Stream:
    def __init__(self, response: requests.Response) -> None:
        self._response = response

    def lines(self) -> Iterator[bytes]:
        try:
            yield from self._response.iter_lines()
        except _FAILURES as error:
            raise _translated(error) from None

    def chunks(self, size: int) -> Iterator[bytes]:
        try:
            yield from self._response.iter_content(size)
        except _FAILURES as error:
            raise _translated(error) from None

    def close(self) -> None:
        for part in _sockets(self._response):
            with contextlib.suppress(OSError, ValueError):
                part.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
        with contextlib.suppress(*_FAILURES, ValueError):
            self._response.close()


def _params(query: Query) -> dict[str, Any] | None:
    if not query:
        return None
    return {k: int(v) if isinstance(v, bool) else v for k, v in query.items()}


def _check(response: requests.Response, path: str) -> None:
    if response.status_code >= 400:
        explanation = explanation_of(response.content)
        response.close()
        raise EngineAnswer(response.status_code, str(response.reason), path, explanation)


def _translated(error: BaseException) -> EngineAnswer | EngineUnreachable:
    if isinstance(error, docker.errors.APIError) and error.response is not None:
        status = error.response.status_code
        return EngineAnswer(status, str(error.response.reason), "", str(error.explanation or ""))
    return EngineUnreachable(str(error) or type(error).__name__)


def _sockets(response: requests.Response) -> list[socket.socket]:
    """The socket under a streamed response (BufferedReader -> SocketIO -> socket; TLS:
    SSLSocket): a shutdown wakes a blocked read, which closing alone does not."""
    part = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    for _ in range(3):
        part = getattr(part, "raw", None) or getattr(part, "_sock", None)
        if isinstance(part, socket.socket):
            return [part]
    return []
