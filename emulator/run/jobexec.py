"""``emulator exec``: a command in a running job's host container, on the user's terminal.

The container is found by its labels (the job's name, the host, and the pid of the emulator
running the job, which the store knows: an earlier run of the same name, kept or not, is
never picked), then ``docker exec -i`` (``-t`` with a terminal) runs the command in it. Only
a running job's running host is a target: anything else is refused with a message saying
why (EmulatorError: the CLI's exit 2).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from emulator.engine import DockerEngine
from emulator.engine.debug import HostContainer, job_containers
from emulator.engine.terminal import run_interactive, terminal_flags
from emulator.errors import EmulatorError
from emulator.observe.follow import RUNNING_STATUSES, record_hosts
from emulator.state.store import JobStore, process_alive

DEFAULT_HOST = "algo-1"
# The job is Training from just before its containers start: a host not started yet is
# waited for this long (the hosts start at once, within a second or so).
START_SECONDS = 10.0


def exec_in_job(store: JobStore, name: str, command: Sequence[str], host: str | None) -> int:
    """Run ``command`` in ``host``'s (default algo-1) container of running job ``name``;
    return its exit status."""
    if not command:
        raise EmulatorError("give the command to run after `--` (e.g. -- ps aux)")
    record = store.get(name)
    host = host or DEFAULT_HOST
    hosts = record_hosts(store, name)
    if host not in hosts:
        raise EmulatorError(f"Training job {name!r} has no host {host!r} (it has {hosts})")
    status = record.get("TrainingJobStatus")
    owner = store.owner_pid(name)
    if status not in RUNNING_STATUSES:
        raise EmulatorError(
            f"Training job {name!r} is not running (status {status}): exec needs its running "
            "container (a job run with --keep can be inspected with `emulator shell`)"
        )
    if not process_alive(owner):
        raise EmulatorError(
            f"Training job {name!r} is not running: the emulator process running it (pid "
            f"{owner}) is gone; `emulator prune` records it Failed"
        )
    found = _host_container(name, owner, host)
    if not found:
        secondary = record.get("SecondaryStatus")
        raise EmulatorError(
            f"Training job {name!r} has no container for {host} yet (secondary status "
            f"{secondary}): its containers exist once it is Training"
        )
    if not found[0].running:
        state = "has not started yet" if found[0].status == "created" else "has exited"
        raise EmulatorError(
            f"{host} of training job {name!r} is not running (its container {state}): exec "
            "needs a running host"
        )
    return run_interactive(["exec", *terminal_flags(), found[0].id, *command])


def _host_container(name: str, owner: int, host: str) -> list[HostContainer]:
    """``host``'s container (a list of one, empty when there is none), waited for while it is
    created but not started yet."""
    engine = DockerEngine()
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            found = [c for c in job_containers(engine, name, owner) if c.host == host]
            if not found or found[0].status != "created" or time.monotonic() > deadline:
                return found
            time.sleep(0.1)
    finally:
        engine.close()
