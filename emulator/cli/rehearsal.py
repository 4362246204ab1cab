"""`emulator run`'s flags that rehearse what the cloud does to a job (README "Rehearsing spot
training"): spot interruptions and internal errors, each ending a round of the job."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def rehearsal_options(function: F) -> F:
    """--interrupt-after and --inject-internal-error-after."""
    function = click.option(
        "--inject-internal-error-after",
        type=click.FloatRange(min=0, min_open=True),
        metavar="SECONDS",
        help="An internal error SECONDS into every attempt's training: the job is retried "
        "as RetryStrategy says, else Failed.",
    )(function)
    function = click.option(
        "--interrupt-after",
        type=click.FloatRange(min=0, min_open=True),
        multiple=True,
        metavar="SECONDS",
        help="Interrupt a managed spot job at SECONDS of training time, counted over all its "
        "rounds (repeatable): it starts again on fresh hosts from its checkpoints.",
    )(function)
    return function
