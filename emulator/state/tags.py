"""The tags of jobs (CreateTrainingJob's Tags, AddTags, DeleteTags), beside the job records in
the store's database, in insertion order (ListTags answers in it)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from contextlib import AbstractContextManager

from emulator.state.connections import transaction
from emulator.state.store import JobStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tags (
    job TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (job, key)
);
"""


class JobTags:
    """Tags of the jobs of ``store``; a job's tags go when its record is replaced or pruned
    through ``forget``."""

    def __init__(self, store: JobStore) -> None:
        self._path = store.path
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._path)

    def add(self, job: str, tags: Mapping[str, str]) -> None:
        """Set ``tags`` on ``job`` (a key it has already gets the new value)."""
        with self._db() as db:
            db.executemany(
                "INSERT INTO tags (job, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (job, key) DO UPDATE SET value = excluded.value",
                [(job, key, value) for key, value in tags.items()],
            )

    def get(self, job: str) -> dict[str, str]:
        with self._db() as db:
            rows = db.execute(
                "SELECT key, value FROM tags WHERE job = ? ORDER BY rowid", (job,)
            ).fetchall()
        return dict(rows)

    def delete(self, job: str, keys: list[str]) -> None:
        with self._db() as db:
            db.executemany("DELETE FROM tags WHERE job = ? AND key = ?", [(job, k) for k in keys])

    def forget(self, job: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM tags WHERE job = ?", (job,))
