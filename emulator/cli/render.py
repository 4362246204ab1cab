"""Terminal rendering for the CLI: transfer progress bars and the end-of-job summary (rich)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichBar
from rich.table import Table
from rich.text import Text

from emulator.observe.resources import ResourceUse, format_bytes
from emulator.progress import Progress

STATUS_STYLE = {"Completed": "bold green", "Failed": "bold red", "Stopped": "bold yellow"}


class RichProgress(Progress):
    """Byte and object counts of each transfer as a rich progress bar on the console.

    A bar is live only while its transfer runs: container logs printed afterwards (by another
    console, on stdout) never interleave with a redrawn bar. Transfers come one at a time."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._lock = threading.Lock()
        self._bar: RichBar | None = None
        self._task: TaskID | None = None
        self._objects = (0, 0)

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.finish()

    def start(self, description: str, total_bytes: int, total_objects: int) -> None:
        with self._lock:
            self._stop_bar()
            self._bar = RichBar(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TextColumn("{task.fields[objects]}"),
                TimeRemainingColumn(),
                console=self._console,
                transient=False,
            )
            self._objects = (0, total_objects)
            self._task = self._bar.add_task(
                description, total=total_bytes, objects=f"0/{total_objects} objects"
            )
            self._bar.start()

    def advance(self, nbytes: int) -> None:
        with self._lock:
            if self._bar is not None and self._task is not None:
                self._bar.advance(self._task, nbytes)

    def object_done(self) -> None:
        with self._lock:
            done, total = self._objects[0] + 1, self._objects[1]
            self._objects = (done, total)
            if self._bar is not None and self._task is not None:
                self._bar.update(self._task, objects=f"{done}/{total} objects")

    def finish(self) -> None:
        with self._lock:
            self._stop_bar()

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar, self._task = None, None


def print_summary(console: Console, record: dict[str, Any]) -> None:
    status = record["TrainingJobStatus"]
    style = STATUS_STYLE.get(status, "bold")
    line = f"[{style}]{status}[/] ({record['SecondaryStatus']}) {record['TrainingJobName']}"
    if "TrainingTimeInSeconds" in record:
        line += f" in {record['TrainingTimeInSeconds']} s"
    console.print(line, markup=True, soft_wrap=True)
    if "FailureReason" in record:
        console.print(f"FailureReason: {record['FailureReason']}", markup=False, soft_wrap=True)
    metrics = record.get("FinalMetricDataList") or []
    if metrics:
        table = Table("metric", "final value", box=None)
        for metric in metrics:
            # A metric name is any text (`.+`): "loss[val]" is not markup.
            table.add_row(Text(metric["MetricName"]), f"{metric['Value']:g}")
        console.print(table)
    artifacts = record.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if artifacts:
        console.print(f"Model artifacts: {artifacts}", markup=False, soft_wrap=True)


def print_resource_use(console: Console, use: ResourceUse) -> None:
    """Each host's peak memory and CPU against its instance type's, then a warning for each
    host that would not fit there, and why a host was not compared. Nothing at all when no
    host was sampled (a job shorter than the first sample): there is nothing to compare."""
    sampled = [h for h in use.hosts if h.peak_memory_bytes is not None or h.peak_cpu_percent]
    if not sampled:
        return
    console.print("Resource use (peaks, sampled once a second):", markup=False)
    for host in use.hosts:
        memory, cpu = "memory -", "CPU -"
        if host.peak_memory_bytes is not None:
            memory = f"memory {format_bytes(host.peak_memory_bytes)}"
            if host.instance_memory_bytes is not None:
                memory += f" of {host.instance_memory_bytes // 1024**3} GiB"
        if host.peak_cpu_percent is not None:
            cpu = f"CPU {host.peak_cpu_percent / 100:.2f}"
            cpu += f" of {host.instance_vcpus} vCPUs" if host.instance_vcpus else " cores"
        line = f"  {host.host}  {memory}, {cpu} ({host.instance_type})"
        console.print(line, markup=False, soft_wrap=True)
    for warning in use.warnings:
        console.print(Text.assemble(("warning:", "bold yellow"), " ", warning), soft_wrap=True)
    for host in use.hosts:
        for note in host.notes:
            console.print(Text(f"  {note}", style="dim"), soft_wrap=True)
