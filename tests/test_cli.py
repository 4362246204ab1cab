"""The `emulator` command as a user meets it: exit codes (0 Completed, 1 Failed, 2 the user's
mistake, 3 Stopped), one JSON record on stdout with --json, requests from files, stdin or flags
alone, and describe/list/validate over the state directory (EMULATOR_HOME)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import docker
import pytest
from click.testing import CliRunner, Result

from emulator.cli.main import main
from emulator.engine import LABEL_JOB
from emulator.run.workdir import WORK_DIR_PREFIX
from emulator.state.store import JobStore
from tests.fixtures.jobs import PROBE, channel, probe_request, read_archive, unique_name

EMULATOR = [sys.executable, "-m", "emulator"]
_DESCRIBE = (
    botocore.session.get_session()
    .get_service_model("sagemaker")
    .operation_model("DescribeTrainingJob")
    .output_shape
)
assert _DESCRIBE is not None
DESCRIBE = _DESCRIBE


@dataclass
class Cli:
    """The CLI run with its own state dir; ``output`` is where jobs put their artifacts."""

    root: Path
    home: Path
    output: Path

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)

    def request_file(self, directory: Path | None = None, **members: Any) -> Path:
        path = (directory or self.root) / f"{unique_name('request')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(probe_request(self.output, **members)))
        return path

    def artifacts(self, job: str, output: Path | None = None) -> dict[str, dict[str, bytes]]:
        folder = (output or self.output) / job / "output"
        return {name: read_archive(folder / name) for name in ("model.tar.gz", "output.tar.gz")}


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    monkeypatch.setenv("EMULATOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "80")
    (tmp_path / "output").mkdir()
    term = signal.getsignal(signal.SIGTERM)
    yield Cli(tmp_path, tmp_path / "home", tmp_path / "output")
    signal.signal(signal.SIGTERM, term)  # `run` installs its own handler


def probe_env(**env: str) -> dict[str, str]:
    return {f"PROBE_{key.upper()}": value for key, value in env.items()}


def leftovers(job: str) -> list[str]:
    client = docker.from_env()
    try:
        selector: dict[str, str | list[str] | bool] = {"label": f"{LABEL_JOB}={job}"}
        found = [f"container {c.name}" for c in client.containers.list(all=True, filters=selector)]
        found += [f"network {n.name}" for n in client.networks.list(filters=selector)]
    finally:
        client.close()
    temp = Path(tempfile.gettempdir())
    return found + [f"work dir {p}" for p in temp.glob(f"{WORK_DIR_PREFIX}{job}-*")]


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


# -- mistakes of the user: exit 2, one clear message, no traceback --------------------------


def assert_usage_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_an_invalid_request_names_each_problem_with_its_path(cli: Cli) -> None:
    path = cli.request_file(
        TrainingJobName="not_valid!",
        RoleArn="admin",
        StoppingCondition={"MaxRuntimeInSeconds": 0},
    )
    for command in ("run", "validate"):
        result = cli(command, str(path))
        assert_usage_error(
            result,
            "The training job request is invalid (3 problems):",
            "  - TrainingJobName: must match the pattern [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62} "
            '(got "not_valid!")',
            "  - RoleArn: must be at least 20 characters long",
            "  - StoppingCondition.MaxRuntimeInSeconds: ",
        )


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "missing.json"], ["Cannot read the request file missing.json: No such file"]),
        (["validate", "missing.json"], ["Cannot read the request file missing.json: No such file"]),
        (
            ["run", "{broken}"],
            ["not valid JSON: Expecting property name enclosed in double quotes"],
        ),
        (["validate", "{broken}"], ["not valid JSON: Expecting property name"]),
        (["run", "[list]"], ["(request file [list]): must be a JSON object"]),
        (["run"], ["give a REQUEST.json or at least --image"]),
        (["run", "--image", PROBE, "--env", "NO_VALUE"], ["--env 'NO_VALUE': expected NAME=VALUE"]),
        (["run", "--image", PROBE, "--channel", "=/data"], ["--channel '=/data': expected NAME="]),
        (["describe", "no-such-job"], ["No training job named 'no-such-job'", "emulator list"]),
        (["stop", "no-such-job"], ["No training job named 'no-such-job'"]),
    ],
    ids=[
        "run-no-file",
        "validate-no-file",
        "run-malformed-json",
        "validate-malformed-json",
        "run-not-an-object",
        "run-nothing",
        "bad-env-pair",
        "bad-channel-pair",
        "describe-unknown",
        "stop-unknown",
    ],
)
def test_mistakes_exit_2_with_a_clear_message(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, args: list[str], fragments: list[str]
) -> None:
    monkeypatch.chdir(cli.root)
    (cli.root / "{broken}").write_text("{'single quotes': 1}")
    (cli.root / "[list]").write_text("[]")
    assert_usage_error(cli(*args), *fragments)


@pytest.mark.parametrize(
    ("members", "flags", "fragment"),
    [
        ({"ResourceConfig": "ml.m5.large"}, ["--instance-type", "local"], "ResourceConfig: must"),
        ({"ResourceConfig": None}, ["--instance-count", "2"], "ResourceConfig: "),
        ({"OutputDataConfig": ["x"]}, ["--output", "out"], "OutputDataConfig: must"),
        ({"StoppingCondition": 60}, ["--max-runtime", "60"], "StoppingCondition: must"),
        ({"HyperParameters": "a=1"}, ["--hyperparameter", "b=2"], "HyperParameters: must"),
        ({"Environment": ["A=1"]}, ["--env", "B=2"], "Environment: must"),
        ({"AlgorithmSpecification": "x"}, ["--image", PROBE], "AlgorithmSpecification: must"),
        (
            {"ResourceConfig": {"InstanceGroups": [{"InstanceCount": "2"}]}},
            [],
            "ResourceConfig.InstanceGroups[0].InstanceCount: must be an integer",
        ),
        (
            {"ResourceConfig": {"InstanceGroups": [{"InstanceCount": None}, "g"]}},
            [],
            "ResourceConfig.InstanceGroups[1]: must be an object",
        ),
        ({"ResourceConfig": {"InstanceCount": [2]}}, [], "ResourceConfig.InstanceCount: must"),
    ],
    ids=[
        "resources-string",
        "resources-null",
        "output-list",
        "stopping-number",
        "hyperparameters-string",
        "environment-list",
        "algorithm-string",
        "group-count-string",
        "group-junk",
        "count-list",
    ],
)
def test_malformed_requests_exit_2_without_a_traceback(
    cli: Cli, members: dict[str, Any], flags: list[str], fragment: str
) -> None:
    path = cli.request_file(**members)
    assert_usage_error(cli("run", str(path), *flags), fragment)


@pytest.mark.parametrize("grace", ["-1", "nan", "inf", "-inf", "NaN", "1e400", "soon"])
def test_stop_grace_must_be_a_finite_number_of_seconds(cli: Cli, grace: str) -> None:
    result = cli("run", "--image", PROBE, "--stop-grace", grace)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "Invalid value for '--stop-grace'" in result.stderr, result.stderr


def create_job_in_another_process(home: Path, name: str) -> None:
    """A running job whose emulator process has since ended (killed, say)."""
    code = (
        "import sys; from pathlib import Path; from emulator.state.store import JobStore; "
        "JobStore(Path(sys.argv[1])).create("
        "{'TrainingJobName': sys.argv[2], 'TrainingJobStatus': 'InProgress'})"
    )
    subprocess.run([sys.executable, "-c", code, str(home), name], check=True)


def test_stop_refuses_a_job_whose_emulator_is_gone(cli: Cli) -> None:
    create_job_in_another_process(cli.home, "orphan")
    assert_usage_error(
        cli("stop", "orphan"),
        "the emulator process running training job 'orphan'",
        "is gone",
        "emulator prune",
    )
    assert not JobStore(cli.home).stop_requested("orphan")


def test_stop_requests_a_stop_of_a_job_whose_emulator_lives(cli: Cli) -> None:
    JobStore(cli.home).create({"TrainingJobName": "live", "TrainingJobStatus": "InProgress"})
    result = cli("stop", "live")
    assert result.exit_code == 0, result.output
    assert "Stop requested for live" in result.stdout
    assert JobStore(cli.home).stop_requested("live")
    assert JobStore(cli.home).owner_pid("live") == os.getpid()


def test_validate_accepts_a_valid_request(cli: Cli) -> None:
    path = cli.request_file()
    result = cli("validate", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: valid CreateTrainingJob request\n"


def test_validate_reads_stdin(cli: Cli) -> None:
    result = cli("validate", "-", input=json.dumps(probe_request(cli.output)))
    assert result.exit_code == 0, result.output


def test_an_empty_state_dir_lists_no_jobs(cli: Cli) -> None:
    assert json.loads(cli("list", "--json").stdout) == {"TrainingJobSummaries": []}
    result = cli("list")
    assert result.exit_code == 0
    assert result.stdout.split() == ["name", "status", "secondary", "status", "created"]


# -- jobs on the real engine ---------------------------------------------------------------


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
