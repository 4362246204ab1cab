"""Every host's output of one job: its log file, its metric points, the user's sink.

One ``JobLogs`` per job. ``follow`` starts reading a host's output (attached before the host
starts) and timing its lines (linetimes.py: the times CloudWatch Logs events carry); ``wait``
returns once every host's output has been read to its end and every line has
reached the metrics, the store and the sink, however long that takes (there is no fixed
timeout: only a reader that gets nothing at all for ``STALL_SECONDS`` after its container
ended is given up on, and ``lost`` then says so for the job's record). ``close`` is for the
cleanup after an error or an interrupt: it stops at once and says what was not passed on.
Problems are reported as notices once, when ``wait`` or ``close`` returns; ``problems``
lists them all.

The sink is called once per line from each host's consumer thread (never from the reader),
so a slow sink delays the lines shown, not the container. A sink with a ``flush()`` method has
it called after each batch: it may buffer its output between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from emulator.observe.linetimes import TimesWriter
from emulator.observe.logs import BatchConsumer, Lines, LinesLost, LogPump, Output
from emulator.observe.metrics import MetricsCollector
from emulator.request.spec import MetricDefinition
from emulator.state.store import JobStore, MetricsWriter, MetricValues

LogSink = Callable[[str, str], None]  # (host, line)
Notice = Callable[[str], None]

STALL_SECONDS = 60.0  # a reader that gets nothing for this long after its container ended


def _no_notice(message: str) -> None:
    """Problems are kept for ``problems`` only."""


class JobLogs:
    def __init__(
        self,
        store: JobStore,
        job: str,
        definitions: Sequence[MetricDefinition],
        sink: LogSink,
        notice: Notice = _no_notice,
    ) -> None:
        self._store = store
        self._job = job
        self._sink = sink
        self._notice = notice
        self.metrics = MetricsCollector(definitions, keep_series=False)  # the store keeps all
        self._has_definitions = bool(definitions)
        self._pumps: list[LogPump] = []
        self._writers: dict[LogPump, MetricsWriter] = {}
        self._reported: set[str] = set()
        self._closing = False  # the sink gets nothing more

    def follow(self, host: str, output: Output) -> None:
        """Read ``host``'s output until it ends, in threads of its own."""
        consumers: dict[str, BatchConsumer] = {
            "time index": TimesWriter(self._store.times_path(self._job, host)),
        }
        writer = self._store.metrics_writer(self._job) if self._has_definitions else None
        if writer is not None:
            consumers["metrics"] = self._metrics(host, writer)
        consumers["log output"] = self._echo(host)
        pump = LogPump(output, self._store.log_path(self._job, host), consumers, host=host)
        if writer is not None:
            self._writers[pump] = writer
        pump.start()
        self._pumps.append(pump)

    def wait(self, stall_seconds: float = STALL_SECONDS) -> None:
        """Wait until every host's output is read to its end and every line is passed on."""
        for pump in self._pumps:
            pump.finish_reading(stall_seconds)
        for pump in self._pumps:
            pump.finish(stall_seconds)
        self._end()

    def close(self) -> None:
        """Stop reading and passing lines on now (what is left is counted in ``lost``)."""
        self._closing = True
        for pump in self._pumps:
            pump.abandon()
        self._end()

    def problems(self) -> list[str]:
        """What went wrong while reading, one notice per host and failing part."""
        return [
            f"Logs of {pump.host}: {problem}" for pump in self._pumps for problem in pump.errors
        ]

    def lost(self) -> list[str]:
        """What of the output did not reach the log file, the metrics or the sink (empty when
        nothing was lost): the job says so in its record."""
        return [message for pump in self._pumps for message in pump.lost]

    def final_metric_data_list(self) -> list[dict[str, object]]:
        return self.metrics.final_metric_data_list()

    def _end(self) -> None:
        for pump, writer in list(self._writers.items()):
            if pump.consumed:  # its thread is done with the writer
                writer.close()
                del self._writers[pump]
        for problem in self.problems():
            if problem not in self._reported:
                self._reported.add(problem)
                self._notice(problem)

    def _metrics(self, host: str, writer: MetricsWriter) -> BatchConsumer:
        def consume(batch: Sequence[Lines]) -> None:
            found: list[MetricValues] = []
            for group in batch:
                found += self.metrics.feed_lines(group.lines, host, group.timestamp)
            writer.add(found)

        return consume

    def _echo(self, host: str) -> BatchConsumer:
        sink = self._sink
        flush = getattr(sink, "flush", None)

        def consume(batch: Sequence[Lines]) -> None:
            first: BaseException | None = None
            failed = 0
            for group in batch:
                for line in group.lines:
                    if self._closing:
                        return
                    try:
                        sink(host, line)
                    except Exception as exc:  # a failing sink loses this line only
                        first = first or exc
                        failed += 1
            if callable(flush):
                try:
                    flush()
                except Exception as exc:  # the buffered lines did not get through
                    first = first or exc
                    failed = sum(len(group.lines) for group in batch)
            if first is not None:
                raise LinesLost(first, failed)

        return consume
