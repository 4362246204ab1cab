"""A container's CPU and memory use, read from the engine's streaming stats endpoint.

One request per container (``GET /containers/{id}/stats?stream=1``): the engine sends a
sample a second on it, so sampling costs no new request, and the engine does the reading
of the cgroup. The stream's life:

    created, not started   empty samples (``read`` is the zero time): an inspect tells
                           "not started yet" (go on) from "exited already" (the end)
    running                a sample a second; the first has no previous CPU figures
    exited                 empty samples again: the inspect says it exited, the end
    removed                the engine ends the stream
    ``close``              the socket is shut down from any thread, waking a blocked read

Memory is counted as ``docker stats`` counts it: the usage minus the inactive file cache
(``total_inactive_file`` on cgroup v1, ``inactive_file`` on v2), the memory the kernel could
not simply drop. CPU is in percent of one core (100 = one core busy the whole second), from
the deltas between a sample and the one before, as ``docker stats`` computes it. The engine's
stats carry no GPU figures (observe/resources.py says so where a job has GPUs).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from emulator.engine.container import Container
from emulator.engine.docker import DockerEngine
from emulator.engine.errors import EVERY_KIND, engine_call
from emulator.engine.http import Streamed

# No sample for this long: the engine is stuck; the sampler ends rather than wait forever.
READ_SECONDS = 15.0

_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


@dataclass(frozen=True)
class StatsSample:
    """One moment of one container's use."""

    timestamp: float  # seconds since the epoch, the engine's reading time
    memory_bytes: int  # used, the inactive file cache left out
    cpu_percent: float | None  # of one core; None without a previous sample to compare


def sample_of(stats: dict[str, Any]) -> StatsSample | None:
    """The sample in one stats document; None for an empty one (not running)."""
    stamp = _timestamp(stats.get("read"))
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if stamp is None or not isinstance(usage, int):
        return None
    return StatsSample(stamp, used_memory(memory), cpu_percent(stats))


def used_memory(memory: dict[str, Any]) -> int:
    """Usage minus the inactive file cache, as ``docker stats`` shows it."""
    usage = int(memory.get("usage") or 0)
    figures = memory.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):  # cgroup v1, then v2
        inactive = figures.get(key)
        if isinstance(inactive, int) and inactive < usage:
            return usage - inactive
    return usage


def cpu_percent(stats: dict[str, Any]) -> float | None:
    """Percent of one core since the previous sample (None for the first one)."""
    now, before = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    system = int(now.get("system_cpu_usage") or 0)
    system_before = int(before.get("system_cpu_usage") or 0)
    if not system or not system_before:
        return None
    used = int((now.get("cpu_usage") or {}).get("total_usage") or 0)
    used_before = int((before.get("cpu_usage") or {}).get("total_usage") or 0)
    cpus = int(
        now.get("online_cpus") or len((now.get("cpu_usage") or {}).get("percpu_usage") or ())
    )
    elapsed = system - system_before  # every CPU's time, in nanoseconds
    if elapsed <= 0 or not cpus:
        return None
    return max(0.0, (used - used_before) / elapsed * cpus * 100.0)


class StatsStream:
    """The samples of one container, from the call to its exit or removal (or ``close``).
    Engine failures and a container gone end the samples quietly: sampling is an extra."""

    def __init__(self, engine: DockerEngine, container: Container) -> None:
        self._api = engine.api
        self._container = container
        self._response: Streamed | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[StatsSample]:
        try:
            with engine_call(f"read the stats of {self._container.host}", tolerate=EVERY_KIND):
                yield from self._samples()
        except (OSError, ValueError, AttributeError):
            if not self._closed.is_set():  # a read cut by ``close`` is the end; not this
                raise
        finally:
            self._shut()

    def _samples(self) -> Iterator[StatsSample]:
        response = self._api.stats(self._container.id, timeout=READ_SECONDS)
        with self._lock:
            self._response = response
        if self._closed.is_set():  # closed while the request was on its way
            return
        started = False
        for line in response.lines():
            if self._closed.is_set():
                return
            try:
                sample = sample_of(json.loads(line)) if line else None
            except ValueError:  # not a stats document: no more samples to expect
                return
            if sample is not None:
                started = True
                yield sample
            elif started or self._container.exited() is not None:
                return  # exited (or gone): only empty samples follow

    def close(self) -> None:
        """End the samples now, from any thread (a blocked read wakes up)."""
        self._closed.set()
        self._shut()

    def _shut(self) -> None:
        with self._lock:
            response, self._response = self._response, None
        if response is not None:
            response.close()  # a shutdown of its socket: wakes a read blocked elsewhere


def _timestamp(text: Any) -> float | None:
    """Seconds since the epoch of an engine time (RFC 3339, nanoseconds); None for the zero
    time of an empty sample."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        return time.time()
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + float(f"0.{fraction or 0}")
