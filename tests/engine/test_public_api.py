"""The public surface: ``emulator.__all__`` is a deliberate list, and ``emulator.api``'s verbs
are the CLI's twins (describe, list, stop, prune, logs without an engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator import api
from emulator.state.store import JobStore
from tests.fixtures.store_records import record_of


@pytest.mark.docker
def test_prune_removes_nothing_of_a_live_emulator(state_home: Path) -> None:
    store = JobStore(state_home)
    store.create(record_of("alive"))
    assert not any("alive" in line for line in api.prune(home=state_home))
    assert api.describe("alive", home=state_home)["TrainingJobStatus"] == "InProgress"
