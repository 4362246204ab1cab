"""The pytest plugin (emulator/testing, a ``pytest11`` entry point): examples/pytest run by a
real pytest in a subprocess pass with an engine, are skipped with one reason without one, and
error with ``--emulator-require-engine``; and the ``emulator`` fixture's results say what
`emulator run` would."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from emulator import RequestInvalid
from emulator.testing import EmulatorRunner
from tests.fixtures.cli import EMULATOR
from tests.fixtures.jobs import BUSYBOX

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pytest"
EXAMPLE_TESTS = 6
NO_ENGINE = "no Docker engine: start one (make engine) or point DOCKER_HOST at one"


def run_examples(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(str(EXAMPLES), "-p", "no:cacheprovider", "-ra", *args)


@pytest.mark.timeout(600)
def test_the_examples_pass_on_the_engine(pytester: pytest.Pytester) -> None:
    result = run_examples(pytester, "--emulator-require-engine")
    result.assert_outcomes(passed=EXAMPLE_TESTS)


def test_without_an_engine_they_are_skipped_with_one_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    result = run_examples(pytester)
    result.assert_outcomes(skipped=EXAMPLE_TESTS)
    skipped = [line for line in result.outlines if line.startswith("SKIPPED")]
    assert len(skipped) == 1, result.outlines
    assert f"SKIPPED [{EXAMPLE_TESTS}] " in skipped[0] and NO_ENGINE in skipped[0]


def test_require_engine_makes_a_missing_engine_an_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    result = run_examples(pytester, "--emulator-require-engine")
    result.assert_outcomes(errors=EXAMPLE_TESTS)
    result.stdout.fnmatch_lines([f"*{NO_ENGINE}*[[]--emulator-require-engine[]]*"])
    assert "Traceback" not in result.stdout.str()


def test_a_result_says_what_emulator_run_would(emulator: EmulatorRunner, tmp_path: Path) -> None:
    script = "echo hi; echo loss=0.5; echo out > /opt/ml/output/data/x.txt; sleep 30"
    result = emulator.run(
        image=BUSYBOX,
        entrypoint=["sh", "-c", script],
        metrics={"loss": "loss=([0-9.]+)"},
        max_runtime=2,
        stop_grace=1,
    )

    assert (result.status, result.record["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert result.logs() == "hi\nloss=0.5\n"
    assert result.metrics == {"loss": 0.5}
    assert [(p.name, p.value, p.host) for p in result.points] == [("loss", 0.5, "algo-1")]
    assert result.output_files() == {"x.txt": b"out\n"}
    assert result.model_files() == {}
    # Its own output dir and a generated name within TrainingJobName's limits.
    assert result.record["OutputDataConfig"]["S3OutputPath"] == str(emulator.output)
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", result.name)
    assert result.name.startswith("test-a-result-says-what-")

    cli = subprocess.run(
        [
            *EMULATOR,
            *["run", "--quiet", "--image", BUSYBOX, "--output", str(tmp_path / "cli")],
            *["--entrypoint=sh", "--entrypoint=-c", f"--entrypoint={script}"],
            *["--max-runtime", "2", "--stop-grace", "1"],
        ],
        env={**os.environ, "EMULATOR_HOME": str(tmp_path / "cli-home")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == result.exit_code == 3, cli.stderr


def test_every_job_gets_a_name_of_its_own_and_bad_flags_are_refused(
    emulator: EmulatorRunner,
) -> None:
    first = emulator.run(image=BUSYBOX, entrypoint=["true"])
    second = emulator.run(image=BUSYBOX, entrypoint=["sh", "-c", "exit 2"])
    assert first.name != second.name
    assert (first.exit_code, second.exit_code) == (0, 1)
    assert second.failure_reason == "AlgorithmError: , exit code: 2"
    with pytest.raises(RequestInvalid, match="InstanceCount"):
        emulator.run(image=BUSYBOX, instance_count=0)


def test_a_ci_test_can_rehearse_a_spot_interruption(
    emulator: EmulatorRunner, tmp_path: Path
) -> None:
    spot = Path(__file__).resolve().parents[2] / "examples" / "spot"
    request = json.loads((spot / "request.json").read_text())
    for source in request["InputDataConfig"]:
        uri = source["DataSource"]["S3DataSource"]["S3Uri"]
        source["DataSource"]["S3DataSource"]["S3Uri"] = str(spot / uri)  # read only
    request["CheckpointConfig"] = {"S3Uri": str(tmp_path / "checkpoints")}
    request["HyperParameters"] = {"epochs": "3", "epoch_seconds": "1"}
    del request["TrainingJobName"]

    result = emulator.run(request, interrupt_after=[1.5], stop_grace=2)

    assert result.status == "Completed"
    statuses = [t["Status"] for t in result.record["SecondaryStatusTransitions"]]
    assert statuses.count("Interrupted") == 1 and statuses.count("Training") == 2
    assert "Resuming after epoch 1" in result.logs()
    assert json.loads(result.model_files()["epochs.json"]) == {"epochs_done": [1, 2, 3]}
