"""`emulator run --code DIR [--watch]` without an engine: the mount and the request the containers
see (plan/code.py), what counts as a change and the names of reruns (run/codewatch.py, on the
real file system), and the flags refused before anything is watched or run."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

import pytest

from emulator import RunOptions, api
from emulator.errors import EmulatorError, RequestInvalid
from emulator.plan.code import CODE_DIR, check_code_dir, mount_code
from emulator.request.validation import parse_request
from emulator.run.codewatch import CodeWatcher, ignored, rerun_names
from tests.fixtures.cli_runner import Cli, assert_usage_error
from tests.fixtures.jobs import probe_request

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # TrainingJobName


def spec_with(tmp_path: Path, **members: Any) -> Any:
    return parse_request(probe_request(tmp_path / "output", **members))


@pytest.fixture
def code(tmp_path: Path) -> Path:
    directory = tmp_path / "code"
    directory.mkdir()
    (directory / "train.py").write_text("print('v1')\n")
    return directory


# -- the mount and the request the containers see ---------------------------------------------


def test_no_code_dir_changes_nothing(tmp_path: Path) -> None:
    spec = spec_with(tmp_path)
    assert mount_code(spec, RunOptions()) == (spec, [])


def test_the_directory_is_mounted_read_only_at_opt_ml_code(tmp_path: Path, code: Path) -> None:
    spec = spec_with(tmp_path, HyperParameters={"epochs": "3"})
    seen, mounts = mount_code(spec, RunOptions(code_dir=code))
    assert [(m.target, m.source, m.read_only) for m in mounts] == [(CODE_DIR, code, True)]
    assert CODE_DIR == "/opt/ml/code"
    assert seen == spec  # nothing to point elsewhere


def test_a_relative_directory_resolves_against_the_base_dir(tmp_path: Path, code: Path) -> None:
    options = RunOptions(code_dir=Path("code"), base_dir=tmp_path)
    _, mounts = mount_code(spec_with(tmp_path), options)
    assert mounts[0].source == code


def test_the_sdks_submit_directory_points_at_the_mount(tmp_path: Path, code: Path) -> None:
    """The toolkit would download the s3:// URI into /opt/ml/code, which is read-only: it is
    pointed at the mount (encoded as it came), the record's request stays as given."""
    spec = spec_with(
        tmp_path,
        HyperParameters={
            "sagemaker_submit_directory": json.dumps("s3://bucket/job/source/sourcedir.tar.gz"),
            "sagemaker_program": json.dumps("train.py"),
        },
        Environment={"SAGEMAKER_SUBMIT_DIRECTORY": "s3://bucket/other.tar.gz"},
    )
    notices: list[str] = []
    seen, _ = mount_code(spec, RunOptions(code_dir=code, notice=notices.append))
    assert seen.hyperparameters == {
        "sagemaker_submit_directory": '"/opt/ml/code"',
        "sagemaker_program": '"train.py"',
    }
    assert seen.environment == {"SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/code"}
    assert seen.request == spec.request  # DescribeTrainingJob echoes the request as given
    assert notices == [
        "hyperparameter sagemaker_submit_directory (s3://bucket/job/source/sourcedir.tar.gz) "
        f"points at /opt/ml/code instead: --code mounts {code} there",
        "Environment variable SAGEMAKER_SUBMIT_DIRECTORY (s3://bucket/other.tar.gz) points "
        f"at /opt/ml/code instead: --code mounts {code} there",
    ]


def test_a_submit_directory_already_at_the_mount_is_left_alone(tmp_path: Path, code: Path) -> None:
    spec = spec_with(tmp_path, HyperParameters={"sagemaker_submit_directory": "/opt/ml/code"})
    notices: list[str] = []
    seen, _ = mount_code(spec, RunOptions(code_dir=code, notice=notices.append))
    assert seen.hyperparameters == {"sagemaker_submit_directory": "/opt/ml/code"}
    assert notices == []


def test_a_missing_directory_or_a_file_is_refused(tmp_path: Path, code: Path) -> None:
    with pytest.raises(EmulatorError, match=r"--code .*/nope: no such directory"):
        check_code_dir(tmp_path / "nope")
    with pytest.raises(EmulatorError, match=r"--code .*/train.py: not a directory"):
        mount_code(spec_with(tmp_path), RunOptions(code_dir=code / "train.py"))


def test_sensitive_directories_are_refused_unless_allowed(tmp_path: Path, user_home: Path) -> None:
    for directory in (user_home / ".ssh", user_home, Path("/etc"), Path("/")):
        with pytest.raises(EmulatorError, match="exposes the sensitive host path") as raised:
            check_code_dir(directory)
        assert "--allow-sensitive-paths" in str(raised.value)
    assert check_code_dir(user_home / ".ssh", allow_sensitive_paths=True) == user_home / ".ssh"


def test_a_link_to_a_sensitive_directory_is_refused(tmp_path: Path, user_home: Path) -> None:
    link = tmp_path / "innocent"
    link.symlink_to(user_home / ".aws")
    with pytest.raises(EmulatorError, match=r"\.aws"):
        check_code_dir(link)


@pytest.mark.parametrize("local", ["/opt/ml/code", "/opt/ml/code/ckpt", "/opt/ml", "/opt"])
def test_a_checkpoint_path_overlapping_the_mount_is_refused(
    tmp_path: Path, code: Path, local: str
) -> None:
    spec = spec_with(tmp_path, CheckpointConfig={"S3Uri": str(tmp_path), "LocalPath": local})
    with pytest.raises(RequestInvalid, match=f"CheckpointConfig.LocalPath: {local} overlaps"):
        mount_code(spec, RunOptions(code_dir=code))


# -- changes and names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".git/index",
        "pkg/__pycache__/m.cpython-311.pyc",
        "__pycache__",
        "train.py~",
        ".train.py.swp",
        ".#train.py",
        "#train.py#",
        "4913",
        "m.pyc",
        ".ipynb_checkpoints/a.ipynb",
        "sub/.goutputstream-ABC",
    ],
)
def test_editor_files_caches_and_vcs_are_not_changes(path: str) -> None:
    assert ignored(PurePath(path))


@pytest.mark.parametrize(
    "path",
    ["train.py", "pkg/model.py", "requirements.txt", ".env", "a.swp.py"],
)
def test_code_files_are_changes(path: str) -> None:
    assert not ignored(PurePath(path))


def test_rerun_names_count_up_skip_taken_names_and_stay_valid() -> None:
    taken = {"job-2"}
    names = rerun_names("job", taken.__contains__)
    assert [next(names) for _ in range(3)] == ["job-1", "job-3", "job-4"]
    long = "a" * 60 + "-" + "b" * 2  # 63 characters: cut to leave room for the suffix
    for count, name in zip(range(12), rerun_names(long, lambda name: False), strict=False):
        assert len(name) <= 63 and NAME_PATTERN.match(name), name
        assert name.endswith(f"-{count + 1}")
    cut = next(rerun_names("a" * 61 + "-b", lambda name: False))
    assert cut == "a" * 61 + "-1"  # never "...a--1": the cut's trailing hyphen goes


@pytest.fixture
def watcher(code: Path) -> Iterator[CodeWatcher]:
    with CodeWatcher(code, debounce_seconds=0.3) as watching:
        yield watching


def test_a_save_is_one_change_after_the_quiet_time(code: Path, watcher: CodeWatcher) -> None:
    started = time.monotonic()
    for version in range(4):  # a burst: one rerun, not four
        (code / "train.py").write_text(f"print('v{version}')\n")
        time.sleep(0.1)
    assert watcher.next_change(timeout=5) == ["train.py"]
    assert time.monotonic() - started >= 0.3 + 0.3  # the burst, then the quiet time
    assert watcher.next_change(timeout=0.6) == []  # reported once


def test_temporaries_renamed_over_a_file_name_only_that_file(
    code: Path, watcher: CodeWatcher
) -> None:
    """As sed -i and many editors save: a temporary written, then renamed over the file."""
    temporary = code / "sedX1b2c3"
    temporary.write_text("print('v2')\n")
    os.replace(temporary, code / "train.py")
    scratch = code / "scratch"
    scratch.write_text("x")
    scratch.unlink()  # born and gone in one burst: no change
    assert watcher.next_change(timeout=5) == ["train.py"]


def test_new_deleted_and_nested_files_are_changes(code: Path, watcher: CodeWatcher) -> None:
    (code / "pkg").mkdir()
    (code / "pkg" / "model.py").write_text("x = 1\n")
    assert watcher.next_change(timeout=5) == ["pkg", "pkg/model.py"]
    (code / "train.py").unlink()
    assert watcher.next_change(timeout=5) == ["train.py"]


def test_ignored_files_and_reads_wake_nothing(code: Path, watcher: CodeWatcher) -> None:
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (code / ".train.py.swp").write_bytes(b"\0")
    (code / "train.py~").write_text("old")
    (code / "train.py").read_text()  # the job reads its code through the mount
    assert watcher.next_change(timeout=1.0) == []


def test_a_change_wakes_a_waiting_thread(code: Path, watcher: CodeWatcher) -> None:
    seen: list[list[str]] = []
    waiting = threading.Thread(target=lambda: seen.append(watcher.next_change()))
    waiting.start()
    time.sleep(0.2)
    (code / "train.py").write_text("print('v2')\n")
    waiting.join(timeout=5)
    assert seen == [["train.py"]]


# -- the flags (refused before anything is watched or run) ---------------------------------------


def test_watch_needs_code(cli: Cli) -> None:
    result = cli("run", "--image", "img:1", "--watch")
    assert_usage_error(result, "--watch needs --code DIR")


@pytest.mark.parametrize(
    ("flag", "message"),
    [("--shell", "--watch and --shell do not go together"), ("--json", "--watch and --json")],
)
def test_watch_refuses_shell_and_json(cli: Cli, code: Path, flag: str, message: str) -> None:
    result = cli("run", "--image", "img:1", "--code", str(code), "--watch", flag)
    assert_usage_error(result, message)


def test_watch_refuses_a_missing_directory_before_watching(cli: Cli, tmp_path: Path) -> None:
    result = cli("run", "--image", "img:1", "--code", str(tmp_path / "nope"), "--watch")
    assert_usage_error(result, f"--code (RunOptions.code_dir) {tmp_path / 'nope'}: no such")
    assert api.list_jobs(home=cli.home) == []


def test_code_must_not_name_a_file(cli: Cli, code: Path) -> None:
    result = cli("run", "--image", "img:1", "--code", str(code / "train.py"))
    assert result.exit_code == 2
    assert "is a file" in result.output
