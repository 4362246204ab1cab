"""A TMPDIR that cannot hold the job's work dir refuses the run before it starts (exit 2,
naming TMPDIR and what to do), where Python's tempfile would quietly use /tmp instead (issue 15,
defect 8).

Tests run as root here, and root writes into a read-only (0555) directory: the unusable TMPDIR
is made a missing directory, or a path below a regular file; a read-only directory is tried
only when the tests do not run as root.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from emulator.run.workdir import WORK_DIR_PREFIX
from tests.fixtures.cli import EMULATOR
from tests.fixtures.jobs import PROBE


def unusable_tmpdir(tmp_path: Path, case: str) -> Path:
    if case == "missing":
        return tmp_path / "no" / "such" / "dir"
    if case == "below-a-file":
        (tmp_path / "a-file").write_text("not a directory")
        return tmp_path / "a-file" / "tmp"
    if case == "a-file":
        (tmp_path / "a-file").write_text("not a directory")
        return tmp_path / "a-file"
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only directory")
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    return read_only


CASES = {
    "missing": "does not exist",
    "below-a-file": "is not a directory (a part of its path is a file)",
    "a-file": "is not a directory",
    "read-only": "is not writable by the user running the emulator",
}


@pytest.mark.docker
@pytest.mark.parametrize("case", list(CASES))
def test_the_cli_refuses_an_unusable_tmpdir(tmp_path: Path, case: str) -> None:
    tmpdir = unusable_tmpdir(tmp_path, case)
    home = tmp_path / "home"
    env = {**os.environ, "TMPDIR": str(tmpdir), "EMULATOR_HOME": str(home)}
    run = [*EMULATOR, "run", "--image", PROBE, "--job-name", "tmpdir-test"]
    result = subprocess.run(
        [*run, "--output", str(tmp_path / "out")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"TMPDIR={tmpdir} {CASES[case]}" in result.stderr
    assert "unset it" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # nothing started
    described = subprocess.run(
        [*EMULATOR, "describe", "tmpdir-test"], env=env, capture_output=True, text=True
    )
    assert described.returncode == 2  # no record either
    assert not list(Path("/tmp").glob(f"{WORK_DIR_PREFIX}tmpdir-test-*"))  # no fallback
