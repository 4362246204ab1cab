"""What a job's containers get for S3 with a store of the emulator's own
(``RunOptions.container_s3``, the embedded store of `emulator serve --s3`): its endpoint in both
variables, its own credentials, never the user's; nothing under network isolation; the request's
Environment still wins. And ``S3Settings`` with explicit credentials, checked against SeaweedFS
(auth on) with no credentials anywhere in the environment."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from emulator.config import S3Settings
from emulator.engine.docker import gateway_address
from emulator.plan.containers import container_environment
from emulator.plan.credentials import ContainerS3, container_credentials
from emulator.request.spec import DataSourceSpec
from emulator.request.validation import parse_request
from emulator.run.options import RunOptions
from emulator.stage.fastfile import FastFileMount
from emulator.stage.fastfile.protocol import MountConfig
from emulator.storage.s3 import credentials_environment, s3_client
from tests.fixtures.jobs import probe_request
from tests.fixtures.s3 import S3Server, isolate_aws_environment

STORE = ContainerS3("http://172.17.0.1:8333", "AKEMSTORE", "store-secret", "eu-west-1")
STORE_VARIABLES = {
    "S3_ENDPOINT_URL": "http://172.17.0.1:8333",
    "AWS_ENDPOINT_URL_S3": "http://172.17.0.1:8333",
    "AWS_ACCESS_KEY_ID": "AKEMSTORE",
    "AWS_SECRET_ACCESS_KEY": "store-secret",
    "AWS_REGION": "eu-west-1",
}


def spec(**members: Any) -> Any:
    return parse_request(probe_request(Path("/tmp/out"), **members))


def test_every_container_gets_the_store_endpoint_in_both_variables_and_its_credentials() -> None:
    assert STORE.environment() == STORE_VARIABLES
    assert container_credentials(spec(), False, None, STORE) == STORE_VARIABLES
    assert RunOptions().container_s3 is None
    assert RunOptions(container_s3=STORE).container_s3 == STORE


def test_the_users_own_credentials_never_reach_the_container_with_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    isolate_aws_environment(
        monkeypatch, {"AWS_ACCESS_KEY_ID": "user-key", "AWS_SECRET_ACCESS_KEY": "user-secret"}
    )
    given = container_credentials(spec(), True, S3Settings(region="us-east-1"), STORE)
    assert given == STORE_VARIABLES
    assert "user-key" not in given.values()
    assert "user-secret" not in given.values()


def test_a_network_isolated_job_gets_nothing_with_the_store() -> None:
    isolated = spec(EnableNetworkIsolation=True)
    assert container_credentials(isolated, False, None, STORE) == {}
    # --pass-aws-credentials cannot add anything either: the store's access is all there is.
    assert container_credentials(isolated, True, None, STORE) == {}


def test_without_the_store_nothing_changes() -> None:
    assert container_credentials(spec(), False) == {}
    assert container_credentials(spec(), False, S3Settings("http://127.0.0.1:9")) == {}


def test_the_requests_environment_wins_and_the_region_is_the_jobs() -> None:
    job = spec(Environment={"S3_ENDPOINT_URL": "http://mine:1", "AWS_ACCESS_KEY_ID": "mine"})
    aws = container_credentials(job, False, None, STORE)
    environment = container_environment(job, "us-west-2", aws)
    assert environment["S3_ENDPOINT_URL"] == "http://mine:1"
    assert environment["AWS_ACCESS_KEY_ID"] == "mine"
    assert environment["AWS_ENDPOINT_URL_S3"] == STORE.endpoint_url
    assert environment["AWS_SECRET_ACCESS_KEY"] == STORE.secret_access_key
    assert environment["AWS_REGION"] == "us-west-2"


def test_secrets_stay_out_of_reprs() -> None:
    settings = S3Settings("http://127.0.0.1:9", access_key_id="AKEMKEY", secret_access_key="s3cr")
    for text in (repr(settings), repr(STORE), repr(RunOptions(s3=settings, container_s3=STORE))):
        assert "s3cr" not in text and "store-secret" not in text
        assert "AKEMKEY" not in text and "AKEMSTORE" not in text


# -- S3Settings with explicit credentials ----------------------------------------------------


@pytest.mark.s3
def test_explicit_credentials_reach_the_store_with_none_in_the_environment(
    seaweedfs_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_aws_environment(monkeypatch, {})
    creds = seaweedfs_server.credentials
    settings = S3Settings(
        seaweedfs_server.endpoint_url,
        region=seaweedfs_server.region,
        access_key_id=creds.access_key,
        secret_access_key=creds.secret_key,
        max_attempts=1,
    )
    bucket = seaweedfs_server.shared_bucket
    names = [b["Name"] for b in s3_client(settings).list_buckets()["Buckets"]]
    assert bucket in names
    wrong = replace(settings, secret_access_key="not-the-secret")
    with pytest.raises(Exception, match="SignatureDoesNotMatch"):
        s3_client(wrong).list_buckets()
    assert credentials_environment(settings) == {
        "AWS_ACCESS_KEY_ID": creds.access_key,
        "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        "AWS_ENDPOINT_URL_S3": seaweedfs_server.endpoint_url,
    }


def test_explicit_credentials_reach_the_fastfile_child(tmp_path: Path) -> None:
    settings = S3Settings("http://127.0.0.1:9", access_key_id="AKEMKEY", secret_access_key="s")
    source = DataSourceSpec("S3Prefix", "s3://bucket/data/")
    encoded = FastFileMount(source, [], tmp_path, s3_settings=settings).config().encode()
    decoded = MountConfig.decode(encoded).s3_settings
    assert decoded is not None
    assert (decoded.access_key_id, decoded.secret_access_key) == ("AKEMKEY", "s")


# -- the address containers reach ------------------------------------------------------------


def test_the_bridge_gateway_is_read_from_the_ipam_config() -> None:
    assert gateway_address({"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}) == "172.17.0.1"
    # The engine leaves Gateway out when it is the default: the subnet's first address.
    assert gateway_address({"Subnet": "10.20.0.0/16"}) == "10.20.0.1"
    assert gateway_address({"Subnet": "fd00::/64", "Gateway": "fd00::1"}) is None
    assert gateway_address({"Subnet": "fd00::/64"}) is None
    assert gateway_address({}) is None
