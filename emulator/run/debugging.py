"""``--shell`` and ``--publish``: what they change in a job (algo-1's container only).

--shell   algo-1's container runs ``SHELL`` (bash when the image has it, else sh) instead of
          the job's command, with stdin open (a TTY when the user's stdin is one), started on
          the user's terminal by the docker CLI (engine/terminal.py). Everything else is the
          job's: staged channels, FIFOs, config files, environment, network, limits; the
          shell's exit code is algo-1's, so the job ends Completed (0) or Failed as any job.
          The command that would have run is given first, shell-quoted, as a notice.
--publish algo-1's container ports on 127.0.0.1 only, never another address; a port the
          engine picks is given as a notice once the container has started. Refused with
          network isolation: SageMaker's isolated container has no network at all, and a
          port reachable from outside, even on loopback only, would be a way around that.
"""

from __future__ import annotations

import errno
import os
import shlex
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial

from emulator.engine import Container, ContainerPlan, DockerEngine
from emulator.errors import EmulatorError, EnvironmentProblem
from emulator.request.spec import JobSpec
from emulator.run.options import RunOptions

# The engine's debug, kept-container and terminal modules are imported only by a job that is
# debugged: a plain job starts without them.

SHELL_HOST = "algo-1"


def check_debugging(spec: JobSpec, options: RunOptions) -> None:
    """Refuse, before anything exists, what --shell and --publish cannot do."""
    if options.shell and not _has_stdin():
        raise EmulatorError(
            "--shell needs a stdin (a terminal, or commands piped in): this process has none"
        )
    if not options.publish:
        return
    if spec.network_isolation:
        raise EmulatorError(
            "--publish cannot be used with EnableNetworkIsolation: an isolated container has "
            "no network in SageMaker, and a published port would be a way around that; run "
            "the job without isolation to debug it over a port"
        )
    containers = [port.container_port for port in options.publish]
    hosts = [port.host_port for port in options.publish if port.host_port is not None]
    for kind, ports in (("container", containers), ("host", hosts)):
        repeated = sorted({port for port in ports if ports.count(port) > 1})
        if repeated:
            raise EmulatorError(f"--publish names {kind} port {repeated[0]} twice")
    if _local_engine():
        for port in hosts:
            _check_free(port)


def debug_plans(
    engine: DockerEngine, plans: Sequence[tuple[ContainerPlan, str]], options: RunOptions
) -> list[tuple[ContainerPlan, str]]:
    """The plans with algo-1's changed for --shell and --publish; for --shell the command
    that would have run is given as a notice."""
    if not (options.shell or options.publish):
        return list(plans)
    from emulator.engine.debug import image_command
    from emulator.engine.terminal import stdin_is_terminal

    changed = []
    for plan, name in plans:
        if plan.host == SHELL_HOST:
            if options.shell:
                shown = shlex.join(would_run(plan, partial(image_command, engine, plan.image)))
                options.notice(
                    f"{plan.host} starts a shell instead of the job's command, which would be:"
                    f"\n  {shown}\nThe job ends when the shell exits, with its exit status."
                    + _other_hosts(plans, plan.job)
                )
            plan = debug_plan(plan, options, tty=stdin_is_terminal())
        changed.append((plan, name))
    return changed


def debug_plan(plan: ContainerPlan, options: RunOptions, *, tty: bool) -> ContainerPlan:
    """``plan`` (algo-1's) with the shell and the published ports of ``options``: the shell
    is the post-mortem shell's (`emulator shell`): bash when the image has it, else sh, one
    `sh -c` with no probe container and no image inspection."""
    from emulator.engine.kept import SHELL_COMMAND

    ports = {port.container_port: port.host_port for port in options.publish}
    if options.shell:
        shell = SHELL_COMMAND
        return replace(plan, entrypoint=shell, command=[], ports=ports, interactive=True, tty=tty)
    return replace(plan, ports=ports)


def would_run(plan: ContainerPlan, image: Callable[[], tuple[list[str], list[str]]]) -> list[str]:
    """The process the job's container would run, as the engine composes it: the request's
    entrypoint, else the image's ENTRYPOINT; then the plan's command, else (when the request
    sets no entrypoint) the image's CMD. ``image`` gives the image's ENTRYPOINT and CMD (asked
    only when needed)."""
    if plan.entrypoint is not None and plan.command is not None:
        return [*plan.entrypoint, *plan.command]
    image_entrypoint, image_cmd = image()
    if plan.entrypoint is not None:  # an entrypoint set clears the image's CMD
        return list(plan.entrypoint)
    return [*image_entrypoint, *(plan.command if plan.command is not None else image_cmd)]


def announce_ports(containers: Sequence[Container], options: RunOptions) -> None:
    """Once the hosts have started: where each published port of algo-1 is reached."""
    if not options.publish:
        return
    from emulator.engine.debug import published

    for container in containers:
        if container.host == SHELL_HOST and container.exited() is None:
            for port in published(container):
                options.notice(str(port))


def _other_hosts(plans: Sequence[tuple[ContainerPlan, str]], job: str) -> str:
    if len(plans) == 1:
        return ""
    return f" The other hosts' lines: `emulator logs {job} --follow`."


def _has_stdin() -> bool:
    stream = sys.stdin
    if stream is None or stream.closed:
        return False
    try:
        os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return True


def _local_engine() -> bool:
    """Whether the engine's 127.0.0.1 is this machine's (a unix socket)."""
    where = os.environ.get("DOCKER_HOST", "")
    return where == "" or where.startswith("unix://")


def _check_free(port: int) -> None:
    """A host port already taken on 127.0.0.1 is refused now, not when algo-1 starts."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the engine binds
        probe.bind(("127.0.0.1", port))
    except OSError as error:
        # Only a port in use: a privileged port refused to this user is the engine's to bind.
        if error.errno == errno.EADDRINUSE:
            raise EnvironmentProblem(
                f"--publish: port {port} of 127.0.0.1 is taken; choose "
                "another HOST_PORT, or give only the container port to have a free one chosen"
            ) from None
    finally:
        probe.close()
