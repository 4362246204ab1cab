"""S3 through the Python API alone: ``RunOptions.s3`` (an ``S3Settings``) reaches every S3 user
of a job with no AWS_* variable set, and the job leaves ``os.environ`` as it found it.

Credentials come from a profile of a private HOME's ~/.aws/credentials named in the settings;
the endpoint and the region are the settings' own (tests/fixtures/s3.py's moto server)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emulator.config import S3Settings, effective_s3_settings, s3_settings_from_flags
from emulator.errors import SourceError
from emulator.plan.credentials import container_credentials
from emulator.request.spec import DataSourceSpec
from emulator.request.validation import parse_request
from emulator.run.job import TrainingJob
from emulator.run.options import RunOptions
from emulator.stage.fastfile import FastFileMount
from emulator.stage.fastfile.protocol import MountConfig
from tests.fixtures.jobs import probe_request
from tests.fixtures.s3 import S3Server


def test_effective_settings_and_the_job_region() -> None:
    env = {"AWS_DEFAULT_REGION": "us-west-2", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1"}
    assert effective_s3_settings(None, None, env).region == "us-west-2"
    assert effective_s3_settings(None, "eu-west-1", env) == S3Settings(
        "http://127.0.0.1:1", region="eu-west-1"
    )
    given = S3Settings("http://127.0.0.1:2")
    assert effective_s3_settings(given, "eu-west-1", env) == S3Settings(
        "http://127.0.0.1:2", region="eu-west-1"
    )
    named = S3Settings(region="ap-south-1")
    assert effective_s3_settings(named, "eu-west-1", env) is named

    spec = parse_request(probe_request(Path("/tmp/out")))
    job = TrainingJob(spec, RunOptions(s3=S3Settings(region="ca-central-1")))
    assert (job.region, job.s3.region) == ("ca-central-1", "ca-central-1")


def test_cli_flags_make_settings_without_touching_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "from-env")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    before = dict(os.environ)
    settings = s3_settings_from_flags("http://127.0.0.1:9", None, "eu-west-3")
    assert settings == S3Settings("http://127.0.0.1:9", "from-env", "eu-west-3")
    assert s3_settings_from_flags(profile="p").profile == "p"
    assert dict(os.environ) == before
    with pytest.raises(SourceError, match="must start with http"):
        s3_settings_from_flags("127.0.0.1:9")


def test_fastfile_child_gets_the_settings_in_its_json(tmp_path: Path) -> None:
    settings = S3Settings("http://127.0.0.1:9", "p", "eu-west-1", max_attempts=2)
    spec = DataSourceSpec("S3Prefix", "s3://bucket/data/")
    config = MountConfig.decode(
        FastFileMount(spec, [], tmp_path, s3_settings=settings).config().encode()
    )
    assert config.s3_settings == settings
    config = MountConfig.decode(FastFileMount(spec, [], tmp_path).config().encode())
    assert config.s3_settings is None


@pytest.mark.s3
def test_passed_credentials_come_from_the_settings(
    moto_server: S3Server, no_aws_environment: S3Settings
) -> None:
    spec = parse_request(probe_request(Path("/tmp/out")))
    assert container_credentials(spec, True, no_aws_environment) == {
        "AWS_ACCESS_KEY_ID": moto_server.credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": moto_server.credentials.secret_key,
        "AWS_ENDPOINT_URL_S3": moto_server.endpoint_url,
    }
