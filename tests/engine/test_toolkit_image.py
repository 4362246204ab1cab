"""The toolkit image (`sagemaker-emulator/toolkit`, containers/toolkit/): SageMaker's own
training toolkit, built offline, runs a user's script in script mode on the emulator.

The job is what the SageMaker SDK sends for script mode: the hyperparameters name the entry
point (``sagemaker_program``) and an s3:// URI of ``sourcedir.tar.gz``
(``sagemaker_submit_directory``), JSON-encoded as the SDK encodes every value. The toolkit's
`train` downloads it with boto3 from the endpoint in ``S3_ENDPOINT_URL``: here the embedded
store of `emulator serve --s3` (real SeaweedFS on the bridge's gateway address), whose endpoint
and own credentials reach the containers through ``RunOptions.container_s3``.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import docker
import pytest

from emulator.server.s3store import EmbeddedS3
from tests.fixtures.jobs import JobRunner, channel

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TOOLKIT = "sagemaker-emulator/toolkit:latest"
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "containers" / "build.py"
BUILD_TIMEOUT = 900  # cold: 1.5 to 2.5 minutes here; a slow mirror takes longer

# The first test may build the image (in its setup): room for that beyond the usual timeout.
pytestmark = [pytest.mark.s3, pytest.mark.timeout(BUILD_TIMEOUT + 300)]

# The user's entry point: arguments from the hyperparameters, data and model dirs from the
# SM_* variables the toolkit sets, a module of its own beside it, a metric line per epoch.
TRAIN_PY = textwrap.dedent(
    """
    import argparse, json, os, pathlib, sys

    import helper  # from the same source directory

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--scale", type=float, required=True)
    args = parser.parse_args()

    train = pathlib.Path(os.environ["SM_CHANNEL_TRAIN"])
    values = [float(v) for p in sorted(train.glob("*.txt")) for v in p.read_text().split()]
    loss = helper.mean(values) * args.scale
    for epoch in range(1, args.epochs + 1):
        loss /= 2
        print(f"epoch={epoch} loss={loss:.4f}", flush=True)

    model = pathlib.Path(os.environ["SM_MODEL_DIR"]) / "model.txt"
    model.write_text(json.dumps({
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "host": os.environ["SM_CURRENT_HOST"],
        "values": values,
        "loss": round(loss, 4),
    }))
    """
)
HELPER_PY = "def mean(values):\n    return sum(values) / len(values)\n"


def sourcedir_tar_gz(files: dict[str, str]) -> bytes:
    """What the SDK uploads: the source directory's files at the root of a .tar.gz."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def toolkit_image() -> str:
    """The image, built (or found up to date: under a second) by containers/build.py: it is
    opt-in, not part of `make images`. The first build needs PyPI and a Debian mirror; without
    them the tests fail with the reason, never skip."""
    try:
        result = subprocess.run(
            [sys.executable, str(BUILD_SCRIPT), "toolkit"],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"building {TOOLKIT} took over {BUILD_TIMEOUT} s", pytrace=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-4000:]
        pytest.fail(f"building {TOOLKIT} failed:\n{output}", pytrace=False)
    return TOOLKIT


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    with EmbeddedS3(tmp_path_factory.mktemp("toolkit-store") / "home") as running:
        yield running


def s3_client(store: EmbeddedS3) -> S3Client:
    settings = store.settings
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
    )


@pytest.fixture(scope="module")
def bucket(store: EmbeddedS3) -> str:
    name = f"toolkit-{uuid.uuid4().hex[:10]}"
    s3_client(store).create_bucket(Bucket=name)
    return name


def run_in_image(image: str, script: str) -> str:
    client = docker.from_env()
    try:
        output: bytes = client.containers.run(image, ["sh", "-c", script], remove=True)
    finally:
        client.close()
    return output.decode()


def test_the_image_has_the_toolkit_and_its_train_entry_point(toolkit_image: str) -> None:
    output = run_in_image(
        toolkit_image,
        "command -v train && python -c 'import sagemaker_training, gethostname, boto3; "
        "print(sagemaker_training.__name__, boto3.__name__)' && python -m pip check",
    )
    assert output.splitlines() == [
        "/usr/local/bin/train",
        "sagemaker_training boto3",
        "No broken requirements found.",
    ]


def script_mode_request(
    jobs: JobRunner, store: EmbeddedS3, bucket: str, files: dict[str, str], **hyperparameters: Any
) -> dict[str, Any]:
    """Upload ``files`` as sourcedir.tar.gz and a train channel; the request the SDK sends."""
    name = f"toolkit-{uuid.uuid4().hex[:10]}"
    s3 = s3_client(store)
    source = f"{name}/source/sourcedir.tar.gz"
    s3.put_object(Bucket=bucket, Key=source, Body=sourcedir_tar_gz(files))
    s3.put_object(Bucket=bucket, Key=f"{name}/train/part-0.txt", Body=b"1 2 3")
    s3.put_object(Bucket=bucket, Key=f"{name}/train/part-1.txt", Body=b"6")
    sdk_style = {  # every value JSON-encoded, as the SDK sends them
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": f"s3://{bucket}/{source}",
        "sagemaker_region": store.region,
        "sagemaker_job_name": name,
        "sagemaker_container_log_level": 20,
        **hyperparameters,
    }
    return jobs.request(
        TrainingJobName=name,
        AlgorithmSpecification={
            "TrainingImage": TOOLKIT,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "train:loss", "Regex": r"loss=([0-9.]+)"}],
        },
        HyperParameters={key: json.dumps(value) for key, value in sdk_style.items()},
        InputDataConfig=[channel("train", f"s3://{bucket}/{name}/train/")],
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )


def test_script_mode_job_downloads_the_source_from_s3_and_completes(
    toolkit_image: str, store: EmbeddedS3, bucket: str, jobs: JobRunner
) -> None:
    files = {"train.py": TRAIN_PY, "helper.py": HELPER_PY}
    request = script_mode_request(jobs, store, bucket, files, epochs=3, scale=2.0)

    record = jobs.run(request, s3=store.settings, container_s3=store.container_access())

    log = "\n".join(line for _, line in jobs.logs)
    assert record["TrainingJobStatus"] == "Completed", (record.get("FailureReason"), log)
    model = json.loads(jobs.model(record)["model.txt"])
    assert model == {
        "argv": ["--epochs", "3", "--scale", "2.0"],
        "cwd": "/opt/ml/code",
        "host": "algo-1",
        "values": [1.0, 2.0, 3.0, 6.0],
        "loss": 0.75,  # mean 3 * scale 2, halved three times
    }
    assert "epoch=3 loss=0.7500" in log
    assert "Reporting training SUCCESS" in log  # the toolkit ran it, not a shell
    metrics = {m["MetricName"]: m["Value"] for m in record["FinalMetricDataList"]}
    assert metrics == {"train:loss": pytest.approx(0.75)}


def test_a_failing_user_script_fails_the_job_with_the_toolkits_reason(
    toolkit_image: str, store: EmbeddedS3, bucket: str, jobs: JobRunner
) -> None:
    failing = "import sys\nsys.exit('no rows in the train channel')\n"
    request = script_mode_request(jobs, store, bucket, {"train.py": failing})

    record = jobs.run(request, s3=store.settings, container_s3=store.container_access())

    assert record["TrainingJobStatus"] == "Failed"
    # The toolkit's own words, from the failure file it writes (the script's stderr is in
    # the log: the toolkit captures it only for frameworks that ask).
    assert record["FailureReason"].startswith("AlgorithmError: ExecuteUserScriptError:")
    assert '"/usr/bin/python3 -- train.py", exit code: 1' in record["FailureReason"]
    log = "\n".join(line for _, line in jobs.logs)
    assert "no rows in the train channel" in log
    assert "Reporting training FAILURE" in log
