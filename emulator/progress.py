"""Progress reporting as a callback object passed down to transfer code.

Transfer code calls these methods and never touches the terminal; the CLI passes a rich-backed
implementation, the library defaults to ``NO_PROGRESS``. Methods may be called from several
threads at once: implementations must be thread-safe.
"""

from __future__ import annotations


class Progress:
    """No-op base: override what you want to show."""

    def start(self, description: str, total_bytes: int, total_objects: int) -> None:
        """A transfer of ``total_objects`` objects, ``total_bytes`` bytes in all, begins."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more bytes arrived."""

    def object_done(self) -> None:
        """One more object is complete."""

    def finish(self) -> None:
        """The transfer ended (successfully or not)."""


NO_PROGRESS = Progress()
