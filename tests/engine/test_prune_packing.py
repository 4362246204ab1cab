"""A SIGKILL of the emulator while it packs the model leaves a half-written archive in the
output folder; ``emulator prune`` removes it, and nothing else (issue 15, defect 5).

The emulator's temporaries are named ``.packing-<pid>-<hex>``, ``.replacing-<pid>-<hex>`` and
``.partial-<pid>-<hex>``: prune removes those whose pid is dead, in the folders a dead job's
work dir noted (its output folder, as resolved when it ran) and in the absolute local output
and checkpoint folders of the store's dead jobs. A user's file (any other name, or a name of
that form with the wrong type) and a live emulator's temporaries are never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from emulator.finish.publish import (
    TEMPORARIES_NOTE,
)
from emulator.run.workdir import OWNER_FILE, WORK_DIR_PREFIX
from emulator.state.store import JobStore
from tests.fixtures.cli import EMULATOR
from tests.fixtures.jobs import PROBE, JobRunner, probe_request, unique_name
from tests.fixtures.processes import HEX, tree


def prune(jobs: JobRunner, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EMULATOR_HOME": str(jobs.home), "TMPDIR": str(jobs.work_root)}
    return subprocess.run(
        [*EMULATOR, "prune"], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def record_dead_job(jobs: JobRunner, record: dict[str, Any]) -> None:
    """Register ``record`` from a process that then ends: a job whose emulator died."""
    code = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from emulator.state.store import JobStore
        JobStore(Path({str(jobs.home)!r})).create(json.loads({json.dumps(record)!r}))
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.docker
def test_prune_leaves_a_live_emulators_temporaries_and_the_users_files(
    jobs: JobRunner, tmp_path: Path, dead_pid: int, live_pid: int
) -> None:
    job = unique_name("dead")
    noted = tmp_path / "noted" / job / "output"  # named by the dead work dir only
    work = jobs.work_root / f"{WORK_DIR_PREFIX}{job}-abc123"
    work.mkdir()
    (work / OWNER_FILE).write_text(str(dead_pid))
    (work / TEMPORARIES_NOTE).write_text(f"{noted}\n")
    recorded = tmp_path / "recorded"  # named by the store's record of a dead job only
    checkpoints = tmp_path / "checkpoints"
    record_dead_job(
        jobs,
        {
            "TrainingJobName": job,
            "TrainingJobStatus": "InProgress",
            "OutputDataConfig": {"S3OutputPath": str(recorded)},
            "CheckpointConfig": {"S3Uri": checkpoints.as_uri()},
        },
    )
    dead = {
        noted / f".packing-{dead_pid}-{HEX}" / "model.tar.gz": b"half",
        recorded / job / "output" / f".replacing-{dead_pid}-{HEX}" / "w": b"w",
        checkpoints / "epoch-3" / f".partial-{dead_pid}-{HEX}": b"half",
    }
    live = {
        noted / f".packing-{live_pid}-{HEX}" / "model.tar.gz": b"a live job's",
        checkpoints / f".partial-{live_pid}-{HEX}": b"a live job's",
    }
    users = {
        noted / "notes.txt": b"mine",
        noted / ".packing-notes": b"mine",
        recorded / job / "output" / "model.tar.gz": b"an earlier run's",
        checkpoints / "epoch-3" / "model.pt": b"weights",
    }
    for path, content in {**dead, **live, **users}.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    result = prune(jobs, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    for path in dead:
        temporary = path.parent if path.parent.name.startswith((".packing", ".replacing")) else path
        assert not temporary.exists(), result.stdout
        assert f"removed temporary {temporary} (of pid {dead_pid})" in result.stdout
    for path, content in {**live, **users}.items():
        assert path.read_bytes() == content
    assert not work.exists()
    assert JobStore(jobs.home).get(job)["TrainingJobStatus"] == "Failed"


KILLED_WRITER = "head -c 200000000 /dev/urandom > /opt/ml/model/big && echo written"


@pytest.mark.docker
@pytest.mark.timeout(240)
def test_prune_removes_what_a_sigkill_while_packing_left_and_nothing_else(
    jobs: JobRunner, tmp_path: Path
) -> None:
    base = tmp_path / "project"  # the request's folder: its relative S3OutputPath is below
    base.mkdir()
    request = probe_request(
        Path("out"),
        AlgorithmSpecification={
            "TrainingImage": PROBE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", KILLED_WRITER],
        },
    )
    job = request["TrainingJobName"]
    output = base / "out" / job / "output"
    users = {"notes.txt": b"mine", ".packing-notes": b"mine too", "keep/.hidden": b"mine"}
    for name, content in users.items():
        (output / name).parent.mkdir(parents=True, exist_ok=True)
        (output / name).write_bytes(content)
    request_file = base / "request.json"
    request_file.write_text(json.dumps(request))
    env = {**os.environ, "EMULATOR_HOME": str(jobs.home), "TMPDIR": str(jobs.work_root)}
    emulator = subprocess.Popen(
        [*EMULATOR, "run", str(request_file), "--quiet"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        packing = wait_for_packing(output, emulator)
        emulator.kill()  # SIGKILL, mid-archive
    finally:
        emulator.kill()
        emulator.communicate(timeout=30)
    assert packing.name.startswith(f".packing-{emulator.pid}-")
    assert packing.exists()  # the half archive outlives the emulator

    result = prune(jobs, cwd=tmp_path)  # elsewhere: "out" means nothing there

    assert result.returncode == 0, result.stderr
    assert not packing.exists(), result.stdout
    assert f"removed temporary {packing}" in result.stdout
    assert tree(output) == {"keep": None, **users}
    assert jobs.leftovers(job) == []  # its containers, network and work dir went too
    assert JobStore(jobs.home).get(job)["TrainingJobStatus"] == "Failed"


def wait_for_packing(output: Path, emulator: subprocess.Popen[str]) -> Path:
    """The packing folder once its model archive is well under way."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert emulator.poll() is None, emulator.communicate()[1]
        for packing in output.glob(".packing-[0-9]*"):
            archive = packing / "model.tar.gz"
            try:
                if archive.stat().st_size > 5_000_000:
                    return packing
            except FileNotFoundError:
                pass
        time.sleep(0.05)
    raise AssertionError("the model was never packed")
