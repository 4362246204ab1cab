"""The pytest plugin (entry point ``pytest11``: active wherever the package is installed).

    emulator       (test)     an EmulatorRunner: ``emulator.run(request=None, **flags)``
    emulator_s3    (session)  an S3Store: the embedded S3 store of `emulator serve --s3`

Without a Docker engine every test using them is skipped with one reason, or, given
``--emulator-require-engine`` (what CI passes, so that a missing engine cannot pass
silently), errors with it. Nothing heavy is imported until a fixture is used: this module is
loaded by every pytest run of the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from emulator.testing.runner import EmulatorRunner
    from emulator.testing.s3 import S3Store

REQUIRE_ENGINE = "--emulator-require-engine"
FIXTURES = {"emulator", "emulator_s3"}
_engine_answers: dict[str, str | None] = {}  # DOCKER_HOST -> why no job runs (None: it answers)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("emulator", "SageMaker training emulator")
    group.addoption(
        REQUIRE_ENGINE,
        action="store_true",
        default=False,
        help=(
            "Make tests using the emulator fixtures error, not skip, when no Docker engine "
            "answers (for CI)."
        ),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without an engine, the tests using the fixtures are marked skipped at once: pytest's
    summary then gives the reason once per file, not once per test."""
    users = [item for item in items if FIXTURES & set(getattr(item, "fixturenames", ()))]
    if not users or config.getoption(REQUIRE_ENGINE):
        return  # with the option, each test errors in its fixture, with the same reason
    reason = no_engine_reason()
    if reason is not None:
        for item in users:
            item.add_marker(pytest.mark.skip(reason=reason))


def no_engine_reason() -> str | None:
    """Why no job can run here (None: the engine answers); asked once per DOCKER_HOST."""
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if where not in _engine_answers:
        from emulator.api import check_engine
        from emulator.errors import EmulatorError

        try:
            check_engine()
            _engine_answers[where] = None
        except EmulatorError as exc:
            problem = str(exc)
            if problem.startswith("No Docker engine answers"):
                problem = f"nothing answers at {where}"
            _engine_answers[where] = (
                f"no Docker engine: start one (make engine) or point DOCKER_HOST at one ({problem})"
            )
    return _engine_answers[where]


def require_engine(config: pytest.Config) -> None:
    """Skip the test (or fail it, with ``--emulator-require-engine``) without an engine."""
    reason = no_engine_reason()
    if reason is None:
        return
    if config.getoption(REQUIRE_ENGINE):
        pytest.fail(f"{reason} [{REQUIRE_ENGINE}]", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(name="emulator")
def emulator_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> EmulatorRunner:
    """Runs jobs as `emulator run` does: ``emulator.run(request=None, **flags) -> JobResult``,
    in a state dir and output dir of the test's own (with ``emulator_s3``: on that store)."""
    require_engine(request.config)
    from emulator.testing.runner import EmulatorRunner, JobNames

    store = (
        request.getfixturevalue("emulator_s3") if "emulator_s3" in request.fixturenames else None
    )
    return EmulatorRunner(
        home=tmp_path / "emulator-home",
        output=tmp_path / "emulator-output",
        names=JobNames(request.node.nodeid, request.node.name),
        s3=store,
    )


@pytest.fixture(scope="session")
def emulator_s3(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Store]:
    """The embedded S3 store (SeaweedFS) of `emulator serve --s3`, for the whole session:
    ``bucket(name)``, ``put(uri, bytes | path)``, ``get(uri)``; the jobs of the ``emulator``
    fixture in a test using it read and write this store."""
    require_engine(request.config)
    from emulator.errors import EmulatorError
    from emulator.testing.s3 import S3Store

    store = S3Store(tmp_path_factory.mktemp("emulator-s3"))
    try:
        store.start()
    except EmulatorError as exc:  # weed missing, not starting: what to do, no traceback
        pytest.fail(f"emulator_s3: {exc}", pytrace=False)
    try:
        yield store
    finally:
        store.stop()
