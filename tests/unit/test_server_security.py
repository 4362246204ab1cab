"""Who may talk to `emulator serve`: loopback only unless --auth, and with --auth only requests
signed (SigV4) with its key, checked on every request, as real clients send them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from emulator.server.auth import AuthKey
from tests.fixtures.api_server import RunningServer, start_server
from tests.fixtures.cli import EMULATOR

KEY = AuthKey("AKIDLOCALTEST", "local/secret+key")


@pytest.fixture
def signed_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    yield from start_server(tmp_path / "state", monkeypatch, auth=KEY)


def test_a_non_loopback_address_is_refused_without_auth(tmp_path: Path) -> None:
    result = subprocess.run(
        [*EMULATOR, "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"EMULATOR_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "--auth" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_requests_signed_with_the_key_are_answered(
    signed_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEY.secret_access_key)
    assert signed_server.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    assert signed_server.client("logs").describe_log_groups()["logGroups"]
    identity = signed_server.client("sts").get_caller_identity()
    assert identity["Account"] == "000000000000"


def test_another_key_or_secret_is_refused_on_every_protocol(
    signed_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSOMEONEELSE")
    with pytest.raises(ClientError) as caught:
        signed_server.client("sagemaker").list_training_jobs()
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ClientError) as caught:
        signed_server.client("sagemaker").list_training_jobs()
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    with pytest.raises(ClientError) as caught:
        signed_server.client("sts").get_caller_identity()
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
