"""The job's checkpoints (``checkpoints/sync.py``), imported only by a job that has a
CheckpointConfig: that module brings the file-watching library (watchdog), which a job without
checkpoints, the usual one, would import for nothing at every start."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from emulator.config import S3Settings
from emulator.progress import Progress
from emulator.request.spec import JobSpec

if TYPE_CHECKING:
    from emulator.checkpoints.sync import CheckpointSync


class NoCheckpoints:
    """A job without CheckpointConfig: nothing to restore, watch or reconcile (what
    ``CheckpointSync`` does with no checkpoint, without its imports)."""

    def __enter__(self) -> NoCheckpoints:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        return None

    def restore(self) -> None:
        """Nothing to restore."""

    def start(self) -> None:
        """Nothing to watch."""

    def finish(self) -> None:
        """Nothing to reconcile."""


def check_checkpoints(spec: JobSpec, settings: S3Settings | None) -> None:
    """The preflight's check of the checkpoint location (none: nothing to check)."""
    if spec.checkpoint is not None:
        from emulator.checkpoints.sync import check_checkpoint_location

        check_checkpoint_location(spec, settings)


def job_checkpoints(
    spec: JobSpec,
    host_dirs: Mapping[str, Path],
    notice: Callable[[str], None],
    progress: Progress,
    settings: S3Settings | None,
) -> CheckpointSync | NoCheckpoints:
    """The hosts' checkpoint dirs synced with the job's CheckpointConfig, if it has one."""
    if spec.checkpoint is None:
        return NoCheckpoints()
    from emulator.checkpoints.sync import CheckpointSync

    return CheckpointSync(spec.checkpoint, host_dirs, notice, progress, settings)
