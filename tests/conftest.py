"""Shared test configuration: fixtures live in tests/fixtures/ and are registered here.

The suite has two tiers:

    tests/unit    no Docker engine (real FIFOs, FUSE mounts and S3 servers on 127.0.0.1 are
                  fine): `make test-fast`. The engine is out of reach there (DOCKER_HOST points
                  at a socket nothing serves), so a test that needs it fails at once.
    tests/engine  jobs on the real engine; every test is marked ``docker`` automatically.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.jobs",
    "tests.fixtures.s3",
    "tests.fixtures.nonroot",
    "tests.fixtures.cli_runner",
    "tests.fixtures.aws",
    "tests.fixtures.processes",
    "tests.fixtures.store_records",
    "tests.fixtures.user_home",
    "tests.fixtures.pipe",
    "tests.fixtures.api_server",
    "tests.fixtures.serve",
    "tests.fixtures.sdk",
]

TESTS = Path(__file__).parent
UNIT = TESTS / "unit"
ENGINE = TESTS / "engine"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path))
        if ENGINE in path.parents:
            item.add_marker(pytest.mark.docker)
        elif UNIT in path.parents and item.get_closest_marker("docker") is not None:
            raise pytest.UsageError(f"{item.nodeid} needs the engine: move it to tests/engine")


@pytest.fixture(autouse=True)
def _no_engine_for_unit_tests(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if UNIT in Path(str(request.node.path)).parents:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path_factory.getbasetemp()}/no-engine.sock")
