"""Train with the SageMaker Python SDK v3 (`ModelTrainer(...).train()`) on local containers.

As train_estimator.py (v2), with the environment of `emulator serve --s3` (see README.md); v3
checks the role through IAM (GetRole, SimulatePrincipalPolicy), which the emulator answers.

    python examples/sdk/train_model_trainer.py

The SDK uploads the local data folders to the embedded S3 store itself; the job's log lines
come through Python's logging (v3 prints nothing unless logging shows INFO).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("SAGEMAKER_USER_CONFIG_OVERRIDE", str(HERE / "sagemaker-config.yaml"))

from sagemaker.core.helper.session_helper import Session  # noqa: E402
from sagemaker.train import ModelTrainer  # noqa: E402
from sagemaker.train.configs import (  # noqa: E402
    Compute,
    InputData,
    OutputDataConfig,
    StoppingCondition,
)

DATA = HERE.parent / "demo" / "data"
IMAGE = os.environ.get("EXAMPLE_IMAGE", "sagemaker-emulator/demo:latest")
BUCKET = os.environ.get("EXAMPLE_BUCKET", "sagemaker-emulator-example")
ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("botocore", "sagemaker.config"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    prefix = os.environ.get("EXAMPLE_PREFIX", "sdk-v3-example")
    session = Session(default_bucket=BUCKET)  # no STS lookup to make a bucket name up

    trainer = ModelTrainer(
        training_image=IMAGE,
        role=ROLE,
        sagemaker_session=session,
        base_job_name=prefix,
        compute=Compute(instance_type="ml.m5.large", instance_count=1, volume_size_in_gb=10),
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{BUCKET}/{prefix}/output"),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=600),
        hyperparameters={"epochs": 25, "learning_rate": 0.1},
    ).with_metric_definitions(
        [
            {"name": "train:loss", "regex": "train_loss=([0-9.eE+-]+)"},
            {"name": "validation:loss", "regex": "validation_loss=([0-9.eE+-]+)"},
        ]
    )
    trainer.train(
        input_data_config=[
            InputData(channel_name="train", data_source=str(DATA / "train")),
            InputData(channel_name="validation", data_source=str(DATA / "validation")),
        ],
        logs=True,
    )

    job = trainer._latest_training_job  # the SDK's own typed model of DescribeTrainingJob
    print(f"\njob {job.training_job_name}: {job.training_job_status}")
    for metric in job.final_metric_data_list or []:
        print(f"  metric {metric.metric_name} = {metric.value:.6g}")
    print(f"  model {job.model_artifacts.s3_model_artifacts}")
    return 0 if job.training_job_status == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main())
