"""The `emulator` command as a user meets it: exit codes (0 Completed, 1 Failed, 2 the user's
mistake, 3 Stopped), one JSON record on stdout with --json, requests from files, stdin or flags
alone, and describe/list/validate over the state directory (EMULATOR_HOME)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emulator.state.store import JobStore
from tests.fixtures.cli_runner import _DESCRIBE, Cli, assert_usage_error
from tests.fixtures.jobs import PROBE, probe_request

assert _DESCRIBE is not None


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


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["serve", "--s3", "--s3-endpoint-url", "http://127.0.0.1:1"], "--s3 (the embedded"),
        (["serve", "--s3-endpoint-url", "ftp://x"], "must start with http:// or https://"),
        (["run", "--image", PROBE, "--s3-endpoint-url", "ftp://x"], "must start with http://"),
        (["serve", "--stop-grace", "nan"], "Invalid value for '--stop-grace'"),
        (["serve", "--gpus", "some"], "Invalid value for '--gpus'"),
    ],
    ids=["serve-two-stores", "serve-bad-endpoint", "run-bad-endpoint", "serve-grace", "gpus"],
)
def test_run_and_serve_check_machine_and_s3_flags_before_starting(
    cli: Cli, args: list[str], fragment: str
) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert fragment in result.stderr, result.stderr


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


def test_a_spot_interruption_is_refused_for_a_job_that_is_not_managed_spot(cli: Cli) -> None:
    result = cli("run", "--image", PROBE, "--interrupt-after", "5")
    assert_usage_error(result, "only a managed spot job is interrupted")


@pytest.mark.parametrize("flag", ["--interrupt-after", "--inject-internal-error-after"])
def test_rehearsal_times_must_be_positive(cli: Cli, flag: str) -> None:
    result = cli("run", "--image", PROBE, flag, "0")
    assert result.exit_code == 2
    assert f"Invalid value for '{flag}'" in result.stderr
    assert "Traceback" not in result.output
