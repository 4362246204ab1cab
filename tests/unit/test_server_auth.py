"""`emulator serve --auth`: requests signed by botocore (its SigV4 signer, and a real client) pass
the server's check; any change after signing, a wrong key, a stale date or no signature fails
with the error AWS gives. And the loopback rule: no non-loopback --host without --auth."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse, HTTPHeaders
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from emulator.errors import EmulatorError
from emulator.server.auth import (
    AuthKey,
    SignatureChecker,
    check_bind,
    is_loopback,
    parse_auth,
    parse_auth_option,
)
from emulator.server.errors import ApiError

KEY = "AKIDLOCALTEST"
SECRET = "local/secret+key"
JSON_TYPE = "application/x-amz-json-1.1"


@pytest.fixture(autouse=True)
def _no_aws_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)


Received = tuple[str, str, dict[str, str], bytes]


def received(prepared: AWSPreparedRequest) -> Received:
    """What a server receives for ``prepared``: method, request target, headers (with the Host
    header the HTTP client adds), body."""
    url = urlsplit(prepared.url)
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = {  # header values leave botocore as str or bytes; they arrive as text
        name: value.decode("latin-1") if isinstance(value, bytes) else value
        for name, value in prepared.headers.items()
    }
    headers["Host"] = url.netloc
    body = prepared.body if isinstance(prepared.body, bytes) else (prepared.body or "").encode()
    return prepared.method, target, headers, body


def sign(
    url: str = "http://127.0.0.1:8080/",
    body: bytes = b'{"MaxResults": 5}',
    headers: dict[str, str] | None = None,
    *,
    key: str = KEY,
    secret: str = SECRET,
    service: str = "sagemaker",
    signer: type[SigV4Auth] = SigV4Auth,
) -> Received:
    """A request signed as botocore signs: SigV4Auth over an AWSRequest."""
    request = AWSRequest(
        "POST",
        url,
        data=body,
        headers=headers
        or {"Content-Type": JSON_TYPE, "X-Amz-Target": "SageMaker.ListTrainingJobs"},
    )
    signer(Credentials(key, secret), service, "eu-west-1").add_auth(request)
    return received(request.prepare())


def rejected(request: Received, checker: SignatureChecker | None = None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        (checker or SignatureChecker(KEY, SECRET)).check(*request)
    return caught.value


def test_a_botocore_signature_passes() -> None:
    SignatureChecker(KEY, SECRET).check(*sign())


def test_encoded_paths_and_query_strings_pass_as_clients_sign_them() -> None:
    checker = SignatureChecker(KEY, SECRET)
    url = "http://localhost:9000/base/a%20b/%E2%82%AC/x%2Fy?b=2&a=x%2Fy&flag&e=&sp=a%20b"
    method, target, headers, body = sign(url)
    checker.check(method, target, headers, body)
    # The same query sent in another valid encoding and order: SigV4 signs its canonical form.
    path, _, _ = target.partition("?")
    checker.check(method, f"{path}?sp=a%20b&e=&flag&a=x/y&b=%32", headers, body)


def test_an_absolute_form_request_target_passes() -> None:
    method, target, headers, body = sign("http://127.0.0.1:8080/p?x=1")
    SignatureChecker(KEY, SECRET).check(method, f"http://127.0.0.1:8080{target}", headers, body)


def test_a_real_botocore_client_request_passes() -> None:
    captured: list[AWSPreparedRequest] = []

    def capture(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {}, _Raw(b'{"TrainingJobSummaries": []}'))

    client = botocore.session.get_session().create_client(
        "sagemaker",
        endpoint_url="http://127.0.0.1:8080",
        region_name="us-west-2",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )
    client.meta.events.register("before-send.sagemaker.ListTrainingJobs", capture)
    client.list_training_jobs(NameContains="mnist", MaxResults=3)
    request = received(captured[0])
    assert "SignedHeaders=" in request[2]["Authorization"]
    SignatureChecker(KEY, SECRET).check(*request)
    # Sent again a minute later by someone without the key, with another body: refused.
    assert rejected((*request[:3], b'{"MaxResults": 100}')).code == "InvalidSignatureException"


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


@pytest.mark.parametrize(
    "change",
    ["body", "signed header", "path", "query", "date", "secret"],
)
def test_a_change_after_signing_is_an_invalid_signature(change: str) -> None:
    method, target, headers, body = sign("http://127.0.0.1:8080/api?x=1")
    secret = SECRET
    if change == "body":
        body = body.replace(b"5", b"6")
    elif change == "signed header":
        headers["X-Amz-Target"] = "SageMaker.CreateTrainingJob"
    elif change == "path":
        target = target.replace("/api", "/apj")
    elif change == "query":
        target = target.replace("x=1", "x=2")
    elif change == "date":
        signed = datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        if signed.second == 59:  # stay on the same day as the credential scope
            signed -= timedelta(seconds=2)
        headers["X-Amz-Date"] = (signed + timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
    else:
        secret = "another secret"
    error = rejected((method, target, headers, body), SignatureChecker(KEY, secret))
    assert (error.code, error.status) == ("InvalidSignatureException", 400)
    assert error.message.startswith(
        "The request signature we calculated does not match the signature you provided."
    )


def test_unsigned_headers_may_change() -> None:
    method, target, headers, body = sign()
    headers["User-Agent"] = "something else"
    headers["X-Forwarded-For"] = "10.0.0.1"
    SignatureChecker(KEY, SECRET).check(method, target, headers, body)


def test_headers_another_sdk_signs_are_honoured() -> None:
    class SignsUserAgent(SigV4Auth):  # botocore leaves User-Agent out; other SDKs may sign it
        def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
            names = super().headers_to_sign(request)
            names["user-agent"] = request.headers["User-Agent"]
            return names

    method, target, headers, body = sign(
        headers={"Content-Type": JSON_TYPE, "User-Agent": "aws-sdk-java/2.0"},
        signer=SignsUserAgent,
    )
    assert "user-agent" in headers["Authorization"]
    SignatureChecker(KEY, SECRET).check(method, target, headers, body)
    headers["User-Agent"] = "curl/8"
    assert rejected((method, target, headers, body)).code == "InvalidSignatureException"


def test_repeated_headers_are_joined_as_sigv4_signs_them() -> None:
    request = AWSRequest("POST", "http://127.0.0.1:8080/", data=b"{}")
    request.headers["X-Amz-Meta-Tag"] = "one"
    request.headers["X-Amz-Meta-Tag"] = "two"  # HTTPHeaders keeps both
    SigV4Auth(Credentials(KEY, SECRET), "sagemaker", "us-east-1").add_auth(request)
    method, target, _, body = received(request.prepare())
    message = Message()  # what http.server hands its handler
    for name, value in request.headers.items():
        message[name] = value
    message["Host"] = "127.0.0.1:8080"
    assert message.get_all("X-Amz-Meta-Tag") == ["one", "two"]
    SignatureChecker(KEY, SECRET).check(method, target, message, body)


def test_a_payload_hash_header_must_be_the_bodys() -> None:
    good = sign(
        headers={"Content-Type": JSON_TYPE, "X-Amz-Content-SHA256": _sha(b"{}")}, body=b"{}"
    )
    SignatureChecker(KEY, SECRET).check(*good)
    lying = sign(headers={"X-Amz-Content-SHA256": _sha(b"{}")}, body=b'{"a": 1}')
    error = rejected(lying)
    assert error.code == "InvalidSignatureException"
    assert "x-amz-content-sha256" in error.message
    unsigned = sign(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}, body=b"{}")
    assert "UNSIGNED-PAYLOAD" in rejected(unsigned).message


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("offset", "words"),
    [(timedelta(minutes=6), "Signature expired: "), (-timedelta(minutes=6), "not yet current")],
)
def test_a_request_more_than_five_minutes_off_is_refused(offset: timedelta, words: str) -> None:
    request = sign()
    late = SignatureChecker(KEY, SECRET, clock=lambda: datetime.now(UTC) + offset)
    error = rejected(request, late)
    assert (error.code, error.status) == ("InvalidSignatureException", 400)
    assert words in error.message and "5 min." in error.message
    SignatureChecker(KEY, SECRET, clock=lambda: datetime.now(UTC) + offset * 0.6).check(*request)


def test_an_unknown_access_key_is_unrecognized() -> None:
    error = rejected(sign(key="AKIDSOMEONEELSE"))
    assert (error.code, error.status) == ("UnrecognizedClientException", 400)
    assert error.message == "The security token included in the request is invalid."


def test_no_authorization_is_a_missing_token() -> None:
    method, target, headers, body = sign()
    del headers["Authorization"]
    error = rejected((method, target, headers, body))
    assert (error.code, error.status) == ("MissingAuthenticationTokenException", 403)
    assert "--auth" in error.message


@pytest.mark.parametrize(
    "value",
    [
        "Bearer abc",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sagemaker/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKID/2024/x/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKID/20240101/r/s/aws4_request SignedHeaders=host",
        "AWS4-HMAC-SHA256 Credential=A/20240101/r/s/aws4_request, SignedHeaders=host, Signature=zz",
        "AWS4-HMAC-SHA256 Credential=A/20240101/r/s/aws4_request, SignedHeaders=host;, Signature="
        + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=\u00e9/20240101/r/s/aws4_request, SignedHeaders=host, "
        "Signature=\u00e9",
    ],
)
def test_a_garbled_authorization_is_an_incomplete_signature(value: str) -> None:
    method, target, headers, body = sign()
    headers["Authorization"] = value
    error = rejected((method, target, headers, body))
    assert (error.code, error.status) == ("IncompleteSignatureException", 400)
    with pytest.raises(ValueError):
        parse_auth(value)


def test_a_missing_or_malformed_date_is_an_incomplete_signature() -> None:
    method, target, headers, body = sign()
    for date in (None, "2024-01-01T00:00:00Z", "20241399T000000Z"):
        changed = dict(headers)
        if date is None:
            del changed["X-Amz-Date"]
        else:
            changed["X-Amz-Date"] = date
        assert rejected((method, target, changed, body)).code == "IncompleteSignatureException"


def test_a_date_outside_the_credential_scope_is_refused() -> None:
    method, target, headers, body = sign()
    day = datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ") + timedelta(days=1)
    headers["X-Amz-Date"] = day.strftime("%Y%m%dT%H%M%SZ")
    error = rejected((method, target, headers, body))
    assert error.code == "InvalidSignatureException" and "Credential scope" in error.message


def test_the_host_must_be_signed() -> None:
    class NoHost(SigV4Auth):
        def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
            names = super().headers_to_sign(request)
            del names["host"]
            return names

    error = rejected(sign(signer=NoHost))
    assert error.code == "IncompleteSignatureException" and "'Host'" in error.message


def test_query_protocol_requests_get_the_query_protocols_codes() -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    body = b"Action=GetCallerIdentity&Version=2011-06-15"
    good = sign(body=body, headers=form, service="sts")
    SignatureChecker(KEY, SECRET).check(*good)
    wrong_secret = rejected(good, SignatureChecker(KEY, "nope"))
    assert (wrong_secret.code, wrong_secret.status) == ("SignatureDoesNotMatch", 403)
    unknown = rejected(sign(body=body, headers=form, service="iam", key="AKIDOTHER"))
    assert (unknown.code, unknown.status) == ("InvalidClientTokenId", 403)
    method, target, headers, _ = good
    del headers["Authorization"]
    missing = rejected((method, target, headers, body))
    assert (missing.code, missing.status) == ("MissingAuthenticationToken", 403)


def test_parse_auth_reads_the_credential_scope() -> None:
    headers = sign(service="logs")[2]
    parsed = parse_auth(headers["Authorization"])
    assert (parsed.access_key_id, parsed.region, parsed.service) == (KEY, "eu-west-1", "logs")
    assert parsed.date == headers["X-Amz-Date"][:8]
    assert "host" in parsed.signed_headers and len(parsed.signature) == 64


def test_the_secret_is_never_shown() -> None:
    assert SECRET not in repr(SignatureChecker(KEY, SECRET))
    assert SECRET not in repr(AuthKey(KEY, SECRET))


def test_a_real_client_over_http() -> None:
    """A botocore client against an HTTP server that checks each request."""
    checker = SignatureChecker(KEY, SECRET)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                checker.check(self.command, self.path, self.headers, body)
                status, answer = 200, {"TrainingJobSummaries": []}
            except ApiError as error:
                status, answer = error.status, {"__type": error.code, "message": error.message}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", JSON_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:

        def client(secret: str) -> Any:
            return botocore.session.get_session().create_client(
                "sagemaker",
                endpoint_url=f"http://127.0.0.1:{server.server_address[1]}/",
                region_name="us-east-1",
                aws_access_key_id=KEY,
                aws_secret_access_key=secret,
                config=Config(retries={"total_max_attempts": 1}),
            )

        assert client(SECRET).list_training_jobs()["TrainingJobSummaries"] == []
        with pytest.raises(ClientError) as caught:
            client("wrong").list_training_jobs()
        assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.3.2.1", "localhost", "LocalHost", "::1", "[::1]", "::ffff:127.0.0.1"]
)
def test_loopback_hosts_need_no_auth(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "", "::", "192.168.1.20", "10.0.0.1", "example.com", "localhost.evil.com"]
)
def test_other_hosts_need_auth(host: str) -> None:
    with pytest.raises(EmulatorError, match="--auth ACCESS_KEY_ID:SECRET"):
        check_bind(host, None)
    check_bind(host, AuthKey(KEY, SECRET))


def test_parse_auth_option() -> None:
    key = parse_auth_option("AKID_1.x-y:se/cr+et:with=colon")
    assert key == AuthKey("AKID_1.x-y", "se/cr+et:with=colon")
    access_key_id, secret = key  # a plain pair
    SignatureChecker(access_key_id, secret).check(*sign(key="AKID_1.x-y", secret=secret))


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("nocolonsecret", "no colon"),
        (":secret1", "access key id"),
        ("key with space:secret1", "access key id"),
        ("key/slash:secret1", "access key id"),
        ("key:", "secret access key"),
        ("key:sec ret", "secret access key"),
        ("key:sec\x00ret", "secret access key"),
    ],
)
def test_parse_auth_option_says_what_is_wrong(value: str, words: str) -> None:
    with pytest.raises(EmulatorError, match=words) as caught:
        parse_auth_option(value)
    assert "sec" not in str(caught.value).replace("secret access key", "")
