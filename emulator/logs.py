"""Container output, line by line: to the job's log file, the metrics, and the user."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from emulator.container import OutputStream

JOIN_SECONDS = 10.0


class LogPump(threading.Thread):
    """Reads one container's output frames (stdout, stderr) until the container ends.

    Each stream keeps its own partial line, so interleaved writes never mix; a last line
    without a newline is delivered at the end. Lines are decoded as UTF-8 (bad bytes replaced).
    """

    def __init__(
        self,
        output: OutputStream,
        log_file: Path,
        on_line: Callable[[str], None],
    ) -> None:
        super().__init__(name=f"log-pump-{log_file.stem}", daemon=True)
        self._output = output
        self._log_file = log_file
        self._on_line = on_line
        self.error: BaseException | None = None

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
        self._on_line(raw.rstrip(b"\r").decode("utf-8", errors="replace"))

    def join(self, timeout: float | None = JOIN_SECONDS) -> None:
        if self.is_alive() or self.ident is not None:
            super().join(timeout)
