"""S3 through the Python API alone: ``RunOptions.s3`` (an ``S3Settings``) reaches every S3 user
of a job with no AWS_* variable set, and the job leaves ``os.environ`` as it found it.

Credentials come from a profile of a private HOME's ~/.aws/credentials named in the settings;
the endpoint and the region are the settings' own (tests/fixtures/s3.py's moto server)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from typing import Any

import pytest

from emulator.config import S3Settings
from tests.fixtures.jobs import JobRunner, channel
from tests.fixtures.s3 import S3Server

BUSYBOX = "sagemaker-emulator/busybox:latest"


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
