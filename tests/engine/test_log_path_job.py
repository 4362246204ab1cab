"""The log path on the real engine: every line a container writes reaches the log file, the
metrics, the store and the user's sink, however slow the sink; the container is never held
back; output that cannot be kept fails the job with a reason, never a silent Completed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from emulator.state.store import JobStore
from tests.fixtures.cli import EMULATOR
from tests.fixtures.jobs import PYTHON, JobRunner, unique_name

pytestmark = pytest.mark.docker

LOSS = [{"Name": "loss", "Regex": "loss=([0-9]+)"}]


def python_job(jobs: JobRunner, code: str, metrics: list[dict[str, str]]) -> dict[str, Any]:
    assert len(code) <= 256  # an entrypoint item's limit
    return jobs.request(
        AlgorithmSpecification={
            "TrainingImage": PYTHON,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["python3", "-c", code],
            "MetricDefinitions": metrics,
        }
    )


def losses(count: int) -> bytes:
    return "".join(f"loss={i}\n" for i in range(count)).encode()


@pytest.mark.parametrize("count", [20_000, 100_000])
def test_every_line_reaches_the_log_file_the_metrics_and_the_sink(
    jobs: JobRunner, count: int
) -> None:
    request = python_job(jobs, f"[print(f'loss={{i}}') for i in range({count})]", LOSS)
    name = request["TrainingJobName"]
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    store = JobStore(jobs.home)
    log = store.log_path(name, "algo-1").read_bytes()
    assert log.count(b"\n") == count
    assert log == losses(count)  # every line, the last one intact
    [final] = record["FinalMetricDataList"]
    assert (final["MetricName"], final["Value"]) == ("loss", float(count - 1))
    assert store.count_metrics(name) == count
    assert [p.value for p in store.metrics(name)] == [float(i) for i in range(count)]
    assert jobs.logs == [("algo-1", f"loss={i}") for i in range(count)]
    assert [n for n in jobs.notices if n.startswith("Logs of")] == []
    assert jobs.leftovers(name) == []


def test_a_slow_sink_gets_every_line_and_holds_the_container_back_not_at_all(
    jobs: JobRunner,
) -> None:
    count = 3000
    code = (
        "import sys,time;t=time.monotonic();"
        f"[print(f'loss={{i}}', flush=True) for i in range({count})];"
        "print(f'took {time.monotonic()-t:.3f}', file=sys.stderr)"
    )
    request = python_job(jobs, code, LOSS)
    seen: list[str] = []

    def slow_sink(host: str, line: str) -> None:
        time.sleep(0.004)  # 3,000 lines: 12 s, more than the old 10 s allowed after the exit
        seen.append(line)

    record = jobs.run(request, log_sink=slow_sink)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    assert [line for line in seen if line.startswith("loss=")] == [
        f"loss={i}" for i in range(count)
    ]
    [took] = [line for line in seen if line.startswith("took ")]  # stderr: its own order
    assert len(seen) == count + 1
    assert float(took.split()[1]) < 5  # the container printed at its own pace
    assert record["FinalMetricDataList"][0]["Value"] == float(count - 1)
    assert JobStore(jobs.home).count_metrics(request["TrainingJobName"]) == count


def test_a_progress_bar_gives_a_line_per_redraw_and_the_log_file_keeps_the_bytes(
    jobs: JobRunner,
) -> None:
    count = 20_000
    code = (
        f"import sys;[sys.stdout.write(f'\\r{{i}}/{count} loss={{i}}') for i in range({count})];"
        "print()"
    )
    request = python_job(jobs, code, LOSS)
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    log = JobStore(jobs.home).log_path(request["TrainingJobName"], "algo-1").read_bytes()
    assert log == "".join(f"\r{i}/{count} loss={i}" for i in range(count)).encode() + b"\n"
    assert [line for _, line in jobs.logs] == [f"{i}/{count} loss={i}" for i in range(count)]
    assert JobStore(jobs.home).count_metrics(request["TrainingJobName"]) == count


def test_the_cli_echoes_every_line_to_its_stdout(jobs: JobRunner) -> None:
    count = 20_000
    name = unique_name("echo")
    command = [
        *EMULATOR,
        "run",
        "--quiet",
        "--image",
        PYTHON,
        "--entrypoint=python3",
        "--entrypoint=-c",
        f"--entrypoint=[print(f'loss={{i}}') for i in range({count})]",
        "--metric",
        "loss=loss=([0-9]+)",
        "--job-name",
        name,
        "--output",
        str(jobs.output),
    ]
    env = {**os.environ, "EMULATOR_HOME": str(jobs.home), "TMPDIR": str(jobs.work_root)}
    done = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == losses(count)
    assert JobStore(jobs.home).count_metrics(name) == count


def test_output_the_log_file_cannot_take_fails_the_job_and_says_so(jobs: JobRunner) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    request = python_job(jobs, "[print(f'loss={i}') for i in range(1000)]", LOSS)
    name = request["TrainingJobName"]
    notices: list[str] = []

    def notice(message: str) -> None:
        notices.append(message)
        if message.startswith("Starting"):  # the job's log dir exists: its log file is full
            JobStore(jobs.home).log_path(name, "algo-1").symlink_to("/dev/full")

    record = jobs.run(request, notice=notice)
    assert record["TrainingJobStatus"] == "Failed"
    reason = record["FailureReason"]
    assert reason.startswith("InternalServerError: ")
    assert "byte(s) of the output of algo-1 could not be written to" in reason
    assert "No space left on device" in reason
    reported = [n for n in notices if n.startswith("Logs of algo-1:")]
    assert reported and "could not be written" in reported[0]
    assert jobs.leftovers(name) == []
