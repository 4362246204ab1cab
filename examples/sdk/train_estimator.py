"""Train with the SageMaker Python SDK v2 (`Estimator(...).fit()`) on local containers.

The training code is SageMaker's usual; what makes it local is the environment set by
`emulator serve --s3` (see README.md beside this file):

    emulator serve --s3 > emulator.env &        # then, once its last line starts with '#':
    source emulator.env
    python examples/sdk/train_estimator.py

It trains examples/demo's linear regression (the image `sagemaker-emulator/demo:latest` from
`make images`) on the CSV files of examples/demo/data, uploaded to the embedded S3 store, prints
the job's log lines as SageMaker does (logs="All"), then its metrics and model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# No telemetry (see sagemaker-config.yaml) and no v2 deprecation banner. Set before the import.
os.environ.setdefault("SAGEMAKER_USER_CONFIG_OVERRIDE", str(HERE / "sagemaker-config.yaml"))
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

import sagemaker  # noqa: E402  (after the settings above)
from sagemaker.estimator import Estimator  # noqa: E402

DATA = HERE.parent / "demo" / "data"
IMAGE = os.environ.get("EXAMPLE_IMAGE", "sagemaker-emulator/demo:latest")  # any local image
BUCKET = os.environ.get("EXAMPLE_BUCKET", "sagemaker-emulator-example")
ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"  # any role ARN: not checked locally


def main() -> int:
    # A bucket name of our own: without it the SDK asks AWS's STS for the account id (the
    # regional endpoint, not AWS_ENDPOINT_URL_STS) to make one up.
    session = sagemaker.Session(default_bucket=BUCKET)
    prefix = os.environ.get("EXAMPLE_PREFIX", "sdk-example")
    train = session.upload_data(str(DATA / "train"), key_prefix=f"{prefix}/train")
    validation = session.upload_data(str(DATA / "validation"), key_prefix=f"{prefix}/validation")

    estimator = Estimator(
        image_uri=IMAGE,
        role=ROLE,
        instance_count=1,
        instance_type="ml.m5.large",  # a real type: sized as SageMaker sizes it (no "local")
        output_path=f"s3://{BUCKET}/{prefix}/output",  # s3:// (the SDK refuses file:// here)
        base_job_name=prefix,
        hyperparameters={"epochs": 25, "learning_rate": 0.1},
        metric_definitions=[
            {"Name": "train:loss", "Regex": "train_loss=([0-9.eE+-]+)"},
            {"Name": "validation:loss", "Regex": "validation_loss=([0-9.eE+-]+)"},
        ],
        max_run=600,
        sagemaker_session=session,
    )
    estimator.fit({"train": train, "validation": validation}, logs="All")

    job = estimator.latest_training_job.describe()
    print(f"\njob {job['TrainingJobName']}: {job['TrainingJobStatus']}")
    for metric in job.get("FinalMetricDataList", []):
        print(f"  metric {metric['MetricName']} = {metric['Value']:.6g}")
    print(f"  model {estimator.model_data}")
    return 0 if job["TrainingJobStatus"] == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main())
