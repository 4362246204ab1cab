"""Following a remote job to its end, as ``emulator run`` shows a local one: each new status
transition as a notice (``Training - Downloading the training image``), every host's CloudWatch
log lines to the log sink, then the final record. Ctrl-C asks ``on_interrupt`` whether to stop
the remote job; a second Ctrl-C leaves at once."""

from __future__ import annotations

import time
from typing import Any

from emulator.submit.options import SubmitOptions
from emulator.submit.remote import SageMakerApi

TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")


def host_of(stream: str) -> str:
    """``job/algo-2-1700000000`` -> ``algo-2``."""
    tail = stream.rsplit("/", 1)[-1]
    host, _, epoch = tail.rpartition("-")
    return host if host and epoch.isdigit() else tail


class Follower:
    def __init__(self, api: SageMakerApi, name: str, options: SubmitOptions) -> None:
        self.api = api
        self.name = name
        self.options = options
        self.transitions_shown = 0
        self.tokens: dict[str, str | None] = {}

    def poll(self) -> dict[str, Any]:
        """Show what is new; return the record read."""
        record = self.api.describe(self.name)
        transitions = record.get("SecondaryStatusTransitions") or []
        for transition in transitions[self.transitions_shown :]:
            message = transition.get("StatusMessage", "")
            status = transition.get("Status", "")
            self.options.notice(f"{status} - {message}" if message else status)
        self.transitions_shown = len(transitions)
        self.logs()
        return record

    def logs(self) -> None:
        for stream in self.api.log_streams(self.name):
            lines, self.tokens[stream] = self.api.events(stream, self.tokens.get(stream))
            host = host_of(stream)
            for line in lines:
                self.options.log_sink(host, line)
        flush = getattr(self.options.log_sink, "flush", None)
        if callable(flush):
            flush()

    def run(self) -> tuple[dict[str, Any], bool]:
        """Follow to the end: (the final record, whether Ctrl-C interrupted)."""
        interrupted = False
        while True:
            try:
                record = self.poll()
                if record.get("TrainingJobStatus") in TERMINAL_STATUSES:
                    self.logs()  # lines that reached the logs after the status
                    return record, interrupted
                time.sleep(self.options.poll_seconds)
            except KeyboardInterrupt:
                if interrupted:
                    raise  # a second Ctrl-C: leave at once
                interrupted = True
                if not self.options.on_interrupt(self.name):
                    self.options.notice(
                        f"The training job {self.name} keeps running remotely; stop it with "
                        f"`aws sagemaker stop-training-job --training-job-name {self.name}`"
                    )
                    return self.api.describe(self.name), True
                self.api.stop(self.name)
                self.options.notice(f"Stop requested for {self.name}; waiting for it to end")
