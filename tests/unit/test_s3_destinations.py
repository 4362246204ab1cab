"""Job outputs to S3 without Docker: publish_artifacts and the preflight check of
destinations.py against moto and SeaweedFS (real HTTP), and the credentials opt-in."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from emulator.errors import RequestInvalid, SourceError
from emulator.finish.publish import check_output_location, publish_artifacts
from emulator.plan.credentials import container_credentials
from emulator.request.spec import JobSpec, ResourceSpec
from tests.fixtures.s3 import S3Server, free_port, isolate_aws_environment

pytestmark = pytest.mark.s3

MiB = 1024 * 1024


def spec(output: str, **fields: object) -> JobSpec:
    return JobSpec(
        name="job-1",
        image="image",
        input_mode="File",
        channels=(),
        output_path=output,
        resources=ResourceSpec("ml.m5.large", 1),
        **fields,  # type: ignore[arg-type]
    )


def host_trees(tmp_path: Path, *hosts: dict[str, bytes]) -> tuple[list[Path], list[Path]]:
    models, outputs = [], []
    for number, files in enumerate(hosts, start=1):
        root = tmp_path / f"algo-{number}"
        (root / "output" / "data").mkdir(parents=True)
        for name, body in files.items():
            path = root / "model" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        (root / "model").mkdir(exist_ok=True)
        models.append(root / "model")
        outputs.append(root / "output" / "data")
    return models, outputs


def archive(server: S3Server, bucket: str, key: str) -> dict[str, bytes]:
    body = server.client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def keys(server: S3Server, bucket: str, prefix: str = "") -> list[str]:
    pages = server.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def test_archives_are_uploaded_multipart_when_big(moto_s3: S3Server, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket("out")
    big = os.urandom(17 * MiB)  # random: still above the threshold once gzipped
    models, outputs = host_trees(tmp_path, {"weights.bin": big, "config.json": b"{}"})
    (outputs[0] / "metrics.csv").write_bytes(b"a,b\n")
    job = spec(f"s3://{bucket}/runs/")
    check_output_location(job)
    notices: list[str] = []
    location = publish_artifacts(job, models, outputs, notices.append)
    assert location == f"s3://{bucket}/runs/job-1/output/model.tar.gz"
    assert keys(moto_s3, bucket) == [
        "runs/job-1/output/model.tar.gz",
        "runs/job-1/output/output.tar.gz",
    ]
    assert archive(moto_s3, bucket, "runs/job-1/output/model.tar.gz") == {
        "weights.bin": big,
        "config.json": b"{}",
    }
    assert archive(moto_s3, bucket, "runs/job-1/output/output.tar.gz") == {"metrics.csv": b"a,b\n"}
    head = moto_s3.client.head_object(Bucket=bucket, Key="runs/job-1/output/model.tar.gz")
    assert head["ETag"].strip('"').endswith("-2")  # two 16 MiB parts
    assert not list((tmp_path / "algo-1").glob(".packing-*"))  # scratch space removed


def test_compression_none_uploads_each_file_and_replaces_an_earlier_run(
    moto_s3: S3Server, tmp_path: Path
) -> None:
    bucket = moto_s3.new_bucket("out")
    moto_s3.put_objects(bucket, {"o/job-1/output/model/stale.bin": b"from an earlier run"})
    models, outputs = host_trees(
        tmp_path,
        {"a.bin": b"a", "nested/ü b.txt": b"b", "empty": b""},
        {"a.bin": b"host 2 loses", "rank-1.bin": b"r1"},
    )
    (models[0] / "link").symlink_to("/etc/passwd")
    notices: list[str] = []
    location = publish_artifacts(
        spec(f"s3://{bucket}/o", output_compression="NONE"), models, outputs, notices.append
    )
    assert location == f"s3://{bucket}/o/job-1/output/model/"
    assert keys(moto_s3, bucket, "o/job-1/output/model/") == [
        "o/job-1/output/model/a.bin",
        "o/job-1/output/model/empty",
        "o/job-1/output/model/nested/ü b.txt",
        "o/job-1/output/model/rank-1.bin",
    ]
    body = moto_s3.client.get_object(Bucket=bucket, Key="o/job-1/output/model/a.bin")["Body"]
    assert body.read() == b"a"
    assert any("symlink(s) in /opt/ml/model not uploaded" in n and "link" in n for n in notices)
    assert any("written by several hosts" in n for n in notices)


def test_a_missing_bucket_is_refused_with_what_to_do(moto_s3: S3Server) -> None:
    with pytest.raises(
        SourceError, match=r"OutputDataConfig.S3OutputPath: s3://no-such-bucket-x/o: the bucket"
    ):
        check_output_location(spec("s3://no-such-bucket-x/o"))


def test_an_unreachable_endpoint_is_refused(
    moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(SourceError, match="cannot reach the S3 endpoint"):
        check_output_location(spec("s3://bucket/o"))


def test_access_denied_names_the_permissions_needed(
    seaweedfs_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = seaweedfs_server.shared_bucket
    assert seaweedfs_server.limited is not None
    isolate_aws_environment(monkeypatch, seaweedfs_server.environ(seaweedfs_server.limited))
    with pytest.raises(SourceError, match=r"access denied .*s3:PutObject"):
        check_output_location(spec(f"s3://{bucket}/o"))


def test_outputs_to_seaweedfs(seaweedfs_s3: S3Server, tmp_path: Path) -> None:
    bucket = seaweedfs_s3.shared_bucket
    models, outputs = host_trees(tmp_path, {"m.bin": b"model"})
    job = spec(f"s3://{bucket}/dest-{os.getpid()}")
    check_output_location(job)
    location = publish_artifacts(job, models, outputs, lambda message: None)
    key = location.removeprefix(f"s3://{bucket}/")
    assert archive(seaweedfs_s3, bucket, key) == {"m.bin": b"model"}


# -- credentials ----------------------------------------------------------------------------


def test_credentials_only_when_asked_and_never_with_network_isolation(
    moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert container_credentials(spec("/tmp/o"), pass_credentials=False) == {}
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    assert container_credentials(spec("/tmp/o"), pass_credentials=True) == {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "token",
        "AWS_ENDPOINT_URL_S3": moto_s3.endpoint_url,
    }
    with pytest.raises(RequestInvalid, match="EnableNetworkIsolation"):
        container_credentials(spec("/tmp/o", network_isolation=True), pass_credentials=True)


def test_asking_for_credentials_without_any_is_an_error(
    moto_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_aws_environment(monkeypatch, {})
    with pytest.raises(SourceError, match="no AWS credentials found"):
        container_credentials(spec("/tmp/o"), pass_credentials=True)
