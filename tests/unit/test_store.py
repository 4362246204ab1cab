"""Job records, metric series and stop requests under the state directory (EMULATOR_HOME):
unique job names as in SageMaker, --replace for finished jobs only, newest first."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from emulator.config import ENV_HOME, default_home
from emulator.errors import EmulatorError, JobNotFound
from emulator.observe.metrics import MetricPoint
from emulator.state.store import JobStore, MetricValues


def record(name: str, status: str = "InProgress", **members: Any) -> dict[str, Any]:
    return {"TrainingJobName": name, "TrainingJobStatus": status, **members}


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "home")


def finished(store: JobStore, name: str, status: str = "Completed") -> None:
    store.create(record(name))
    store.update(record(name, status))


def test_a_created_job_is_got_back(store: JobStore) -> None:
    store.create(record("job-1", SecondaryStatus="Starting"))
    assert store.get("job-1") == record("job-1", SecondaryStatus="Starting")
    assert store.job_dir("job-1").is_dir()
    assert store.log_path("job-1", "algo-2") == store.job_dir("job-1") / "algo-2.log"


def test_update_replaces_the_record(store: JobStore) -> None:
    store.create(record("job-1"))
    store.update(record("job-1", "Completed", FinalMetricDataList=[]))
    assert store.get("job-1") == record("job-1", "Completed", FinalMetricDataList=[])
    assert store.running_jobs() == []


def test_an_unknown_job_is_not_found_with_a_hint(store: JobStore) -> None:
    with pytest.raises(JobNotFound, match=r"No training job named 'nope'; `emulator list`"):
        store.get("nope")
    with pytest.raises(JobNotFound):
        store.request_stop("nope")


def test_all_jobs_lists_newest_first(store: JobStore) -> None:
    for name in ("first", "second", "third"):
        finished(store, name)
    assert [r["TrainingJobName"] for r in store.all_jobs()] == ["third", "second", "first"]


def test_an_empty_store_lists_nothing(store: JobStore) -> None:
    assert store.all_jobs() == []
    assert store.running_jobs() == []


@pytest.mark.parametrize("status", ["Completed", "Failed", "Stopped"])
def test_a_job_name_is_used_once(store: JobStore, status: str) -> None:
    finished(store, "job-1", status)
    with pytest.raises(EmulatorError) as caught:
        store.create(record("job-1"))
    message = str(caught.value)
    assert f"Training job 'job-1' already exists (status {status})" in message
    assert "--job-name" in message and "--replace" in message
    assert store.get("job-1")["TrainingJobStatus"] == status


@pytest.mark.parametrize("status", ["Completed", "Failed", "Stopped"])
def test_replace_discards_a_finished_job_its_metrics_and_logs(store: JobStore, status: str) -> None:
    finished(store, "job-1", status)
    store.add_metrics("job-1", [MetricPoint("loss", 1.0, 1.0)])
    store.log_path("job-1", "algo-1").write_text("old log\n")
    store.create(record("job-1", SecondaryStatus="Starting"), replace=True)
    assert store.get("job-1") == record("job-1", SecondaryStatus="Starting")
    assert store.metrics("job-1") == []
    assert not store.log_path("job-1", "algo-1").exists()
    assert store.job_dir("job-1").is_dir()


def test_replace_moves_the_job_to_the_top_of_the_list(store: JobStore) -> None:
    finished(store, "old")
    finished(store, "new")
    store.create(record("old"), replace=True)
    assert [r["TrainingJobName"] for r in store.all_jobs()] == ["old", "new"]


@pytest.mark.parametrize("replace", [False, True])
def test_a_running_job_is_never_replaced(store: JobStore, replace: bool) -> None:
    store.create(record("job-1", SecondaryStatus="Training"))  # this live process runs it
    with pytest.raises(EmulatorError) as caught:
        store.create(record("job-1"), replace=replace)
    message = str(caught.value)
    assert f"Training job 'job-1' is already running (pid {os.getpid()})" in message
    assert "emulator stop job-1" in message
    assert store.get("job-1") == record("job-1", SecondaryStatus="Training")


def _create_and_exit(home: str) -> None:
    JobStore(Path(home)).create(record("orphan"))


def test_a_job_whose_emulator_died_can_be_replaced(store: JobStore) -> None:
    child = multiprocessing.get_context("spawn").Process(
        target=_create_and_exit, args=(str(store.home),)
    )
    child.start()
    child.join()
    assert store.running_jobs() == [("orphan", child.pid)]
    with pytest.raises(EmulatorError, match="already exists"):
        store.create(record("orphan"))
    store.create(record("orphan", "InProgress", SecondaryStatus="Starting"), replace=True)
    assert store.running_jobs() == [("orphan", os.getpid())]


def test_dead_jobs_are_marked_failed(store: JobStore) -> None:
    child = multiprocessing.get_context("spawn").Process(
        target=_create_and_exit, args=(str(store.home),)
    )
    child.start()
    child.join()
    store.create(record("alive"))
    assert store.mark_dead_jobs_failed() == ["orphan"]
    orphan = store.get("orphan")
    assert orphan["TrainingJobStatus"] == "Failed"
    assert orphan["FailureReason"].startswith("InternalServerError: the emulator process")
    assert store.get("alive")["TrainingJobStatus"] == "InProgress"


def _create_many(home: str, names: int, start: Any, results: Any) -> None:
    store = JobStore(Path(home))
    start.wait()
    created, refused, errors = 0, 0, []
    for i in range(names):
        try:
            store.create(record(f"job-{i}", "Completed"))
            created += 1
        except EmulatorError:
            refused += 1
        except Exception as exc:  # what the user would see as a traceback
            errors.append(repr(exc))
    results.put({"created": created, "refused": refused, "errors": errors})


def test_emulators_racing_for_one_name_get_it_once_and_a_clear_refusal(store: JobStore) -> None:
    context = multiprocessing.get_context("spawn")
    racers, names = 4, 100
    start, results = context.Barrier(racers), context.Queue()
    processes = [
        context.Process(target=_create_many, args=(str(store.home), names, start, results))
        for _ in range(racers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join()
    assert [error for outcome in outcomes for error in outcome["errors"]] == []
    assert sum(outcome["created"] for outcome in outcomes) == names
    assert sum(outcome["refused"] for outcome in outcomes) == (racers - 1) * names


def test_metric_points_round_trip_in_time_order(store: JobStore) -> None:
    store.create(record("job-1"))
    store.create(record("job-2"))
    points = [
        MetricPoint("loss", 0.5, 20.0, "algo-1"),
        MetricPoint("loss", 0.9, 10.0, "algo-2"),
        MetricPoint("acc", 0.75, 20.0, "algo-1"),
    ]
    store.add_metrics("job-1", points)
    store.add_metrics("job-1", [])
    store.add_metrics("job-2", [MetricPoint("other", 1.0, 1.0)])
    assert store.metrics("job-1") == [points[1], points[0], points[2]]
    assert store.metrics("job-2") == [MetricPoint("other", 1.0, 1.0, "algo-1")]


def test_a_stop_request_is_flagged_for_that_job_only(store: JobStore) -> None:
    store.create(record("job-1"))
    store.create(record("job-2"))
    assert not store.stop_requested("job-1")
    store.request_stop("job-1")
    assert store.stop_requested("job-1")
    assert not store.stop_requested("job-2")
    assert not store.stop_requested("unknown")


def test_a_job_asked_to_stop_reads_stopping_until_its_process_records_the_end(
    store: JobStore,
) -> None:
    store.create(record("job-1"))
    store.request_stop("job-1")
    read = store.get("job-1")
    assert (read["TrainingJobStatus"], read["SecondaryStatus"]) == ("Stopping", "Stopping")
    assert store.all_jobs()[0]["TrainingJobStatus"] == "Stopping"
    ended = {**record("job-1"), "TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped"}
    store.update(ended)
    assert store.get("job-1")["TrainingJobStatus"] == "Stopped"


def test_two_stores_on_one_home_see_the_same_jobs(tmp_path: Path) -> None:
    JobStore(tmp_path).create(record("shared"))
    JobStore(tmp_path).request_stop("shared")
    assert JobStore(tmp_path).stop_requested("shared")


def test_emulator_home_is_respected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_HOME, str(tmp_path / "state"))
    assert default_home() == tmp_path / "state"
    JobStore().create(record("job-1"))
    assert (tmp_path / "state" / "jobs.sqlite3").is_file()
    assert JobStore(tmp_path / "state").get("job-1") == record("job-1")


def test_the_default_home_is_the_users_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_HOME, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_home() == tmp_path / "xdg" / "sagemaker-emulator"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_home() == tmp_path / "user" / ".local" / "state" / "sagemaker-emulator"


def test_an_unusable_home_is_an_emulator_error_saying_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(EmulatorError) as caught:
        JobStore(blocker / "home")
    message = str(caught.value)
    assert f"Cannot use the state directory {blocker / 'home'}" in message
    assert f"set {ENV_HOME} to a writable directory" in message


# -- metric points by the million -------------------------------------------------------------


def test_the_database_is_in_wal_mode(store: JobStore) -> None:
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_metrics_writer_keeps_every_point_of_every_batch(store: JobStore) -> None:
    store.create(record("job-1"))
    writer = store.metrics_writer("job-1")
    try:
        writer.add([MetricValues("loss", "algo-1", 10.0, [float(i) for i in range(20_000)])])
        writer.add(
            [
                MetricValues("acc", "algo-2", 11.0, [0.5, 0.75]),
                MetricValues("loss", "algo-2", 11.0, [-1.0]),
                MetricValues("empty", "algo-2", 11.0, []),
            ]
        )
        writer.add([])
    finally:
        writer.close()
    assert store.count_metrics("job-1") == 20_003
    points = store.metrics("job-1")
    assert [p.value for p in points[:20_000]] == [float(i) for i in range(20_000)]
    assert points[20_000:] == [
        MetricPoint("acc", 0.5, 11.0, "algo-2"),
        MetricPoint("acc", 0.75, 11.0, "algo-2"),
        MetricPoint("loss", -1.0, 11.0, "algo-2"),
    ]
    assert store.count_metrics("other") == 0


def _write_points(home: str, job: str, batches: int, start: Any) -> None:
    store = JobStore(Path(home))
    writer = store.metrics_writer(job)
    start.wait()
    for batch in range(batches):
        writer.add([MetricValues("loss", "algo-9", float(batch), [1.0] * 100)])
        store.get(job)  # records are read meanwhile
    writer.close()


def test_writers_in_threads_and_processes_share_the_store(store: JobStore) -> None:
    store.create(record("job-1"))
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    process = context.Process(target=_write_points, args=(str(store.home), "job-1", 50, start))
    process.start()
    threads = [
        threading.Thread(target=_write_points, args=(str(store.home), "job-1", 50, start))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    start.set()
    for _ in range(20):
        store.update(record("job-1", SecondaryStatus="Training"))
        store.metrics("job-1")
    for thread in threads:
        thread.join()
    process.join(60)
    assert process.exitcode == 0
    assert store.count_metrics("job-1") == 4 * 50 * 100


def test_points_from_earlier_versions_are_read_and_go_with_their_job(store: JobStore) -> None:
    store.create(record("old", "Completed"))
    with sqlite3.connect(store.path) as db:  # a row per point, as earlier versions wrote
        db.executemany(
            "INSERT INTO metrics VALUES (?, ?, ?, ?, ?)",
            [("old", "loss", 2.0, 20.0, "algo-1"), ("old", "loss", 1.0, 10.0, "algo-1")],
        )
    store.add_metrics("old", [MetricPoint("loss", 3.0, 15.0)])
    assert [p.value for p in store.metrics("old")] == [1.0, 3.0, 2.0]
    assert store.count_metrics("old") == 3
    store.create(record("old"), replace=True)
    assert store.metrics("old") == [] and store.count_metrics("old") == 0


def test_stores_opened_at_once_on_a_new_state_dir_all_work(tmp_path: Path) -> None:
    # Two processes starting together on a fresh EMULATOR_HOME (a job and `emulator stop`).
    failures: list[BaseException] = []

    def open_store(home: Path) -> None:
        try:
            JobStore(home)
        except BaseException as exc:
            failures.append(exc)

    for attempt in range(100):
        home = tmp_path / f"home-{attempt}"
        threads = [threading.Thread(target=open_store, args=(home,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
