"""S3 through the Python API alone: ``RunOptions.s3`` (an ``S3Settings``) reaches every S3 user
of a job with no AWS_* variable set, and the job leaves ``os.environ`` as it found it.

Credentials come from a profile of a private HOME's ~/.aws/credentials named in the settings;
the endpoint and the region are the settings' own (tests/fixtures/s3.py's moto server)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

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
from tests.fixtures.jobs import JobRunner, channel, probe_request
from tests.fixtures.s3 import S3Server

BUSYBOX = "sagemaker-emulator/busybox:latest"
PROFILE = "emulator-api-test"


@pytest.fixture
def no_aws_environment(
    moto_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> S3Settings:
    """No AWS_* variable; HOME holds a credentials file with the moto server's keys under
    PROFILE. Returns the settings that reach the server."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home-dir"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        f"[{PROFILE}]\n"
        f"aws_access_key_id = {moto_server.credentials.access_key}\n"
        f"aws_secret_access_key = {moto_server.credentials.secret_key}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    return moto_server.settings(profile=PROFILE)


# -- settings, without Docker ---------------------------------------------------------------


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


# -- a job ----------------------------------------------------------------------------------

SCRIPT = (
    "set -e; cd /opt/ml; M=model; cp -r input/data/files input/data/fast $M; "
    "cat input/data/stream_0 > $M/stream.bin; cat input/data/aug_0 > $M/aug.bin; "
    "cp -r checkpoints $M/seen; echo new > checkpoints/new.pt; "
    "echo output > output/data/result.txt"
)


def s3_channel(name: str, uri: str, mode: str, data_type: str = "S3Prefix", **more: Any) -> Any:
    spec = channel(name, uri, InputMode=mode)
    spec["DataSource"]["S3DataSource"].update({"S3DataType": data_type, **more})
    return spec


def tar_members(body: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def get(server: S3Server, bucket: str, key: str) -> bytes:
    body: bytes = server.client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


@pytest.mark.docker
@pytest.mark.s3
@pytest.mark.fuse
@pytest.mark.timeout(120)
def test_a_job_reaches_s3_through_run_options_only(
    jobs: JobRunner, moto_server: S3Server, no_aws_environment: S3Settings
) -> None:
    bucket = moto_server.new_bucket("api")
    files = {"f1.txt": b"file mode\n", "sub/f2.bin": os.urandom(3000)}
    fast = {"a.txt": b"fast file\n", "deep/b.bin": os.urandom(70_000)}
    stream = {"s1": os.urandom(2000), "s2": b"piped\n"}
    refs = {"aug/x.bin": b"first ref", "aug/y.bin": b"second ref"}
    lines = [
        {"source-ref": f"s3://{bucket}/aug/x.bin", "label": 1},
        {"source-ref": f"s3://{bucket}/aug/y.bin", "label": "two"},
    ]
    objects = {f"files/{k}": v for k, v in files.items()}
    objects |= {f"fast/{k}": v for k, v in fast.items()}
    objects |= {f"stream/{k}": v for k, v in stream.items()}
    objects |= refs
    objects["aug/manifest.jsonl"] = "".join(json.dumps(line) + "\n" for line in lines).encode()
    objects["ckpt/restored.pt"] = b"restored\n"
    moto_server.put_objects(bucket, objects)

    request = jobs.request(
        AlgorithmSpecification={
            "TrainingImage": BUSYBOX,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", SCRIPT],
        },
        InputDataConfig=[
            s3_channel("files", f"s3://{bucket}/files/", "File"),
            s3_channel("fast", f"s3://{bucket}/fast/", "FastFile"),
            s3_channel("stream", f"s3://{bucket}/stream/", "Pipe"),
            s3_channel(
                "aug",
                f"s3://{bucket}/aug/manifest.jsonl",
                "Pipe",
                "AugmentedManifestFile",
                AttributeNames=["source-ref", "label"],
            ),
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/jobs/"},
        CheckpointConfig={"S3Uri": f"s3://{bucket}/ckpt/"},
        StoppingCondition={"MaxRuntimeInSeconds": 90},
    )
    name = request["TrainingJobName"]
    assert not [n for n in os.environ if n.startswith("AWS_")]
    before = dict(os.environ)
    record = jobs.run(request, s3=no_aws_environment)
    assert dict(os.environ) == before
    tail = "\n".join(line for _, line in jobs.logs[-20:])
    assert record["TrainingJobStatus"] == "Completed", f"{record.get('FailureReason')}\n{tail}"

    location = f"s3://{bucket}/jobs/{name}/output/model.tar.gz"
    assert record["ModelArtifacts"]["S3ModelArtifacts"] == location
    model = tar_members(get(moto_server, bucket, f"jobs/{name}/output/model.tar.gz"))
    assert {k: v for k, v in model.items() if k.startswith("files/")} == {
        f"files/{k}": v for k, v in files.items()
    }
    assert {k: v for k, v in model.items() if k.startswith("fast/")} == {
        f"fast/{k}": v for k, v in fast.items()
    }
    assert model["stream.bin"] == stream["s1"] + stream["s2"]
    assert model["aug.bin"] == b"first ref" + b"1" + b"second ref" + b"two"
    assert model["seen/restored.pt"] == b"restored\n"
    output = tar_members(get(moto_server, bucket, f"jobs/{name}/output/output.tar.gz"))
    assert output == {"result.txt": b"output\n"}
    assert get(moto_server, bucket, "ckpt/new.pt") == b"new\n"
    assert jobs.leftovers(name) == []
