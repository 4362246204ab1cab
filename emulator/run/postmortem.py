"""A shell in a kept job's host, after the job ended (``emulator shell NAME [--host algo-N]``).

The shell runs in a NEW container of the job's image, made from what the kept container of
that host ran with (read back from the engine: its environment, user, working dir, limits,
GPUs) and the host's /opt/ml tree mounted from the kept work dir as the job had it. It starts
bash when the image has it, else sh, on the user's terminal (a TTY when stdin is one; piped
commands otherwise), and is removed when the shell exits; the exit status is the shell's.

What is not there any more: FastFile channels (their file systems ended with the job; a local
directory the job saw as it is is mounted again), the job's network (the other hosts are not
running: the shell gets the default bridge, or no network at all when the job had network
isolation), and the Pipe feeders (the FIFOs are there, nothing writes them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from emulator.engine import DockerEngine
from emulator.engine.kept import (
    HostSetup,
    KeptContainer,
    create_shell,
    host_setup,
    kept_containers,
    remove_shell,
)
from emulator.engine.terminal import run_interactive, stdin_is_terminal
from emulator.errors import EmulatorError
from emulator.run.kept import kept_work_dir
from emulator.state.store import JobStore


def open_shell(
    store: JobStore,
    name: str,
    host: str | None = None,
    notice: Callable[[str], None] | None = None,
) -> int:
    """Run an interactive shell in kept job ``name``'s ``host`` (default: its first host);
    return the shell's exit status. JobNotFound, NotKept (a job not run with --keep) or
    EmulatorError (no such host, a host still running) before anything is made."""
    say = notice or _to_stderr
    work_dir = kept_work_dir(store, name)
    isolated = bool(store.get(name).get("EnableNetworkIsolation"))
    engine = DockerEngine()
    try:
        kept = _host(kept_containers(engine, name), work_dir, name, host)
        setup = host_setup(engine, kept)
        mounts = _mounts(setup, work_dir, say)
        tty = stdin_is_terminal()
        shell = create_shell(engine, kept, setup, mounts, isolated=isolated, tty=tty)
        try:  # the container's TTY (or not) was chosen at its creation: no -t here
            return run_interactive(["start", "--attach", "--interactive", shell])
        finally:
            remove_shell(engine, shell)
    finally:
        engine.close()


def _host(
    containers: list[KeptContainer], work_dir: Path, name: str, host: str | None
) -> KeptContainer:
    """The kept container of ``host`` (default: the first host) of this run of ``name``."""
    ours = [c for c in containers if c.work_dir == work_dir]
    if not ours:
        raise EmulatorError(
            f"Training job {name!r} kept no container (it ended before they were made, or "
            f"they were removed from outside the emulator); its work dir is {work_dir}"
        )
    chosen = ours[0] if host is None else next((c for c in ours if c.host == host), None)
    if chosen is None:
        hosts = ", ".join(c.host for c in ours)
        raise EmulatorError(f"Training job {name!r} has no host {host!r} (it has {hosts})")
    if chosen.running:
        raise EmulatorError(
            f"{chosen.host} of training job {name!r} is still running: use `emulator exec "
            f"{name} --host {chosen.host} -- sh` to look inside it"
        )
    return chosen


def _mounts(
    setup: HostSetup, work_dir: Path, say: Callable[[str], None]
) -> list[tuple[str, Path, bool]]:
    """The kept container's bind mounts that still hold what the job saw: not the FastFile
    mount points of the work dir (their file systems ended with the job), nor sources gone."""
    fastfile = work_dir / "fastfile"
    mounts = []
    for target, source, read_only in setup.mounts:
        if source.is_relative_to(fastfile):
            say(
                f"{target} is not mounted: a FastFile channel, whose file system ended with the job"
            )
        elif not source.exists():
            say(f"{target} is not mounted: {source} is gone")
        else:
            mounts.append((target, source, read_only))
    return mounts


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)
