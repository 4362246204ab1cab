"""Removing the containers and networks of emulator processes that are gone (``prune``).

Each resource carries the pid of the emulator that made it (``labels.py``); another live
emulator's resources (whatever its state dir) are left alone. Another prune running at the same
time is fine: what it is already removing is skipped. An engine that stops answering half-way
is an ``EnvironmentProblem`` like any other failed call.

Kept containers (``LABEL_KEPT``, a job run with --keep) are never removed here, their emulator
gone or not: one its dead emulator left running is killed (it stays, exited, for ``emulator
shell``); ``emulator rm`` and ``emulator prune --kept`` remove them (engine/kept.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from emulator.engine.client import EngineClient
from emulator.engine.errors import ANSWERED, GONE, Failure, Kind, engine_call
from emulator.engine.labels import LABEL_JOB, LABEL_KEPT, listed_name, owner_pid

NETWORK_REMOVAL_SECONDS = 15.0


def remove_orphans(api: EngineClient, owner_alive: Callable[[int], bool]) -> list[str]:
    """Remove the containers, then the networks, whose emulator is gone; returns what was
    removed."""

    def orphaned(info: Mapping[str, Any]) -> bool:
        pid = owner_pid(info.get("Labels") or {})
        return pid is None or not owner_alive(pid)

    # The low-level listings: the high-level ones inspect each item, which fails when
    # another prune removes it in between.
    filters: dict[str, Any] = {"label": LABEL_JOB}
    with engine_call("list its containers"):
        containers = api.containers(all=True, filters=filters)
    kept = [info for info in containers if LABEL_KEPT in (info.get("Labels") or {})]
    removed = [
        f"container {listed_name(info)}"
        for info in containers
        if info not in kept and orphaned(info) and _remove_container(api, info)
    ]
    removed += [
        f"process of the kept container {listed_name(info)} (its emulator was gone; the "
        "container stays)"
        for info in kept
        if orphaned(info) and info.get("State") in ("running", "paused") and _kill(api, info)
    ]
    with engine_call("list its networks"):
        networks = api.networks(filters=filters)
    removed += [
        f"network {listed_name(info)}"
        for info in networks
        if orphaned(info) and _remove_network(api, info)
    ]
    return removed


def _remove_container(api: EngineClient, info: Mapping[str, Any]) -> bool:
    """Whether this call removed the container (not when gone, or being removed already)."""
    name = listed_name(info)
    with engine_call(
        f"remove container {name}",
        tolerate=GONE | {Kind.CONFLICT},  # 409: "removal already in progress", another prune's
        wording=_refusal(f"Cannot remove container {name}"),
    ) as call:
        api.remove_container(info["Id"], force=True, v=True)
    return call.failure is None


def _kill(api: EngineClient, info: Mapping[str, Any]) -> bool:
    """Kill a kept container's process (the container stays); whether this call did."""
    name = listed_name(info)
    with engine_call(f"kill container {name}", tolerate=GONE | {Kind.CONFLICT}) as call:
        api.kill(info["Id"], signal="SIGKILL")
    return call.failure is None


def _remove_network(api: EngineClient, info: Mapping[str, Any]) -> bool:
    """Remove a network, waiting a little for containers another prune is removing."""
    name = listed_name(info)
    deadline = time.monotonic() + NETWORK_REMOVAL_SECONDS
    while True:
        patient = time.monotonic() <= deadline
        with engine_call(
            f"remove network {name}",
            tolerate=ANSWERED if patient else GONE,
            wording=_refusal(f"Cannot remove network {name}"),
        ) as call:
            api.remove_network(info["Id"])
        if call.failure is None:
            return True
        if call.failure.kind in GONE:
            return False
        time.sleep(0.2)


def _refusal(heading: str) -> Callable[[Failure], str | None]:
    """``heading: error`` for an engine's refusal; the default wording when it is gone."""
    return lambda failure: f"{heading}: {failure.error}" if failure.kind.answered else None
