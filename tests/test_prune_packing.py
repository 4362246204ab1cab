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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.finish.publish import (
    TEMPORARIES_NOTE,
    WORK_DIR_OWNER_FILE,
    noted_folders,
    publish_artifacts,
)
from emulator.request.validation import parse_request
from emulator.run.workdir import OWNER_FILE, WORK_DIR_PREFIX, claim
from emulator.state.store import JobStore
from emulator.storage.local_folder import (
    remove_dead_temporaries,
    temporary_name,
    temporary_owner,
)
from tests.fixtures.jobs import PROBE, JobRunner, probe_request, unique_name

EMULATOR = [sys.executable, "-m", "emulator"]
HEX = "0123456789abcdef"


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    process = subprocess.Popen(["sleep", "120"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path below ``root`` (a folder maps to None), to compare before and after."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        found[relative] = None if path.is_dir() else path.read_bytes()
    return found


def make(root: Path, files: dict[str, bytes | None]) -> None:
    for name, content in files.items():
        path = root / name
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)


# -- the names ------------------------------------------------------------------------------


def test_temporary_names_carry_the_pid_of_their_maker() -> None:
    for kind in ("packing", "replacing", "partial"):
        name = temporary_name(kind)
        assert name.startswith(f".{kind}-{os.getpid()}-")
        assert temporary_owner(name) == os.getpid()
    for other in (".packing-notes", ".packing-12-xyz", ".partial-0-" + HEX, "packing-1-" + HEX):
        assert temporary_owner(other) is None


def test_only_dead_temporaries_of_the_right_type_are_removed(
    tmp_path: Path, dead_pid: int, live_pid: int
) -> None:
    ours = {
        f".packing-{dead_pid}-{HEX}/model.tar.gz": b"half",
        f".replacing-{dead_pid}-{HEX}/model/w": b"w",
        f".partial-{dead_pid}-{HEX}": b"half",
        f"model/deeper/.partial-{dead_pid}-{HEX}": b"half",
    }
    kept = {
        "model.tar.gz": b"a user's",
        "model/deeper/w.bin": b"w",
        ".packing-notes": b"a user's",
        f".packing-{dead_pid}-abc": b"not our form",
        f".packing-{dead_pid}-{'f' * 16}": b"a file, not a folder",
        f".partial-{dead_pid}-{'f' * 16}/x": b"a folder, not a file",
        f".packing-{live_pid}-{HEX}/model.tar.gz": b"a live emulator's",
        f".partial-{live_pid}-{HEX}": b"a live emulator's",
    }
    root, reference = tmp_path / "folder", tmp_path / "reference"
    make(root, {**ours, **kept})
    make(reference, kept)
    removed, failed = remove_dead_temporaries(root, lambda pid: pid == live_pid)
    assert failed == []
    assert sorted(p.relative_to(root).as_posix() for p in removed) == [
        f".packing-{dead_pid}-{HEX}",
        f".partial-{dead_pid}-{HEX}",
        f".replacing-{dead_pid}-{HEX}",
        f"model/deeper/.partial-{dead_pid}-{HEX}",
    ]
    assert tree(root) == tree(reference)
    assert remove_dead_temporaries(tmp_path / "missing", lambda pid: False) == ([], [])


def test_publish_notes_the_local_output_folder_in_a_claimed_work_dir(tmp_path: Path) -> None:
    assert WORK_DIR_OWNER_FILE == OWNER_FILE
    work = tmp_path / "work"
    models = [work / "algo-1" / "model"]
    outputs = [work / "algo-1" / "output" / "data"]
    for folder in (*models, *outputs):
        folder.mkdir(parents=True)
    (models[0] / "w").write_bytes(b"w")
    claim(work)
    spec = parse_request(probe_request(tmp_path / "out"))
    publish_artifacts(spec, models, outputs, lambda message: None)
    folder = tmp_path / "out" / spec.name / "output"
    assert noted_folders(work) == [folder]
    assert sorted(os.listdir(folder)) == ["model.tar.gz", "output.tar.gz"]  # no temporaries

    elsewhere = tmp_path / "elsewhere"  # not a work dir: nothing is written beside the trees
    (elsewhere / "algo-1" / "model").mkdir(parents=True)
    publish_artifacts(spec, [elsewhere / "algo-1" / "model"], [], lambda message: None)
    assert not (tmp_path / TEMPORARIES_NOTE).exists()
    assert not (elsewhere / TEMPORARIES_NOTE).exists()


# -- prune ----------------------------------------------------------------------------------


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
