"""No input makes `emulator serve` answer 500 or a traceback: the request fuzzer's values and
mutated requests, sent raw to every operation it answers (and to ones it does not)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.api_server import RunningServer
from tests.unit.test_validation import JSON_VALUES, KEYS, mutated_requests

TARGETS = [
    "SageMaker.CreateTrainingJob",
    "SageMaker.DescribeTrainingJob",
    "SageMaker.ListTrainingJobs",
    "SageMaker.StopTrainingJob",
    "SageMaker.AddTags",
    "SageMaker.ListTags",
    "SageMaker.DeleteTags",
    "SageMaker.ListEndpoints",
    "Logs_20140328.DescribeLogStreams",
    "Logs_20140328.GetLogEvents",
    "Logs_20140328.FilterLogEvents",
    "Logs_20140328.DescribeLogGroups",
    "Logs_20140328.PutLogEvents",
    "SageMaker.",
    ".",
    "Nothing",
]
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def post(server: RunningServer, target: str, body: bytes) -> tuple[int, Any]:
    where = urlsplit(server.url)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    try:
        headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"}
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def assert_answered(status: int, answer: Any) -> None:
    assert status in (200, 400), answer
    assert isinstance(answer, dict)
    if status == 400:
        assert set(answer) == {"__type", "message"}
        assert "Traceback" not in answer["message"]


@FUZZ
@given(
    target=st.sampled_from(TARGETS),
    value=JSON_VALUES | st.dictionaries(KEYS, JSON_VALUES, max_size=8),
)
def test_any_json_value_gets_an_answer_or_a_client_error(
    api_server: RunningServer, target: str, value: object
) -> None:
    assert_answered(*post(api_server, target, json.dumps(value).encode()))


@settings(FUZZ, max_examples=100)
@given(request=mutated_requests())
def test_mutated_create_requests_get_an_arn_or_a_client_error(
    api_server: RunningServer, request: dict[str, Any]
) -> None:
    assert_answered(*post(api_server, "SageMaker.CreateTrainingJob", json.dumps(request).encode()))


@settings(FUZZ, max_examples=100)
@given(target=st.sampled_from(TARGETS), body=st.binary(max_size=200))
def test_any_bytes_get_an_answer_or_a_client_error(
    api_server: RunningServer, target: str, body: bytes
) -> None:
    assert_answered(*post(api_server, target, body))
