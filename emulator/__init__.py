"""Run SageMaker training jobs on the local Docker engine, exactly as SageMaker runs them.

>>> import emulator
>>> record = emulator.run_training_job(request)   # a CreateTrainingJob request dict
>>> record["TrainingJobStatus"], record["FinalMetricDataList"]
"""

from emulator.errors import (
    EmulatorError,
    EnvironmentProblem,
    JobNotFound,
    RequestInvalid,
    SourceError,
)
from emulator.job import RunOptions, run_training_job
from emulator.progress import Progress
from emulator.store import JobStore
from emulator.validation import parse_request, validate_request

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
