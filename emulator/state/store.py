"""Job records, metric series and logs, kept under the state directory.

    $EMULATOR_HOME (default $XDG_STATE_HOME/sagemaker-emulator, ~/.local/state/...)
    ├── jobs.sqlite3            jobs (Describe records) and metric_values (every point)
    └── jobs/<name>/<host>.log  the container output of each host, as it came
                   <host>.times  when its lines were read (observe/linetimes.py)

The database is in WAL mode (set up once per process, when a store is first opened), so the
CLI's ``describe``/``stop`` of another process and the job's own threads can use it at once.
Records are read and written over the calling thread's connection, kept open
(state/connections.py). Metric points, which come by the million, go through a
``MetricsWriter``: one connection for the thread that writes them, one transaction per batch,
and one row per metric, host and moment holding its values packed (a row per point cost about
2 microseconds each, more than the container took to print it).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import time
from array import array
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.config import ENV_HOME, default_home
from emulator.errors import EmulatorError, JobExists, JobNotFound
from emulator.state.connections import file_identity, open_connection, transaction

TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")
WAL_SETUP_SECONDS = 30.0
_prepared: set[tuple[int, int, int]] = set()  # database files this process has set up

# The system metrics (table system_metrics; observe/resources.py says what they mean).
MEMORY_BYTES = "system/memory_bytes"
CPU_PERCENT = "system/cpu_percent"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    pid INTEGER NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    job TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    timestamp REAL NOT NULL,
    host TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_job ON metrics (job, name, timestamp);
CREATE TABLE IF NOT EXISTS metric_values (
    job TEXT NOT NULL,
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    timestamp REAL NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS metric_values_by_job ON metric_values (job);
CREATE TABLE IF NOT EXISTS system_metrics (
    job TEXT NOT NULL,
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    timestamp REAL NOT NULL,
    value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS system_metrics_by_job ON system_metrics (job);
CREATE TABLE IF NOT EXISTS kept (
    job TEXT PRIMARY KEY,
    work_dir TEXT NOT NULL,
    since REAL NOT NULL
);
"""
# ``metrics`` (a row per point) holds the points of jobs run by earlier versions: read, and
# deleted with their job, never written. ``metric_values`` holds the values of one metric
# from one host read at one moment, in order, as float64 little-endian.
# ``system_metrics`` holds the engine's samples of each host's CPU and memory (run/resources.py):
# kept apart from the MetricDefinitions points, which alone make FinalMetricDataList.
# ``kept`` names the jobs run with --keep whose containers and work dir stay (a state dir of
# an earlier version gets the table, empty, when it is next opened).


@dataclass(frozen=True)
class MetricPoint:
    name: str
    value: float
    timestamp: float  # seconds since the epoch
    host: str = "algo-1"


@dataclass(frozen=True)
class MetricValues:
    """Values of one metric from one host, read at one moment, in order."""

    name: str
    host: str
    timestamp: float  # seconds since the epoch
    values: Sequence[float]


def _pack(values: Sequence[float]) -> bytes:
    packed = array("d", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def _unpack(blob: bytes) -> array[float]:
    values = array("d")
    values.frombytes(blob)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def _insert(db: sqlite3.Connection, job: str, groups: Iterable[MetricValues]) -> None:
    db.executemany(
        "INSERT INTO metric_values VALUES (?, ?, ?, ?, ?)",
        [(job, g.name, g.host, g.timestamp, _pack(g.values)) for g in groups if g.values],
    )


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobStore:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home or default_home()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            if file_identity(self.path) not in _prepared:
                with self._db() as db:
                    _use_wal(db)
                    db.executescript(_SCHEMA)
                _prepared.add(file_identity(self.path))
        except (OSError, sqlite3.Error) as exc:
            raise EmulatorError(
                f"Cannot use the state directory {self.home} ({exc}); set {ENV_HOME} to a "
                "writable directory"
            ) from exc

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path)

    @property
    def path(self) -> Path:
        return self.home / "jobs.sqlite3"

    def job_dir(self, name: str) -> Path:
        return self.home / "jobs" / name

    def log_path(self, name: str, host: str) -> Path:
        return self.job_dir(name) / f"{host}.log"

    def times_path(self, name: str, host: str) -> Path:
        return self.job_dir(name) / f"{host}.times"

    def create(self, record: dict[str, Any], *, replace: bool = False) -> None:
        """Register a new job; its name must be free (as in SageMaker) unless ``replace``."""
        name = record["TrainingJobName"]
        with self._db() as db:
            # Check and insert in one write transaction: of two emulators starting the same
            # name at once, one gets it and the other the message below (not IntegrityError).
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT status, pid FROM jobs WHERE name = ?", (name,)).fetchone()
            if row is not None:
                status, pid = row
                running = status not in TERMINAL_STATUSES and process_alive(pid)
                if running:
                    raise JobExists(
                        f"Training job {name!r} is already running (pid {pid}); stop it with "
                        f"`emulator stop {name}` or choose another --job-name"
                    )
                if db.execute("SELECT 1 FROM kept WHERE job = ?", (name,)).fetchone():
                    raise JobExists(
                        f"Training job {name!r} was run with --keep and its containers and "
                        f"work dir are still there: remove them first with `emulator rm "
                        f"{name}`, or choose another --job-name"
                    )
                if not replace:
                    raise JobExists(
                        f"Training job {name!r} already exists (status {status}); job names "
                        "are unique, as in SageMaker: choose another --job-name, or pass "
                        "--replace to discard the old record"
                    )
                db.execute("DELETE FROM jobs WHERE name = ?", (name,))
                db.execute("DELETE FROM metrics WHERE job = ?", (name,))
                db.execute("DELETE FROM metric_values WHERE job = ?", (name,))
                db.execute("DELETE FROM system_metrics WHERE job = ?", (name,))
                shutil.rmtree(self.job_dir(name), ignore_errors=True)
            db.execute(
                "INSERT INTO jobs (name, status, created, pid, record) VALUES (?, ?, ?, ?, ?)",
                (name, record["TrainingJobStatus"], time.time(), os.getpid(), json.dumps(record)),
            )
        self.job_dir(name).mkdir(parents=True, exist_ok=True)

    def update(self, record: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET status = ?, record = ? WHERE name = ?",
                (record["TrainingJobStatus"], json.dumps(record), record["TrainingJobName"]),
            )

    def get(self, name: str) -> dict[str, Any]:
        with self._db() as db:
            row = db.execute(
                "SELECT record, stop_requested FROM jobs WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise JobNotFound(f"No training job named {name!r}; `emulator list` shows the jobs")
        return _as_read(*row)

    def all_jobs(self) -> list[dict[str, Any]]:
        """Every job's record, newest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT record, stop_requested FROM jobs ORDER BY created DESC"
            ).fetchall()
        return [_as_read(*row) for row in rows]

    def running_jobs(self) -> list[tuple[str, int]]:
        """(name, pid) of jobs not in a terminal status."""
        placeholders = ",".join("?" * len(TERMINAL_STATUSES))
        with self._db() as db:
            rows = db.execute(
                f"SELECT name, pid FROM jobs WHERE status NOT IN ({placeholders})",
                TERMINAL_STATUSES,
            ).fetchall()
        return [(name, pid) for name, pid in rows]

    def add_metrics(self, job: str, points: Iterable[MetricPoint]) -> None:
        """Store points (a job's own go through ``metrics_writer``, faster)."""
        runs: list[tuple[str, str, float, list[float]]] = []  # consecutive, alike: one row
        for p in points:
            if runs and runs[-1][:3] == (p.name, p.host, p.timestamp):
                runs[-1][3].append(p.value)
            else:
                runs.append((p.name, p.host, p.timestamp, [p.value]))
        if runs:
            with self._db() as db:
                _insert(db, job, [MetricValues(*run) for run in runs])

    def metrics_writer(self, job: str) -> MetricsWriter:
        """A writer of ``job``'s metric points, for one thread at a time (close it)."""
        return MetricsWriter(self.path, job)

    def metrics(self, job: str) -> list[MetricPoint]:
        """Every point of ``job``, by time (points of one time in the order they came)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT name, value, timestamp, host FROM metrics WHERE job = ? "
                "ORDER BY timestamp, rowid",
                (job,),
            ).fetchall()
            packed = db.execute(
                "SELECT name, host, timestamp, vals FROM metric_values WHERE job = ? "
                "ORDER BY rowid",
                (job,),
            ).fetchall()
        points = [MetricPoint(name, value, stamp, host) for name, value, stamp, host in rows]
        for name, host, stamp, blob in packed:
            points += [MetricPoint(name, value, stamp, host) for value in _unpack(blob)]
        points.sort(key=lambda point: point.timestamp)  # stable: arrival order within a time
        return points

    def count_metrics(self, job: str) -> int:
        """How many points ``job`` has (without reading them)."""
        with self._db() as db:
            (old,) = db.execute("SELECT COUNT(*) FROM metrics WHERE job = ?", (job,)).fetchone()
            (size,) = db.execute(
                "SELECT COALESCE(SUM(LENGTH(vals)), 0) FROM metric_values WHERE job = ?", (job,)
            ).fetchone()
        return int(old) + int(size) // 8

    def add_system_metrics(self, job: str, points: Iterable[MetricPoint]) -> None:
        """Store samples of the job's resource use (never mixed with ``metrics``)."""
        rows = [(job, p.name, p.host, p.timestamp, p.value) for p in points]
        if rows:
            with self._db() as db:
                db.executemany("INSERT INTO system_metrics VALUES (?, ?, ?, ?, ?)", rows)

    def system_metrics(self, job: str) -> list[MetricPoint]:
        """Every resource-use sample of ``job``, by time."""
        with self._db() as db:
            rows = db.execute(
                "SELECT name, value, timestamp, host FROM system_metrics WHERE job = ? "
                "ORDER BY timestamp, rowid",
                (job,),
            ).fetchall()
        return [MetricPoint(name, value, stamp, host) for name, value, stamp, host in rows]

    def owner_pid(self, name: str) -> int:
        """The pid of the emulator process that created (and runs) the job."""
        with self._db() as db:
            row = db.execute("SELECT pid FROM jobs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise JobNotFound(f"No training job named {name!r}; `emulator list` shows the jobs")
        pid: int = row[0]
        return pid

    def request_stop(self, name: str) -> None:
        self.get(name)
        with self._db() as db:
            db.execute("UPDATE jobs SET stop_requested = 1 WHERE name = ?", (name,))

    def stop_requested(self, name: str) -> bool:
        with self._db() as db:
            row = db.execute("SELECT stop_requested FROM jobs WHERE name = ?", (name,)).fetchone()
        return bool(row and row[0])

    def set_kept(self, name: str, work_dir: Path) -> None:
        """Flag ``name`` as kept (--keep): its containers and ``work_dir`` stay."""
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO kept (job, work_dir, since) VALUES (?, ?, ?)",
                (name, str(work_dir), time.time()),
            )

    def kept_jobs(self) -> dict[str, Path]:
        """Job name -> work dir of every job flagged kept, oldest first."""
        with self._db() as db:
            rows = db.execute("SELECT job, work_dir FROM kept ORDER BY since").fetchall()
        return {name: Path(work_dir) for name, work_dir in rows}

    def forget_kept(self, name: str) -> None:
        """Clear ``name``'s kept flag (its resources are gone); its record stays."""
        with self._db() as db:
            db.execute("DELETE FROM kept WHERE job = ?", (name,))

    def mark_dead_jobs_failed(self) -> list[str]:
        """Jobs whose emulator process died mid-run are recorded Failed; return their names."""
        dead = [name for name, pid in self.running_jobs() if not process_alive(pid)]
        for name in dead:
            record = self.get(name)
            record["TrainingJobStatus"] = "Failed"
            record["SecondaryStatus"] = "Failed"
            record["FailureReason"] = (
                "InternalServerError: the emulator process running this job ended before the "
                "job finished (killed?); its leftovers were pruned"
            )
            self.update(record)
        return dead


def _use_wal(db: sqlite3.Connection) -> None:
    """Put the database in WAL mode (kept by the file: set once). Two stores opening a new
    database at once race for it, and SQLite answers the loser "database is locked" at once
    (no busy wait for this statement): try again for a while."""
    deadline = time.monotonic() + WAL_SETUP_SECONDS
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _as_read(text: str, stop_requested: int) -> dict[str, Any]:
    """A stored record as Describe shows it: a job asked to stop says Stopping from that
    moment (as StopTrainingJob's answer promises), before its own process records the stop."""
    record: dict[str, Any] = json.loads(text)
    if stop_requested and record.get("TrainingJobStatus") == "InProgress":
        record["TrainingJobStatus"] = "Stopping"
        record["SecondaryStatus"] = "Stopping"
    return record


class MetricsWriter:
    """Writes one job's metric points over one connection, a transaction per batch.

    Made in one thread and used in another (a log consumer), never by two at once. WAL mode
    with ``synchronous=NORMAL``: a commit does not wait for the disk (a power cut may lose the
    last batches, never corrupt the database)."""

    def __init__(self, path: Path, job: str) -> None:
        self._job = job
        self._connection = open_connection(path)

    def add(self, groups: Sequence[MetricValues]) -> None:
        """Store ``groups`` in one transaction."""
        if groups:
            with self._connection:
                _insert(self._connection, self._job, groups)

    def close(self) -> None:
        self._connection.close()
