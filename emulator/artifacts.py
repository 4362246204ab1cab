"""What a finished job leaves behind: model.tar.gz, output.tar.gz, and the failure reason.

The model of every host is merged into one archive, hosts in order (algo-1 first); when two
hosts write the same path, the lower-numbered host's file is kept and the clash is reported.
Archives hold paths relative to /opt/ml/model (or /opt/ml/output/data), sorted.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

FAILURE_REASON_CHARS = 1024


@dataclass
class PackResult:
    archive: Path
    files: int = 0
    clashes: list[str] = field(default_factory=list)  # relative paths written by several hosts


def _files_below(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            found.append(Path(dirpath, name).relative_to(root).as_posix())
    return found


def pack(sources: Sequence[Path], archive: Path) -> PackResult:
    """Tar and gzip the files below each source directory into ``archive``, first source
    winning."""
    result = PackResult(archive)
    seen: set[str] = set()
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        for root in sources:
            if not root.is_dir():
                continue
            for relative in _files_below(root):
                if relative in seen:
                    result.clashes.append(relative)
                    continue
                seen.add(relative)
                tar.add(root / relative, arcname=relative, recursive=False)
                result.files += 1
    return result


def merge_tree(sources: Sequence[Path], destination: Path) -> PackResult:
    """Copy the files below each source into ``destination`` (uncompressed model output)."""
    result = PackResult(destination)
    seen: set[str] = set()
    for root in sources:
        if not root.is_dir():
            continue
        for relative in _files_below(root):
            if relative in seen:
                result.clashes.append(relative)
                continue
            seen.add(relative)
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / relative, target)
            result.files += 1
    return result


def failure_reason(exit_code: int, failure_file: Path) -> str:
    """SageMaker's FailureReason for an algorithm that exited non-zero."""
    try:
        message = failure_file.read_text(errors="replace")[:FAILURE_REASON_CHARS]
    except OSError:
        message = ""
    return f"AlgorithmError: {message}, exit code: {exit_code}"
