"""How a job ends, and that nothing is left behind whichever way it ends (CONTRACT.md section 3):
failures with their reason, metrics, MaxRuntimeInSeconds, stop, Ctrl-C, SIGTERM and SIGKILL
of the emulator followed by `emulator prune`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from emulator.errors import EnvironmentProblem, SourceError
from emulator.state.store import JobStore
from emulator.testing import EmulatorRunner
from tests.fixtures.cli import EMULATOR, probe_env, start_cli_job, wait_for_status
from tests.fixtures.jobs import PROBE, JobRunner, channel

pytestmark = pytest.mark.docker


def test_a_failing_algorithm_reports_its_failure_file_and_exit_code(jobs: JobRunner) -> None:
    request = jobs.request(
        Environment=probe_env(exit="3", failure="CUDA out of memory", model_file="partial.bin")
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Failed"
    assert record["SecondaryStatus"] == "Failed"
    assert record["FailureReason"] == "AlgorithmError: CUDA out of memory, exit code: 3"
    # Artifacts are uploaded on failure too.
    assert jobs.model(record)["partial.bin"] == b"model\n"
    assert jobs.output_archive(record) == {}
    statuses = [t["Status"] for t in record["SecondaryStatusTransitions"]]
    assert statuses == ["Starting", "Downloading", "Training", "Uploading", "Failed"]
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_a_failure_without_failure_file_has_an_empty_message(jobs: JobRunner) -> None:
    record = jobs.run(jobs.request(Environment=probe_env(exit="2")))
    assert record["FailureReason"] == "AlgorithmError: , exit code: 2"


def test_the_failure_reason_keeps_the_first_1024_characters(jobs: JobRunner) -> None:
    script = "printf 'x%.0s' $(seq 3000) > /opt/ml/output/failure; exit 1"
    algorithm = {
        "TrainingImage": PROBE,
        "TrainingInputMode": "File",
        "ContainerEntrypoint": ["sh", "-c", script],
    }
    record = jobs.run(jobs.request(AlgorithmSpecification=algorithm))
    assert record["FailureReason"].startswith("AlgorithmError: " + "x" * 1000)
    assert len(record["FailureReason"]) <= 1024


def test_metric_definitions_read_stdout_and_stderr_line_by_line(
    emulator: EmulatorRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    result = emulator.run(
        image=PROBE,
        metrics={
            "train:loss": "loss=([0-9.]+)",
            "accuracy": "acc=(\\S+)",
            "never": "never=([0-9]+)",
        },
        environment=probe_env(stdout="loss=0.5\\nloss=0.25 acc=oops", stderr="acc=0.91"),
    )
    assert result.metrics == {"train:loss": 0.25, "accuracy": 0.91}
    assert all("Timestamp" in m for m in result.record["FinalMetricDataList"])
    assert result.series["train:loss"] == [0.5, 0.25]
    # Logs streamed live (the plugin echoes them to the test's stdout) and kept in the store.
    assert "acc=0.91\n" in capsys.readouterr().out
    assert "loss=0.25 acc=oops" in result.logs("algo-1")


def test_max_runtime_sends_sigterm_and_keeps_what_the_job_saved(jobs: JobRunner) -> None:
    request = jobs.request(
        StoppingCondition={"MaxRuntimeInSeconds": 2},
        Environment=probe_env(sleep="120", trap_term="1"),
    )
    record = jobs.run(request)
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == (
        "Stopped",
        "MaxRuntimeExceeded",
    )
    assert "FailureReason" not in record
    assert jobs.model(record)["on-term"] == b"saved\n"
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_a_job_ignoring_sigterm_is_killed_after_the_grace_period(jobs: JobRunner) -> None:
    request = jobs.request(
        StoppingCondition={"MaxRuntimeInSeconds": 1},
        Environment=probe_env(sleep="300", ignore_term="1"),
    )
    started = time.monotonic()
    record = jobs.run(request, stop_grace_seconds=2)
    assert record["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert time.monotonic() - started < 60  # killed, not waited out
    assert any("ignoring SIGTERM" in line for _, line in jobs.logs)
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_a_missing_image_is_refused_before_anything_exists(jobs: JobRunner) -> None:
    request = jobs.request(
        AlgorithmSpecification={"TrainingImage": "nowhere/missing:1", "TrainingInputMode": "File"}
    )
    with pytest.raises(EnvironmentProblem, match="never pulls"):
        jobs.run(request)
    assert JobStore(jobs.home).all_jobs() == []
    assert jobs.leftovers(request["TrainingJobName"]) == []


def test_a_missing_channel_source_is_refused_before_anything_exists(
    jobs: JobRunner, tmp_path: Path
) -> None:
    request = jobs.request(InputDataConfig=[channel("train", tmp_path / "no-such-dir")])
    with pytest.raises(SourceError, match="no-such-dir"):
        jobs.run(request)
    assert JobStore(jobs.home).all_jobs() == []


def test_stop_from_another_process_stops_the_job(jobs: JobRunner) -> None:
    request = jobs.request(Environment=probe_env(sleep="120", trap_term="1"))
    name = request["TrainingJobName"]
    result: dict[str, dict[str, object]] = {}
    runner = threading.Thread(target=lambda: result.update(record=jobs.run(request)))
    runner.start()
    wait_for_status(jobs.home, name, "Training")
    env = {**os.environ, "EMULATOR_HOME": str(jobs.home)}
    stop = subprocess.run([*EMULATOR, "stop", name], env=env, capture_output=True, text=True)
    assert stop.returncode == 0, stop.stderr
    runner.join(timeout=60)
    record = result["record"]
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert jobs.model(record)["on-term"] == b"saved\n"
    assert jobs.leftovers(name) == []


@pytest.mark.parametrize(
    "signal_number", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"]
)
def test_ctrl_c_or_sigterm_stops_the_job_cleans_up_and_exits_130(
    jobs: JobRunner, signal_number: int
) -> None:
    process, name = start_cli_job(jobs)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    record = JobStore(jobs.home).get(name)
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == ("Stopped", "Stopped")
    assert jobs.leftovers(name) == []


def test_prune_removes_what_a_killed_emulator_left(jobs: JobRunner) -> None:
    process, name = start_cli_job(jobs)
    process.kill()
    process.communicate(timeout=30)
    assert jobs.leftovers(name) != []  # the container, network and work dir outlive it
    env = {**os.environ, "EMULATOR_HOME": str(jobs.home), "TMPDIR": str(jobs.work_root)}
    pruned = subprocess.run([*EMULATOR, "prune"], env=env, capture_output=True, text=True)
    assert pruned.returncode == 0, pruned.stderr
    assert jobs.leftovers(name) == []
    record = JobStore(jobs.home).get(name)
    assert record["TrainingJobStatus"] == "Failed"
    assert "emulator process" in record["FailureReason"]


def test_describe_after_the_run_prints_the_same_record(jobs: JobRunner) -> None:
    request = jobs.request()
    record = jobs.run(request)
    env = {**os.environ, "EMULATOR_HOME": str(jobs.home)}
    described = subprocess.run(
        [*EMULATOR, "describe", request["TrainingJobName"]], env=env, capture_output=True, text=True
    )
    assert json.loads(described.stdout) == record


def test_the_record_says_stopping_while_the_hosts_stop(jobs: JobRunner) -> None:
    request = jobs.request(Environment=probe_env(sleep="120", ignore_term="1"))
    name = request["TrainingJobName"]
    result: dict[str, dict[str, object]] = {}
    runner = threading.Thread(
        target=lambda: result.update(record=jobs.run(request, stop_grace_seconds=3))
    )
    runner.start()
    wait_for_status(jobs.home, name, "Training")
    JobStore(jobs.home).request_stop(name)
    wait_for_status(jobs.home, name, "Stopping")
    assert JobStore(jobs.home).get(name)["TrainingJobStatus"] == "Stopping"
    runner.join(timeout=60)
    assert result["record"]["TrainingJobStatus"] == "Stopped"


def test_a_pipe_channel_that_cannot_be_streamed_fails_the_job(
    jobs: JobRunner, tmp_path: Path
) -> None:
    manifest = tmp_path / "train.manifest"
    manifest.write_text('{"source-ref": "/nonexistent/image.bin", "label": 1}\n')
    request = jobs.request(
        AlgorithmSpecification={
            "TrainingImage": PROBE,
            "TrainingInputMode": "Pipe",
            "ContainerEntrypoint": ["sh", "-c", "cat /opt/ml/input/data/train_0 > /dev/null"],
        },
        InputDataConfig=[
            {
                "ChannelName": "train",
                "RecordWrapperType": "RecordIO",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "AugmentedManifestFile",
                        "S3Uri": str(manifest),
                        "AttributeNames": ["source-ref", "label"],
                    }
                },
            }
        ],
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Failed"
    assert record["FailureReason"].startswith("ClientError: Pipe channel train of algo-1:")
    assert "/nonexistent/image.bin" in record["FailureReason"]
    assert jobs.leftovers(request["TrainingJobName"]) == []
