"""The job's synced folders (``checkpoints/``), imported only by a job that has a
CheckpointConfig, TensorBoardOutputConfig or DebugHookConfig: that package brings the
file-watching library (watchdog), which a job without them, the usual one, would import for
nothing at every start."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from emulator.config import S3Settings
from emulator.plan.layout import HostLayout
from emulator.progress import Progress
from emulator.request.spec import JobSpec

if TYPE_CHECKING:
    from emulator.checkpoints.group import SyncGroup


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
    """The preflight's check of the synced locations (none: nothing to check)."""
    if spec.checkpoint is not None or spec.output_folders:
        from emulator.checkpoints.sync import check_checkpoint_location

        check_checkpoint_location(spec, settings)


# How notices name each output folder.
FOLDER_LABELS = {
    "TensorBoardOutputConfig": "TensorBoard output",
    "DebugHookConfig": "debugger output",
}


def job_checkpoints(
    spec: JobSpec,
    layouts: Sequence[HostLayout],
    notice: Callable[[str], None],
    progress: Progress,
    settings: S3Settings | None,
) -> SyncGroup | NoCheckpoints:
    """The hosts' folders synced with their locations: the checkpoint dirs with
    CheckpointConfig (restored first), and each output folder (TensorBoardOutputConfig,
    DebugHookConfig: upload-only) with ``<S3OutputPath>/<job>/<suffix>/``."""
    if spec.checkpoint is None and not spec.output_folders:
        return NoCheckpoints()
    from emulator.checkpoints.group import SyncGroup
    from emulator.checkpoints.sync import CheckpointSync, FolderSync

    syncs: list[FolderSync] = []
    if spec.checkpoint is not None:
        dirs = {layout.host.name: layout.checkpoint_dir for layout in layouts}
        syncs.append(CheckpointSync(spec.checkpoint, dirs, notice, progress, settings))
    for index, folder in enumerate(spec.output_folders):
        dirs = {
            layout.host.name: layout.output_folder_dir(folder.local_path, index)
            for layout in layouts
        }
        syncs.append(
            FolderSync(
                folder.destination(spec.name),
                dirs,
                notice,
                progress,
                settings,
                label=FOLDER_LABELS.get(folder.member, folder.member),
                restore=False,
            )
        )
    return SyncGroup(syncs, notice)
