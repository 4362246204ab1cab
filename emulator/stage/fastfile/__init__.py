"""FastFile input mode: a channel's objects as a read-only view, fetched on demand.

``localview`` (``LocalViews``) decides when a local channel's directory is simply bind-mounted
read-only (no FUSE: the data is already here); every other view is a FUSE mount: ``preflight``
tells whether FUSE works here, ``mount`` (``FastFileMount``) runs the file system process
``server`` for a job, ``protocol`` is what the two say to each other, ``blockcache`` holds the
fetched bytes, and ``mounts`` reads the mount table (also for ``emulator prune``).
"""

from __future__ import annotations

from emulator.stage.fastfile.localview import ENV_LOCAL_VIEW, LocalViews
from emulator.stage.fastfile.mount import FastFileMount
from emulator.stage.fastfile.preflight import check_fuse_available

__all__ = ["ENV_LOCAL_VIEW", "FastFileMount", "LocalViews", "check_fuse_available"]
