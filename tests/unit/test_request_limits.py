"""Requests the API's model lets through but that could not run, or not even be read: channel
names "." and ".." (the data directory itself, or its parent) and requests nested a thousand
levels deep. The library refuses them as invalid requests, and so do `emulator validate` and
`emulator run`: exit 2 with the problem, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from emulator.errors import RequestInvalid
from emulator.request.build import Overrides, build_request
from emulator.request.nesting import MAX_DEPTH
from emulator.request.schema import Node, schema
from emulator.request.validation import parse_request, validate_request
from tests.fixtures.cli import EMULATOR

MINIMAL = Path(__file__).parents[1] / "data" / "requests" / "minimal.json"
DOT = (
    'InputDataConfig[0].ChannelName: "." cannot name a channel: its directory '
    "/opt/ml/input/data/. would be the data directory itself (/opt/ml/input/data); use another "
    'name, such as "train"'
)
DOT_DOT = (
    'InputDataConfig[1].ChannelName: ".." cannot name a channel: its directory '
    "/opt/ml/input/data/.. would be the data directory's parent (/opt/ml/input); use another "
    'name, such as "train"'
)
TOO_DEEP = (
    "nested deeper than 32 levels (no member of a CreateTrainingJob request nests that deep); "
    "remove the deeply nested value"
)


def minimal() -> dict[str, Any]:
    request: dict[str, Any] = json.loads(MINIMAL.read_text())
    return request


def nested(levels: int) -> list[Any]:
    """A list holding a list ... ``levels`` lists in all."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def nested_key(levels: int) -> tuple[Any, ...]:
    """A tuple holding a tuple ... (a dict key Python would copy level by level)."""
    value: tuple[Any, ...] = ()
    for _ in range(levels - 1):
        value = (value,)
    return value


def emulator(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EMULATOR, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "EMULATOR_HOME": str(cwd / "home")},
        timeout=120,
    )


def assert_refused(process: subprocess.CompletedProcess[str], *problems: str) -> None:
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    for problem in problems:
        assert f"  - {problem}\n" in process.stderr


# -- channel names "." and ".." --------------------------------------------------------------


def with_dot_channels(mode: str) -> dict[str, Any]:
    request = minimal()
    channel = request["InputDataConfig"][0]
    request["InputDataConfig"] = [{**channel, "ChannelName": name} for name in (".", "..")]
    request["AlgorithmSpecification"]["TrainingInputMode"] = mode
    return request


@pytest.mark.parametrize("mode", ["File", "Pipe", "FastFile"])
def test_channel_names_dot_and_dot_dot_are_refused_in_every_mode(mode: str) -> None:
    request = with_dot_channels(mode)
    assert validate_request(request) == [DOT, DOT_DOT]
    with pytest.raises(RequestInvalid) as caught:
        parse_request(request)
    assert caught.value.problems == [DOT, DOT_DOT]


@pytest.mark.parametrize("mode", ["File", "Pipe", "FastFile"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_the_cli_refuses_channel_names_dot_and_dot_dot(
    tmp_path: Path, command: str, mode: str
) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "a.txt").write_text("a")
    path = tmp_path / "request.json"
    path.write_text(json.dumps(with_dot_channels(mode)))
    assert_refused(emulator(command, str(path), cwd=tmp_path), DOT, DOT_DOT)


def test_a_channel_flag_named_dot_dot_is_refused(tmp_path: Path) -> None:
    flags = Overrides(image="busybox-emu:latest", channels=[("..", str(tmp_path))])
    request = build_request(None, flags, str(tmp_path / "output"))
    assert validate_request(request) == [DOT_DOT.replace("[1]", "[0]")]


# -- nesting ---------------------------------------------------------------------------------


def shape_depth(node: Node, path: tuple[str, ...] = ()) -> int:
    """Levels of objects and lists under ``node`` (itself included); a cycle fails the test."""
    assert node.name not in path, f"the model's {node.name} shape holds itself"
    children = [n for n in (*node.members.values(), node.member, node.value) if n is not None]
    own = 1 if node.kind in ("structure", "list", "map") else 0
    return own + max((shape_depth(child, (*path, node.name)) for child in children), default=0)


def test_the_api_shapes_nest_far_less_deep_than_the_limit() -> None:
    # So a request past the limit cannot be valid, whatever it holds.
    assert shape_depth(schema()) * 4 <= MAX_DEPTH


DEEP = [
    pytest.param({"HyperParameters": {"x": nested(1000)}}, "HyperParameters", id="hp"),
    pytest.param({"Junk": nested(100_000)}, "Junk", id="unknown-key"),
    pytest.param({"odd key": nested(MAX_DEPTH)}, '["odd key"]', id="just-past"),
    pytest.param(
        {"InputDataConfig": [{"ChannelName": "train", "DataSource": nested(1000)}]},
        "InputDataConfig",
        id="channel",
    ),
    pytest.param({"InputDataConfig": nested(1000)}, "InputDataConfig", id="channel-items"),
    pytest.param({"HyperParameters": {nested_key(40): "v"}}, "HyperParameters", id="key"),
]


@pytest.mark.parametrize(("members", "path"), DEEP)
def test_a_request_nested_too_deep_is_refused_naming_the_member(
    members: dict[str, Any], path: str
) -> None:
    request = {**minimal(), **members}
    assert validate_request(request) == [f"{path}: {TOO_DEEP}"]
    with pytest.raises(RequestInvalid) as caught:
        parse_request(request)
    assert caught.value.problems == [f"{path}: {TOO_DEEP}"]
    with pytest.raises(RequestInvalid) as caught:
        build_request(request, Overrides(), "/tmp/output")  # before it copies the request
    assert caught.value.problems == [f"{path}: {TOO_DEEP}"]


def test_a_request_that_is_a_deep_list_is_refused_as_the_request() -> None:
    assert validate_request(nested(5000)) == [f"request: {TOO_DEEP}"]


def test_a_request_nested_up_to_the_limit_is_walked_as_usual() -> None:
    request = {**minimal(), "HyperParameters": {"x": nested(MAX_DEPTH - 2)}}
    assert validate_request(request) == ["HyperParameters.x: must be a string (got list of 1 item)"]


def test_shared_and_cyclic_values_are_measured_in_bounded_time() -> None:
    shared: list[Any] = []
    for _ in range(MAX_DEPTH - 2):
        shared = [shared, shared]  # 2**30 paths, 30 lists
    request = {**minimal(), "Tags": shared}
    assert validate_request(request)[0].startswith("Tags[0]: must be an object")
    cyclic: dict[str, Any] = {}
    cyclic["a"] = cyclic["b"] = cyclic
    assert validate_request({**minimal(), "Environment": cyclic}) == [f"Environment: {TOO_DEEP}"]


@pytest.mark.parametrize("levels", [500, 1000, 100_000])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_the_cli_refuses_a_deep_request_without_a_traceback(
    tmp_path: Path, command: str, levels: int
) -> None:
    # 500 levels load as JSON (then copying them would overflow); 1000 do not even load.
    path = tmp_path / "request.json"
    deep = "[" * levels + "]" * levels
    path.write_text(json.dumps(minimal())[:-1] + f', "HyperParameters": {{"x": {deep}}}}}')
    where = "HyperParameters" if levels == 500 else f"(request file {path})"
    assert_refused(emulator(command, str(path), cwd=tmp_path), f"{where}: {TOO_DEEP}")
