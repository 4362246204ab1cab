"""The `emulator` command as a user meets it: exit codes (0 Completed, 1 Failed, 2 the user's
mistake, 3 Stopped), one JSON record on stdout with --json, requests from files, stdin or flags
alone, and describe/list/validate over the state directory (EMULATOR_HOME)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.fixtures.cli import EMULATOR, leftovers, probe_env
from tests.fixtures.cli_runner import _DESCRIBE, Cli, assert_usage_error
from tests.fixtures.jobs import BUSYBOX, PROBE, channel, probe_request, unique_name

assert _DESCRIBE is not None


DESCRIBE = _DESCRIBE


def assert_describe_shaped(record: dict[str, Any]) -> None:
    """Every field is a DescribeTrainingJob response member; the required ones are there."""
    assert set(record) <= set(DESCRIBE.members), set(record) - set(DESCRIBE.members)
    missing = [m for m in DESCRIBE.required_members if m not in record]
    assert missing == [], missing
    for transition in record["SecondaryStatusTransitions"]:
        assert set(transition) == {"Status", "StartTime", "EndTime", "StatusMessage"}
    for metric in record["FinalMetricDataList"]:
        assert set(metric) == {"MetricName", "Value", "Timestamp"}
        assert isinstance(metric["Value"], float)


@pytest.mark.docker
def test_a_missing_image_is_never_pulled(cli: Cli) -> None:
    image = "sagemaker-emulator/not-built-here:latest"
    result = cli("run", "--image", image, "--output", str(cli.output), "--job-name", "no-image")
    assert_usage_error(
        result,
        f"Image {image!r} is not present on the local Docker engine",
        "never pulls",
        f"docker build -t {image}",
        "docker load",
    )
    assert cli("describe", "no-image").exit_code == 2  # nothing was registered


@pytest.mark.docker
def test_run_json_prints_one_describe_record_and_logs_to_stderr(cli: Cli) -> None:
    job = unique_name("cli-json")
    path = cli.request_file(
        TrainingJobName=job,
        AlgorithmSpecification={
            "TrainingImage": PROBE,
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": "train:loss", "Regex": r"train_loss=([0-9.]+)"},
                {"Name": "validation:loss", "Regex": r"val_loss=([0-9.]+)"},
            ],
        },
        Environment=probe_env(
            stdout=r"train_loss=0.9\ntrain_loss=0.5", stderr="val_loss=0.7", model_file="m.bin"
        ),
    )
    process = subprocess.run(
        [*EMULATOR, "run", str(path), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "EMULATOR_HOME": str(cli.home)},
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    record = json.loads(process.stdout)  # the whole of stdout is one JSON object
    assert_describe_shaped(record)
    assert record["TrainingJobName"] == job
    assert record["TrainingJobStatus"] == "Completed"
    assert [(m["MetricName"], m["Value"]) for m in record["FinalMetricDataList"]] == [
        ("train:loss", 0.5),
        ("validation:loss", 0.7),
    ]
    for line in ("probe: host algo-1", "train_loss=0.5", "val_loss=0.7"):
        assert line in process.stderr.splitlines()
    assert "Training - Training image download completed" in process.stderr
    archive = cli.output / job / "output" / "model.tar.gz"
    assert record["ModelArtifacts"] == {"S3ModelArtifacts": archive.as_uri()}
    assert leftovers(job) == []


@pytest.mark.docker
def test_without_json_logs_go_to_stdout_and_the_summary_to_stderr(cli: Cli) -> None:
    job = unique_name("cli-text")
    result = cli(
        "run",
        "--image",
        PROBE,
        "--job-name",
        job,
        "--output",
        str(cli.output),
        "--metric",
        "loss[/]=loss=([0-9.]+)",  # a metric name is any text, brackets included
        "--env",
        "PROBE_STDOUT=loss=0.25 [step 3/10] [bold]",
    )
    assert result.exit_code == 0, result.output
    assert "loss=0.25 [step 3/10] [bold]" in result.stdout.splitlines()
    assert "probe: host algo-1" in result.stdout.splitlines()
    assert f"Completed (Completed) {job}" in result.stderr
    assert re.search(r"loss\[/\]\s+0\.25", result.stderr)
    assert "Model artifacts: file://" in result.stderr


@pytest.mark.docker
@pytest.mark.parametrize(
    ("args", "env", "exit_code", "status", "secondary", "reason"),
    [
        (
            [],
            {"model_file": "model.bin", "output_file": "out.txt"},
            0,
            "Completed",
            "Completed",
            None,
        ),
        (
            [],
            {
                "exit": "3",
                "failure": "CUDA out of memory",
                "model_file": "model.bin",
                "output_file": "out.txt",
            },
            1,
            "Failed",
            "Failed",
            "AlgorithmError: CUDA out of memory, exit code: 3",
        ),
        (
            ["--max-runtime", "1", "--stop-grace", "1"],
            {"sleep": "30", "model_file": "model.bin", "output_file": "out.txt"},
            3,
            "Stopped",
            "MaxRuntimeExceeded",
            None,
        ),
    ],
    ids=["completed", "failed", "max-runtime-exceeded"],
)
def test_exit_status_follows_the_job_status_and_artifacts_are_always_written(
    cli: Cli,
    args: list[str],
    env: dict[str, str],
    exit_code: int,
    status: str,
    secondary: str,
    reason: str | None,
) -> None:
    job = unique_name("cli-exit")
    env_flags = [f"--env={key}={value}" for key, value in probe_env(**env).items()]
    result = cli(
        "run", "--image", PROBE, "--job-name", job, "--output", str(cli.output), "--json",
        *env_flags, *args,
    )  # fmt: skip
    assert result.exit_code == exit_code, result.stderr
    record = json.loads(result.stdout)
    assert_describe_shaped(record)
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == (status, secondary)
    assert record.get("FailureReason") == reason
    assert record["SecondaryStatusTransitions"][-1]["Status"] == secondary
    artifacts = cli.artifacts(job)
    assert artifacts["model.tar.gz"]["model.bin"] == b"model\n"
    assert artifacts["output.tar.gz"] == {"out.txt": b"output\n"}
    assert leftovers(job) == []


@pytest.mark.docker
def test_a_request_on_stdin(cli: Cli) -> None:
    request = probe_request(cli.output, Environment=probe_env(model_file="from-stdin"))
    result = cli("run", "-", "--json", "--quiet", input=json.dumps(request))
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["TrainingJobName"] == request["TrainingJobName"]
    assert "from-stdin" in cli.artifacts(request["TrainingJobName"])["model.tar.gz"]


@pytest.mark.docker
def test_flags_alone_run_a_job_whose_config_files_reflect_them(cli: Cli, make_files: Any) -> None:
    data = make_files({"part-0.csv": b"1,2\n"})
    job = unique_name("cli-flags")
    result = cli(
        "run",
        "--image", PROBE,
        "--arg", "train", "--arg", "from flags",
        "--channel", f"train={data}",
        "--hyperparameter", "epochs=3", "--hyperparameter", "lr=0.1",
        "--env", "MODE=fast",
        "--env", r"PROBE_STDOUT=loss=0.9\nloss=0.4",
        "--metric", "loss=loss=([0-9.]+)",
        "--output", str(cli.output),
        "--job-name", job,
        "--max-runtime", "60",
        "--instance-type", "ml.c5.xlarge",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["TrainingJobName"] == job
    assert record["StoppingCondition"] == {"MaxRuntimeInSeconds": 60}
    assert record["FinalMetricDataList"][0]["MetricName"] == "loss"
    assert record["FinalMetricDataList"][0]["Value"] == 0.4

    model = cli.artifacts(job)["model.tar.gz"]
    seen = {name.removeprefix("probe/"): content.decode() for name, content in model.items()}
    assert json.loads(seen["hyperparameters.json"]) == {"epochs": "3", "lr": "0.1"}
    assert json.loads(seen["inputdataconfig.json"]) == {
        "train": {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
    }
    assert json.loads(seen["resourceconfig.json"])["current_instance_type"] == "ml.c5.xlarge"
    assert "MODE=fast" in seen["env"].splitlines()
    assert f"TRAINING_JOB_NAME={job}" in seen["env"].splitlines()
    assert seen["argv"].splitlines() == ["/usr/local/bin/train", "from flags"]
    assert "./train/part-0.csv" in seen["data.sha256"]


@pytest.mark.docker
def test_relative_paths_in_a_request_file_resolve_against_its_directory(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = cli.root / "project"
    (project / "data" / "train").mkdir(parents=True)
    (project / "data" / "train" / "a.csv").write_text("1\n")
    path = cli.request_file(
        project,
        InputDataConfig=[channel("train", "data/train")],
        OutputDataConfig={"S3OutputPath": "artifacts"},
    )
    elsewhere = cli.root / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli("run", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    job = record["TrainingJobName"]
    model = cli.artifacts(job, output=project / "artifacts")["model.tar.gz"]
    assert "./train/a.csv" in model["probe/data.sha256"].decode()
    assert not (elsewhere / "artifacts").exists()
    # The request is echoed as given.
    assert record["OutputDataConfig"] == {"S3OutputPath": "artifacts"}


@pytest.mark.docker
def test_relative_paths_given_as_flags_resolve_against_the_working_directory(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = cli.root / "project"
    path = cli.request_file(project, OutputDataConfig={"S3OutputPath": "artifacts"})
    workdir = cli.root / "workdir"
    (workdir / "mydata").mkdir(parents=True)
    (workdir / "mydata" / "b.csv").write_text("2\n")
    monkeypatch.chdir(workdir)
    result = cli("run", str(path), "--channel", "train=mydata", "--output", "out", "--json")
    assert result.exit_code == 0, result.stderr
    job = json.loads(result.stdout)["TrainingJobName"]
    model = cli.artifacts(job, output=workdir / "out")["model.tar.gz"]
    assert "./train/b.csv" in model["probe/data.sha256"].decode()
    assert not (project / "out").exists()


@pytest.mark.docker
def test_describe_and_list_show_the_finished_job(cli: Cli) -> None:
    job = "cli-" + unique_name("describe-and-list").ljust(59, "x")  # 63 characters, the longest
    result = cli("run", "--image", PROBE, "--job-name", job, "--output", str(cli.output), "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)

    described = cli("describe", job)
    assert described.exit_code == 0
    assert json.loads(described.stdout) == record

    summaries = json.loads(cli("list", "--json").stdout)["TrainingJobSummaries"]
    assert summaries == [
        {
            "TrainingJobName": job,
            "TrainingJobStatus": "Completed",
            "SecondaryStatus": "Completed",
            "CreationTime": record["CreationTime"],
        }
    ]
    table = cli("list").stdout.splitlines()
    assert table[1].split() == [job, "Completed", "Completed", record["CreationTime"]]


@pytest.mark.docker
def test_a_job_name_is_used_once_unless_replaced(cli: Cli) -> None:
    job = unique_name("cli-reuse")
    run = ["run", "--image", PROBE, "--job-name", job, "--output", str(cli.output), "--json"]
    first = cli(*run, "--env", "PROBE_MODEL_FILE=first")
    assert first.exit_code == 0, first.stderr

    refused = cli(*run, "--env", "PROBE_MODEL_FILE=second")
    assert_usage_error(refused, f"Training job '{job}' already exists", "--replace")
    assert "first" in cli.artifacts(job)["model.tar.gz"]

    replaced = cli(*run, "--env", "PROBE_MODEL_FILE=second", "--replace")
    assert replaced.exit_code == 0, replaced.stderr
    assert json.loads(replaced.stdout)["Environment"] == {"PROBE_MODEL_FILE": "second"}
    model = cli.artifacts(job)["model.tar.gz"]
    assert "second" in model and "first" not in model
    assert [
        s["TrainingJobName"]
        for s in json.loads(cli("list", "--json").stdout)["TrainingJobSummaries"]
    ] == [job]


@pytest.mark.docker
def test_spot_flags_alone_rehearse_an_interruption(cli: Cli) -> None:
    job = unique_name("cli-spot")
    flags = ["--managed-spot", "--max-runtime", "60", "--max-wait", "120"]
    flags += ["--max-retry-attempts", "1", "--interrupt-after", "1", "--stop-grace", "1"]
    command = ["run", "--json", "--image", BUSYBOX, "--job-name", job, "--output", str(cli.output)]
    process = subprocess.run(
        [*EMULATOR, *command, "--entrypoint", "sleep", "--entrypoint", "2", *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "EMULATOR_HOME": str(cli.home)},
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    record = json.loads(process.stdout)
    assert record["EnableManagedSpotTraining"] is True
    assert record["StoppingCondition"] == {"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 120}
    assert record["RetryStrategy"] == {"MaximumRetryAttempts": 1}
    statuses = [t["Status"] for t in record["SecondaryStatusTransitions"]]
    assert statuses.count("Interrupted") == 1 and statuses[-1] == "Completed"
    assert "Spot interruption 1 of 1" in process.stderr
    assert leftovers(job) == []


# What a job's process must not load: another engine client (docker-py and its HTTP stack),
# botocore (a job from local data needs no AWS), the progress renderer under --quiet, and the
# commands and engine parts a plain job never uses. Each costs `emulator run` milliseconds.
NOT_FOR_A_PLAIN_JOB = (
    "botocore",
    "docker",
    "requests",
    "urllib3",
    "http.client",
    "ssl",
    "logging",
    "rich",
    "emulator.cli.serve",
    "emulator.cli.submit",
    "emulator.cli.metrics",
    "emulator.cli.kept",
    "emulator.engine.debug",
    "emulator.engine.kept",
    "emulator.engine.terminal",
    "emulator.engine.reaper",
    "emulator.observe.resources",
)
MODULES_AT_EXIT = (
    "import atexit, json, runpy, sys\n"
    "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
    "sys.argv[0] = 'emulator'\n"
    "runpy.run_module('emulator', run_name='__main__')\n"
)


@pytest.mark.docker
def test_a_plain_job_loads_only_what_it_uses(cli: Cli) -> None:
    job = unique_name("cli-modules")
    flags = ["--image", BUSYBOX, "--entrypoint=/bin/true", "--job-name", job]
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            MODULES_AT_EXIT,
            "run",
            "--quiet",
            *flags,
            "--output",
            str(cli.output),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "EMULATOR_HOME": str(cli.home)},
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    loaded = set(json.loads(process.stderr.splitlines()[-1]))
    assert "emulator.run.job" in loaded  # the job ran in this process
    assert sorted(loaded & set(NOT_FOR_A_PLAIN_JOB)) == []
    assert leftovers(job) == []
