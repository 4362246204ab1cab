"""Kept jobs without an engine (issue 12): the store's kept flag (and older state dirs getting
it), the work dir's kept marker and the orphan rule, a kept name never replaced, `emulator list`
showing kept jobs, and `shell`/`rm` refusing what they cannot act on before any engine call."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from emulator.errors import JobExists
from emulator.run.kept import kept_notice
from emulator.run.workdir import KEPT_FILE, OWNER_FILE, kept_marker, mark_kept, orphaned
from emulator.state.store import JobStore
from tests.fixtures.cli_runner import Cli, assert_usage_error
from tests.fixtures.store_records import record_of

OLD_SCHEMA = """
CREATE TABLE jobs (name TEXT PRIMARY KEY, status TEXT NOT NULL, created REAL NOT NULL,
    pid INTEGER NOT NULL, stop_requested INTEGER NOT NULL DEFAULT 0, record TEXT NOT NULL);
CREATE TABLE metrics (job TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,
    timestamp REAL NOT NULL, host TEXT NOT NULL);
"""


def finished(store: JobStore, name: str, status: str = "Failed") -> None:
    record = record_of(name)
    store.create(record)
    store.update({**record, "TrainingJobStatus": status, "SecondaryStatus": status})


def test_an_older_state_dir_gets_the_kept_flag(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "jobs.sqlite3") as db:
        db.executescript(OLD_SCHEMA)
        db.execute(
            "INSERT INTO jobs (name, status, created, pid, record) VALUES (?, ?, ?, ?, ?)",
            ("old", "Completed", 1.0, 1, json.dumps(record_of("old"))),
        )
    store = JobStore(home)
    assert store.kept_jobs() == {}
    assert store.get("old")["TrainingJobName"] == "old"
    store.set_kept("old", tmp_path / "work-old")
    store.set_kept("new", tmp_path / "work-new")
    assert store.kept_jobs() == {"old": tmp_path / "work-old", "new": tmp_path / "work-new"}
    store.forget_kept("old")
    assert JobStore(home).kept_jobs() == {"new": tmp_path / "work-new"}


def test_a_kept_job_is_not_replaced_until_removed(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "home")
    finished(store, "kept-job")
    store.set_kept("kept-job", tmp_path / "work")
    with pytest.raises(JobExists, match=r"--keep .* `emulator rm kept-job`"):
        store.create(record_of("kept-job"), replace=True)
    store.forget_kept("kept-job")
    store.create(record_of("kept-job"), replace=True)
    assert store.get("kept-job")["TrainingJobStatus"] == "InProgress"


def test_a_kept_work_dir_is_never_an_orphan(tmp_path: Path, dead_pid: int) -> None:
    work = tmp_path / "sagemaker-emulator-job-abc"
    work.mkdir()
    (work / OWNER_FILE).write_text(str(dead_pid))
    assert orphaned(work)
    mark_kept(work, "job", tmp_path / "home")
    assert kept_marker(work) == {"job": "job", "home": str(tmp_path / "home")}
    assert not orphaned(work)
    (work / KEPT_FILE).write_text("not json")  # unreadable: still kept, never removed
    assert kept_marker(work) == {}
    assert not orphaned(work)
    os.remove(work / KEPT_FILE)
    assert kept_marker(work) is None and orphaned(work)


def test_the_notice_says_what_was_kept_and_how_to_remove_it(tmp_path: Path) -> None:
    notice = kept_notice("job", tmp_path / "w", ["sm-job-x-algo-1", "sm-job-x-algo-2"])
    assert "sm-job-x-algo-1, sm-job-x-algo-2" in notice and str(tmp_path / "w") in notice
    for command in ("emulator shell job", "emulator rm job", "emulator prune --kept"):
        assert command in notice
    assert "no container" in kept_notice("job", tmp_path / "w", [])


def test_list_shows_kept_jobs(cli: Cli) -> None:
    store = JobStore(cli.home)
    finished(store, "plain")
    finished(store, "kept-one")
    store.set_kept("kept-one", cli.root / "work")
    summaries = json.loads(cli("list", "--json").stdout)["TrainingJobSummaries"]
    by_name = {s["TrainingJobName"]: s for s in summaries}
    assert set(by_name["plain"]) == {
        "TrainingJobName",
        "TrainingJobStatus",
        "SecondaryStatus",
        "CreationTime",
    }
    assert by_name["kept-one"]["Kept"] is True
    assert by_name["kept-one"]["TrainingJobStatus"] == "Failed"
    table = cli("list").stdout.splitlines()
    assert table[0].split() == ["name", "status", "secondary", "status", "created", "kept"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["kept-one"][-1] == "kept" and len(rows["plain"]) == 4


def test_shell_and_rm_refuse_what_they_cannot_act_on(cli: Cli) -> None:
    store = JobStore(cli.home)
    finished(store, "not-kept")
    for verb in ("shell", "rm"):
        assert_usage_error(cli(verb, "not-kept"), "not run with --keep", "rerun", "--keep")
        assert_usage_error(cli(verb, "nobody"), "No training job named 'nobody'")
    store.create(record_of("running"))  # InProgress, owned by this (live) process
    store.set_kept("running", cli.root / "work")
    assert_usage_error(cli("rm", "running"), "still running", "emulator stop running")
    assert store.kept_jobs() == {"running": cli.root / "work"}
