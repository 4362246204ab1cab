"""Each host's CPU and memory while the job runs, stored as system metrics of the job.

A thread per host reads its container's stats stream (``engine/stats.py``: one request, a
sample a second) and hands the samples to the store in batches, never more often than
FLUSH_SECONDS. Sampling is an extra that never holds the job up nor fails it: a container that
exits or vanishes ends its sampler by itself, an engine failure ends it with a notice, and
``close`` (the job's cleanup) ends every sampler at once, waits for its thread and stores what
is left. What the samples say about the instance types is ``observe/resources.py``'s part.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from emulator.engine import Container, DockerEngine
from emulator.engine.stats import StatsSample, StatsStream
from emulator.errors import EmulatorError
from emulator.state.store import CPU_PERCENT, MEMORY_BYTES, JobStore, MetricPoint

FLUSH_SECONDS = 5.0
JOIN_SECONDS = 5.0  # a closed stream's thread ends at once; never wait forever
# Each sampler holds an engine connection while its host runs, beside the exit watchers
# (run/hosts.py): beyond this many hosts, the others are not sampled (a notice says so).
SAMPLED_HOSTS = 8


class ResourceMonitor:
    """The samplers of one job's containers; a context manager: leaving it is ``close``."""

    def __init__(
        self, engine: DockerEngine, store: JobStore, job: str, notice: Callable[[str], None]
    ) -> None:
        self._engine = engine
        self._store = store
        self._job = job
        self._notice = notice
        self._streams: list[StatsStream] = []
        self._threads: list[threading.Thread] = []
        self._pending: list[MetricPoint] = []
        self._problems: list[str] = []
        self._flushed = time.monotonic()
        self._lock = threading.Lock()

    def __enter__(self) -> ResourceMonitor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def watch(self, containers: Sequence[Container]) -> None:
        """Sample each container (from before its start is fine) until it exits."""
        if len(containers) > SAMPLED_HOSTS:
            self._notice(
                f"Resource use is sampled on the first {SAMPLED_HOSTS} hosts only "
                f"(the job has {len(containers)})"
            )
        for container in containers[:SAMPLED_HOSTS]:
            stream = StatsStream(self._engine, container)
            thread = threading.Thread(
                target=self._sample,
                args=(container.host, stream),
                name=f"stats-{container.host}",
                daemon=True,
            )
            self._streams.append(stream)
            self._threads.append(thread)
            thread.start()

    def close(self) -> None:
        """End every sampler now, wait for its thread, store the samples not stored yet."""
        for stream in self._streams:
            stream.close()
        for thread in self._threads:
            thread.join(JOIN_SECONDS)
        self._streams, self._threads = [], []
        self._flush()
        for problem in self._problems:
            self._notice(problem)
        self._problems = []

    def _sample(self, host: str, stream: StatsStream) -> None:
        try:
            for sample in stream:
                self._add(_points(host, sample))
        except EmulatorError as exc:  # the engine failed: the job goes on unsampled
            with self._lock:
                self._problems.append(f"Resource sampling of {host} ended early: {exc}")

    def _add(self, points: list[MetricPoint]) -> None:
        with self._lock:
            self._pending += points
            due = time.monotonic() - self._flushed >= FLUSH_SECONDS
        if due:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._flushed = time.monotonic()
        self._store.add_system_metrics(self._job, batch)


def _points(host: str, sample: StatsSample) -> list[MetricPoint]:
    points = [MetricPoint(MEMORY_BYTES, float(sample.memory_bytes), sample.timestamp, host)]
    if sample.cpu_percent is not None:
        points.append(MetricPoint(CPU_PERCENT, sample.cpu_percent, sample.timestamp, host))
    return points
