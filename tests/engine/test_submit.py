"""`emulator submit` against two independent SageMaker API servers, S3 on SeaweedFS:

- moto's server mode (it accepts the API but runs nothing): the upload, the content addressing,
  the rewrite and the request it received (its DescribeTrainingJob), the refusals, --dry-run;
- this project's `emulator serve --s3` (its embedded store is SeaweedFS): the job really runs,
  its logs come back through CloudWatch Logs, and the exit code is `run`'s.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import select
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from click.testing import Result

import emulator
from tests.fixtures.cli import EMULATOR, probe_env
from tests.fixtures.cli_runner import Cli
from tests.fixtures.jobs import PROBE, channel, probe_request, unique_name
from tests.fixtures.processes import interruptible
from tests.fixtures.s3 import RecordingProgress, S3Server, isolate_aws_environment
from tests.fixtures.serve import Served

ROLE = "arn:aws:iam::123456789012:role/Training"


@pytest.fixture
def moto_api(
    moto_server: S3Server, seaweedfs_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> S3Server:
    """SageMaker and CloudWatch Logs on moto, S3 on SeaweedFS (its admin credentials, which
    moto takes too); returns the SeaweedFS server."""
    isolate_aws_environment(
        monkeypatch,
        {
            **seaweedfs_server.environ(),
            "AWS_ENDPOINT_URL_SAGEMAKER": moto_server.endpoint_url,
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": moto_server.endpoint_url,
        },
    )
    return seaweedfs_server


def sagemaker() -> Any:
    return boto3.session.Session().client("sagemaker")


def keys(s3: S3Server, bucket: str) -> dict[str, str]:
    """Every key of the bucket with its ETag."""
    listing = s3.client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {obj["Key"]: obj["ETag"] for obj in listing}


def local_data(root: Path) -> Path:
    data = root / "data" / "train"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_text("1,2\n3,4\n")
    (data / "sub" / "b.csv").write_text("5,6\n")
    return data


def request_file(root: Path, **members: Any) -> Path:
    """A request whose channel is ./data/train (relative to the file) and output ./out."""
    request = probe_request(Path("out"), **members)
    request.setdefault("InputDataConfig", [channel("train", "data/train")])
    path = root / "request.json"
    path.write_text(json.dumps(request))
    return path


def run_submit(cli: Cli, *args: str) -> Result:
    return cli("submit", *args, "--poll-interval", "0.5")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- moto: dry run, uploads, the rewrite, refusals ---------------------------------------------


def test_dry_run_prints_the_exact_request_and_uploads_nothing(cli: Cli, moto_api: S3Server) -> None:
    bucket = moto_api.new_bucket("dry")
    local_data(cli.root)
    path = request_file(cli.root)
    result = run_submit(cli, str(path), "--staging", f"s3://{bucket}/stage", "--dry-run")
    assert result.exit_code == 0, result.output
    sent = json.loads(result.stdout)
    uri = sent["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri.startswith(f"s3://{bucket}/stage/data/") and uri.endswith("/")
    assert sent["OutputDataConfig"]["S3OutputPath"] == f"s3://{bucket}/stage/output"
    expected = {**json.loads(path.read_text())}
    expected["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = uri
    expected["OutputDataConfig"]["S3OutputPath"] = f"s3://{bucket}/stage/output"
    assert sent == expected  # nothing else changed
    assert "would upload 2 file(s)" in result.stderr
    assert keys(moto_api, bucket) == {}
    names = [j["TrainingJobName"] for j in sagemaker().list_training_jobs()["TrainingJobSummaries"]]
    assert sent["TrainingJobName"] not in names


def test_uploads_by_content_and_sends_the_rewritten_request(cli: Cli, moto_api: S3Server) -> None:
    bucket = moto_api.new_bucket("stage")
    data = local_data(cli.root)
    manifest_dir = cli.root / "manifest"
    (manifest_dir / "files").mkdir(parents=True)
    (manifest_dir / "files" / "x.bin").write_bytes(b"x" * 1000)
    (manifest_dir / "m.json").write_text(json.dumps([{"prefix": "files/"}, "x.bin"]))
    checkpoints = cli.root / "ckpt"
    checkpoints.mkdir()
    (checkpoints / "step-1.pt").write_bytes(b"weights")
    manifest_channel = channel("extra", "manifest/m.json")
    manifest_channel["DataSource"]["S3DataSource"]["S3DataType"] = "ManifestFile"
    path = request_file(
        cli.root,
        InputDataConfig=[channel("train", "data/train"), manifest_channel],
        CheckpointConfig={"S3Uri": "ckpt"},
    )
    staging = f"s3://{bucket}/stage"

    result = run_submit(cli, str(path), "--staging", staging, "--no-wait")
    assert result.exit_code == 0, result.output
    name = json.loads(path.read_text())["TrainingJobName"]
    assert result.stdout.split("\t")[0] == name
    first = keys(moto_api, bucket)
    assert len(first) == 5  # 2 channel files, the manifest's file, the manifest, 1 checkpoint

    described = sagemaker().describe_training_job(TrainingJobName=name)
    train, extra = (c["DataSource"]["S3DataSource"] for c in described["InputDataConfig"])
    assert train["S3Uri"].startswith(f"{staging}/data/")
    channel_keys = {k for k in first if k.startswith(train["S3Uri"][len(f"s3://{bucket}/") :])}
    assert {k.rsplit("/", 2)[-2:][-1] for k in channel_keys} == {"a.csv", "b.csv"}
    assert extra["S3DataType"] == "ManifestFile"
    manifest_key = extra["S3Uri"][len(f"s3://{bucket}/") :]
    assert manifest_key.startswith("stage/manifests/") and manifest_key.endswith("/m.json")
    body = json.loads(moto_api.client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    assert body[1:] == ["x.bin"] and body[0]["prefix"].startswith(f"{staging}/data/")
    x_key = body[0]["prefix"][len(f"s3://{bucket}/") :] + "x.bin"
    assert moto_api.client.get_object(Bucket=bucket, Key=x_key)["Body"].read() == b"x" * 1000
    assert described["CheckpointConfig"]["S3Uri"] == f"{staging}/checkpoints/{name}/"
    assert f"stage/checkpoints/{name}/step-1.pt" in first
    assert described["OutputDataConfig"]["S3OutputPath"] == f"{staging}/output"

    # Unchanged data, another job: nothing new is uploaded, except the new job's checkpoints.
    again = json.loads(path.read_text())
    again["TrainingJobName"] = unique_name("again")
    done = emulator.submit_training_job(
        again,
        emulator.SubmitOptions(staging=staging, wait=False, base_dir=cli.root),
    )
    assert done.uploaded == [f"{staging}/checkpoints/{again['TrainingJobName']}/step-1.pt"]
    second = keys(moto_api, bucket)
    assert {k: v for k, v in second.items() if k in first} == first

    # A changed file: a new content folder for that channel only.
    (data / "a.csv").write_text("changed\n")
    again["TrainingJobName"] = unique_name("changed")
    progress = RecordingProgress()
    changed = emulator.submit_training_job(
        again,
        emulator.SubmitOptions(staging=staging, wait=False, base_dir=cli.root, progress=progress),
    )
    assert progress.objects == 3  # what was uploaded, reported as it went
    assert progress.bytes == len("changed\n") + len("5,6\n") + len("weights")
    uploaded = {u.rsplit("/", 1)[-1] for u in changed.uploaded}
    assert uploaded == {"a.csv", "b.csv", "step-1.pt"}


def test_waits_for_a_job_moto_reports_completed(cli: Cli, moto_api: S3Server) -> None:
    bucket = moto_api.new_bucket("wait")
    request = probe_request(Path("/unused"))
    request["OutputDataConfig"]["S3OutputPath"] = f"s3://{bucket}/out"
    path = cli.root / "request.json"
    path.write_text(json.dumps(request))
    result = run_submit(cli, str(path))
    assert result.exit_code == 0, result.output
    assert "Completed" in result.stderr
    assert keys(moto_api, bucket) == {}  # nothing local: nothing uploaded


REFUSALS = [
    (["--instance-type", "local"], "ResourceConfig.InstanceType: 'local' runs only on this"),
    (["--instance-type", "local_gpu"], "'local_gpu' runs only on this machine"),
    (["--gpus", "1"], "--gpus: chooses GPUs of the local Docker engine"),
    (["--pass-aws-credentials"], "--pass-aws-credentials: SageMaker containers get"),
    (["--no-staging"], "InputDataConfig[0].DataSource.S3DataSource.S3Uri:"),
    (["--no-staging"], "OutputDataConfig.S3OutputPath:"),
    (["--no-role"], "RoleArn: missing; give --role"),
    (["--placeholder-role"], "RoleArn: arn:aws:iam::000000000000:role/SageMakerEmulator"),
    (["--staging", "/tmp/x"], "--staging '/tmp/x': expected s3://BUCKET"),
]


@pytest.mark.parametrize(("flags", "fragment"), REFUSALS)
def test_what_runs_only_locally_is_refused_before_any_upload(
    cli: Cli, moto_api: S3Server, flags: list[str], fragment: str
) -> None:
    bucket = moto_api.new_bucket("refuse")
    local_data(cli.root)
    members: dict[str, Any] = {}
    if "--no-role" in flags:
        members["RoleArn"] = None
    if "--placeholder-role" in flags:
        members["RoleArn"] = "arn:aws:iam::000000000000:role/SageMakerEmulator"
    path = request_file(cli.root, **members)
    if members.get("RoleArn", "") is None:
        request = json.loads(path.read_text())
        del request["RoleArn"]
        path.write_text(json.dumps(request))
    staging = [] if "--no-staging" in flags else ["--staging", f"s3://{bucket}/stage"]
    given = [f for f in flags if f not in ("--no-staging", "--no-role", "--placeholder-role")]
    if "--staging" in given:
        staging = []
    result = run_submit(cli, str(path), *staging, *given)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert fragment in result.stderr, result.stderr
    assert keys(moto_api, bucket) == {}
    name = json.loads(path.read_text())["TrainingJobName"]
    names = [j["TrainingJobName"] for j in sagemaker().list_training_jobs()["TrainingJobSummaries"]]
    assert name not in names


def test_a_missing_staging_bucket_is_refused_before_anything_is_sent(
    cli: Cli, moto_api: S3Server
) -> None:
    local_data(cli.root)
    path = request_file(cli.root)
    result = run_submit(cli, str(path), "--staging", "s3://no-such-bucket-4d1e/stage")
    assert result.exit_code == 2, result.output
    assert "--staging: s3://no-such-bucket-4d1e/stage: the bucket does not exist" in result.stderr
    name = json.loads(path.read_text())["TrainingJobName"]
    names = [j["TrainingJobName"] for j in sagemaker().list_training_jobs()["TrainingJobSummaries"]]
    assert name not in names


def test_an_unreachable_sagemaker_endpoint_is_a_clear_error(
    cli: Cli, moto_api: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    request = probe_request(Path("/unused"), OutputDataConfig={"S3OutputPath": "s3://b/o"})
    path = cli.root / "request.json"
    path.write_text(json.dumps(request))
    result = run_submit(cli, str(path))
    assert result.exit_code == 2, result.output
    assert "error: CreateTrainingJob: Could not connect" in result.stderr, result.stderr
    assert "TrainingImage sagemaker-emulator/probe:latest names no registry" in result.stderr
    assert "Traceback" not in result.output


def test_role_flag_fills_a_request_built_from_flags(cli: Cli, moto_api: S3Server) -> None:
    bucket = moto_api.new_bucket("flags")
    name = unique_name("flags")
    result = run_submit(
        cli,
        *("--image", PROBE, "--job-name", name, "--role", ROLE),
        *("--staging", f"s3://{bucket}/stage", "--no-wait"),
    )
    assert result.exit_code == 0, result.output
    described = sagemaker().describe_training_job(TrainingJobName=name)
    assert described["RoleArn"] == ROLE
    assert described["OutputDataConfig"]["S3OutputPath"] == f"s3://{bucket}/stage/output"


# -- emulator serve --s3: the job really runs ---------------------------------------------------


def model_files(s3: Any, uri: str) -> dict[str, bytes]:
    bucket, key = uri[len("s3://") :].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def served_request(cli: Cli, **env: str) -> Path:
    local_data(cli.root)
    path = request_file(cli.root, Environment=probe_env(**env))
    return path


def test_a_completed_job_runs_with_its_logs_and_exits_0(cli: Cli, serve_s3_env: Served) -> None:
    s3 = boto3.session.Session().client("s3")
    bucket = unique_name("submit")
    s3.create_bucket(Bucket=bucket)
    path = served_request(cli, stdout="loss=0.25")
    request = json.loads(path.read_text())
    request["ResourceConfig"]["InstanceCount"] = 2
    request["AlgorithmSpecification"]["MetricDefinitions"] = [
        {"Name": "loss", "Regex": "loss=([0-9.]+)"}
    ]
    path.write_text(json.dumps(request))
    result = run_submit(cli, str(path), "--staging", f"s3://{bucket}/stage")
    assert result.exit_code == 0, result.output
    assert "[algo-1] probe: host algo-1" in result.stdout
    assert "[algo-2] probe: host algo-2" in result.stdout
    assert "[algo-2] loss=0.25" in result.stdout
    assert "Training - " in result.stderr and "Completed" in result.stderr
    assert "loss" in result.stderr and "0.25" in result.stderr  # the final metrics
    name = request["TrainingJobName"]
    record = boto3.session.Session().client("sagemaker").describe_training_job(TrainingJobName=name)
    model = model_files(s3, record["ModelArtifacts"]["S3ModelArtifacts"])
    seen = model["probe/data.sha256"].decode()
    a_csv, b_csv = sha("1,2\n3,4\n"), sha("5,6\n")
    assert f"{a_csv}  ./train/a.csv" in seen
    assert f"{b_csv}  ./train/sub/b.csv" in seen


def test_a_failed_job_exits_1_with_its_reason(cli: Cli, serve_s3_env: Served) -> None:
    s3 = boto3.session.Session().client("s3")
    bucket = unique_name("submit")
    s3.create_bucket(Bucket=bucket)
    path = served_request(cli, exit="3", failure="bad things")
    result = run_submit(cli, str(path), "--staging", f"s3://{bucket}/stage")
    assert result.exit_code == 1, result.output
    assert "probe: host algo-1" in result.stdout
    assert "FailureReason: AlgorithmError: bad things, exit code: 3" in result.stderr


def test_no_wait_prints_the_name_and_arn(cli: Cli, serve_s3_env: Served) -> None:
    s3 = boto3.session.Session().client("s3")
    bucket = unique_name("submit")
    s3.create_bucket(Bucket=bucket)
    path = served_request(cli)
    result = run_submit(cli, str(path), "--staging", f"s3://{bucket}/stage", "--no-wait")
    assert result.exit_code == 0, result.output
    name = json.loads(path.read_text())["TrainingJobName"]
    printed_name, arn = result.stdout.strip().split("\t")
    assert printed_name == name and arn.endswith(f":training-job/{name}")
    assert "probe:" not in result.stdout


def wait_until_training(name: str) -> None:
    client = boto3.session.Session().client("sagemaker")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            record = client.describe_training_job(TrainingJobName=name)
        except ClientError:  # ValidationException until it exists, as in SageMaker
            record = {}
        if record.get("SecondaryStatus") == "Training":
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} never reached Training")


def read_until(fd: int, text: str, seconds: float) -> str:
    """What the terminal shows, read until ``text`` appears (or the time is up)."""
    seen = b""
    deadline = time.monotonic() + seconds
    while text.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the process closed the terminal
                break
    return seen.decode(errors="replace")


def test_ctrl_c_at_a_terminal_asks_and_stops_the_remote_job(
    tmp_path: Path, serve_s3_env: Served
) -> None:
    name = unique_name("asked")
    bucket = unique_name("asked")
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
    command = [
        *EMULATOR,
        *("submit", "--image", PROBE, "--job-name", name, "--role", ROLE),
        *("--env", "PROBE_SLEEP=60", "--output", f"s3://{bucket}/out"),
        *("--poll-interval", "0.5"),
    ]
    environ = serve_s3_env.client_environ(EMULATOR_HOME=str(tmp_path / "home"))
    terminal, user_side = pty.openpty()
    try:
        with interruptible(
            command, environ, stdin=user_side, stdout=user_side, stderr=user_side
        ) as process:
            os.close(user_side)
            wait_until_training(name)
            time.sleep(1)
            process.send_signal(signal.SIGINT)  # what Ctrl-C at the terminal sends
            shown = read_until(terminal, "Stop the remote training job", 30)
            assert f"Stop the remote training job {name}" in shown, shown
            os.write(terminal, b"y\n")
            shown += read_until(terminal, "Stopped", 60)
            assert process.wait(timeout=60) == 130, shown
    finally:
        os.close(terminal)
    assert "Traceback" not in shown
    client = boto3.session.Session().client("sagemaker")
    assert client.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "Stopped"


def test_ctrl_c_without_a_terminal_leaves_the_job_running(
    tmp_path: Path, serve_s3_env: Served
) -> None:
    name = unique_name("left")
    bucket = unique_name("left")
    boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
    command = [
        *EMULATOR,
        *("submit", "--image", PROBE, "--job-name", name, "--role", ROLE),
        *("--env", "PROBE_SLEEP=60", "--output", f"s3://{bucket}/out"),
        *("--poll-interval", "0.5"),
    ]
    environ = serve_s3_env.client_environ(EMULATOR_HOME=str(tmp_path / "home"))
    client = boto3.session.Session().client("sagemaker")
    with interruptible(
        command,
        environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                record = client.describe_training_job(TrainingJobName=name)
            except ClientError:  # ValidationException until it exists, as in SageMaker
                record = {}
            if record.get("SecondaryStatus") == "Training":
                break
            time.sleep(0.2)
        time.sleep(1)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"aws sagemaker stop-training-job --training-job-name {name}" in err
    assert "Traceback" not in err
    assert client.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "InProgress"
    client.stop_training_job(TrainingJobName=name)
