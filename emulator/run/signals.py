"""Ctrl-C and SIGTERM held back while Docker is talked to.

A KeyboardInterrupt raised inside docker-py could leave its connection pool locked and the
cleanup that follows would then hang. So every Docker call runs with those signals deferred
(``deferred``), and the supervisor's wait loop polls the ones that arrived (``signals_deferred``
yields them): interrupts land between Docker calls; downloads stay interruptible.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


def deferred(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``call`` with Ctrl-C and SIGTERM deferred, then raise KeyboardInterrupt if one
    arrived meanwhile: the interrupt lands after the call, never inside docker-py."""
    with signals_deferred() as arrived:
        try:
            result = call(*args, **kwargs)
        except BaseException as exc:
            if arrived:
                raise KeyboardInterrupt from exc
            raise
    if arrived:
        raise KeyboardInterrupt
    return result


@contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Hold back Ctrl-C (and a SIGTERM handled in Python) while the body runs; yields the
    list of signals that arrived meanwhile. Outside the main thread this does nothing."""
    arrived: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return
    previous = {}
    for number in DEFERRED_SIGNALS:
        handler = signal.getsignal(number)
        if callable(handler):  # a Python handler (Ctrl-C's, or the CLI's SIGTERM one)
            previous[number] = handler
            signal.signal(number, lambda signum, frame: arrived.append(signum))
    try:
        yield arrived
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
