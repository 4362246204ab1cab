"""The SageMaker training-container contract (CONTRACT.md sections 2 and 3), checked by running
the probe image on the real Docker engine and reading what it saw."""

from __future__ import annotations

import json
import os

import pytest

from tests.fixtures.jobs import PROBE, JobRunner, channel, sha256sums

pytestmark = pytest.mark.docker


def algorithm(**members: object) -> dict[str, object]:
    return {"TrainingImage": PROBE, "TrainingInputMode": "File", **members}


@pytest.mark.parametrize(
    ("image", "members", "expected_argv"),
    [
        # neither: `docker run IMAGE train`
        (PROBE, {}, ["/usr/local/bin/train"]),
        # an image ENTRYPOINT receives `train` as argv[1]
        ("sagemaker-emulator/probe-entrypoint:latest", {}, ["/usr/local/bin/probe", "train"]),
        # ContainerEntrypoint only: no `train`
        (
            PROBE,
            {"ContainerEntrypoint": ["/usr/local/bin/probe", "--x"]},
            ["/usr/local/bin/probe", "--x"],
        ),
        # ContainerArguments only: they replace CMD, no `train`
        (
            PROBE,
            {"ContainerArguments": ["probe", "a b", "c"]},
            ["/usr/local/bin/probe", "a b", "c"],
        ),
        # both
        (
            "sagemaker-emulator/probe-entrypoint:latest",
            {
                "ContainerEntrypoint": ["/usr/local/bin/probe"],
                "ContainerArguments": ["--epochs", "3"],
            },
            ["/usr/local/bin/probe", "--epochs", "3"],
        ),
    ],
    ids=["default-train", "image-entrypoint", "entrypoint-only", "arguments-only", "both"],
)
def test_entrypoint_and_arguments_start_the_container_as_sagemaker_does(
    jobs: JobRunner, image: str, members: dict[str, object], expected_argv: list[str]
) -> None:
    spec = {"TrainingImage": image, "TrainingInputMode": "File", **members}
    record = jobs.run(jobs.request(AlgorithmSpecification=spec))
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert jobs.probe(record, "argv").splitlines() == expected_argv


def test_an_image_without_entrypoint_or_train_fails_like_sagemaker(jobs: JobRunner) -> None:
    request = jobs.request(
        AlgorithmSpecification={
            "TrainingImage": "sagemaker-emulator/no-train:latest",
            "TrainingInputMode": "File",
        }
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Failed"
    assert 'exec: "train": executable file not found in $PATH' in record["FailureReason"]
    assert record["FailureReason"].endswith("exit code: 127")
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_config_files_describe_the_job(jobs: JobRunner, make_files) -> None:
    data = make_files({"a.csv": b"1,2\n"})
    request = jobs.request(
        AlgorithmSpecification=algorithm(TrainingInputMode="File"),
        HyperParameters={"epochs": "10", "lr": "0.1", "nested": '{"a": 1}'},
        InputDataConfig=[
            channel("train", data, ContentType="text/csv"),
            channel("extra", data, InputMode="File"),
        ],
        ResourceConfig={"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
        CheckpointConfig={"S3Uri": str(jobs.output / "ckpt")},
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")

    assert json.loads(jobs.probe(record, "hyperparameters.json")) == {
        "epochs": "10",
        "lr": "0.1",
        "nested": '{"a": 1}',
    }
    assert json.loads(jobs.probe(record, "inputdataconfig.json")) == {
        "train": {
            "ContentType": "text/csv",
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        },
        "extra": {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        },
    }
    assert json.loads(jobs.probe(record, "resourceconfig.json")) == {
        "current_host": "algo-1",
        "current_instance_type": "ml.c5.xlarge",
        "current_group_name": "homogeneousCluster",
        "hosts": ["algo-1"],
        "instance_groups": [
            {
                "instance_group_name": "homogeneousCluster",
                "instance_type": "ml.c5.xlarge",
                "hosts": ["algo-1"],
            }
        ],
        "network_interface_name": "eth0",
    }
    assert json.loads(jobs.probe(record, "checkpointconfig.json")) == {
        "LocalPath": "/opt/ml/checkpoints",
        "S3Uri": str(jobs.output / "ckpt"),
    }


def test_no_hyperparameters_give_an_empty_object(jobs: JobRunner) -> None:
    record = jobs.run(jobs.request())
    assert json.loads(jobs.probe(record, "hyperparameters.json")) == {}
    assert json.loads(jobs.probe(record, "inputdataconfig.json")) == {}


def test_environment_hostname_and_no_credentials(
    jobs: JobRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASECRET")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    request = jobs.request(Environment={"MY_SETTING": "on", "EMPTY": ""})
    record = jobs.run(request)
    env = dict(line.split("=", 1) for line in jobs.probe(record, "env").splitlines() if "=" in line)
    name = request["TrainingJobName"]
    assert env["MY_SETTING"] == "on"
    assert env["EMPTY"] == ""
    assert env["TRAINING_JOB_NAME"] == name
    assert (
        env["TRAINING_JOB_ARN"] == f"arn:aws:sagemaker:eu-west-1:000000000000:training-job/{name}"
    )
    assert env["AWS_REGION"] == "eu-west-1"
    assert not [
        key for key in env if key.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION", "SM_"))
    ]
    assert jobs.probe(record, "hostname").strip() == "algo-1"
    assert record["TrainingJobArn"] == env["TRAINING_JOB_ARN"]


def test_file_mode_copies_channels_byte_exact_and_never_touches_the_source(
    jobs: JobRunner, make_files
) -> None:
    files = {
        "a.csv": b"x,y\n1,2\n",
        "nested/deeper/b.bin": os.urandom(3 * 1024 * 1024 + 7),
        "empty.txt": b"",
        "spaced name.txt": b"spaces are kept",
    }
    data = make_files(files)
    other = make_files({"only.txt": b"validation"})
    request = jobs.request(
        InputDataConfig=[channel("train", data), channel("validation", f"file://{other}")],
        Environment={"PROBE_MODIFY_DATA": "1"},
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    seen = jobs.probe(record, "data.sha256")
    assert seen == sha256sums(files, "train") + sha256sums(
        {"only.txt": b"validation"}, "validation"
    )
    # The container rewrote every file it saw; the user's files are as they were.
    for relative, content in files.items():
        assert (data / relative).read_bytes() == content
    assert (other / "only.txt").read_bytes() == b"validation"


def test_a_non_root_image_can_write_model_and_output(jobs: JobRunner) -> None:
    request = jobs.request(
        AlgorithmSpecification=algorithm(TrainingImage="sagemaker-emulator/probe-nonroot:latest"),
        Environment={"PROBE_MODEL_FILE": "weights.bin", "PROBE_OUTPUT_FILE": "report.txt"},
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert jobs.probe(record, "uid").strip() == "65534"
    assert jobs.model(record)["weights.bin"] == b"model\n"
    assert jobs.output_archive(record)["report.txt"] == b"output\n"


def test_a_non_root_image_can_change_its_file_mode_channel(jobs: JobRunner, make_files) -> None:
    data = make_files({"a.csv": b"1\n", "nested/b.csv": b"2\n"})
    script = (
        "echo changed > /opt/ml/input/data/train/a.csv && "
        "touch /opt/ml/input/data/train/nested/new.txt && id -u"
    )
    request = jobs.request(
        AlgorithmSpecification=algorithm(
            TrainingImage="sagemaker-emulator/probe-nonroot:latest",
            ContainerEntrypoint=["sh", "-c", script],
        ),
        InputDataConfig=[channel("train", data)],
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert ("algo-1", "65534") in jobs.logs
    assert (data / "a.csv").read_bytes() == b"1\n"


def test_pipe_jobs_get_a_writable_pipe_state_dir(jobs: JobRunner, make_files) -> None:
    """TensorFlow's PipeModeDataset keeps its state in /opt/ml/pipe_state."""
    data = make_files({"a.bin": b"abc"})
    script = "touch /opt/ml/pipe_state/PipeModeDataset.lock && cat /opt/ml/input/data/train_0"
    request = jobs.request(
        AlgorithmSpecification=algorithm(
            TrainingImage="sagemaker-emulator/probe-nonroot:latest",
            TrainingInputMode="Pipe",
            ContainerEntrypoint=["sh", "-c", script],
        ),
        InputDataConfig=[channel("train", data)],
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert ("algo-1", "abc") in jobs.logs
