"""The SageMaker Python SDK v3 (its own venv, tests/fixtures/sdk.py) against `emulator serve --s3`:
`ModelTrainer(...).train(logs=True)`, which parses the whole DescribeTrainingJob answer into
typed models and keeps GetLogEvents' forward token as a cursor across polls.

v3 checks the role through IAM (GetRole, SimulatePrincipalPolicy): the server answers both, so
role validation stays on, as users run it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures.jobs import PROBE, unique_name
from tests.fixtures.sdk import EXAMPLES, SdkRun, SdkVenv, sdk_environ
from tests.fixtures.serve import Served

# A first run makes the venv (about 3 minutes: v3 brings mlflow and more) before the job.
pytestmark = pytest.mark.timeout(1800)

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def assert_local_only(run: SdkRun, served: Served) -> None:
    endpoints = {served.url, served.s3_endpoint}
    assert {call["endpoint"] for call in run.calls} <= endpoints, run.calls
    assert set(run.hosts) <= LOCAL_HOSTS, run.hosts


def v3_environ(served: Served, **extra: str) -> dict[str, str]:
    return sdk_environ(served.client_environ(), **extra)


def test_the_model_trainer_example_trains_with_logs_and_metrics(
    serve_s3: Served, sdk_v3: SdkVenv, tmp_path: Path
) -> None:
    bucket, prefix = unique_name("sdk-v3"), unique_name("example")
    environ = v3_environ(serve_s3, EXAMPLE_BUCKET=bucket, EXAMPLE_PREFIX=prefix)
    run = sdk_v3.run(EXAMPLES / "train_model_trainer.py", env=environ, workdir=tmp_path)
    assert run.returncode == 0, run.describe()

    # v3 logs each event through `logging` (stderr): the stream name, then the line
    assert "training on 500 rows, 2 features, 25 epochs" in run.stderr, run.describe()
    lines = run.stderr.splitlines()
    epochs = [line for line in lines if line.startswith("epoch=")]
    assert [line.split()[0] for line in epochs] == [f"epoch={i}" for i in range(1, 26)]
    assert re.search(rf"^{prefix}-\d+/algo-1-\d+:$", run.stderr, re.M), run.describe()
    job = re.search(rf"^job ({prefix}-\S+): Completed$", run.stdout, re.M)
    assert job, run.describe()
    metrics = dict(re.findall(r"^  metric (\S+) = ([0-9.e+-]+)$", run.stdout, re.M))
    assert set(metrics) == {"train:loss", "validation:loss"}
    assert f"  model s3://{bucket}/{prefix}/output/{job[1]}/output/model.tar.gz" in run.stdout

    assert_local_only(run, serve_s3)
    for call in (
        "s3.PutObject",  # the local data folders, uploaded by the SDK
        "sagemaker.CreateTrainingJob",
        "sagemaker.DescribeTrainingJob",
        "logs.DescribeLogStreams",
        "logs.GetLogEvents",
    ):
        assert call in run.operations, run.operations


FAILING = """
import logging
import sys

from sagemaker.core.helper.session_helper import Session
from sagemaker.core.utils.exceptions import FailedStatusError
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, OutputDataConfig, StoppingCondition

logging.basicConfig(level=logging.INFO, format="%(message)s")
bucket, image = sys.argv[1], sys.argv[2]
session = Session(default_bucket=bucket)
session.default_bucket()  # creates the bucket (the output goes there)
trainer = ModelTrainer(
    training_image=image,
    role="arn:aws:iam::000000000000:role/SageMakerRole",
    sagemaker_session=session,
    base_job_name="failing",
    compute=Compute(instance_type="ml.m5.large", instance_count=1, volume_size_in_gb=1),
    output_data_config=OutputDataConfig(s3_output_path=f"s3://{bucket}/output"),
    stopping_condition=StoppingCondition(max_runtime_in_seconds=120),
    environment={"PROBE_STDOUT": "about to fail", "PROBE_FAILURE": "bad row 7", "PROBE_EXIT": "2"},
)
try:
    trainer.train(logs=True)
except FailedStatusError as error:
    print(f"train raised: {error}")
    sys.exit(3)
"""


def test_a_failing_job_ends_train_with_its_failure_reason(
    serve_s3: Served, sdk_v3: SdkVenv, tmp_path: Path
) -> None:
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    run = sdk_v3.run(
        script, unique_name("sdk-v3"), PROBE, env=v3_environ(serve_s3), workdir=tmp_path
    )
    assert run.returncode == 3, run.describe()
    assert "about to fail" in run.stderr, run.describe()  # its log lines came first
    raised = re.search(r"^train raised: (.*)$", run.stdout, re.M)
    assert raised and "Failed" in raised[1] and "bad row 7" in raised[1], run.describe()
    assert_local_only(run, serve_s3)
