"""Reading a directory of this machine with the engine's rights (root), as a tar stream.

A root training container writes files its user may keep to itself (a 0700 directory, a 0600
or 0000 file); an emulator run by a non-root user of the Docker group cannot read them from
the bind mounts. The engine can: ``read_tree`` creates a container of the job's image that
bind-mounts the directory read-only and is never started (so nothing of the image runs, and it
needs no network), asks the engine for the archive of the mount (the archive API serves created
and stopped containers, their bind mounts included, with the owners and modes as written), and
removes the container. The container carries the job's labels: ``prune`` removes it after a
crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from emulator.engine.client import EngineClient, bind_mount, container_config, host_config
from emulator.engine.errors import EVERY_KIND, engine_call
from emulator.engine.labels import LABEL_CLEANUP, job_labels

READ_TARGET = "/sagemaker-emulator-read"  # where the reading container sees the directory
# The container is never started; the engine still wants a command when the image has none.
NEVER_RUN = ["/sagemaker-emulator-never-started"]
CHUNK_BYTES = 1024 * 1024


def read_tree(api: EngineClient, image: str, host_dir: Path, job: str, into: IO[bytes]) -> None:
    """Write a tar of ``host_dir`` and everything below it into ``into``: every member is
    named ``<top>/<path relative to host_dir>`` (the first component is the directory's own
    entry). Raises EnvironmentProblem when the engine fails."""
    what = f"read {host_dir} (files only root may read) through a container"
    mount = bind_mount(READ_TARGET, str(host_dir), read_only=True)
    config = container_config(
        image,
        host_config(mounts=[mount], network_mode="none"),
        entrypoint=NEVER_RUN,
        network_disabled=True,
        labels={**job_labels(job), LABEL_CLEANUP: "1"},
    )
    with engine_call(what):
        created = api.create_container(config)
    try:
        with engine_call(what):
            for chunk in api.get_archive(created["Id"], READ_TARGET, chunk_size=CHUNK_BYTES):
                into.write(chunk)
    finally:
        with engine_call(what, tolerate=EVERY_KIND):
            api.remove_container(created["Id"], force=True, v=True)
