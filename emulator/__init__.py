"""Run SageMaker training jobs on the local Docker engine, exactly as SageMaker runs them.

>>> import emulator
>>> record = emulator.run_training_job(request)   # a CreateTrainingJob request dict
>>> record["TrainingJobStatus"], record["FinalMetricDataList"]

The heavy parts of the public API (the job runner, validation, the store) are imported on first
use: processes that need one submodule only, such as the FastFile file system process, do not
pay for docker, rich and the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from emulator.errors import (
    EmulatorError,
    EnvironmentProblem,
    JobNotFound,
    RequestInvalid,
    SourceError,
)

if TYPE_CHECKING:
    from emulator.progress import Progress
    from emulator.request.validation import parse_request, validate_request
    from emulator.run.job import RunOptions, run_training_job
    from emulator.state.store import JobStore

__all__ = [
    "EmulatorError",
    "EnvironmentProblem",
    "JobNotFound",
    "JobStore",
    "Progress",
    "RequestInvalid",
    "RunOptions",
    "SourceError",
    "parse_request",
    "run_training_job",
    "validate_request",
]

_LAZY = {
    "JobStore": "emulator.state.store",
    "Progress": "emulator.progress",
    "RunOptions": "emulator.run.job",
    "parse_request": "emulator.request.validation",
    "run_training_job": "emulator.run.job",
    "validate_request": "emulator.request.validation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
