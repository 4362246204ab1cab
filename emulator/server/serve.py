"""One `emulator serve`: the API on its port, the jobs it runs, the embedded S3 store.

    with Server(ServeOptions(...), notice) as server:
        print(server.exports())   # what a client exports to reach it
        server.serve_forever()     # until KeyboardInterrupt (Ctrl-C or SIGTERM)
    # leaving: the port closes, every job is stopped (Stopped, artifacts packed) and has
    # cleaned up, the S3 store stops

Starting records the jobs of a server (or CLI run) that died mid-run Failed and removes their
leftovers, as `emulator prune` does. Jobs, logs and metrics live in the state dir every
command uses: `emulator list` shows the server's jobs, the API shows the CLI's.
"""

from __future__ import annotations

import dataclasses
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from emulator import api
from emulator.config import DEFAULT_REGION
from emulator.errors import EmulatorError
from emulator.run.options import RunOptions
from emulator.server.app import ApiServer, Notice
from emulator.server.auth import AuthKey, check_bind
from emulator.server.jobs import JobRunner
from emulator.server.sagemaker_api import SageMakerApi

DEFAULT_PORT = 8080
DEFAULT_MAX_CONCURRENT_JOBS = 2


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0: a free port
    s3: bool = False  # start the embedded S3 store
    max_concurrent_jobs: int = DEFAULT_MAX_CONCURRENT_JOBS
    auth: AuthKey | None = None  # SigV4 signatures with this key required
    run: RunOptions = field(default_factory=RunOptions)  # how its jobs run


class Server:
    def __init__(self, options: ServeOptions, notice: Notice) -> None:
        check_bind(options.host, options.auth)  # before anything starts
        self.options = options
        self._notice = notice
        self._stack = ExitStack()
        self._runner: JobRunner | None = None
        self.http: ApiServer | None = None
        self.s3: Any = None  # the EmbeddedS3 store with --s3
        self._serving = threading.Event()

    def __enter__(self) -> Server:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _start(self) -> None:
        from emulator.server.logs_api import LogsApi

        home = self.options.run.home
        try:
            for removed in api.prune(home=home):
                self._notice(f"pruned what a dead run left: {removed}")
        except EmulatorError as exc:  # the API still answers; its jobs fail until it is up
            self._notice(f"{exc}; jobs fail until the engine answers (`make engine`)")
        run_options = self.options.run
        if self.options.s3:
            from emulator.server.s3store import EmbeddedS3

            self.s3 = self._stack.enter_context(EmbeddedS3(home))
            run_options = dataclasses.replace(
                run_options, s3=self.s3.settings, container_s3=self.s3.container_access()
            )
        runner = JobRunner(run_options, self.options.max_concurrent_jobs, self._notice)
        self._stack.callback(runner.stop_all)  # after the port closed: no new job comes
        self._runner = runner
        signatures = None
        if self.options.auth is not None:
            from emulator.server.auth import SignatureChecker

            signatures = SignatureChecker(
                self.options.auth.access_key_id, self.options.auth.secret_access_key
            )
        self.http = ApiServer(
            (self.options.host, self.options.port),
            {"SageMaker": SageMakerApi(runner, home), "Logs_20140328": LogsApi(home)},
            signatures,
            self._notice,
        )
        self._stack.callback(self.http.server_close)
        self._stack.callback(self._stop_serving)

    @property
    def region(self) -> str:
        return self.options.run.region or DEFAULT_REGION

    @property
    def url(self) -> str:
        assert self.http is not None, "use the server as a context manager"
        return self.http.url

    def exports(self) -> dict[str, str]:
        """The variables a client sets to reach this server (botocore's names)."""
        assert self.http is not None, "use the server as a context manager"
        url = self.http.url
        variables = {
            "AWS_ENDPOINT_URL_SAGEMAKER": url,
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": url,
            "AWS_ENDPOINT_URL_STS": url,
            "AWS_ENDPOINT_URL_IAM": url,
        }
        if self.s3 is not None:
            variables.update(
                {
                    "AWS_ENDPOINT_URL_S3": self.s3.endpoint_url,
                    "AWS_ACCESS_KEY_ID": self.s3.access_key_id,
                    "AWS_SECRET_ACCESS_KEY": self.s3.secret_access_key,
                    "AWS_DEFAULT_REGION": self.region,
                }
            )
        return variables

    def serve_forever(self) -> None:
        """Answer requests until interrupted (KeyboardInterrupt) or ``shutdown``."""
        assert self.http is not None, "use the server as a context manager"
        self._serving.set()
        self.http.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Make ``serve_forever`` return (from another thread)."""
        if self.http is not None and self._serving.is_set():
            self.http.shutdown()

    def _stop_serving(self) -> None:
        self._serving.clear()
