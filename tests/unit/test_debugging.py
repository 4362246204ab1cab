"""--publish/--shell planning, `emulator logs --follow` on real files, `exec`/`logs` argument
handling (no engine: DOCKER_HOST points at nothing)."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from emulator import api
from emulator.cli.flags import published_ports
from emulator.engine import ContainerPlan
from emulator.engine.client import port_bindings
from emulator.engine.kept import SHELL_COMMAND as SHELL
from emulator.errors import EmulatorError, EnvironmentProblem
from emulator.observe.follow import follow_logs
from emulator.request.validation import parse_request
from emulator.run.debugging import check_debugging, debug_plan, would_run
from emulator.run.options import PublishedPort, RunOptions
from emulator.state.store import JobStore
from tests.fixtures.cli_runner import Cli
from tests.fixtures.jobs import probe_request
from tests.fixtures.store_records import record_of


def plan(**members: object) -> ContainerPlan:
    fields: dict[str, object] = {
        "job": "j",
        "host": "algo-1",
        "image": "img",
        "network": "bridge",
        "entrypoint": None,
        "command": ["train"],
        "environment": {},
        "mounts": [],
    }
    return ContainerPlan(**{**fields, **members})  # type: ignore[arg-type]


# -- --publish -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("5678",), (PublishedPort(5678),)),
        (("8080:6006",), (PublishedPort(6006, 8080),)),
        (("1:65535", "22"), (PublishedPort(65535, 1), PublishedPort(22))),
        ((":80",), (PublishedPort(80),)),  # as Docker's -p: no host port, a free one
    ],
)
def test_publish_values_parse_in_dockers_order(
    values: tuple[str, ...], expected: tuple[PublishedPort, ...]
) -> None:
    assert published_ports(values) == expected


@pytest.mark.parametrize("value", ["0", "65536", "x", "8080:", "a:80", "1:2:3", "-5", ""])
def test_bad_publish_values_are_refused_with_the_expected_form(value: str) -> None:
    with pytest.raises(click.BadParameter, match=r"\[HOST_PORT:\]CONTAINER_PORT"):
        published_ports((value,))


def test_ports_are_bound_on_loopback_only() -> None:
    assert port_bindings({5678: None, 6006: 8080}) == {
        5678: ("127.0.0.1",),
        6006: ("127.0.0.1", 8080),
    }


def spec(**members: object) -> object:
    return parse_request(probe_request(Path("/tmp/out"), **members))


def test_publish_with_network_isolation_is_refused() -> None:
    isolated = spec(EnableNetworkIsolation=True)
    with pytest.raises(EmulatorError, match="EnableNetworkIsolation"):
        check_debugging(isolated, RunOptions(publish=(PublishedPort(5678),)))  # type: ignore[arg-type]
    check_debugging(isolated, RunOptions())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ports", "named"),
    [
        ((PublishedPort(80), PublishedPort(80, 9000)), "container port 80 twice"),
        ((PublishedPort(80, 9000), PublishedPort(81, 9000)), "host port 9000 twice"),
    ],
)
def test_a_port_named_twice_is_refused(ports: tuple[PublishedPort, ...], named: str) -> None:
    with pytest.raises(EmulatorError, match=named):
        check_debugging(spec(), RunOptions(publish=ports))  # type: ignore[arg-type]


def test_a_taken_host_port_is_refused_before_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)  # the engine's 127.0.0.1 is ours
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EnvironmentProblem, match=f"port {port} of 127.0.0.1 is taken"):
            check_debugging(spec(), RunOptions(publish=(PublishedPort(80, port),)))  # type: ignore[arg-type]
    check_debugging(spec(), RunOptions(publish=(PublishedPort(80, port),)))  # type: ignore[arg-type]


def test_publish_goes_to_the_plan_and_shell_replaces_the_command() -> None:
    options = RunOptions(publish=(PublishedPort(5678), PublishedPort(6006, 16006)))
    published = debug_plan(plan(), options, tty=False)
    assert published.ports == {5678: None, 6006: 16006}
    assert (published.entrypoint, published.command, published.interactive) == (
        None,
        ["train"],
        False,
    )
    shell = debug_plan(plan(), RunOptions(shell=True), tty=True)
    assert (shell.entrypoint, shell.command, shell.interactive, shell.tty) == (
        SHELL,
        [],
        True,
        True,
    )


# -- --shell: the command that would have run ---------------------------------------------


WOULD_RUN = [
    # no entrypoint in the request: the image's ENTRYPOINT, then `train`
    (None, ["train"], (["/usr/bin/tini", "--"], ["x"]), "/usr/bin/tini -- train"),
    # an entrypoint with arguments: exactly those (the image is not asked)
    (["python", "-c"], ["print('a b')"], None, "python -c 'print('\"'\"'a b'\"'\"')'"),
    # an entrypoint alone clears the image's CMD
    (["sh", "run me.sh"], None, ([], ["ignored"]), "sh 'run me.sh'"),
    # arguments alone follow the image's ENTRYPOINT
    (None, ["--epochs", "3"], (["python", "t.py"], []), "python t.py --epochs 3"),
    # neither, an image without ENTRYPOINT: its CMD
    (None, None, ([], ["bash", "go"]), "bash go"),
]


@pytest.mark.parametrize(("entrypoint", "command", "image_config", "expected"), WOULD_RUN)
def test_the_command_that_would_run_is_shell_quoted(
    entrypoint: list[str] | None,
    command: list[str] | None,
    image_config: tuple[list[str], list[str]] | None,
    expected: str,
) -> None:
    def config() -> tuple[list[str], list[str]]:
        assert image_config is not None, "the image was asked for though the plan says all"
        return image_config

    words = would_run(plan(entrypoint=entrypoint, command=command), config)
    assert shlex.join(words) == expected
    assert shlex.split(expected) == words


def test_shell_and_json_are_refused(cli: Cli) -> None:
    result = cli("run", "--image", "img", "--shell", "--json")
    assert result.exit_code == 2
    assert "--shell and --json do not go together" in result.output


# -- logs --follow on real files ----------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(tmp_path / "state")


def write_slowly(path: Path, lines: list[str], pause: float, tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab", buffering=0) as file:
        for line in lines:
            file.write(line.encode() + b"\n")
            time.sleep(pause)
        file.write(tail.encode())


def test_follow_gives_every_line_as_hosts_write_them(store: JobStore) -> None:
    done = threading.Event()
    writers = [
        threading.Thread(
            target=write_slowly,
            args=(store.log_path("j", host), [f"{host} {i}" for i in range(20)], 0.02),
            kwargs={"tail": f"{host} no newline" if host == "algo-2" else ""},
        )
        for host in ("algo-1", "algo-2")
    ]
    for writer in writers:
        writer.start()

    def running() -> bool:
        return not done.is_set()

    def finish() -> None:
        for writer in writers:
            writer.join()
        done.set()

    threading.Thread(target=finish).start()
    seen: list[tuple[float, str]] = []
    started = time.monotonic()
    for line in follow_logs(
        store, "j", ["algo-1", "algo-2"], prefix=True, running=running, poll_seconds=0.01
    ):
        seen.append((time.monotonic() - started, line))
    lines = [line for _, line in seen]
    for host in ("algo-1", "algo-2"):
        mine = [line for line in lines if line.startswith(f"[{host}] ")]
        expected = [f"[{host}] {host} {i}" for i in range(20)]
        assert mine == expected + (["[algo-2] algo-2 no newline"] if host == "algo-2" else [])
    # interleaved as they came: algo-2's first line is not held back until algo-1 is done
    assert lines.index("[algo-2] algo-2 0") < lines.index("[algo-1] algo-1 19")
    assert seen[0][0] < seen[-1][0] - 0.2  # given while written, not all at the end


def test_follow_of_a_host_not_started_yet_waits_for_its_file(store: JobStore) -> None:
    calls = iter([True, True, False])
    path = store.log_path("j", "algo-1")
    lines = follow_logs(
        store, "j", ["algo-1"], prefix=False, running=lambda: next(calls), poll_seconds=0.01
    )
    write_slowly(path, ["late"], 0)
    assert list(lines) == ["late"]


def iter_all(lines: Iterator[str]) -> list[str]:
    return list(lines)


def test_logs_of_a_finished_job_follow_to_the_end_at_once(tmp_path: Path) -> None:
    home = tmp_path / "state"
    store = JobStore(home)
    record = record_of(
        "two",
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
    )
    record["TrainingJobStatus"] = "Completed"
    store.create(record)
    write_slowly(store.log_path("two", "algo-1"), ["a"], 0)
    started = time.monotonic()
    assert iter_all(api.logs("two", follow=True, home=home)) == ["[algo-1] a"]
    assert time.monotonic() - started < 1.0
    assert iter_all(api.logs("two", host="algo-2", follow=True, home=home)) == []
    with pytest.raises(EmulatorError, match="has no host 'algo-3'"):
        iter_all(api.logs("two", host="algo-3", follow=True, home=home))


def test_follow_of_a_job_whose_emulator_is_gone_ends(tmp_path: Path) -> None:
    home = tmp_path / "state"
    store = JobStore(home)
    # Registered InProgress by a process that is gone, as a crashed emulator leaves it.
    code = (
        "import json, sys, pathlib; from emulator.state.store import JobStore; "
        "JobStore(pathlib.Path(sys.argv[1])).create(json.loads(sys.argv[2]))"
    )
    record = json.dumps(record_of("orphan"))
    subprocess.run([sys.executable, "-c", code, str(home), record], check=True)
    assert store.get("orphan")["TrainingJobStatus"] == "InProgress"
    write_slowly(store.log_path("orphan", "algo-1"), ["x"], 0)
    assert iter_all(api.logs("orphan", follow=True, home=home)) == ["x"]


# -- the commands --------------------------------------------------------------------------


def test_logs_and_exec_of_an_unknown_job_exit_2(cli: Cli) -> None:
    for args in (["logs", "nope", "--follow"], ["exec", "nope", "--", "true"]):
        result = cli(*args)
        assert result.exit_code == 2, args
        assert "No training job named 'nope'" in result.output


def test_exec_needs_a_command(cli: Cli) -> None:
    result = cli("exec", "job")
    assert result.exit_code == 2
    assert "COMMAND" in result.output


def test_exec_of_a_finished_job_is_refused_before_the_engine(cli: Cli) -> None:
    store = JobStore(cli.home)
    record = record_of("done")
    record["TrainingJobStatus"] = "Failed"
    store.create(record)
    result = cli("exec", "done", "--host", "algo-1", "--", "ls", "-la")
    assert result.exit_code == 2
    assert "'done' is not running (status Failed)" in result.output
    result = cli("exec", "done", "--host", "algo-2", "--", "ls")
    assert result.exit_code == 2
    assert "has no host 'algo-2'" in result.output


def test_exec_passes_options_after_the_separator_to_the_command(cli: Cli) -> None:
    """`--host` after `--` belongs to the command: the job is refused, not the option."""
    result = cli("exec", "nope", "--", "ls", "--host", "-la")
    assert result.exit_code == 2
    assert "No training job named 'nope'" in result.output
