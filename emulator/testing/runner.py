"""What the ``emulator`` fixture gives a test: ``run(request=None, **flags) -> JobResult``.

The request is built by the code `emulator run` uses (``request.build``: ``Overrides``,
``build_request``) and run by ``emulator.api.run``, so a test sees what the command would: the
same validation, the same record, the same exit code. What differs keeps tests apart: the
state dir is the test's own; a job the request and the flags give no name gets a generated
one; and unless ``output=`` is given, a local (or missing) S3OutputPath becomes the test's
output dir (an s3:// one stays).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import secrets
import sys
import tarfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from emulator import api
from emulator.config import S3Settings
from emulator.errors import EmulatorError
from emulator.plan.hosts import parse_gpus
from emulator.request.build import Overrides, build_request, load_request
from emulator.run.options import DEFAULT_STOP_GRACE_SECONDS, RunOptions, run_options
from emulator.storage import is_local_uri, location
from emulator.testing.s3 import S3Store

# `emulator run`'s exit status for a job's final status (cli/main.py EXIT_FOR_STATUS).
EXIT_FOR_STATUS = {"Completed": 0, "Failed": 1, "Stopped": 3}
# Told apart from every other pytest process (sessions sharing an engine, xdist workers).
_PROCESS_TOKEN = secrets.token_hex(2)
_MAX_NAME = 63  # TrainingJobName's length limit

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class MetricPoint:
    """One value a MetricDefinitions regex found, with when (epoch seconds) and where."""

    name: str
    value: float
    timestamp: float
    host: str


class JobNames:
    """Names of a test's jobs, unique across tests, xdist workers and concurrent sessions:
    ``<test>-<worker><token>-<hash of the test id>-<n>`` (at most 63 characters, and within
    TrainingJobName's pattern)."""

    def __init__(self, test_id: str, test_name: str, worker: str | None = None) -> None:
        slug = re.sub(r"[^a-zA-Z0-9]+", "-", test_name).strip("-")[:24].strip("-") or "test"
        worker = re.sub(r"[^a-zA-Z0-9]+", "", worker or os.environ.get("PYTEST_XDIST_WORKER", ""))
        digest = hashlib.sha256(test_id.encode()).hexdigest()[:8]
        self._prefix = f"{slug}-{worker[:8]}{_PROCESS_TOKEN}-{digest}"
        self._count = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._count += 1
            return f"{self._prefix}-{self._count}"[:_MAX_NAME]


class JobResult:
    """A finished job: its Describe record and what it left (logs, metrics, archives)."""

    def __init__(self, record: dict[str, Any], home: Path, settings: S3Settings | None) -> None:
        self.record = record
        self._home = home
        self._settings = settings  # how the job reached S3: its outputs are read the same way

    def __repr__(self) -> str:
        return f"<JobResult {self.name} {self.status}>"

    @property
    def name(self) -> str:
        return str(self.record["TrainingJobName"])

    @property
    def status(self) -> str:
        """TrainingJobStatus: Completed, Failed or Stopped."""
        return str(self.record["TrainingJobStatus"])

    @property
    def failure_reason(self) -> str | None:
        return self.record.get("FailureReason")

    @property
    def exit_code(self) -> int:
        """What `emulator run` exits with for this job: 0 Completed, 1 Failed, 3 Stopped."""
        return EXIT_FOR_STATUS.get(self.status, 1)

    @property
    def metrics(self) -> dict[str, float]:
        """FinalMetricDataList as name -> value (the last value of each metric)."""
        final = self.record.get("FinalMetricDataList") or []
        return {item["MetricName"]: item["Value"] for item in final}

    @cached_property
    def points(self) -> list[MetricPoint]:
        """Every value the MetricDefinitions found, by time, across hosts (not the system
        metrics: ``emulator.api.metrics`` has those too)."""
        found = api.metrics(self.name, home=self._home)
        return [MetricPoint(p.name, p.value, p.timestamp, p.host) for p in found if not p.system]

    @property
    def series(self) -> dict[str, list[float]]:
        """Every value of each metric, by time (``points`` says which host and when)."""
        values: dict[str, list[float]] = {}
        for point in self.points:
            values.setdefault(point.name, []).append(point.value)
        return values

    def logs(self, host: str | None = "algo-1") -> str:
        """What ``host``'s container wrote, a line each; ``None``: every host's lines, each
        prefixed ``[algo-N] `` when the job has several hosts."""
        lines = list(api.logs(self.name, host=host, home=self._home))
        if host is not None:
            prefix = f"[{host}] "
            lines = [line.removeprefix(prefix) for line in lines]
        return "".join(f"{line}\n" for line in lines)

    def model_files(self) -> dict[str, bytes]:
        """The files of model.tar.gz (or of ``model/`` with CompressionType NONE), name ->
        bytes; empty when the job wrote no model."""
        folder = self._output_folder()
        if folder is None:
            return {}
        if self.record["ModelArtifacts"]["S3ModelArtifacts"].endswith("/"):
            return _folder_files(folder, "model/", self._settings)
        return _archive_files(folder, "model.tar.gz", self._settings)

    def output_files(self) -> dict[str, bytes]:
        """The files of output.tar.gz (what /opt/ml/output/data held), name -> bytes; empty
        when there is no archive."""
        folder = self._output_folder()
        return {} if folder is None else _archive_files(folder, "output.tar.gz", self._settings)

    def _output_folder(self) -> str | None:
        """``<S3OutputPath>/<job>/output/`` as the job resolved it; None when it wrote none."""
        artifacts = (self.record.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        if not artifacts:
            return None
        return str(artifacts).rstrip("/").rsplit("/", 1)[0]


def _archive_files(folder: str, name: str, settings: S3Settings | None) -> dict[str, bytes]:
    place = location(folder, settings)
    for entry in place.listing():
        if entry.relative_path == name:
            with place.open(entry) as stream, tarfile.open(fileobj=stream, mode="r|gz") as tar:
                files: dict[str, bytes] = {}
                for member in tar:
                    content = tar.extractfile(member) if member.isfile() else None
                    if content is not None:
                        files[member.name.removeprefix("./")] = content.read()
                return files
    return {}


def _folder_files(folder: str, prefix: str, settings: S3Settings | None) -> dict[str, bytes]:
    place = location(folder, settings)
    files: dict[str, bytes] = {}
    for entry in place.listing():
        if entry.relative_path.startswith(prefix):
            with place.open(entry) as stream:
                files[entry.relative_path.removeprefix(prefix)] = stream.read()
    return files


class LogEcho:
    """Container lines to the test's stdout (pytest shows them for a failed test), gathered
    per batch of the job's log reader, prefixed with the host when there are several."""

    def __init__(self, prefix_hosts: bool) -> None:
        self._prefix_hosts = prefix_hosts
        self._pending: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, host: str, line: str) -> None:
        with self._lock:
            self._pending.append(f"[{host}] {line}\n" if self._prefix_hosts else f"{line}\n")

    def flush(self) -> None:
        with self._lock:
            text, self._pending = "".join(self._pending), []
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()


def _notice(message: str) -> None:
    print(f"emulator: {message}", file=sys.stderr, flush=True)


class EmulatorRunner:
    """Runs jobs as `emulator run` does, in a test's own state dir (``home``), with its own
    output dir (``output``) and, when the test uses ``emulator_s3``, that store as S3."""

    def __init__(
        self, home: Path, output: Path, names: JobNames, s3: S3Store | None = None
    ) -> None:
        self.home = home
        self.output = output
        self.names = names
        self.s3 = s3
        self.results: list[JobResult] = []  # every job this runner ran, in order

    def run(
        self,
        request: Mapping[str, Any] | PathLike | None = None,
        *,
        image: str | None = None,
        entrypoint: Sequence[str] = (),
        arguments: Sequence[str] = (),
        input_mode: str | None = None,
        channels: Mapping[str, PathLike] | None = None,
        hyperparameters: Mapping[str, object] | None = None,
        environment: Mapping[str, str] | None = None,
        metrics: Mapping[str, str] | None = None,
        output: PathLike | None = None,
        job_name: str | None = None,
        max_runtime: int | None = None,
        instance_type: str | None = None,
        instance_count: int | None = None,
        managed_spot: bool = False,
        max_wait: int | None = None,
        max_retry_attempts: int | None = None,
        stop_grace: float = DEFAULT_STOP_GRACE_SECONDS,
        gpus: int | str | None = None,
        apply_instance_limits: bool = False,
        allow_sensitive_paths: bool = False,
        s3_endpoint_url: str | None = None,
        profile: str | None = None,
        region: str | None = None,
        pass_aws_credentials: bool = False,
        replace: bool = False,
        interrupt_after: Sequence[float] = (),
        internal_error_after: float | None = None,
    ) -> JobResult:
        """Run a job to its end, as `emulator run [REQUEST.json] --flag ...` would.

        ``request`` is a CreateTrainingJob request (a dict, or the path of a JSON file whose
        relative paths resolve against its folder); the keyword arguments are `run`'s flags
        (``channels={"train": path}`` for ``--channel train=path``, ``interrupt_after=[30, 60]``
        for ``--interrupt-after 30 --interrupt-after 60``, and so on). A job that
        fails is a result; what `run` exits 2 for (an invalid request, a missing image or
        data) raises the EmulatorError it would print."""
        if isinstance(request, str | os.PathLike):
            base, base_dir = load_request(os.fspath(request))
        elif request is None:
            base, base_dir = None, Path.cwd()
        else:
            base, base_dir = copy.deepcopy(dict(request)), Path.cwd()
        if base is None and image is None:
            raise EmulatorError("emulator.run: give a request or at least image=...")
        flags = Overrides(
            image=image,
            entrypoint=_strings(entrypoint, "entrypoint"),
            arguments=_strings(arguments, "arguments"),
            input_mode=input_mode,
            channels=[(name, os.fspath(uri)) for name, uri in (channels or {}).items()],
            hyperparameters=[(k, _text(v)) for k, v in (hyperparameters or {}).items()],
            environment=[(k, str(v)) for k, v in (environment or {}).items()],
            metrics=list((metrics or {}).items()),
            output=None if output is None else os.fspath(output),
            job_name=job_name,
            max_runtime=max_runtime,
            instance_type=instance_type,
            instance_count=instance_count,
            managed_spot=managed_spot,
            max_wait=max_wait,
            max_retry_attempts=max_retry_attempts,
        ).resolved_against(Path.cwd())
        if flags.job_name is None and (base is None or "TrainingJobName" not in base):
            flags.job_name = self.names.next()
        if flags.output is None and base is not None and _local_output(base):
            flags.output = str(self.output)
        built = build_request(base, flags, str(self.output))
        options = self._options(
            stop_grace=stop_grace,
            gpus=gpus,
            apply_instance_limits=apply_instance_limits,
            allow_sensitive_paths=allow_sensitive_paths,
            s3_endpoint_url=s3_endpoint_url,
            profile=profile,
            region=region,
            pass_aws_credentials=pass_aws_credentials,
        )
        options = dataclasses.replace(
            options,
            base_dir=base_dir,
            replace=replace,
            interrupt_after=tuple(interrupt_after),
            internal_error_after=internal_error_after,
        )
        from emulator.request.validation import parse_request

        spec = parse_request(built)  # RequestInvalid before anything starts, as `run`
        echo = LogEcho(prefix_hosts=len(spec.resources.hosts()) > 1)
        try:
            record = api.run(spec, dataclasses.replace(options, log_sink=echo))
        finally:
            echo.flush()
        result = JobResult(record, self.home, options.s3)
        self.results.append(result)
        return result

    def _options(
        self,
        *,
        stop_grace: float,
        gpus: int | str | None,
        apply_instance_limits: bool,
        allow_sensitive_paths: bool,
        s3_endpoint_url: str | None,
        profile: str | None,
        region: str | None,
        pass_aws_credentials: bool,
    ) -> RunOptions:
        """`run`'s RunOptions for these flags (``run_options``), in the test's home; with
        ``emulator_s3``, its store as `serve --s3` gives it to jobs."""
        if isinstance(gpus, str):
            try:
                gpus = parse_gpus(gpus)
            except ValueError as exc:
                raise EmulatorError(str(exc).replace("--gpus", "gpus=", 1)) from None
        options = run_options(
            stop_grace=stop_grace,
            gpus=gpus,
            apply_instance_limits=apply_instance_limits,
            allow_sensitive_paths=allow_sensitive_paths,
            s3_endpoint_url=s3_endpoint_url,
            profile=profile,
            region=region,
            pass_aws_credentials=pass_aws_credentials,
        )
        options = dataclasses.replace(options, home=self.home, notice=_notice)
        if self.s3 is None:
            return options
        if s3_endpoint_url is not None or profile is not None:
            raise EmulatorError(
                "emulator.run: this test uses emulator_s3, whose store its jobs reach; "
                "give s3_endpoint_url/profile only in tests without it"
            )
        return dataclasses.replace(
            options, s3=self.s3.settings, container_s3=self.s3.container_access()
        )


def _local_output(request: dict[str, Any]) -> bool:
    """Whether the request's output is missing or a local path (a test's own dir replaces
    it: tests never write into the project or into each other's output); an S3 output, or
    a member of the wrong type for validation to report, stays."""
    config = request.get("OutputDataConfig", {})
    if not isinstance(config, dict):
        return False
    path = config.get("S3OutputPath")
    return path is None or (isinstance(path, str) and is_local_uri(path))


def _strings(values: Sequence[str], flag: str) -> list[str]:
    if isinstance(values, str):  # a str is a Sequence[str]: "python3 x.py" is not a list
        raise EmulatorError(f"emulator.run: {flag} takes a list of strings, not {values!r}")
    return [str(value) for value in values]


def _text(value: object) -> str:
    """A hyperparameter value as the request holds it: a string as given, anything else as
    JSON (3 -> "3", True -> "true"), as the SageMaker SDK's framework estimators do."""
    return value if isinstance(value, str) else json.dumps(value)
