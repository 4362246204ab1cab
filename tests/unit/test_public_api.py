"""The public surface: ``emulator.__all__`` is a deliberate list, and ``emulator.api``'s verbs
are the CLI's twins (describe, list, stop, prune, logs without an engine)."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import emulator
from emulator import api
from emulator.config import S3Settings
from emulator.errors import EmulatorError, JobExists, JobNotFound
from emulator.run.options import RunOptions
from emulator.state.store import JobStore
from tests.fixtures.jobs import probe_request
from tests.fixtures.store_records import record_of

PUBLIC = [
    "EmulatorError",
    "EnvironmentProblem",
    "JobExists",
    "JobNotFound",
    "JobSpec",
    "Progress",
    "PublishedPort",
    "RequestInvalid",
    "RunOptions",
    "S3Settings",
    "SourceError",
    "SubmitOptions",
    "SubmitResult",
    "add_tags",
    "check_engine",
    "create_training_job",
    "delete_tags",
    "describe",
    "exec_in_job",
    "kept_jobs",
    "list_jobs",
    "list_tags",
    "logs",
    "metrics",
    "parse_request",
    "prune",
    "remove_kept",
    "resource_use",
    "run_training_job",
    "shell",
    "stop",
    "submit_training_job",
    "validate",
    "validate_request",
]


def test_the_public_names_are_pinned() -> None:
    assert emulator.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(emulator, name) is not None
    assert emulator.S3Settings is S3Settings
    assert emulator.run_training_job is api.run
    assert emulator.create_training_job is api.create
    assert emulator.submit_training_job is api.submit
    assert set(api.__all__) - {"run", "create", "submit"} <= set(PUBLIC)


def test_importing_the_package_stays_light() -> None:
    """`import emulator` must not pay for docker, boto3, rich or the validator."""
    code = (
        "import sys, emulator\n"
        "heavy = {'docker', 'boto3', 'botocore', 'rich', 'click', 'emulator.run.job'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_options_are_frozen() -> None:
    options = RunOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.replace = True  # type: ignore[misc]
    assert dataclasses.replace(options, replace=True).replace is True


def test_describe_and_list_read_the_state_dir(state_home: Path) -> None:
    store = JobStore(state_home)
    store.create(record_of("first"))
    store.create(record_of("second"))
    assert api.describe("first", home=state_home)["TrainingJobName"] == "first"
    assert [r["TrainingJobName"] for r in api.list_jobs(home=state_home)] == ["second", "first"]
    with pytest.raises(JobNotFound, match="emulator list"):
        api.describe("third", home=state_home)


def test_a_taken_name_is_job_exists(state_home: Path) -> None:
    store = JobStore(state_home)
    store.create(record_of("taken"))
    with pytest.raises(JobExists, match="already running"):
        store.create(record_of("taken"))


def test_stop_asks_a_running_job_to_stop(state_home: Path) -> None:
    store = JobStore(state_home)
    store.create(record_of("running"))  # owned by this (live) process
    api.stop("running", home=state_home)
    assert store.stop_requested("running")


def test_stop_refuses_a_finished_job_and_one_whose_emulator_is_gone(state_home: Path) -> None:
    store = JobStore(state_home)
    finished = record_of("finished")
    store.create(finished)
    store.update({**finished, "TrainingJobStatus": "Completed"})
    with pytest.raises(EmulatorError, match=r"not running \(status Completed\)"):
        api.stop("finished", home=state_home)

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = JobStore(state_home)
    orphan.create(record_of("orphan"))
    with sqlite3.connect(orphan.path) as db:  # its emulator: a process that has exited
        db.execute("UPDATE jobs SET pid = ? WHERE name = 'orphan'", (dead.pid,))
    with pytest.raises(EmulatorError, match="emulator prune"):
        api.stop("orphan", home=state_home)
    assert not store.stop_requested("orphan")


def test_logs_are_the_log_files_lines_prefixed_by_host_when_several(state_home: Path) -> None:
    store = JobStore(state_home)
    store.create(record_of("two"))
    store.log_path("two", "algo-1").write_text("one\ntwo\n")
    store.log_path("two", "algo-2").write_text("three\n")
    assert list(api.logs("two", home=state_home)) == [
        "[algo-1] one",
        "[algo-1] two",
        "[algo-2] three",
    ]
    assert list(api.logs("two", host="algo-2", home=state_home)) == ["[algo-2] three"]
    with pytest.raises(EmulatorError, match="no host 'algo-3'"):
        list(api.logs("two", host="algo-3", home=state_home))

    store.create(record_of("one"))
    store.log_path("one", "algo-1").write_text("only\nlast without newline")
    assert list(api.logs("one", home=state_home)) == ["only", "last without newline"]


def test_create_registers_the_job_at_once_and_run_runs_it_later(state_home: Path) -> None:
    request = {**record_request("created-job"), "Tags": [{"Key": "team", "Value": "ml"}]}
    job = api.create(request, RunOptions(home=state_home))
    record = api.describe("created-job", home=state_home)
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == ("InProgress", "Starting")
    assert api.list_tags("created-job", home=state_home) == {"team": "ml"}
    with pytest.raises(JobExists):
        api.create(request, RunOptions(home=state_home))
    ended = job.run()  # no engine answers in this tier: the service's failure, recorded
    assert ended["TrainingJobStatus"] == "Failed"
    assert ended["FailureReason"].startswith("InternalServerError: ")
    assert api.describe("created-job", home=state_home) == ended


def test_a_created_job_stopped_before_its_turn_ends_stopped_without_running(
    state_home: Path,
) -> None:
    job = api.create(record_request("queued-job"), RunOptions(home=state_home))
    api.stop("queued-job", home=state_home)
    # The engine is not even asked (none answers here): the job never ran.
    assert job.run()["TrainingJobStatus"] == "Stopped"


def test_tags_are_set_replaced_and_deleted(state_home: Path) -> None:
    api.create(record_request("tag-job"), RunOptions(home=state_home))
    api.add_tags("tag-job", {"a": "1", "b": "2"}, home=state_home)
    api.add_tags("tag-job", {"a": "3"}, home=state_home)
    api.delete_tags("tag-job", ["b", "never-set"], home=state_home)
    assert api.list_tags("tag-job", home=state_home) == {"a": "3"}
    with pytest.raises(JobNotFound):
        api.list_tags("nobody", home=state_home)


def record_request(name: str) -> dict[str, object]:
    return probe_request(Path("/tmp/out"), TrainingJobName=name)
