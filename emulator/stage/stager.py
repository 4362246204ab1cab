"""Getting each channel's data to each host, by the channel's EFFECTIVE input mode.

    File      copied into <host>/input/data/<channel> before the container starts
    Pipe      FIFO feeders <channel>_<epoch> in <host>/input/data, streaming while it runs
    FastFile  bind-mounted read-only at /opt/ml/input/data/<channel>: a local directory that
              is exactly the listing as it is, else a read-only FUSE mount (fastfile/localview.py)

``resolve_channels`` lists every source up front (preflight: a missing location, an empty
prefix, an unreadable local file or an unusable FUSE fails before anything is created) and plans
which objects each host gets (``plan.py``). What a local channel's listing skipped (FIFOs,
sockets, devices, dangling symlinks, symlink loops: ``storage/local.py`` has the rule) is said
in one notice per channel when staging begins. The stager is a context manager: whatever it
started (feeders, mounts) is stopped and removed on exit, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from emulator.config import S3Settings
from emulator.engine import Mount
from emulator.errors import EnvironmentProblem
from emulator.plan.channels import plan_data_source
from emulator.plan.layout import CONTAINER_ML, HostLayout, make_writable
from emulator.progress import Progress
from emulator.request.spec import ChannelSpec, JobSpec
from emulator.storage import Entry, Source, open_source
from emulator.storage.local import LocalSource, Skipped, describe_skipped

if TYPE_CHECKING:
    from emulator.stage.fastfile import LocalViews
    from emulator.stage.pipe.feeder import PipeChannel
    from emulator.stage.pipe.items import PipeItems, Shard

# The Pipe and FastFile machinery is imported by the channels that use it: a job without
# such channels (and `emulator run`'s start) never pays for it.


@dataclass(frozen=True)
class ResolvedChannel:
    """A channel with its source listed and its objects planned per host.

    ``plan`` maps each host that receives the channel to its objects (InstanceGroupNames may
    leave hosts out). Augmented manifests have no source: their lines are the units."""

    channel: ChannelSpec
    source: Source | None
    entries: list[Entry]
    plan: dict[str, list[Entry]]
    pipe_items: dict[str, PipeItems] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)  # of a local listing: not data


def resolve_channels(
    spec: JobSpec, settings: S3Settings | None = None
) -> dict[str, ResolvedChannel]:
    """List and plan every channel; raise before anything exists when one cannot be used.

    ``settings`` reach S3 (None: from the environment)."""
    if any(channel.input_mode == "FastFile" for channel in spec.channels):
        from emulator.stage.fastfile import check_fuse_available

        check_fuse_available()
    return {channel.name: _resolve(spec, channel, settings) for channel in spec.channels}


def _resolve(spec: JobSpec, channel: ChannelSpec, settings: S3Settings | None) -> ResolvedChannel:
    hosts = spec.resources.hosts()
    if channel.source.data_type == "AugmentedManifestFile":
        if channel.input_mode != "Pipe":
            raise EnvironmentProblem(
                f"Channel {channel.name!r}: the emulator streams AugmentedManifestFile channels "
                "in Pipe mode only; set the channel's InputMode to Pipe"
            )
        from emulator.stage.pipe.items import PipeItems

        plan = plan_data_source([], channel.source, hosts)
        items = {
            host: PipeItems.from_augmented_manifest(
                channel.source.uri,
                channel.source.attribute_names,
                shuffle_seed=channel.shuffle_seed,
                shard=_shard(channel, list(plan), host),
                settings=settings,
            )
            for host in plan
        }
        return ResolvedChannel(channel, None, [], plan, items)
    source = open_source(channel.source, settings)
    entries = source.entries()
    plan = plan_data_source(entries, channel.source, hosts)
    items = {}
    if channel.input_mode == "Pipe":
        from emulator.stage.pipe.items import PipeItems

        # Pipe shards after each epoch's shuffle (an object may go to another host next epoch,
        # as SageMaker documents for ShuffleConfig with ShardedByS3Key).
        items = {
            host: PipeItems.from_source(
                source,
                entries,
                shuffle_seed=channel.shuffle_seed,
                shard=_shard(channel, list(plan), host),
            )
            for host in plan
        }
    skipped = source.skipped if isinstance(source, LocalSource) else []
    return ResolvedChannel(channel, source, entries, plan, items, skipped)


def _shard(channel: ChannelSpec, hosts: list[str], host: str) -> Shard | None:
    if channel.source.distribution != "ShardedByS3Key":
        return None
    from emulator.stage.pipe.items import Shard

    return Shard(hosts.index(host), len(hosts))


class ChannelStager:
    def __init__(
        self,
        spec: JobSpec,
        channels: dict[str, ResolvedChannel],
        work_dir: Path,
        progress: Progress,
        notice: Callable[[str], None],
        s3_settings: S3Settings | None = None,
    ) -> None:
        self.spec = spec
        self.s3_settings = s3_settings  # for the FastFile children (None: the environment)
        self.channels = channels
        self.work_dir = work_dir
        self.progress = progress
        self.notice = notice
        self._feeders: list[tuple[str, PipeChannel]] = []
        self._resources = ExitStack()
        # Local FastFile directories shown as they are (made with the first FastFile channel);
        # checked for changes last, on exit.
        self._local_views: LocalViews | None = None
        self._resources.callback(self._check_local_views)
        for resolved in channels.values():
            if resolved.skipped:
                notice(
                    f"Channel {resolved.channel.name}: skipped "
                    f"{describe_skipped(resolved.skipped)} in {resolved.channel.source.uri}; "
                    "only regular files (and symlinks to them) are data, as S3 holds only "
                    "objects"
                )

    def __enter__(self) -> ChannelStager:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._resources.close()

    def stage(self, layout: HostLayout) -> list[Mount]:
        """Stage every channel for one host; return the extra mounts its container needs."""
        mounts: list[Mount] = []
        host = layout.host.name
        for resolved in self.channels.values():
            if host not in resolved.plan:
                continue
            mode = resolved.channel.input_mode
            if mode == "File":
                self._stage_file(resolved, resolved.plan[host], layout)
            elif mode == "Pipe":
                self._stage_pipe(resolved, layout)
            else:
                mounts.append(self._stage_fastfile(resolved, resolved.plan[host], layout))
        return mounts

    def _stage_file(
        self, resolved: ResolvedChannel, entries: list[Entry], layout: HostLayout
    ) -> None:
        assert resolved.source is not None
        destination = layout.channel_dir(resolved.channel.name)
        destination.mkdir(parents=True, exist_ok=True)
        total = sum(entry.size for entry in entries)
        description = f"{layout.host.name} {resolved.channel.name}"
        self.progress.start(description, total_bytes=total, total_objects=len(entries))
        try:
            resolved.source.download(entries, destination, self.progress)
        finally:
            self.progress.finish()
        make_writable(destination)

    def _check_local_views(self) -> None:
        if self._local_views is not None:
            self._local_views.check_unchanged()

    def _stage_pipe(self, resolved: ResolvedChannel, layout: HostLayout) -> None:
        from emulator.stage.pipe.feeder import PipeChannel

        spool = self.work_dir / "spool" / layout.host.name
        spool.mkdir(parents=True, exist_ok=True)
        items = resolved.pipe_items[layout.host.name]
        feeder = PipeChannel.from_spec(resolved.channel, layout.data_dir, items, spool_dir=spool)
        self._resources.callback(feeder.stop)
        self._feeders.append((layout.host.name, feeder))

    def _stage_fastfile(
        self, resolved: ResolvedChannel, entries: list[Entry], layout: HostLayout
    ) -> Mount:
        from emulator.stage.fastfile import FastFileMount, LocalViews

        name = resolved.channel.name
        target = f"{CONTAINER_ML}/input/data/{name}"
        if self._local_views is None:
            self._local_views = LocalViews(self.notice)
        # A local directory that is exactly the listing: bind-mounted as it is, no FUSE
        # (fastfile/localview.py says when).
        direct = self._local_views.directory(
            resolved.channel, resolved.source, entries, resolved.entries
        )
        if direct is not None:
            return Mount(target, direct, read_only=True)
        mountpoint = self.work_dir / "fastfile" / layout.host.name / name
        mountpoint.mkdir(parents=True, exist_ok=True)
        mount = FastFileMount(
            resolved.channel.source,
            entries,
            mountpoint,
            label=f"{self.spec.name}-{layout.host.name}-{name}",
            log_path=self.work_dir / "fastfile" / f"{layout.host.name}-{name}.log",
            s3_settings=self.s3_settings,
        )
        self._resources.enter_context(mount)
        return Mount(target, mountpoint, read_only=True)

    def start_feeding(self) -> None:
        """Start streaming Pipe channels (just before the containers start): the first two
        epochs' FIFOs exist when this returns."""
        for _, feeder in self._feeders:
            feeder.start()

    def stop_feeding(self) -> list[str]:
        """Stop the Pipe feeders (the containers have exited), report what they streamed, and
        return the failures of those that could not stream their channel."""
        failures = []
        for host, feeder in self._feeders:
            feeder.stop()
            stats = feeder.stats()
            self.notice(
                f"{host} pipe {feeder.name}: {stats.epochs_completed} epoch(s) read to the end, "
                f"{stats.epochs_closed_early} closed early, {stats.bytes_written} bytes streamed"
            )
            if feeder.error is not None:
                failures.append(f"Pipe channel {feeder.name} of {host}: {feeder.error}")
        return failures
