"""The HTTP side of `emulator serve`: one port, AWS JSON 1.1 routed by ``X-Amz-Target``
(``SageMaker.*``, ``Logs_20140328.*``), and the query protocol's ``Action=`` (STS, IAM).

Every answer is an AWS response a client parses: JSON 1.1 errors carry ``__type`` and
``message`` (and the ``x-amzn-ErrorType`` header), query errors an ``ErrorResponse`` document.
A bug of ours answers 500 ``InternalFailure`` with no traceback (it goes to the server's log);
bad input never does: a body over ``MAX_BODY_BYTES`` gets 413, a body that is not a JSON object
``SerializationException``, an operation that is not emulated an error naming it.
"""

from __future__ import annotations

import json
import traceback
import uuid
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from emulator.server import identity
from emulator.server.auth import HeaderSource
from emulator.server.errors import ApiError

MAX_BODY_BYTES = 8 * 1024 * 1024  # far above any CreateTrainingJob request
MAX_DISCARDED_BYTES = 64 * 1024 * 1024  # a bigger body is not even read: the line is cut
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
Notice = Callable[[str], None]


class JsonService(Protocol):
    def handle(self, operation: str, body: dict[str, Any]) -> dict[str, Any]: ...


class SignatureCheck(Protocol):
    def check(self, method: str, path: str, headers: HeaderSource, body: bytes) -> None: ...


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True  # a client that keeps a connection open never holds the exit back
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        json_services: Mapping[str, JsonService],
        signatures: SignatureCheck | None,
        notice: Notice,
    ) -> None:
        self.json_services = dict(json_services)  # by X-Amz-Target prefix
        self.signatures = signatures
        self.notice = notice
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the jobs' notices

    def _serve(self) -> None:
        target = self.headers.get("X-Amz-Target")
        query_service: str | None = None  # sts or iam: errors then go out as XML
        try:
            body = self._body()
            params: dict[str, str] = {}
            if not target:
                params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
                params.update(identity.parse_form(body))
                query_service = identity.query_service(self.headers, params)
            if self.server.signatures is not None:
                self.server.signatures.check(self.command, self.path, self.headers, body)
            if target:
                self._json(target, body)
            elif query_service is not None:
                status, answer = identity.handle_query(query_service, params)
                self._send(status, identity.XML_CONTENT_TYPE, answer)
            else:
                raise ApiError(
                    "MissingAction",
                    "emulator serve answers AWS JSON 1.1 requests (X-Amz-Target: SageMaker.* "
                    "or Logs_20140328.*) and STS/IAM query requests (Action=...); this request "
                    "is neither: is the client's endpoint variable meant for another service?",
                )
        except ApiError as exc:
            self._error(exc, query_service)
        except Exception:  # a bug of ours: say so, keep serving
            self.server.notice(
                f"internal error answering {target or self.path}:\n{traceback.format_exc()}"
            )
            failure = ApiError(
                "InternalFailure", "emulator serve failed on this request; see its log", 500
            )
            self._error(failure, query_service)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise ApiError("MissingContentLength", "send the body with a Content-Length", 411)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ApiError("SerializationException", "Content-Length is not a number") from None
        if length > MAX_BODY_BYTES:
            self._discard(length)
            raise ApiError(
                "RequestEntityTooLarge",
                f"the request body has {length} bytes; at most {MAX_BODY_BYTES} are accepted",
                413,
            )
        return self.rfile.read(length) if length > 0 else b""

    def _discard(self, length: int) -> None:
        """Read a refused body (up to a bound) so the client reads the answer, not a reset."""
        left = length if length <= MAX_DISCARDED_BYTES else 0
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        self.close_connection = True

    def _json(self, target: str, raw: bytes) -> None:
        prefix, _, operation = target.partition(".")
        service = self.server.json_services.get(prefix)
        if service is None or not operation:
            raise ApiError(
                "UnknownOperationException",
                f"{target} is not emulated; emulator serve answers the targets "
                f"{', '.join(p + '.*' for p in self.server.json_services)}",
            )
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError("SerializationException", f"the body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ApiError("SerializationException", "the body must be a JSON object")
        answer = json.dumps(service.handle(operation, body)).encode()
        self._send(200, JSON_CONTENT_TYPE, answer)

    def _error(self, error: ApiError, query_service: str | None) -> None:
        if query_service is not None:
            status, body = identity.error_response(query_service, error)
            self._send(status, identity.XML_CONTENT_TYPE, body)
            return
        body = json.dumps({"__type": error.code, "message": error.message}).encode()
        self._send(error.status, JSON_CONTENT_TYPE, body, {"x-amzn-ErrorType": error.code})

    def _send(
        self, status: int, content_type: str, body: bytes, headers: Mapping[str, str] = {}
    ) -> None:
        self.send_response(
            status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else None
        )
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def _phrase(status: int) -> str | None:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return None
