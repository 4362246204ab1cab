"""The process guard of the embedded S3 store (s3store.py): weed must never outlive the
emulator, and what it leaves outside the state dir goes with it.

    die_with_parent   preexec: PR_SET_PDEATHSIG = SIGKILL, checked against a parent already gone
    kill_orphan       a start kills the weed an earlier run left (its pid file, its command line)
    signal_group      weed leads a session of its own: signal its whole group
    remove_sockets    weed's unix sockets (always in /tmp for gRPC, named by port)
    free_port         a port free on every address weed will listen on
    bind_one_port     sockets bound to one free port on several addresses (the relay's)
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator.errors import EnvironmentProblem

PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A preexec function: the kernel SIGKILLs the child when its parent (thread) dies."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: do not start at all
            os._exit(1)

    return preexec


def kill_orphan(pid_file: Path, marker: str) -> None:
    """Kill the process ``pid_file`` names when its command line has the argument ``marker``
    (not a pid reused by another process since), and remove the sockets the file lists."""
    try:
        record: dict[str, Any] = json.loads(pid_file.read_text())
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        arguments = []
    if marker.encode() in arguments:
        signal_group(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    ports = [int(port) for port in record.get("grpc_ports") or []]
    sockets = record.get("sockets")
    remove_sockets(ports, Path(sockets) if sockets else None)
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, waiting for its parent to reap it, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def signal_group(pid: int, signum: int) -> None:
    """Signal weed's process group (weed leads its own session); gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def remove_sockets(grpc_ports: list[int], socket_dir: Path | None) -> None:
    """weed always puts its gRPC unix sockets in /tmp, named by port; the others were in
    ``socket_dir``."""
    for port in grpc_ports:
        for path in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
            path.unlink(missing_ok=True)
    if socket_dir is not None:
        shutil.rmtree(socket_dir, ignore_errors=True)


def free_port(address: str, *also: str) -> int:
    """A TCP port free on ``address`` and on every address of ``also``. Raises
    EnvironmentProblem when ``address`` is not an address of this machine."""
    bound = bind_one_port(address, *also)
    port: int = bound[0].getsockname()[1]
    for sock in bound:
        sock.close()
    return port


def bind_one_port(address: str, *also: str) -> list[socket.socket]:
    """TCP sockets bound (not listening yet) to one free port on ``address`` and on every
    address of ``also``, in that order. Raises EnvironmentProblem when ``address`` is not an
    address of this machine."""
    for _ in range(50):
        first = socket.socket()
        try:
            first.bind((address, 0))
        except OSError as exc:
            first.close()
            raise EnvironmentProblem(
                f"Cannot listen on {address} ({exc.strerror}): the embedded S3 store "
                "listens on the Docker bridge's gateway address, which must be an address "
                "of this machine (a local, rootful engine); with another engine use your "
                "own S3 (--s3-endpoint-url) instead of --s3"
            ) from exc
        bound = [first]
        try:
            for other in also:
                bound.append(socket.socket())
                bound[-1].bind((other, first.getsockname()[1]))
        except OSError:
            for sock in bound:
                sock.close()
            continue
        return bound
    raise EnvironmentProblem(f"No free TCP port found on {address} and {', '.join(also)}")
