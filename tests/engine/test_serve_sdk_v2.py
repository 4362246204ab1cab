"""The SageMaker Python SDK v2 (its own venv, tests/fixtures/sdk.py) against `emulator serve --s3`:
`Estimator(...).fit(inputs, logs="All")` with a real instance type, reaching the server and its
embedded S3 store through the printed endpoint variables only.

Each script runs under a recorder: the tests check which AWS calls the SDK made, that every one
went to the emulator, and that nothing looked up another host (telemetry is off, as
examples/sdk/README.md tells users).
"""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import docker
import pytest

from tests.fixtures.jobs import PROBE, unique_name
from tests.fixtures.sdk import EXAMPLES, SdkRun, SdkVenv, sdk_environ
from tests.fixtures.serve import Served

# A first run makes the venv (about 30 s) before the job.
pytestmark = pytest.mark.timeout(1200)

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# The sagemaker-training toolkit image (script mode), built offline from containers/toolkit.
TOOLKIT_IMAGE = "sagemaker-emulator/toolkit:latest"
TOOLKIT_SOURCE = Path(__file__).resolve().parents[2] / "containers" / "toolkit"


def assert_local_only(run: SdkRun, served: Served) -> None:
    endpoints = {served.url, served.s3_endpoint}
    assert {call["endpoint"] for call in run.calls} <= endpoints, run.calls
    assert set(run.hosts) <= LOCAL_HOSTS, run.hosts


def test_the_estimator_example_trains_with_logs_and_metrics(
    serve_s3_env: Served, sdk_v2: SdkVenv, tmp_path: Path
) -> None:
    bucket, prefix = unique_name("sdk-v2"), unique_name("example")
    environ = sdk_environ(
        serve_s3_env.client_environ(), EXAMPLE_BUCKET=bucket, EXAMPLE_PREFIX=prefix
    )
    run = sdk_v2.run(EXAMPLES / "train_estimator.py", env=environ, workdir=tmp_path)
    assert run.returncode == 0, run.describe()

    # The job's own log lines, printed by the SDK from GetLogEvents
    assert "training on 500 rows, 2 features, 25 epochs" in run.stdout, run.describe()
    assert re.search(r"^epoch=25 train_loss=[0-9.]+ validation_loss=[0-9.]+$", run.stdout, re.M)
    job = re.search(rf"^job ({prefix}-\S+): Completed$", run.stdout, re.M)
    assert job, run.describe()
    metrics = dict(re.findall(r"^  metric (\S+) = ([0-9.e+-]+)$", run.stdout, re.M))
    assert set(metrics) == {"train:loss", "validation:loss"}
    assert float(metrics["train:loss"]) < 0.05
    model = f"s3://{bucket}/{prefix}/output/{job[1]}/output/model.tar.gz"
    assert f"  model {model}" in run.stdout
    s3 = boto3.session.Session().client("s3")
    assert s3.head_object(Bucket=bucket, Key=model.split("/", 3)[3])["ContentLength"] > 0

    assert_local_only(run, serve_s3_env)
    for call in (
        "s3.PutObject",  # upload_data
        "sagemaker.CreateTrainingJob",
        "sagemaker.DescribeTrainingJob",
        "logs.DescribeLogStreams",
        "logs.GetLogEvents",
    ):
        assert call in run.operations, run.operations


FAILING = """
import sys

import sagemaker
from sagemaker.estimator import Estimator
from sagemaker.exceptions import UnexpectedStatusException

bucket, image = sys.argv[1], sys.argv[2]
session = sagemaker.Session(default_bucket=bucket)
session.default_bucket()  # creates the bucket (the output goes there)
estimator = Estimator(
    image_uri=image,
    role="arn:aws:iam::000000000000:role/SageMakerRole",
    instance_count=1,
    instance_type="ml.m5.large",
    output_path=f"s3://{bucket}/output",
    environment={"PROBE_STDOUT": "about to fail", "PROBE_FAILURE": "bad row 7", "PROBE_EXIT": "2"},
    max_run=120,
    sagemaker_session=session,
)
try:
    estimator.fit(logs="All")
except UnexpectedStatusException as error:
    print(f"fit raised: {error}")
    sys.exit(3)
"""


def test_a_failing_job_ends_fit_with_its_failure_reason(
    serve_s3: Served, sdk_v2: SdkVenv, tmp_path: Path
) -> None:
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    environ = sdk_environ(serve_s3.client_environ())
    run = sdk_v2.run(script, unique_name("sdk-v2"), PROBE, env=environ, workdir=tmp_path)
    assert run.returncode == 3, run.describe()
    assert "about to fail" in run.stdout, run.describe()  # its log lines came first
    raised = re.search(r"^fit raised: (.*)$", run.stdout, re.M)
    assert raised and "Failed" in raised[1] and "bad row 7" in raised[1], run.describe()
    assert_local_only(run, serve_s3)


UNCHANGED = """
import sys

from sagemaker.estimator import Estimator

# Launch code as it runs on SageMaker: no session, no bucket, no output path.
estimator = Estimator(
    image_uri=sys.argv[1],
    role="arn:aws:iam::000000000000:role/SageMakerRole",
    instance_count=1,
    instance_type="ml.m5.large",
    environment={"PROBE_STDOUT": "unchanged code ran"},
)
estimator.fit(logs="All")
print(f"model: {estimator.model_data}")
"""


def test_unchanged_code_takes_its_bucket_from_the_sdk_config(
    serve_s3: Served, sdk_v2: SdkVenv, tmp_path: Path
) -> None:
    """The SDK's own config file names the default bucket (and turns telemetry off): code
    that calls no more than `Estimator(...).fit()` runs as it is, its STS lookup avoided."""
    bucket = unique_name("sdk-v2")
    config = tmp_path / "sagemaker-config.yaml"
    config.write_text(
        'SchemaVersion: "1.0"\n'
        "SageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
        f"      Session:\n        DefaultS3Bucket: {bucket}\n"
    )
    script = tmp_path / "unchanged.py"
    script.write_text(UNCHANGED)
    environ = sdk_environ(serve_s3.client_environ(), SAGEMAKER_USER_CONFIG_OVERRIDE=str(config))
    run = sdk_v2.run(script, PROBE, env=environ, workdir=tmp_path)
    assert run.returncode == 0, run.describe()
    assert "unchanged code ran" in run.stdout, run.describe()
    assert re.search(rf"^model: s3://{bucket}/\S+/output/model.tar.gz$", run.stdout, re.M)
    assert "sts.GetCallerIdentity" not in run.operations
    assert_local_only(run, serve_s3)


SCRIPT_MODE_TRAIN = """
import os

print("script mode: entry point running", flush=True)
print(f"script mode: epochs={os.environ.get('SM_HP_EPOCHS')}", flush=True)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as out:
    out.write("trained\\n")
"""

SCRIPT_MODE = """
import sys

import sagemaker
from sagemaker.estimator import Estimator

bucket, image, source_dir = sys.argv[1], sys.argv[2], sys.argv[3]
session = sagemaker.Session(default_bucket=bucket)
session.default_bucket()  # creates the bucket: the code goes to the output path's bucket
estimator = Estimator(
    image_uri=image,
    entry_point="train.py",
    source_dir=source_dir,
    role="arn:aws:iam::000000000000:role/SageMakerRole",
    instance_count=1,
    instance_type="ml.m5.large",
    output_path=f"s3://{bucket}/output",
    hyperparameters={"epochs": 3},
    max_run=300,
    sagemaker_session=session,
)
estimator.fit(logs="All")
print(f"status: {estimator.latest_training_job.describe()['TrainingJobStatus']}")
"""


def _toolkit_image_built() -> bool:
    client = docker.from_env()
    try:
        return bool(client.images.list(name=TOOLKIT_IMAGE))
    finally:
        client.close()


def test_script_mode_with_the_training_toolkit_image(
    serve_s3: Served, sdk_v2: SdkVenv, tmp_path: Path
) -> None:
    """The SDK uploads sourcedir.tar.gz to the embedded store; the sagemaker-training toolkit
    in the image downloads it from the endpoint the server gives containers and runs it."""
    if not _toolkit_image_built():
        if TOOLKIT_SOURCE.is_dir():  # in the tree: `make images` builds it
            pytest.fail(f"{TOOLKIT_IMAGE} is not built: run `make images`", pytrace=False)
        pytest.skip(f"{TOOLKIT_IMAGE} is not in this tree yet ({TOOLKIT_SOURCE})")
    source = tmp_path / "source"
    source.mkdir()
    (source / "train.py").write_text(SCRIPT_MODE_TRAIN)
    script = tmp_path / "script_mode.py"
    script.write_text(SCRIPT_MODE)
    environ = sdk_environ(serve_s3.client_environ())
    bucket = unique_name("sdk-v2")
    run = sdk_v2.run(script, bucket, TOOLKIT_IMAGE, str(source), env=environ, workdir=tmp_path)
    assert run.returncode == 0, run.describe()
    assert "script mode: entry point running" in run.stdout
    assert "script mode: epochs=3" in run.stdout
    assert "status: Completed" in run.stdout
    assert_local_only(run, serve_s3)
