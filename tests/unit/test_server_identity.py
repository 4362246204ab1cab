"""STS GetCallerIdentity, IAM GetRole and SimulatePrincipalPolicy in the query protocol: the XML
parses with botocore's own query parser into what AWS would answer (one local account, any role
trusting SageMaker, every action allowed), every other action gets an error naming it, and real
botocore clients (and the simulator's paginator) read it over HTTP."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import QueryParser

from emulator.server.auth import SignatureChecker
from emulator.server.errors import ApiError
from emulator.server.identity import (
    ALLOW_ALL_POLICY_ID,
    CALLER_ARN,
    LOCAL_ACCOUNT,
    ROLE_CREATE_DATE,
    error_response,
    handle_query,
    parse_form,
    query_service,
)

KEY = "AKIDIDENTITY"
SECRET = "identity-secret"
NAMESPACES = {
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
}


@pytest.fixture(autouse=True)
def _no_aws_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)


def parsed(service: str, status: int, body: bytes, action: str | None = None) -> dict[str, Any]:
    """``body`` as botocore's query parser reads it (the operation's output shape if ``action``)."""
    shape = None
    if action is not None:
        model = botocore.session.get_session().get_service_model(service)
        shape = model.operation_model(action).output_shape
    result: dict[str, Any] = QueryParser().parse(
        {"body": body, "headers": {}, "status_code": status}, shape
    )
    return result


def test_get_caller_identity_names_the_local_account() -> None:
    status, body = handle_query("sts", {"Action": "GetCallerIdentity", "Version": "2011-06-15"})
    assert status == 200
    assert f'xmlns="{NAMESPACES["sts"]}"'.encode() in body
    answer = parsed("sts", status, body, "GetCallerIdentity")
    assert answer["Account"] == LOCAL_ACCOUNT == "000000000000"
    assert answer["Arn"] == CALLER_ARN == f"arn:aws:iam::{LOCAL_ACCOUNT}:root"
    assert answer["UserId"] == LOCAL_ACCOUNT
    assert re.fullmatch(r"[0-9a-f-]{36}", answer["ResponseMetadata"]["RequestId"])


def test_get_role_answers_any_role_name_trusting_sagemaker() -> None:
    status, body = handle_query("iam", {"Action": "GetRole", "RoleName": "SageMakerRole+x=,.@-"})
    assert status == 200
    assert f'xmlns="{NAMESPACES["iam"]}"'.encode() in body
    role = parsed("iam", status, body, "GetRole")["Role"]
    assert role["RoleName"] == "SageMakerRole+x=,.@-"
    assert role["Path"] == "/"
    assert role["Arn"] == f"arn:aws:iam::{LOCAL_ACCOUNT}:role/SageMakerRole+x=,.@-"
    assert re.fullmatch(r"AROA[A-Z0-9]{17}", role["RoleId"])
    assert isinstance(role["CreateDate"], datetime)
    assert role["CreateDate"].timestamp() == ROLE_CREATE_DATE.timestamp()
    assert role["MaxSessionDuration"] == 3600
    policy = json.loads(unquote(role["AssumeRolePolicyDocument"]))
    (statement,) = policy["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }


def test_role_ids_are_stable_per_name() -> None:
    def role_id(name: str) -> str:
        status, body = handle_query("iam", {"Action": "GetRole", "RoleName": name})
        return str(parsed("iam", status, body, "GetRole")["Role"]["RoleId"])

    assert role_id("A") == role_id("A") != role_id("B")


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"Action": "GetRole"}, "Value null at 'roleName'"),
        ({"Action": "GetRole", "RoleName": "has space"}, "'has space' at 'roleName'"),
        ({"Action": "GetRole", "RoleName": "x" * 65}, "length between 1 and 64"),
        ({"Action": "GetRole", "RoleName": "path/name"}, "regular expression"),
    ],
)
def test_a_bad_role_name_is_a_validation_error(params: dict[str, str], words: str) -> None:
    status, body = handle_query("iam", params)
    error = parsed("iam", status, body)["Error"]
    assert (status, error["Code"], error["Type"]) == (400, "ValidationError", "Sender")
    assert words in error["Message"]


ROLE_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT}:role/SageMakerRole"


def simulate(**params: str) -> tuple[int, dict[str, Any]]:
    query = {"Action": "SimulatePrincipalPolicy", "Version": "2010-05-08", **params}
    status, body = handle_query("iam", query)
    action = "SimulatePrincipalPolicy" if status == 200 else None
    return status, parsed("iam", status, body, action)


def listed(name: str, *values: str) -> dict[str, str]:
    """The query protocol's list members, as botocore sends them."""
    return {f"{name}.member.{index}": value for index, value in enumerate(values, 1)}


def test_simulate_principal_policy_allows_every_action_on_every_resource() -> None:
    actions = ("s3:PutObject", "sagemaker:CreateTrainingJob")
    resources = ("arn:aws:s3:::bucket/*", "arn:aws:s3:::other")
    status, answer = simulate(
        PolicySourceArn=ROLE_ARN,
        **listed("ActionNames", *actions),
        **listed("ResourceArns", *resources),
    )
    assert status == 200
    assert answer["IsTruncated"] is False
    assert "Marker" not in answer
    results = answer["EvaluationResults"]
    assert [(r["EvalActionName"], r["EvalResourceName"]) for r in results] == [
        (action, resource) for action in actions for resource in resources
    ]
    for result in results:
        assert result["EvalDecision"] == "allowed"
        assert result["MissingContextValues"] == []
        (statement,) = result["MatchedStatements"]
        assert statement["SourcePolicyId"] == ALLOW_ALL_POLICY_ID
        assert statement["SourcePolicyType"] == "none"
        assert statement["StartPosition"] == {"Line": 1, "Column": 1}


def test_simulate_principal_policy_without_resources_evaluates_star() -> None:
    actions = [f"sagemaker:Action{i}" for i in range(11)]  # v3's training smoke test: 11
    status, answer = simulate(PolicySourceArn=ROLE_ARN, **listed("ActionNames", *actions))
    assert status == 200
    results = answer["EvaluationResults"]
    assert [r["EvalActionName"] for r in results] == actions
    assert {r["EvalResourceName"] for r in results} == {"*"}
    assert {r["EvalDecision"] for r in results} == {"allowed"}


def test_simulate_principal_policy_pages_with_max_items_and_marker() -> None:
    request = {
        "PolicySourceArn": f"arn:aws:iam::{LOCAL_ACCOUNT}:user/someone",
        **listed("ActionNames", "s3:GetObject", "s3:PutObject"),
        **listed("ResourceArns", "arn:aws:s3:::a", "arn:aws:s3:::b"),
    }
    pages: list[list[tuple[str, str]]] = []
    marker: str | None = None
    while True:
        extra = {"Marker": marker} if marker else {}
        status, answer = simulate(**request, MaxItems="3", **extra)
        assert status == 200
        pages.append(
            [(r["EvalActionName"], r["EvalResourceName"]) for r in answer["EvaluationResults"]]
        )
        if not answer["IsTruncated"]:
            assert "Marker" not in answer
            break
        marker = answer["Marker"]
    assert [len(page) for page in pages] == [3, 1]
    assert [pair for page in pages for pair in page] == [
        (action, f"arn:aws:s3:::{bucket}")
        for action in ("s3:GetObject", "s3:PutObject")
        for bucket in "ab"
    ]


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        (listed("ActionNames", "s3:GetObject"), "ValidationError", "at 'policySourceArn'"),
        ({"PolicySourceArn": ROLE_ARN}, "ValidationError", "Value null at 'actionNames'"),
        (
            {"PolicySourceArn": "arn:aws:iam::123:role/x", **listed("ActionNames", "s3:Get")},
            "InvalidInput",
            "Invalid ARN",
        ),
        (
            {
                "PolicySourceArn": "arn:aws:s3:::a-bucket-not-a-role",
                **listed("ActionNames", "s3:Get"),
            },
            "InvalidInput",
            "names an IAM user, group or role",
        ),
        (
            {"PolicySourceArn": ROLE_ARN, **listed("ActionNames", "s3")},
            "ValidationError",
            "length between 3 and 128",
        ),
        (
            {"PolicySourceArn": ROLE_ARN, **listed("ActionNames", "s3:Get"), "MaxItems": "0"},
            "ValidationError",
            "between 1 and 1000",
        ),
        (
            {"PolicySourceArn": ROLE_ARN, **listed("ActionNames", "s3:Get"), "Marker": "x<&"},
            "InvalidInput",
            "Invalid Marker",
        ),
    ],
)
def test_simulate_principal_policy_rejects_bad_input(
    params: dict[str, str], code: str, words: str
) -> None:
    status, answer = simulate(**params)
    assert (status, answer["Error"]["Code"]) == (400, code)
    assert words in answer["Error"]["Message"]


@pytest.mark.parametrize(
    ("service", "action", "words"),
    [
        ("sts", "AssumeRole", "STS action AssumeRole is not emulated"),
        ("iam", "CreateRole", "IAM action CreateRole is not emulated"),
        ("iam", "GetCallerIdentity", "Could not find operation GetCallerIdentity"),
        ("sts", "NoSuchThing", "Could not find operation NoSuchThing"),
    ],
)
def test_other_actions_get_an_error_naming_them(service: str, action: str, words: str) -> None:
    status, body = handle_query(service, {"Action": action, "Version": "2011-06-15"})
    assert f'xmlns="{NAMESPACES[service]}"'.encode() in body
    answer = parsed(service, status, body)
    assert status == 400
    assert answer["Error"]["Code"] == "InvalidAction"
    assert words in answer["Error"]["Message"]
    assert answer["ResponseMetadata"]["RequestId"]


def test_a_missing_action_is_named() -> None:
    status, body = handle_query("sts", {"Version": "2011-06-15"})
    error = parsed("sts", status, body)["Error"]
    assert (status, error["Code"]) == (400, "MissingAction")
    assert "Action=GetCallerIdentity" in error["Message"]


def test_any_action_name_gives_xml_that_parses() -> None:
    hostile = "<x>&\x00\x1b\ud800\u2603" + "y" * 500
    status, body = handle_query("iam", {"Action": hostile})
    error = parsed("iam", status, body)["Error"]
    assert error["Code"] == "InvalidAction" and "<x>&" in error["Message"]
    assert len(error["Message"]) < 300


def test_error_response_renders_a_signature_error() -> None:
    error = ApiError("SignatureDoesNotMatch", "The request signature we calculated ...", 403)
    status, body = error_response("sts", error)
    answer = parsed("sts", status, body)["Error"]
    assert (status, answer["Code"], answer["Message"]) == (403, error.code, error.message)


def test_query_service_reads_the_credential_scope_then_the_action() -> None:
    def auth(service: str) -> dict[str, str]:
        scope = f"AKID/20240101/us-east-1/{service}/aws4_request"
        return {
            "authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, "
            f"Signature={'0' * 64}"
        }

    assert query_service(auth("iam"), {"Action": "GetCallerIdentity"}) == "iam"
    assert query_service(auth("sts"), {"Action": "GetRole"}) == "sts"
    assert query_service(auth("sagemaker"), {"Action": "GetRole"}) == "iam"
    assert query_service({"Authorization": "garbage"}, {"Action": "AssumeRole"}) == "sts"
    assert query_service({}, {"Action": "GetCallerIdentity"}) == "sts"
    assert query_service({}, {"Action": "ListRoles"}) == "iam"
    assert query_service({}, {"Action": "CreateTrainingJob"}) is None
    assert query_service({}, {}) is None


def test_parse_form() -> None:
    assert parse_form(b"Action=GetRole&RoleName=a%2Bb+c&Version=2010-05-08&Empty=") == {
        "Action": "GetRole",
        "RoleName": "a+b c",
        "Version": "2010-05-08",
        "Empty": "",
    }
    for bad in (b"Action=\xff", b"&".join([b"a=1"] * 1001)):
        with pytest.raises(ApiError) as caught:
            parse_form(bad)
        assert (caught.value.code, caught.value.status) == ("MalformedQueryString", 400)


@pytest.fixture
def query_server() -> Iterator[str]:
    """An HTTP server answering STS and IAM as `emulator serve --auth` does; yields its URL."""
    checker = SignatureChecker(KEY, SECRET)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                params = parse_form(body)
            except ApiError as error:
                params, failure = {}, error
            else:
                failure = None
            service = query_service(self.headers, params) or "sts"
            try:
                checker.check(self.command, self.path, self.headers, body)
            except ApiError as error:
                failure = failure or error
            status, data = (
                error_response(service, failure) if failure else handle_query(service, params)
            )
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def client(service: str, url: str, key: str = KEY, secret: str = SECRET) -> Any:
    return botocore.session.get_session().create_client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_botocore_clients_over_http(query_server: str) -> None:
    identity = client("sts", query_server).get_caller_identity()
    assert (identity["Account"], identity["Arn"]) == (LOCAL_ACCOUNT, CALLER_ARN)
    role = client("iam", query_server).get_role(RoleName="SageMakerRole")["Role"]
    assert role["Arn"] == f"arn:aws:iam::{LOCAL_ACCOUNT}:role/SageMakerRole"
    # botocore decodes IAM's URL-encoded policy documents into dicts.
    statement = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}


@pytest.mark.parametrize(
    ("service", "key", "secret", "code"),
    [
        ("sts", KEY, "wrong", "SignatureDoesNotMatch"),
        ("iam", "AKIDUNKNOWN", SECRET, "InvalidClientTokenId"),
    ],
)
def test_botocore_clients_see_the_query_protocols_auth_errors(
    query_server: str, service: str, key: str, secret: str, code: str
) -> None:
    with pytest.raises(ClientError) as caught:
        if service == "sts":
            client(service, query_server, key, secret).get_caller_identity()
        else:
            client(service, query_server, key, secret).get_role(RoleName="r")
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_botocore_simulates_principal_policy_and_pages_it(query_server: str) -> None:
    iam = client("iam", query_server)
    answer = iam.simulate_principal_policy(
        PolicySourceArn=ROLE_ARN,
        ActionNames=["s3:PutObject"],
        ResourceArns=["arn:aws:s3:::sagemaker-us-east-1-000000000000/*"],
    )
    (result,) = answer["EvaluationResults"]
    assert (result["EvalActionName"], result["EvalDecision"]) == ("s3:PutObject", "allowed")
    assert result["EvalResourceName"] == "arn:aws:s3:::sagemaker-us-east-1-000000000000/*"
    # The paginator follows Marker, as SDK v3's role validation does.
    actions = [f"sagemaker:Action{i}" for i in range(7)]
    pages = list(
        iam.get_paginator("simulate_principal_policy").paginate(
            PolicySourceArn=ROLE_ARN, ActionNames=actions, PaginationConfig={"PageSize": 3}
        )
    )
    assert [len(page["EvaluationResults"]) for page in pages] == [3, 3, 1]
    names = [r["EvalActionName"] for page in pages for r in page["EvaluationResults"]]
    assert names == actions


def test_botocore_clients_see_what_is_not_emulated(query_server: str) -> None:
    with pytest.raises(ClientError) as caught:
        client("iam", query_server).list_roles()
    assert caught.value.response["Error"]["Code"] == "InvalidAction"
    assert "ListRoles" in caught.value.response["Error"]["Message"]
