"""The folders SageMaker uploads while a job runs (README "TensorBoard and debugger output"):
TensorBoardOutputConfig to ``<S3OutputPath>/<job>/tensorboard-output/`` and DebugHookConfig to
``<S3OutputPath>/<job>/debug-output/``, synced as checkpoints are, while the job runs and at
its end; upload-only: nothing is restored, and what the container deletes stays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emulator.errors import EmulatorError
from tests.fixtures.jobs import PROBE, JobRunner, channel, run_in_thread
from tests.fixtures.polling import wait_until
from tests.fixtures.s3 import S3Server

pytestmark = [pytest.mark.docker]

CONTROL = "/opt/ml/input/data/control"


def script(text: str) -> dict[str, Any]:
    return {
        "TrainingImage": PROBE,
        "TrainingInputMode": "File",
        "ContainerEntrypoint": ["sh", "-c", text],
    }


@pytest.mark.s3
def test_tensorboard_files_reach_s3_while_the_job_runs_and_at_its_end(
    jobs: JobRunner, moto_s3: S3Server, tmp_path: Path
) -> None:
    bucket = moto_s3.new_bucket("tb")
    control = tmp_path / "control"  # a FastFile channel: a live read-only view of this dir
    control.mkdir()
    (control / "ready").write_text("the container waits for 'go' beside this file\n")
    commands = (  # an entrypoint item holds at most 256 characters
        "set -e; cd /opt/ml/output/tensorboard; mkdir train; echo event-1 > train/e.1; "
        f"echo scratch > scratch; while [ ! -e {CONTROL}/go ]; do sleep 0.1; done; "
        "rm scratch; echo event-2 > train/e.2"
    )
    request = jobs.request(
        AlgorithmSpecification=script(commands),
        InputDataConfig=[channel("control", control, InputMode="FastFile")],
        TensorBoardOutputConfig={"S3OutputPath": f"s3://{bucket}/tb"},
    )
    name = request["TrainingJobName"]
    prefix = f"tb/{name}/tensorboard-output/"
    runner = run_in_thread(jobs, request)

    def uploaded() -> bool:
        if not runner.is_alive():
            raise AssertionError(f"the job ended before the test let it: {runner.result}")  # type: ignore[attr-defined]
        return moto_s3.read_objects(bucket, prefix).keys() == {"train/e.1", "scratch"}

    # Uploaded while the container waits for the test: the job cannot end before 'go'.
    wait_until(uploaded, timeout=30.0)
    assert runner.is_alive()
    (control / "go").write_text("")
    runner.join(timeout=60)
    record = runner.result["record"]  # type: ignore[attr-defined]
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    # At the end: the last file too; the one the container deleted stays (upload-only).
    assert moto_s3.read_objects(bucket, prefix) == {
        "train/e.1": b"event-1\n",
        "train/e.2": b"event-2\n",
        "scratch": b"scratch\n",
    }
    assert record["TensorBoardOutputConfig"] == {"S3OutputPath": f"s3://{bucket}/tb"}
    assert jobs.leftovers(name) == []


def test_debugger_output_at_a_custom_local_path_goes_to_a_local_location(
    jobs: JobRunner, tmp_path: Path
) -> None:
    destination = tmp_path / "debug"
    commands = (
        "set -e; test -f /opt/ml/input/config/debughookconfig.json; "
        "mkdir -p /tmp/tensors/step-1 && echo weights > /tmp/tensors/step-1/w.npy; "
        "echo stays > /opt/ml/output/tensorboard-not-synced"
    )
    request = jobs.request(
        AlgorithmSpecification=script(commands),
        DebugHookConfig={"S3OutputPath": str(destination), "LocalPath": "/tmp/tensors"},
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    synced = destination / request["TrainingJobName"] / "debug-output"
    assert (synced / "step-1" / "w.npy").read_bytes() == b"weights\n"
    assert [p.name for p in synced.rglob("*") if p.is_file()] == ["w.npy"]
    # Not part of the model: the folder is the sync's, mounted outside /opt/ml/model.
    assert not any("w.npy" in name for name in jobs.model(record))
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_a_debugger_location_that_cannot_be_written_is_refused_before_the_job(
    jobs: JobRunner, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    request = jobs.request(
        AlgorithmSpecification=script("true"),
        DebugHookConfig={"S3OutputPath": str(blocker / "debug")},
    )
    with pytest.raises(EmulatorError, match=r"DebugHookConfig\.S3OutputPath"):
        jobs.run(request)
    assert jobs.leftovers(request["TrainingJobName"]) == []
