"""Independent steps of a job at the same time.

A trivial job's fixed cost is mostly waiting for the engine: creating the network, creating,
starting and removing each host's container. ``Background`` runs one call in a thread of its
own (the job network while the /opt/ml trees are written; the removals while the artifacts
are packed); ``at_once`` runs one call per host and waits for them all. Both hand back what a
call raised (an ``Attempt``) instead of losing it in its thread.

Only the main thread receives Ctrl-C and SIGTERM, so these threads are never cut short inside
docker-py; their callers wait for them with the signals deferred (``run.signals``) where what
they make must be known to the cleanup.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
# The engine works on a few requests at a time anyway; more threads would only queue there.
AT_ONCE_THREADS = 8


@dataclass(frozen=True)
class Attempt(Generic[T]):
    """What one call gave: its value, or the exception it raised."""

    value: T | None = None
    error: BaseException | None = None

    def get(self) -> T:
        """The value, or the call's exception raised here."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # None only where T allows it


def attempt(call: Callable[[], T]) -> Attempt[T]:
    """Run ``call`` here; what it gave."""
    try:
        return Attempt(value=call())
    except BaseException as exc:  # handed to the caller, who decides
        return Attempt(error=exc)


class Background(Generic[T]):
    """``call`` running in a thread from now on; ``attempt``/``result`` wait for it."""

    def __init__(self, call: Callable[[], T], name: str) -> None:
        self._attempt: Attempt[T] | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), name=name, daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], T]) -> None:
        self._attempt = attempt(call)

    def attempt(self) -> Attempt[T]:
        """Wait for the call; what it gave."""
        self._thread.join()
        assert self._attempt is not None
        return self._attempt

    def result(self) -> T:
        """Wait for the call; its value, or its exception raised here."""
        return self.attempt().get()


def at_once(
    calls: Sequence[Callable[[], T]], name: str, *, threads: int = AT_ONCE_THREADS
) -> list[Attempt[T]]:
    """Run the calls together, in up to ``threads`` threads (a single call: in this thread),
    and return what each gave, in order, once all have ended."""
    if len(calls) == 1:
        return [attempt(calls[0])]
    results: list[Attempt[T] | None] = [None] * len(calls)
    pending = iter(range(len(calls)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                index = next(pending, None)
            if index is None:
                return
            results[index] = attempt(calls[index])

    workers = [
        threading.Thread(target=work, name=f"{name}-{number}", daemon=True)
        for number in range(min(threads, len(calls)))
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return [result for result in results if result is not None]


def first_error(attempts: Sequence[Attempt[T]]) -> None:
    """Raise the first error of ``attempts`` in their order (the lowest host's), if any."""
    for one in attempts:
        if one.error is not None:
            raise one.error
