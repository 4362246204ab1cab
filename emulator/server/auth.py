"""Who may talk to the server: the loopback binding rule and SigV4 request signatures.

CreateTrainingJob runs any local image with host paths mounted, so reaching the port means owning
the machine. The server listens on loopback unless ``--auth KEYID:SECRET`` is given; with it, every
request must carry a valid AWS Signature Version 4 made with that key. The signature is recomputed
with botocore's own signer over the request as received (only the headers the client signed, its
date, the body's hash), so whatever a botocore client signs verifies here byte for byte.

Errors are AWS's own, as each protocol spells them: JSON 1.1 services (SageMaker, CloudWatch Logs)
answer ``UnrecognizedClientException``/``InvalidSignatureException`` (400); query-protocol services
(STS, IAM) answer ``InvalidClientTokenId``/``SignatureDoesNotMatch`` (403). An unsigned request gets
``MissingAuthenticationToken[Exception]`` (403), a malformed Authorization header
``IncompleteSignature[Exception]`` (400).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import quote, unquote, urlsplit

from emulator.errors import EmulatorError
from emulator.server.errors import ApiError

if TYPE_CHECKING:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest, HTTPHeaders
    from botocore.credentials import Credentials

__all__ = [
    "ALGORITHM",
    "MAX_CLOCK_SKEW",
    "QUERY_PROTOCOL_SERVICES",
    "AuthKey",
    "HeaderSource",
    "ParsedAuth",
    "SignatureChecker",
    "check_bind",
    "is_loopback",
    "parse_auth",
    "parse_auth_option",
]

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Services this server answers in the query protocol (XML errors with other codes).
QUERY_PROTOCOL_SERVICES = frozenset({"sts", "iam"})

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_INVALID_TOKEN = "The security token included in the request is invalid."


class HeaderSource(Protocol):
    """Request headers: a ``Mapping[str, str]`` or ``http.server``'s message (repeated headers
    kept, as SigV4 joins their values)."""

    def items(self) -> Iterable[tuple[str, str]]: ...


class AuthKey(NamedTuple):
    """The one access key the server accepts (``--auth KEYID:SECRET``); a plain
    ``(access key id, secret)`` pair, whose repr hides the secret."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:
        return f"AuthKey(access_key_id={self.access_key_id!r}, secret_access_key='***')"


@dataclass(frozen=True)
class ParsedAuth:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str  # YYYYMMDD, the credential scope's
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_auth(value: str) -> ParsedAuth:
    """``value``'s parts; ValueError says what is malformed, as AWS's IncompleteSignature does."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ValueError(
            f"Unsupported AWS 'algorithm': {algorithm[:40]!r} (this server accepts {ALGORITHM})"
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, equals, text = item.strip().partition("=")
        if not equals or not name:
            raise ValueError(
                f"{item.strip()[:80]!r} not a valid key=value pair (missing equal-sign) in "
                "Authorization header"
            )
        if name in parts:
            raise ValueError(f"Authorization header repeats {name!r}")
        parts[name] = text.strip()
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if n not in parts]
    if missing:
        raise ValueError(
            " ".join(f"Authorization header requires '{n}' parameter." for n in missing)
        )
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise ValueError(
            "Credential should be 'KEYID/YYYYMMDD/region/service/aws4_request', got "
            f"{parts['Credential'][:200]!r}"
        )
    if not re.fullmatch(r"\d{8}", scope[1]):
        raise ValueError(f"Credential scope date {scope[1][:20]!r} is not YYYYMMDD")
    signed = tuple(parts["SignedHeaders"].split(";"))
    if not all(signed):
        raise ValueError(f"SignedHeaders {parts['SignedHeaders'][:200]!r} has an empty name")
    if not _SIGNATURE.fullmatch(parts["Signature"]):
        raise ValueError("Signature should be 64 lowercase hexadecimal digits")
    return ParsedAuth(scope[0], scope[1], scope[2], scope[3], signed, parts["Signature"])


def parse_auth_option(value: str) -> AuthKey:
    """``--auth KEYID:SECRET`` as a key; EmulatorError says what is wrong (never echoing the
    secret)."""
    key_id, colon, secret = value.partition(":")
    if not colon:
        raise EmulatorError(
            "--auth wants ACCESS_KEY_ID:SECRET (an access key id, a colon, a secret access key); "
            "the value has no colon"
        )
    if not key_id or not _KEY_ID.fullmatch(key_id):
        raise EmulatorError(
            "--auth: the access key id (before the colon) must be 1 to 128 letters, digits, "
            "'.', '_' or '-'"
        )
    if not secret or any(ch.isspace() or not ch.isprintable() for ch in secret):
        raise EmulatorError(
            "--auth: the secret access key (after the colon) must be non-empty, without spaces "
            "or control characters"
        )
    return AuthKey(key_id, secret)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and literal loopback addresses (127.0.0.0/8, ::1); names are not
    resolved, so only what surely stays on this machine counts."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_bind(host: str, auth: tuple[str, str] | None) -> None:
    """Refuse to listen beyond loopback without ``--auth``: whoever reaches the port can run any
    image with host paths mounted."""
    if auth is None and not is_loopback(host):
        raise EmulatorError(
            f"refusing to listen on {host or 'all interfaces'!r} without --auth: anyone who "
            "reaches the port could run containers with this machine's files mounted. Keep the "
            "default --host 127.0.0.1, or give --auth ACCESS_KEY_ID:SECRET so that every request "
            "must be signed with that key"
        )


class SignatureChecker:
    """Verifies that each request is signed (SigV4) with the server's one access key."""

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        *,
        clock: Callable[[], datetime] | None = None,
        max_skew: timedelta = MAX_CLOCK_SKEW,
    ) -> None:
        self.access_key_id = access_key_id
        self._secret = secret_access_key
        self._clock = clock or (lambda: datetime.now(UTC))
        self._max_skew = max_skew

    def __repr__(self) -> str:
        return f"SignatureChecker(access_key_id={self.access_key_id!r})"

    def check(self, method: str, path: str, headers: HeaderSource, body: bytes) -> None:
        """Return if the request is signed by the key; else raise the ApiError AWS answers.
        ``path`` is the request target as received (path, then ``?`` and the query)."""
        received = _collect(headers)
        authorization = received.get("authorization")
        parsed: ParsedAuth | None = None
        if authorization:
            try:
                parsed = parse_auth(authorization[-1])
            except ValueError as exc:
                raise _error("incomplete", _is_query(received, None), str(exc)) from None
        query = _is_query(received, parsed.service if parsed else None)
        if parsed is None:
            raise _error(
                "missing",
                query,
                "Missing Authentication Token: this server runs with --auth; sign requests with "
                "its access key (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
            )
        amz_date = _amz_date(received, query)
        if amz_date[:8] != parsed.date:
            raise _error(
                "signature",
                query,
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
                f"from HTTP: '{parsed.date}' != '{amz_date[:8]}', from '{amz_date}'.",
            )
        if "host" not in parsed.signed_headers:
            raise _error(
                "incomplete", query, "'Host' must be a 'SignedHeader' in the AWS Authorization."
            )
        if not hmac.compare_digest(parsed.access_key_id.encode(), self.access_key_id.encode()):
            raise _error("unknown", query, _INVALID_TOKEN)
        self._check_time(amz_date, query)
        _check_body_hash(received, body, query)
        expected = self._signature(method, path, received, body, parsed, amz_date)
        if not hmac.compare_digest(expected.encode(), parsed.signature.encode()):
            raise _error("signature", query, _MISMATCH)

    def _check_time(self, amz_date: str, query: bool) -> None:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        now = self._clock().astimezone(UTC)
        minutes = int(self._max_skew.total_seconds() // 60)
        if signed_at < now - self._max_skew:
            raise _error(
                "signature",
                query,
                f"Signature expired: {amz_date} is now earlier than "
                f"{_stamp(now - self._max_skew)} ({_stamp(now)} - {minutes} min.)",
            )
        if signed_at > now + self._max_skew:
            raise _error(
                "signature",
                query,
                f"Signature not yet current: {amz_date} is still later than "
                f"{_stamp(now + self._max_skew)} ({_stamp(now)} + {minutes} min.)",
            )

    def _signature(
        self,
        method: str,
        path: str,
        received: Mapping[str, list[str]],
        body: bytes,
        parsed: ParsedAuth,
        amz_date: str,
    ) -> str:
        """The signature botocore's SigV4 signer makes for this request with the server's key."""
        from botocore.awsrequest import AWSRequest, HTTPHeaders
        from botocore.credentials import Credentials

        signed = HTTPHeaders()
        for name in parsed.signed_headers:
            for value in received.get(name.lower(), []):
                signed[name.lower()] = value
        request = AWSRequest(method=method, url=_canonical_url(path), data=body)
        request.context["timestamp"] = amz_date
        signer: SigV4Auth = _signer_class()(
            Credentials(self.access_key_id, self._secret), parsed.service, parsed.region, signed
        )
        canonical = signer.canonical_request(request)
        return signer.signature(signer.string_to_sign(request, canonical), request)


@functools.cache
def _signer_class() -> Any:
    """botocore's SigV4 signer, told exactly which headers the client signed (its own choice
    leaves some out, e.g. User-Agent, that other SDKs may sign)."""
    from botocore.auth import SigV4Auth

    class ReceivedSigner(SigV4Auth):
        def __init__(
            self, credentials: Credentials, service: str, region: str, signed: HTTPHeaders
        ) -> None:
            super().__init__(credentials, service, region)
            self.signed = signed

        def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
            return self.signed

    return ReceivedSigner


def _collect(headers: HeaderSource) -> dict[str, list[str]]:
    """Headers by lowercase name, repeated ones kept in order."""
    collected: dict[str, list[str]] = {}
    for name, value in headers.items():
        collected.setdefault(str(name).lower(), []).append(str(value))
    return collected


def _is_query(received: Mapping[str, list[str]], service: str | None) -> bool:
    """Whether the request is for a query-protocol service (its errors take other codes): the
    credential scope says so when signed, else a form body without an X-Amz-Target does."""
    if service is not None:
        return service in QUERY_PROTOCOL_SERVICES
    content_type = (received.get("content-type") or [""])[-1].lower()
    return "x-amz-target" not in received and content_type.startswith(
        "application/x-www-form-urlencoded"
    )


def _amz_date(received: Mapping[str, list[str]], query: bool) -> str:
    values = received.get("x-amz-date")
    if not values:
        raise _error(
            "incomplete",
            query,
            "Authorization header requires existence of an 'X-Amz-Date' header.",
        )
    value = values[-1].strip()
    if not _AMZ_DATE.fullmatch(value):
        raise _error(
            "incomplete", query, f"X-Amz-Date must be in ISO-8601 'basic format'. Got {value!r}."
        )
    try:
        datetime.strptime(value, _AMZ_DATE_FORMAT)
    except ValueError:
        raise _error("incomplete", query, f"X-Amz-Date {value!r} is not a valid date.") from None
    return value


def _check_body_hash(received: Mapping[str, list[str]], body: bytes, query: bool) -> None:
    """A client may send the body's hash; only a true one is accepted (never UNSIGNED-PAYLOAD:
    the body must be covered by the signature)."""
    values = received.get("x-amz-content-sha256")
    if not values:
        return
    claimed = values[-1].strip()
    if not _SHA256_HEX.fullmatch(claimed):
        raise _error(
            "signature",
            query,
            f"x-amz-content-sha256 {claimed[:40]!r} is not supported: sign the payload "
            "(its SHA-256 in hexadecimal)",
        )
    if not hmac.compare_digest(claimed.lower(), hashlib.sha256(body).hexdigest()):
        raise _error(
            "signature",
            query,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )


def _canonical_url(path: str) -> str:
    """A URL whose path is the one received (botocore encodes and normalizes it as a client's
    signer does) and whose query is in SigV4's canonical encoding, which clients sign whatever
    encoding they sent."""
    target = urlsplit(path) if path.startswith(("http://", "https://")) else None
    raw_path, _, raw_query = (target.path, "", target.query) if target else path.partition("?")
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append(f"{_encode(name)}={_encode(value)}")
    query = "&".join(pairs)
    return f"http://localhost{raw_path if raw_path.startswith('/') else '/' + raw_path}" + (
        f"?{query}" if query else ""
    )


def _encode(text: str) -> str:
    return quote(unquote(text), safe="-_.~")


def _stamp(moment: datetime) -> str:
    return moment.strftime(_AMZ_DATE_FORMAT)


_CODES = {
    # kind: (JSON 1.1 code, status), (query-protocol code, status)
    "missing": (("MissingAuthenticationTokenException", 403), ("MissingAuthenticationToken", 403)),
    "incomplete": (("IncompleteSignatureException", 400), ("IncompleteSignature", 400)),
    "unknown": (("UnrecognizedClientException", 400), ("InvalidClientTokenId", 403)),
    "signature": (("InvalidSignatureException", 400), ("SignatureDoesNotMatch", 403)),
}


def _error(kind: str, query: bool, message: str) -> ApiError:
    code, status = _CODES[kind][1 if query else 0]
    return ApiError(code, message, status)
