"""The compiled CreateTrainingJob schema is kept in the cache dir: the same tree as compiling
botocore's model, rebuilt when the file is unreadable, never required (a read-only cache dir
only costs time)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.request import schema
from emulator.request.validation import validate_request
from tests.fixtures.jobs import probe_request


def shape_of(node: schema.Node, seen: set[str] | None = None) -> object:
    """A comparable form of a Node tree (recursive shapes once)."""
    seen = set() if seen is None else seen
    if node.name in seen:
        return node.name
    seen.add(node.name)
    children = {key: shape_of(child, seen) for key, child in node.members.items()}
    for key in ("member", "key", "value"):
        child = getattr(node, key)
        children[f"<{key}>"] = shape_of(child, seen) if child is not None else None
    fields = (node.kind, node.name, node.min, node.max, node.enum, node.pattern, node.required)
    return (fields, children)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("EMULATOR_CACHE", str(tmp_path / "cache"))
    schema.schema.cache_clear()
    yield tmp_path / "cache"
    schema.schema.cache_clear()


def test_the_cached_schema_is_the_compiled_one(cache: Path) -> None:
    first = schema.schema()  # compiled from botocore, then written
    files = list(cache.glob("create-training-job-schema-*.json"))
    assert len(files) == 1
    schema.schema.cache_clear()
    second = schema.schema()  # read back
    assert second is not first
    assert shape_of(second) == shape_of(first)
    assert validate_request(probe_request(Path("/tmp/out"))) == []


def test_a_warm_cache_is_read_without_importing_botocore(cache: Path) -> None:
    """botocore (and the logging it imports) costs every `emulator run` 4 ms to start."""
    schema.schema()
    code = (
        "import sys\n"
        "from emulator.request import schema\n"
        "assert schema.schema().name == 'CreateTrainingJobRequest'\n"
        "print(sorted({'botocore', 'logging'} & set(sys.modules)))\n"
    )
    env = {**os.environ, "EMULATOR_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_another_botocore_gets_a_cache_file_of_its_own(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema.schema()
    monkeypatch.setattr(schema, "_botocore_installed", lambda: "botocore upgraded")
    schema.schema.cache_clear()
    schema.schema()
    assert len(list(cache.glob("create-training-job-schema-*.json"))) == 2


def test_an_unreadable_cache_file_is_rebuilt(cache: Path) -> None:
    schema.schema()
    (cached,) = cache.glob("create-training-job-schema-*.json")
    cached.write_text('{"root": "CreateTrainingJobRequest", "shapes": {')  # cut short
    schema.schema.cache_clear()
    assert schema.schema().name == "CreateTrainingJobRequest"
    assert cached.read_text().endswith("}")  # written whole again


def test_a_cache_dir_that_cannot_be_made_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("EMULATOR_CACHE", str(blocker / "cache"))
    schema.schema.cache_clear()
    try:
        assert schema.schema().name == "CreateTrainingJobRequest"
    finally:
        schema.schema.cache_clear()
