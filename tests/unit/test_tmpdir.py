"""A TMPDIR that cannot hold the job's work dir refuses the run before it starts (exit 2,
naming TMPDIR and what to do), where Python's tempfile would quietly use /tmp instead (issue 15,
defect 8).

Tests run as root here, and root writes into a read-only (0555) directory: the unusable TMPDIR
is made a missing directory, or a path below a regular file; a read-only directory is tried
only when the tests do not run as root.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.errors import EnvironmentProblem
from emulator.run.workdir import WORK_DIR_PREFIX, check_work_root, make_work_dir


def test_the_temp_dir_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert check_work_root() == tmp_path
    work = make_work_dir("job")
    assert work.parent == tmp_path
    assert work.name.startswith(f"{WORK_DIR_PREFIX}job-")
    monkeypatch.setenv("TMPDIR", "")  # empty: ignored, as tempfile does
    monkeypatch.setenv("TEMP", str(tmp_path / "missing"))
    with pytest.raises(EnvironmentProblem, match=r"TEMP=.* does not exist"):
        make_work_dir("job")


def test_an_unusable_work_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentProblem, match=r"work root .* \(RunOptions.work_root\)"):
        check_work_root(tmp_path / "missing")
    assert check_work_root(tmp_path) == tmp_path
