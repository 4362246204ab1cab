"""S3 end to end: real jobs on the real engine reading channels from, and writing outputs and
checkpoints to, moto (ThreadedMotoServer) and SeaweedFS. Byte-exactness is checked inside the
container (the probe's data.sha256); preflight errors leave nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest

from emulator.errors import RequestInvalid, SourceError
from emulator.state.store import JobStore
from tests.fixtures.cli import EMULATOR
from tests.fixtures.jobs import (
    PROBE,
    JobRunner,
    channel,
    run_in_thread,
    sha256sums,
    unique_name,
)
from tests.fixtures.polling import wait_until
from tests.fixtures.s3 import S3Server, free_port

pytestmark = [pytest.mark.docker, pytest.mark.s3]

MANY = 1020  # more than one ListObjectsV2 page


# -- data and helpers ---------------------------------------------------------------------------


def many_objects() -> dict[str, bytes]:
    """Relative name -> body under many/: >1000 keys, 0-byte objects, unicode, nesting."""
    objects = {f"part-{i % 7}/obj-{i:04d}.rec": f"{i}\n".encode() * (i % 5) for i in range(MANY)}
    objects.update(
        {
            "empty.bin": b"",
            "ünïcödé/日本語 ファイル.txt": "héllo wörld\n".encode(),
            "deep/a/b/c/d/e.bin": bytes(range(256)) * 4,
        }
    )
    return objects


DS = {
    "ds/train/a.csv": b"1,2\n",
    "ds/train/sub/b.csv": b"3,4\n",
    "ds/trainer.csv": b"a partial-name match\n",
    "ds/test.csv": b"5,6\n",
}


@pytest.fixture(scope="module")
def dataset(moto_server: S3Server) -> str:
    """A bucket with the objects above (uploaded once for the module)."""
    bucket = moto_server.new_bucket("data")
    objects = {f"many/{name}": body for name, body in many_objects().items()}
    objects["many/marker/"] = b""  # a folder marker: skipped
    objects.update(DS)
    manifest = [{"prefix": f"s3://{bucket}/ds/"}, "train/a.csv", "test.csv"]
    objects["manifests/m.json"] = json.dumps(manifest).encode()
    moto_server.put_objects(bucket, objects)
    return bucket


def expected_checksums(channels: dict[str, dict[str, bytes]]) -> str:
    """What the probe's data.sha256 holds for these channels (relative name -> body)."""
    lines = [
        line
        for name, files in channels.items()
        for line in sha256sums(files, name).splitlines(keepends=True)
    ]
    return "".join(sorted(lines, key=lambda line: line.split("  ", 1)[1]))


def s3_channel(name: str, uri: str, data_type: str = "S3Prefix", **source: str) -> dict[str, Any]:
    spec = channel(name, uri)
    spec["DataSource"]["S3DataSource"].update({"S3DataType": data_type, **source})
    return spec


def get(server: S3Server, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body: bytes = server.client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def s3_archive(server: S3Server, uri: str) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(get(server, uri))) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def script(text: str) -> dict[str, Any]:
    """AlgorithmSpecification running a shell script in the probe image."""
    return {
        "TrainingImage": PROBE,
        "TrainingInputMode": "File",
        "ContainerEntrypoint": ["sh", "-c", text],
    }


def env_lines(model: dict[str, bytes]) -> dict[str, str]:
    lines = model["probe/env"].decode().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


# -- channels and outputs -----------------------------------------------------------------------


def test_file_mode_channels_from_s3_arrive_byte_exact_and_outputs_go_to_s3(
    jobs: JobRunner, moto_s3: S3Server, dataset: str
) -> None:
    out = moto_s3.new_bucket("out")
    request = jobs.request(
        InputDataConfig=[
            s3_channel("many", f"s3://{dataset}/many/", S3DataDistributionType="ShardedByS3Key"),
            s3_channel("partial", f"s3://{dataset}/ds/tra"),
            s3_channel("manifest", f"s3://{dataset}/manifests/m.json", "ManifestFile"),
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{out}/jobs/"},
        Environment={"PROBE_OUTPUT_FILE": "result.txt"},
    )
    name = request["TrainingJobName"]
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    location = f"s3://{out}/jobs/{name}/output/model.tar.gz"
    assert record["ModelArtifacts"]["S3ModelArtifacts"] == location
    model = s3_archive(moto_s3, location)
    assert model["probe/data.sha256"].decode() == expected_checksums(
        {
            "many": many_objects(),  # ShardedByS3Key on one host: every object
            "partial": {
                "in/a.csv": DS["ds/train/a.csv"],
                "in/sub/b.csv": DS["ds/train/sub/b.csv"],
                "iner.csv": DS["ds/trainer.csv"],
            },
            "manifest": {"train/a.csv": DS["ds/train/a.csv"], "test.csv": DS["ds/test.csv"]},
        }
    )
    config = json.loads(model["probe/inputdataconfig.json"])
    assert config["many"]["S3DistributionType"] == "ShardedByS3Key"
    output = s3_archive(moto_s3, f"s3://{out}/jobs/{name}/output/output.tar.gz")
    assert output == {"result.txt": b"output\n"}
    assert jobs.leftovers(name) == []


def test_compression_none_uploads_every_model_file_big_ones_multipart(
    jobs: JobRunner, moto_s3: S3Server
) -> None:
    out = moto_s3.new_bucket("out")
    commands = (
        "head -c 20000000 /dev/urandom > /opt/ml/model/big.bin && "
        "cd /opt/ml/model && sha256sum big.bin > big.sha256 && exec probe"
    )
    request = jobs.request(
        AlgorithmSpecification=script(commands),
        OutputDataConfig={"S3OutputPath": f"s3://{out}/o", "CompressionType": "NONE"},
    )
    name = request["TrainingJobName"]
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    prefix = f"o/{name}/output/model/"
    assert record["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{out}/{prefix}"
    model = moto_s3.read_objects(out, prefix)
    assert {"big.bin", "big.sha256", "probe/argv", "probe/env"} <= model.keys()
    digest = model["big.sha256"].decode().split()[0]
    assert hashlib.sha256(model["big.bin"]).hexdigest() == digest
    etag = moto_s3.client.head_object(Bucket=out, Key=prefix + "big.bin")["ETag"]
    assert etag.strip('"').endswith("-2")  # multipart: two 16 MiB parts
    assert s3_archive(moto_s3, f"s3://{out}/o/{name}/output/output.tar.gz") == {}
    assert jobs.leftovers(name) == []


# -- checkpoints --------------------------------------------------------------------------------


def test_checkpoints_are_restored_synced_while_running_and_at_the_end(
    jobs: JobRunner, moto_s3: S3Server
) -> None:
    bucket = moto_s3.new_bucket("ckpt")
    moto_s3.put_objects(
        bucket,
        {
            "run/ckpt/restored.txt": b"from an earlier job",
            "run/ckpt/old/prune-me.txt": b"old",
            "run/ckpt-other/x": b"a different folder: never touched",
        },
    )
    commands = (
        "set -e; cp -r /opt/ml/checkpoints /opt/ml/model/seen; "
        "echo step-1 > /opt/ml/checkpoints/step-1.txt; rm -r /opt/ml/checkpoints/old; "
        "sleep 6; mkdir -p /opt/ml/checkpoints/n && echo last > /opt/ml/checkpoints/n/final.txt"
    )
    request = jobs.request(
        AlgorithmSpecification=script(commands),
        CheckpointConfig={"S3Uri": f"s3://{bucket}/run/ckpt"},
    )
    runner = run_in_thread(jobs, request)
    # Synced while the container sleeps: the new file is there, the deleted one gone.
    wait_until(
        lambda: moto_s3.read_objects(bucket, "run/ckpt/").keys() == {"restored.txt", "step-1.txt"},
        timeout=20.0,
    )
    assert runner.is_alive()
    runner.join(timeout=60)
    record = runner.result["record"]  # type: ignore[attr-defined]
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert moto_s3.read_objects(bucket, "run/ckpt/") == {
        "restored.txt": b"from an earlier job",
        "step-1.txt": b"step-1\n",
        "n/final.txt": b"last\n",
    }
    assert moto_s3.read_objects(bucket, "run/ckpt-other/") == {
        "x": b"a different folder: never touched"
    }
    model = jobs.model(record)
    assert model["seen/restored.txt"] == b"from an earlier job"  # the container saw them
    assert model["seen/old/prune-me.txt"] == b"old"
    assert jobs.leftovers(request["TrainingJobName"]) == []
    assert sync_threads() == []


def sync_threads() -> list[threading.Thread]:
    """The checkpoint sync's own thread and watchdog's (observer, emitters, inotify reader)."""
    return [
        thread
        for thread in threading.enumerate()
        if thread.name == "checkpoint-sync" or type(thread).__module__.startswith("watchdog")
    ]


def test_every_host_of_a_multi_host_job_syncs_into_the_same_prefix(
    jobs: JobRunner, moto_s3: S3Server
) -> None:
    bucket = moto_s3.new_bucket("ckpt")
    moto_s3.put_objects(bucket, {"m/restored.pt": b"r"})
    commands = (
        "set -e; h=$(hostname); echo $h > /opt/ml/checkpoints/$h.pt; "
        "cp /opt/ml/checkpoints/restored.pt /opt/ml/model/$h-saw.pt; "
        'if [ "$h" = algo-1 ]; then rm /opt/ml/checkpoints/restored.pt; fi'
    )
    request = jobs.request(
        AlgorithmSpecification=script(commands),
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
        CheckpointConfig={"S3Uri": f"s3://{bucket}/m"},
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    model = jobs.model(record)
    assert model["algo-1-saw.pt"] == model["algo-2-saw.pt"] == b"r"  # restored on every host
    # algo-1 deleted the restored file; algo-2's unchanged copy does not bring it back.
    assert moto_s3.read_objects(bucket, "m/") == {
        "algo-1.pt": b"algo-1\n",
        "algo-2.pt": b"algo-2\n",
    }
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_a_job_killed_at_max_runtime_keeps_its_checkpoints_to_the_last_write(
    jobs: JobRunner, moto_s3: S3Server
) -> None:
    bucket = moto_s3.new_bucket("ckpt")
    commands = (
        "trap '' TERM; i=0; while :; do i=$((i+1)); echo $i > /ckpt/counter.tmp; "
        "mv /ckpt/counter.tmp /ckpt/counter; echo wrote $i; sleep 0.1; done"
    )
    request = jobs.request(
        AlgorithmSpecification=script(commands),
        CheckpointConfig={"S3Uri": f"s3://{bucket}/c/", "LocalPath": "/ckpt"},
        StoppingCondition={"MaxRuntimeInSeconds": 2},
    )
    record = jobs.run(request, stop_grace_seconds=1)
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == (
        "Stopped",
        "MaxRuntimeExceeded",
    )
    written = [int(line.split()[1]) for _, line in jobs.logs if line.startswith("wrote ")]
    assert written and written[-1] > 10
    synced = int(get(moto_s3, f"s3://{bucket}/c/counter"))
    # Killed between the rename and the log line at worst.
    assert synced - written[-1] in (0, 1)
    assert jobs.leftovers(request["TrainingJobName"]) == []


# -- credentials --------------------------------------------------------------------------------


AWS_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def test_aws_credentials_reach_the_container_only_when_asked(
    jobs: JobRunner, moto_s3: S3Server
) -> None:
    record = jobs.run(jobs.request())
    environment = env_lines(jobs.model(record))
    assert not [name for name in environment if name in AWS_SECRETS]
    assert "AWS_ENDPOINT_URL_S3" not in environment
    assert environment["AWS_REGION"] == moto_s3.region

    record = jobs.run(jobs.request(), pass_aws_credentials=True)
    environment = env_lines(jobs.model(record))
    assert environment["AWS_ACCESS_KEY_ID"] == moto_s3.credentials.access_key
    assert environment["AWS_SECRET_ACCESS_KEY"] == moto_s3.credentials.secret_key
    assert environment["AWS_ENDPOINT_URL_S3"] == moto_s3.endpoint_url

    request = jobs.request(EnableNetworkIsolation=True)
    with pytest.raises(RequestInvalid, match="EnableNetworkIsolation"):
        jobs.run(request, pass_aws_credentials=True)
    names = [r["TrainingJobName"] for r in JobStore(jobs.home).all_jobs()]
    assert request["TrainingJobName"] not in names
    assert jobs.leftovers(request["TrainingJobName"]) == []


# -- preflight ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "channel bucket missing",
        "channel prefix empty",
        "endpoint unreachable",
        "output bucket missing",
        "checkpoint bucket missing",
    ],
)
def test_s3_problems_are_refused_before_anything_exists(
    jobs: JobRunner,
    moto_s3: S3Server,
    dataset: str,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    members: dict[str, Any] = {}
    if case == "channel bucket missing":
        members["InputDataConfig"] = [s3_channel("train", "s3://no-such-bucket-e2e/data/")]
        match = "bucket does not exist"
    elif case == "channel prefix empty":
        members["InputDataConfig"] = [s3_channel("train", f"s3://{dataset}/nothing/here/")]
        match = "no objects under this prefix"
    elif case == "endpoint unreachable":
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        members["InputDataConfig"] = [s3_channel("train", f"s3://{dataset}/many/")]
        match = "cannot reach the S3 endpoint"
    elif case == "output bucket missing":
        members["OutputDataConfig"] = {"S3OutputPath": "s3://no-such-bucket-e2e/out"}
        match = "OutputDataConfig.S3OutputPath: .*bucket does not exist"
    else:
        members["CheckpointConfig"] = {"S3Uri": "s3://no-such-bucket-e2e/ckpt"}
        match = "CheckpointConfig.S3Uri: .*bucket does not exist"
    request = jobs.request(**members)
    with pytest.raises(SourceError, match=match):
        jobs.run(request)
    assert JobStore(jobs.home).all_jobs() == []
    assert jobs.leftovers(request["TrainingJobName"]) == []


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_endpoint_flag_and_the_isolation_refusal(
    jobs: JobRunner, moto_s3: S3Server, dataset: str, tmp_path: Path
) -> None:
    out = moto_s3.new_bucket("out")
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL_S3"}
    env.update(EMULATOR_HOME=str(jobs.home), TMPDIR=str(jobs.work_root))
    name = unique_name("cli")
    command = [
        *EMULATOR,
        "run",
        "--image",
        PROBE,
        "--job-name",
        name,
        "--channel",
        f"train=s3://{dataset}/ds/train/",
        "--output",
        f"s3://{out}/cli",
        "--s3-endpoint-url",
        moto_s3.endpoint_url,
        "--region",
        "eu-west-3",
        "--quiet",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    model = s3_archive(moto_s3, f"s3://{out}/cli/{name}/output/model.tar.gz")
    assert model["probe/data.sha256"].decode() == expected_checksums(
        {"train": {"a.csv": DS["ds/train/a.csv"], "sub/b.csv": DS["ds/train/sub/b.csv"]}}
    )
    assert env_lines(model)["AWS_REGION"] == "eu-west-3"
    assert "AWS_ACCESS_KEY_ID" not in env_lines(model)

    request = jobs.request(EnableNetworkIsolation=True)
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request))
    refused = subprocess.run(
        [*EMULATOR, "run", str(request_file), "--pass-aws-credentials"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2, refused.stderr
    assert "EnableNetworkIsolation" in refused.stderr and "--pass-aws-credentials" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert jobs.leftovers(request["TrainingJobName"]) == []


# -- SeaweedFS ----------------------------------------------------------------------------------


def test_a_job_against_seaweedfs(jobs: JobRunner, seaweedfs_s3: S3Server) -> None:
    bucket = seaweedfs_s3.shared_bucket
    run = unique_name("weed")
    files = {
        f"shard-{i % 3}/{i:03d}.bin": os.urandom(i * 37) for i in range(60)
    }  # 0 bytes for i = 0
    files["ünï/ファイル.txt"] = b"ok\n"
    seaweedfs_s3.put_objects(bucket, {f"{run}/data/{k}": v for k, v in files.items()})
    seaweedfs_s3.put_objects(bucket, {f"{run}/ckpt/restored.pt": b"restored"})
    commands = (
        "set -e; cp /opt/ml/checkpoints/restored.pt /opt/ml/model/seen.pt; "
        "echo new > /opt/ml/checkpoints/new.pt; rm /opt/ml/checkpoints/restored.pt; exec probe"
    )
    request = jobs.request(
        AlgorithmSpecification=script(commands),
        InputDataConfig=[s3_channel("train", f"s3://{bucket}/{run}/data")],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/{run}/out"},
        CheckpointConfig={"S3Uri": f"s3://{bucket}/{run}/ckpt"},
    )
    name = request["TrainingJobName"]
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    location = record["ModelArtifacts"]["S3ModelArtifacts"]
    assert location == f"s3://{bucket}/{run}/out/{name}/output/model.tar.gz"
    model = s3_archive(seaweedfs_s3, location)
    assert model["probe/data.sha256"].decode() == expected_checksums({"train": files})
    assert model["seen.pt"] == b"restored"
    assert seaweedfs_s3.read_objects(bucket, f"{run}/ckpt/") == {"new.pt": b"new\n"}
    assert jobs.leftovers(name) == []
