"""The server's jobs: each runs in a thread of its own, at most ``max_concurrent`` at once.

CreateTrainingJob answers as soon as the job is registered (``emulator.api.create``); the job
then waits for a free slot (InProgress, Starting, as SageMaker's jobs wait for capacity) and runs.
StopTrainingJob goes through ``emulator.api.stop``, the same path as `emulator stop`: a waiting
job then ends Stopped at once, a running one is stopped by its supervisor (SIGTERM, the grace
period, SIGKILL) with its artifacts packed. ``stop_all`` does that to every job and waits.
"""

from __future__ import annotations

import contextlib
import threading
import traceback
from collections.abc import Callable
from typing import Any

from emulator import api
from emulator.errors import EmulatorError
from emulator.run.options import RunOptions

Notice = Callable[[str], None]


class JobRunner:
    def __init__(self, options: RunOptions, max_concurrent: int, notice: Notice) -> None:
        self._options = options
        self._max = max(1, max_concurrent)
        self._notice = notice
        self._changed = threading.Condition()
        self._active = 0
        self._threads: dict[str, threading.Thread] = {}
        self._stop_asked: set[str] = set()

    def create(self, request: dict[str, Any]) -> str:
        """Register the job and start it in the background; its ARN. Raises RequestInvalid
        and JobExists as ``api.create`` does (nothing is then registered)."""
        job = api.create(request, self._options)
        name = job.spec.name
        thread = threading.Thread(target=self._run, args=(job,), name=f"job {name}", daemon=True)
        with self._changed:
            self._threads[name] = thread
        thread.start()
        self._notice(f"{name}: created")
        return job.record.arn

    def stop(self, name: str) -> None:
        """Ask the job to stop (EmulatorError when it is not running)."""
        api.stop(name, home=self._options.home)
        with self._changed:
            self._stop_asked.add(name)
            self._changed.notify_all()  # a waiting job ends at once

    def stop_all(self) -> None:
        """Stop every job of this server and wait until each has ended and cleaned up."""
        with self._changed:
            names = [name for name, thread in self._threads.items() if thread.is_alive()]
        for name in names:
            with contextlib.suppress(EmulatorError):  # it ended meanwhile
                self.stop(name)
        self.wait()

    def wait(self) -> None:
        with self._changed:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join()

    def _run(self, job: Any) -> None:
        name = job.spec.name
        with self._changed:
            while self._active >= self._max and name not in self._stop_asked:
                self._changed.wait()
            self._active += 1
        try:
            record = job.run()
            reason = record.get("FailureReason")
            self._notice(
                f"{name}: {record['TrainingJobStatus']}" + (f" ({reason})" if reason else "")
            )
        except Exception:  # a bug of ours: the job records it Failed; the server goes on
            self._notice(f"{name}: the emulator failed:\n{traceback.format_exc()}")
        finally:
            with self._changed:
                self._active -= 1
                self._stop_asked.discard(name)
                self._threads.pop(name, None)
                self._changed.notify_all()
