"""Run SageMaker training jobs on the local Docker engine, exactly as SageMaker runs them.

>>> import emulator
>>> record = emulator.run_training_job(request)   # a CreateTrainingJob request dict
>>> record["TrainingJobStatus"], record["FinalMetricDataList"]

The verbs are those of ``emulator.api``, the CLI's twin: ``run_training_job`` (that is
``api.run``; ``emulator.run`` is the package that runs jobs, hence the longer name here),
``create_training_job`` (``api.create``: registered at once, run later, as the server does),
``validate``, ``describe``, ``list_jobs``, ``stop``, ``prune``, ``logs`` (``follow=True``
follows a running job), ``exec_in_job`` (a command in a running host) and the tag verbs;
``submit_training_job`` (``api.submit``: the same request sent to SageMaker, ``SubmitOptions``);
``kept_jobs``, ``shell`` and ``remove_kept`` for jobs run with ``RunOptions(keep=True)``;
``metrics`` (every point, system metrics too) and ``resource_use`` (peaks against instance types).

The heavy parts (the job runner, validation, the store) are imported on first use: processes
that need one submodule only, such as the FastFile file system process, do not pay for docker,
rich and the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from emulator.errors import (
    EmulatorError,
    EnvironmentProblem,
    JobExists,
    JobNotFound,
    RequestInvalid,
    SourceError,
)

if TYPE_CHECKING:
    from emulator.api import (
        add_tags,
        check_engine,
        delete_tags,
        describe,
        exec_in_job,
        kept_jobs,
        list_jobs,
        list_tags,
        logs,
        metrics,
        prune,
        remove_kept,
        resource_use,
        shell,
        stop,
        validate,
    )
    from emulator.api import create as create_training_job
    from emulator.api import run as run_training_job
    from emulator.api import submit as submit_training_job
    from emulator.config import S3Settings
    from emulator.progress import Progress
    from emulator.request.spec import JobSpec
    from emulator.request.validation import parse_request, validate_request
    from emulator.run.options import PublishedPort, RunOptions
    from emulator.submit.options import SubmitOptions, SubmitResult

__all__ = [
    "EmulatorError",
    "EnvironmentProblem",
    "JobExists",
    "JobNotFound",
    "JobSpec",
    "Progress",
    "PublishedPort",
    "RequestInvalid",
    "RunOptions",
    "S3Settings",
    "SourceError",
    "SubmitOptions",
    "SubmitResult",
    "add_tags",
    "check_engine",
    "create_training_job",
    "delete_tags",
    "describe",
    "exec_in_job",
    "kept_jobs",
    "list_jobs",
    "list_tags",
    "logs",
    "metrics",
    "parse_request",
    "prune",
    "remove_kept",
    "resource_use",
    "run_training_job",
    "shell",
    "stop",
    "submit_training_job",
    "validate",
    "validate_request",
]

_LAZY = {
    "JobSpec": "emulator.request.spec",
    "Progress": "emulator.progress",
    "PublishedPort": "emulator.run.options",
    "RunOptions": "emulator.run.options",
    "S3Settings": "emulator.config",
    "SubmitOptions": "emulator.submit.options",
    "SubmitResult": "emulator.submit.options",
    "add_tags": "emulator.api",
    "check_engine": "emulator.api",
    "create_training_job": "emulator.api",
    "delete_tags": "emulator.api",
    "describe": "emulator.api",
    "exec_in_job": "emulator.api",
    "kept_jobs": "emulator.api",
    "list_jobs": "emulator.api",
    "list_tags": "emulator.api",
    "logs": "emulator.api",
    "metrics": "emulator.api",
    "parse_request": "emulator.request.validation",
    "prune": "emulator.api",
    "remove_kept": "emulator.api",
    "resource_use": "emulator.api",
    "run_training_job": "emulator.api",
    "shell": "emulator.api",
    "stop": "emulator.api",
    "submit_training_job": "emulator.api",
    "validate": "emulator.api",
    "validate_request": "emulator.request.validation",
}

_RENAMED = {
    "run_training_job": "run",
    "create_training_job": "create",
    "submit_training_job": "submit",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
