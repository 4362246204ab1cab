"""The pytest plugin's job names (emulator/testing/runner.py): valid TrainingJobNames that never
clash between tests, xdist workers or runs; and its exit codes are `emulator run`'s."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator import validate
from emulator.cli.main import EXIT_FOR_STATUS
from emulator.testing.runner import EXIT_FOR_STATUS as PLUGIN_EXIT_FOR_STATUS
from emulator.testing.runner import JobNames
from tests.fixtures.jobs import probe_request

LONG_TEST = "tests/test_x.py::test_" + "a_very_long_name_" * 10 + "[File-ml.p3.16xlarge-2]"


def test_names_are_valid_and_differ_per_test_worker_and_job(tmp_path: Path) -> None:
    names = [
        JobNames(LONG_TEST, LONG_TEST.rsplit("::", 1)[1], "gw0").next(),
        JobNames(LONG_TEST, LONG_TEST.rsplit("::", 1)[1], "gw1").next(),
        JobNames("tests/test_x.py::test_b", "test_b", "gw0").next(),
        JobNames("tests/test_x.py::test_c", "[]!", "gw12345678901").next(),
    ]
    several = JobNames("tests/test_x.py::test_d", "test_d")
    names += [several.next() for _ in range(3)]
    assert len(set(names)) == len(names)
    for name in names:
        assert len(name) <= 63
        assert validate(probe_request(tmp_path, TrainingJobName=name)) == [], name
    assert names[-3:] == [f"{names[-3][:-2]}-{n}" for n in (1, 2, 3)]


def test_the_worker_id_comes_from_xdist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    on_gw3 = JobNames("t::test_a", "test_a").next()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw4")
    assert JobNames("t::test_a", "test_a").next() != on_gw3
    assert "-gw3" in on_gw3


def test_exit_codes_are_emulator_runs() -> None:
    assert PLUGIN_EXIT_FOR_STATUS == EXIT_FOR_STATUS
