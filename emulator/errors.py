"""The emulator's exception tree.

    EmulatorError                 anything a user can cause or fix; the CLI prints it, exits 2
    ├── RequestInvalid            the CreateTrainingJob request breaks the API's rules
    ├── EnvironmentProblem        no Docker engine, image not present locally, no FUSE, ...
    ├── SourceError               a channel/checkpoint/output location cannot be read or written
    ├── JobNotFound               describe/stop of a job the state store does not know
    └── JobExists                 a job of that name exists already (names are unique)

A failed training job is not an error of the tool: it is a result (exit 1 with FailureReason).
Errors of lower layers (docker, botocore, OS) are translated into these at one boundary each,
with ``raise ... from exc``.
"""

from __future__ import annotations

import os


class EmulatorError(Exception):
    """Root of every error a user can cause; the message says what to do."""


class RequestInvalid(EmulatorError):
    """The request breaks one or more rules; ``problems`` lists each as ``path: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        heading = f"The training job request is invalid ({count} problem{'s' * (count != 1)}):"
        super().__init__("\n".join([heading, *(f"  - {p}" for p in self.problems)]))


class EnvironmentProblem(EmulatorError):
    """The machine cannot run the job as asked (engine, image, FUSE, GPUs)."""


class SourceError(EmulatorError):
    """A data location cannot be listed, read or written."""


class JobNotFound(EmulatorError):
    """No job of that name is in the state store."""


class JobExists(EmulatorError):
    """A job of that name exists (or runs) already; job names are unique, as in SageMaker."""


def running_user() -> str:
    """The name of the user running the emulator, for messages that ask them to fix access."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"
