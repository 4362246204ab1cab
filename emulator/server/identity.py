"""STS ``GetCallerIdentity``, IAM ``GetRole`` and ``SimulatePrincipalPolicy`` in the AWS query
protocol, for clients that send them to ``AWS_ENDPOINT_URL_STS``/``AWS_ENDPOINT_URL_IAM`` (the
SageMaker SDK expands a role name through IAM and asks STS who it runs as; v3 validates the role
with the policy simulator before every train).

Everything lives in one fixed local account (``DEFAULT_ACCOUNT``, the one in the job ARNs): the
caller is that account's root, any role a request names exists there, trusting SageMaker, and
every principal may do everything (the simulator answers ``allowed`` to every action on every
resource: the emulator does not check permissions).
Responses are XML built from botocore's ``sts``/``iam`` output shapes (element names, result
wrapper, namespace), so botocore's query parser reads them as it reads AWS's.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote
from xml.etree import ElementTree as ET

from emulator.request.spec import DEFAULT_ACCOUNT
from emulator.server.auth import QUERY_PROTOCOL_SERVICES, HeaderSource, parse_auth
from emulator.server.errors import ApiError

if TYPE_CHECKING:
    from botocore.model import ServiceModel, Shape

__all__ = [
    "CALLER_ARN",
    "EMULATED_ACTIONS",
    "LOCAL_ACCOUNT",
    "ROLE_CREATE_DATE",
    "XML_CONTENT_TYPE",
    "error_response",
    "handle_query",
    "parse_form",
    "query_service",
]

LOCAL_ACCOUNT = DEFAULT_ACCOUNT
CALLER_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT}:root"
# Roles here are never created: one fixed date keeps every answer the same.
ROLE_CREATE_DATE = datetime(2024, 1, 1, tzinfo=UTC)
XML_CONTENT_TYPE = "text/xml"
MAX_FORM_FIELDS = 1000
SIMULATION_PAGE_SIZE = 100  # IAM's default MaxItems
# The one statement every simulated decision matches (IAM names the statements that allowed it).
ALLOW_ALL_POLICY_ID = "sagemaker-emulator-allows-everything"

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_PRINCIPAL_ARN = re.compile(r"arn:[\w-]+:iam::\d{12}:(?:user|group|role)/[\w+=,.@/-]+", re.ASCII)
_MARKER = re.compile(r"\d{1,9}", re.ASCII)
_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def _caller_identity(params: Mapping[str, str]) -> dict[str, Any]:
    return {"UserId": LOCAL_ACCOUNT, "Account": LOCAL_ACCOUNT, "Arn": CALLER_ARN}


def _get_role(params: Mapping[str, str]) -> dict[str, Any]:
    name = params.get("RoleName")
    if name is None:
        raise ApiError(
            "ValidationError",
            "1 validation error detected: Value null at 'roleName' failed to satisfy "
            "constraint: Member must not be null",
        )
    if not _ROLE_NAME.fullmatch(name):
        raise ApiError(
            "ValidationError",
            f"1 validation error detected: Value {name[:100]!r} at 'roleName' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have "
            "length between 1 and 64",
        )
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()
    return {
        "Role": {
            "Path": "/",
            "RoleName": name,
            "RoleId": "AROA" + digest[:17],
            "Arn": f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{name}",
            "CreateDate": ROLE_CREATE_DATE,
            # IAM sends policy documents URL-encoded; botocore decodes them.
            "AssumeRolePolicyDocument": quote(
                json.dumps(_TRUST_POLICY, separators=(",", ":")), safe=""
            ),
            "Description": "Any role name answers here: the local emulator does not check roles",
            "MaxSessionDuration": 3600,
        }
    }


def _simulate_principal_policy(params: Mapping[str, str]) -> dict[str, Any]:
    """Every action on every resource (``*`` when none is named), in the order IAM evaluates
    them (by action, then resource), ``allowed``; pages of ``MaxItems`` (100) with ``Marker``."""
    source = params.get("PolicySourceArn")
    if source is None:
        raise _null_member("policySourceArn")
    _check_length("policySourceArn", source, 20, 2048)
    if not _PRINCIPAL_ARN.fullmatch(source):
        raise ApiError(
            "InvalidInput",
            f"Invalid ARN {source[:100]!r}: PolicySourceArn names an IAM user, group or role "
            f"(arn:aws:iam::{LOCAL_ACCOUNT}:role/NAME).",
        )
    actions = _members(params, "ActionNames")
    if not actions:
        raise _null_member("actionNames")
    for action in actions:
        _check_length("actionNames.member", action, 3, 128)
    resources = _members(params, "ResourceArns") or ["*"]
    for resource in resources:
        _check_length("resourceArns.member", resource, 1, 2048)
    page_size = _max_items(params.get("MaxItems"))
    start = _marker(params.get("Marker"))
    pairs = [(action, resource) for action in actions for resource in resources]
    page = pairs[start : start + page_size]
    answer: dict[str, Any] = {
        "EvaluationResults": [_allowed(action, resource) for action, resource in page],
        "IsTruncated": start + page_size < len(pairs),
    }
    if answer["IsTruncated"]:
        answer["Marker"] = str(start + page_size)
    return answer


def _allowed(action: str, resource: str) -> dict[str, Any]:
    statement = {
        "SourcePolicyId": ALLOW_ALL_POLICY_ID,
        "SourcePolicyType": "none",
        "StartPosition": {"Line": 1, "Column": 1},
        "EndPosition": {"Line": 1, "Column": 1},
    }
    return {
        "EvalActionName": action,
        "EvalResourceName": resource,
        "EvalDecision": "allowed",
        "MatchedStatements": [statement],
        "MissingContextValues": [],
    }


def _members(params: Mapping[str, str], name: str) -> list[str]:
    """The query protocol's list ``name.member.1``, ``name.member.2``, ... in index order."""
    prefix = f"{name}.member."
    indexed = []
    for key, value in params.items():
        index = key.removeprefix(prefix)
        if index != key and index.isdigit() and index.isascii():
            indexed.append((int(index), value))
    return [value for _, value in sorted(indexed)]


def _max_items(value: str | None) -> int:
    if value is None:
        return SIMULATION_PAGE_SIZE
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 1000):
        raise ApiError(
            "ValidationError",
            f"1 validation error detected: Value {value[:20]!r} at 'maxItems' failed to "
            "satisfy constraint: Member must be an integer between 1 and 1000",
        )
    return int(value)


def _marker(value: str | None) -> int:
    if value is None:
        return 0
    if not _MARKER.fullmatch(value):
        raise ApiError(
            "InvalidInput",
            "Invalid Marker: pass the Marker of the previous SimulatePrincipalPolicy answer.",
        )
    return int(value)


def _null_member(member: str) -> ApiError:
    return ApiError(
        "ValidationError",
        f"1 validation error detected: Value null at '{member}' failed to satisfy "
        "constraint: Member must not be null",
    )


def _check_length(member: str, value: str, shortest: int, longest: int) -> None:
    if not shortest <= len(value) <= longest:
        raise ApiError(
            "ValidationError",
            f"1 validation error detected: Value {value[:100]!r} at '{member}' failed to "
            f"satisfy constraint: Member must have length between {shortest} and {longest}",
        )


_HANDLERS: dict[str, dict[str, Callable[[Mapping[str, str]], dict[str, Any]]]] = {
    "sts": {"GetCallerIdentity": _caller_identity},
    "iam": {"GetRole": _get_role, "SimulatePrincipalPolicy": _simulate_principal_policy},
}
EMULATED_ACTIONS = {service: tuple(actions) for service, actions in _HANDLERS.items()}


def handle_query(service: str, params: Mapping[str, str]) -> tuple[int, bytes]:
    """The answer to a query-protocol request for ``service`` (``sts`` or ``iam``): the HTTP
    status and the XML body (``XML_CONTENT_TYPE``). Every bad request gets an error response."""
    handlers = _HANDLERS.get(service)
    if handlers is None:
        raise ValueError(f"not a query-protocol service of this server: {service!r}")
    action = params.get("Action")
    try:
        if not action:
            raise ApiError(
                "MissingAction",
                "The request must contain the parameter Action (e.g. "
                f"Action={next(iter(handlers))}&Version={_model(service).api_version}).",
            )
        handler = handlers.get(action)
        if handler is None:
            raise _not_emulated(service, action)
        operation = _model(service).operation_model(action)
        body = _response_xml(operation.name, operation.output_shape, handler(params), service)
    except ApiError as error:
        return error_response(service, error)
    return 200, body


def error_response(service: str, error: ApiError) -> tuple[int, bytes]:
    """``error`` as the query protocol's ``<ErrorResponse>`` (for the signature check's errors
    too, when the request is for STS or IAM)."""
    root = ET.Element("ErrorResponse", xmlns=_model(service).metadata["xmlNamespace"])
    detail = ET.SubElement(root, "Error")
    ET.SubElement(detail, "Type").text = "Sender" if error.status < 500 else "Receiver"
    ET.SubElement(detail, "Code").text = error.code
    ET.SubElement(detail, "Message").text = _text(error.message)
    ET.SubElement(root, "RequestId").text = str(uuid.uuid4())
    return error.status, _serialize(root)


def query_service(headers: HeaderSource, params: Mapping[str, str]) -> str | None:
    """Which query-protocol service a request is for: the credential scope of its signature when
    it names ``sts`` or ``iam``, else the service whose model defines its Action; None if
    neither (not a request for STS or IAM)."""
    for name, value in headers.items():
        if str(name).lower() == "authorization":
            try:
                scope_service = parse_auth(str(value)).service
            except ValueError:
                break
            if scope_service in QUERY_PROTOCOL_SERVICES:
                return scope_service
            break
    action = params.get("Action")
    if action:
        for service in sorted(QUERY_PROTOCOL_SERVICES, reverse=True):  # sts, then iam
            if action in _model(service).operation_names:
                return service
    return None


def parse_form(body: bytes) -> dict[str, str]:
    """A form-encoded query-protocol body as its parameters (the last of a repeated name)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise ApiError(
            "MalformedQueryString",
            "The request body is not form-encoded UTF-8 text of at most "
            f"{MAX_FORM_FIELDS} parameters (Action=...&Version=...).",
        ) from None
    return dict(pairs)


def _not_emulated(service: str, action: str) -> ApiError:
    model = _model(service)
    shown = action[:100]
    emulated = ", ".join(EMULATED_ACTIONS[service])
    if action in model.operation_names:
        message = (
            f"{model.service_id} action {shown} is not emulated: the local SageMaker emulator "
            f"answers {emulated} only."
        )
    else:
        message = (
            f"Could not find operation {shown} for version {model.api_version}: "
            f"{model.service_id} here answers {emulated} only."
        )
    return ApiError("InvalidAction", message)


@functools.cache
def _model(service: str) -> ServiceModel:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def _response_xml(
    operation: str, shape: Shape | None, value: dict[str, Any], service: str
) -> bytes:
    root = ET.Element(f"{operation}Response", xmlns=_model(service).metadata["xmlNamespace"])
    if shape is not None:
        wrapper = shape.serialization.get("resultWrapper", f"{operation}Result")
        _put(ET.SubElement(root, wrapper), shape, value)
    metadata = ET.SubElement(root, "ResponseMetadata")
    ET.SubElement(metadata, "RequestId").text = str(uuid.uuid4())
    return _serialize(root)


def _put(element: ET.Element, shape: Shape, value: Any) -> None:
    """``value`` into ``element`` as the query protocol serializes ``shape``."""
    kind = shape.type_name
    if kind == "structure":
        members: dict[str, Shape] = shape.members  # type: ignore[attr-defined]
        unknown = set(value) - set(members)
        assert not unknown, f"{shape.name} has no members {sorted(unknown)}"
        for name, member in members.items():
            if value.get(name) is not None:
                tag = member.serialization.get("name", name)
                _put(ET.SubElement(element, tag), member, value[name])
    elif kind == "list":
        member = shape.member  # type: ignore[attr-defined]
        tag = member.serialization.get("name", "member")
        for item in value:
            _put(ET.SubElement(element, tag), member, item)
    elif kind == "timestamp":
        element.text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif kind == "boolean":
        element.text = "true" if value else "false"
    else:
        element.text = _text(str(value))


def _serialize(root: ET.Element) -> bytes:
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def _text(value: str) -> str:
    """``value`` without the characters XML 1.0 cannot carry (a request can put any in an
    echoed name), so every response parses."""
    return _NOT_XML.sub("\ufffd", value)
