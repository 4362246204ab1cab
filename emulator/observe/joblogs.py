"""Every host's output of one job: its log file, its metric points, the user's sink.

One ``JobLogs`` per job. ``follow`` starts reading a host's output (attached before the host
starts); ``wait`` joins the readers once the hosts have exited; ``problems`` says what went
wrong on the way, for the job's notices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from emulator.engine import OutputStream
from emulator.observe.logs import JOIN_SECONDS, LogPump
from emulator.observe.metrics import MetricsCollector
from emulator.request.spec import MetricDefinition
from emulator.state.store import JobStore

LogSink = Callable[[str, str], None]  # (host, line)


class JobLogs:
    def __init__(
        self,
        store: JobStore,
        job: str,
        definitions: Sequence[MetricDefinition],
        sink: LogSink,
    ) -> None:
        self._store = store
        self._job = job
        self._sink = sink
        self.metrics = MetricsCollector(definitions)
        self._pumps: list[LogPump] = []

    def follow(self, host: str, output: OutputStream) -> None:
        """Read ``host``'s output until it ends, in a thread of its own."""

        def metrics(line: str) -> None:
            points = self.metrics.feed(line, host)
            if points:
                self._store.add_metrics(self._job, points)

        def sink(line: str) -> None:
            self._sink(host, line)

        consumers = {"metrics": metrics, "log output": sink}
        pump = LogPump(output, self._store.log_path(self._job, host), consumers, host=host)
        pump.start()
        self._pumps.append(pump)

    def wait(self, timeout: float | None = JOIN_SECONDS) -> None:
        """Wait for every reader to reach the end of its output (each at most ``timeout``)."""
        for pump in self._pumps:
            pump.join(timeout)

    def problems(self) -> list[str]:
        """What went wrong while reading, one notice per host and failing part."""
        return [
            f"Logs of {pump.host}: {problem}" for pump in self._pumps for problem in pump.errors
        ]

    def final_metric_data_list(self) -> list[dict[str, object]]:
        return self.metrics.final_metric_data_list()
