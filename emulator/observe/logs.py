"""Container output, line by line: to the job's log file, the metrics, and the user.

The log file comes first: each chunk is written (and flushed) before any line of it reaches a
consumer. Consumers (the metrics and the store, the user's sink) are guarded one by one: one
that raises (a closed pipe after ``emulator run | head``, a locked database) loses that line,
is still offered the next ones, and does not stop the log file nor the other consumers. What
went wrong is kept in ``errors`` (the first failure of each consumer, then a count), which
``job.py`` reports as notices once the pump has been joined.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from emulator.engine import OutputStream

JOIN_SECONDS = 10.0

LineConsumer = Callable[[str], None]


class LogPump(threading.Thread):
    """Reads one container's output frames (stdout, stderr) until the container ends.

    Each stream keeps its own partial line, so interleaved writes never mix; a last line
    without a newline is delivered at the end. Lines are decoded as UTF-8 (bad bytes replaced).
    """

    def __init__(
        self,
        output: OutputStream,
        log_file: Path,
        consumers: Mapping[str, LineConsumer] | LineConsumer,
        host: str = "",
    ) -> None:
        super().__init__(name=f"log-pump-{log_file.stem}", daemon=True)
        self._output = output
        self._log_file = log_file
        self._consumers = (
            dict(consumers) if isinstance(consumers, Mapping) else {"on_line": consumers}
        )
        self.host = host or log_file.stem
        self.error: BaseException | None = None  # what ended the pump early (stream, file)
        self._failures: dict[str, tuple[BaseException, int]] = {}  # consumer -> first, count

    @property
    def errors(self) -> list[str]:
        """What went wrong, one message per failing part (empty when all went well)."""
        found = [
            f"{name} failed on {count} line(s), first with {type(exc).__name__}: {exc}"
            for name, (exc, count) in self._failures.items()
        ]
        if self.error is not None:
            found.append(f"the log stream ended early: {type(self.error).__name__}: {self.error}")
        return found

    def run(self) -> None:
        pending = {1: b"", 2: b""}
        try:
            with open(self._log_file, "ab") as log:
                for stream, chunk in self._output:
                    log.write(chunk)
                    log.flush()
                    pending[stream] = self._deliver(pending.get(stream, b"") + chunk)
                for rest in pending.values():
                    if rest:
                        self._emit(rest)
        except Exception as exc:  # a broken stream must not kill the job, only end its logs
            self.error = exc
        finally:
            self._output.close()

    def _deliver(self, buffer: bytes) -> bytes:
        *lines, rest = buffer.split(b"\n")
        for line in lines:
            self._emit(line)
        return rest

    def _emit(self, raw: bytes) -> None:
        line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        for name, consume in self._consumers.items():
            try:
                consume(line)
            except Exception as exc:  # reported after the join (module doc)
                first, count = self._failures.get(name, (exc, 0))
                self._failures[name] = (first, count + 1)

    def join(self, timeout: float | None = JOIN_SECONDS) -> None:
        if self.is_alive() or self.ident is not None:
            super().join(timeout)
