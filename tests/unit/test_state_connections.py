"""The state database's connections: one per thread and file, reused, each block one
transaction that others see once it ends; never shared by nested blocks, threads, a fork's
child, or a file made again at the same path."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from emulator.state.connections import KEPT_PER_THREAD, transaction


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "jobs.sqlite3"
    path.parent.mkdir()
    with transaction(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE rows (value TEXT)")
    return path


def values(path: Path) -> list[str]:
    """What another connection (as another process would) reads."""
    other = sqlite3.connect(path)
    try:
        return [row[0] for row in other.execute("SELECT value FROM rows ORDER BY rowid")]
    finally:
        other.close()


def test_a_thread_reuses_its_connection_and_each_block_commits(database: Path) -> None:
    with transaction(database) as first:
        first.execute("INSERT INTO rows VALUES ('a')")
    assert values(database) == ["a"]
    with transaction(database) as second:
        second.execute("INSERT INTO rows VALUES ('b')")
    assert second is first
    assert values(database) == ["a", "b"]


def test_a_block_that_raises_is_rolled_back(database: Path) -> None:
    with pytest.raises(RuntimeError), transaction(database) as db:
        db.execute("INSERT INTO rows VALUES ('lost')")
        raise RuntimeError("cut short")
    with transaction(database) as db:
        db.execute("INSERT INTO rows VALUES ('kept')")
    assert values(database) == ["kept"]


def test_a_nested_block_has_a_connection_and_a_transaction_of_its_own(database: Path) -> None:
    with pytest.raises(RuntimeError), transaction(database) as outer:
        outer.execute("INSERT INTO rows VALUES ('outer')")
        with transaction(database) as inner:
            assert inner is not outer
            inner.execute("SELECT 1")  # reads: the outer block holds the write lock
        raise RuntimeError("the outer block fails after the inner one ended")
    assert values(database) == []  # the inner block did not commit the outer's insert
    with transaction(database) as again:
        assert again is outer


def test_each_thread_has_its_own_connection_closed_when_the_thread_ends(database: Path) -> None:
    with transaction(database) as mine:
        pass
    theirs: list[sqlite3.Connection] = []

    def work() -> None:
        with transaction(database) as db:
            db.execute("INSERT INTO rows VALUES ('thread')")
            theirs.append(db)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    assert values(database) == ["thread"]
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        theirs[0].execute("SELECT 1")


def test_a_file_made_again_at_the_same_path_is_the_one_written(database: Path) -> None:
    with transaction(database) as db:
        db.execute("INSERT INTO rows VALUES ('old')")
    shutil.rmtree(database.parent)  # a state dir removed and made again
    database.parent.mkdir()
    with transaction(database) as db:
        db.execute("CREATE TABLE rows (value TEXT)")
        db.execute("INSERT INTO rows VALUES ('new')")
    assert values(database) == ["new"]


def test_a_forked_child_opens_its_own_connection(database: Path) -> None:
    with transaction(database) as parents:
        parents.execute("INSERT INTO rows VALUES ('parent')")
    pid = os.fork()
    if pid == 0:  # the child: exit at once, whatever happens, with a status to check
        status = 1
        try:
            with transaction(database) as childs:
                status = 2 if childs is parents else 0
                childs.execute("INSERT INTO rows VALUES ('child')")
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with transaction(database) as db:
        assert db is parents  # still the parent's, and usable
        db.execute("INSERT INTO rows VALUES ('parent again')")
    assert values(database) == ["parent", "child", "parent again"]


def test_a_thread_keeps_connections_to_its_most_recently_used_files_only(tmp_path: Path) -> None:
    paths = [tmp_path / f"state-{index}.sqlite3" for index in range(KEPT_PER_THREAD + 2)]
    made: list[sqlite3.Connection] = []
    for path in paths:
        with transaction(path) as db:
            made.append(db)
    with transaction(paths[2]) as db:  # used again: now the most recent
        assert db is made[2]
    with transaction(paths[-1]) as db:
        assert db is made[-1]
    for closed in made[:2]:  # the two used longest ago
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            closed.execute("SELECT 1")
    for kept in made[2:]:
        kept.execute("SELECT 1")
