"""Getting each channel's data to each host, by the channel's EFFECTIVE input mode.

    File      copied into <host>/input/data/<channel> before the container starts
    Pipe      FIFO feeders <channel>_<epoch> in <host>/input/data (streamed while it runs)
    FastFile  a read-only FUSE mount, bind-mounted at /opt/ml/input/data/<channel>

``resolve_sources`` lists every source up front (preflight: a missing location fails before
anything is created). The stager is a context manager: whatever it started is stopped and
removed on exit.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from emulator.container import Mount
from emulator.errors import EnvironmentProblem
from emulator.layout import HostLayout
from emulator.progress import Progress
from emulator.sources import Entry, Source, open_source
from emulator.spec import ChannelSpec, JobSpec


@dataclass(frozen=True)
class ResolvedChannel:
    channel: ChannelSpec
    source: Source
    entries: list[Entry]


def resolve_sources(spec: JobSpec) -> dict[str, ResolvedChannel]:
    resolved = {}
    for channel in spec.channels:
        if channel.input_mode != "File":
            raise EnvironmentProblem(
                f"Channel {channel.name!r}: {channel.input_mode} input mode is not available yet"
            )
        source = open_source(channel.source)
        resolved[channel.name] = ResolvedChannel(channel, source, source.entries())
    return resolved


def entries_for_host(resolved: ResolvedChannel, host_index: int, host_count: int) -> list[Entry]:
    """FullyReplicated: every object; ShardedByS3Key: this host's share."""
    if resolved.channel.source.distribution != "ShardedByS3Key":
        return resolved.entries
    return resolved.entries[host_index::host_count]


class ChannelStager:
    def __init__(
        self,
        spec: JobSpec,
        sources: dict[str, ResolvedChannel],
        work_dir: Path,
        progress: Progress,
        notice: Callable[[str], None],
    ) -> None:
        self.spec = spec
        self.sources = sources
        self.work_dir = work_dir
        self.progress = progress
        self.notice = notice
        self.host_count = (
            spec.resources.instance_count
            if not spec.resources.instance_groups
            else len(spec.resources.hosts())
        )
        self._resources = ExitStack()

    def __enter__(self) -> ChannelStager:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._resources.close()

    def stage(self, layout: HostLayout, host_index: int) -> list[Mount]:
        """Stage every channel for one host; return the extra mounts its container needs."""
        mounts: list[Mount] = []
        for resolved in self.sources.values():
            entries = entries_for_host(resolved, host_index, self.host_count)
            self._stage_file(resolved, entries, layout)
        return mounts

    def _stage_file(
        self, resolved: ResolvedChannel, entries: list[Entry], layout: HostLayout
    ) -> None:
        destination = layout.channel_dir(resolved.channel.name)
        destination.mkdir(parents=True, exist_ok=True)
        total = sum(entry.size for entry in entries)
        self.progress.start(
            f"{layout.host.name} {resolved.channel.name}",
            total_bytes=total,
            total_objects=len(entries),
        )
        try:
            resolved.source.download(entries, destination, self.progress)
        finally:
            self.progress.finish()

    def start_feeding(self) -> None:
        """Start streaming Pipe channels (called just before the containers start)."""

    def stop_feeding(self) -> None:
        """Stop Pipe feeders (the containers have exited)."""
