"""Where a job's artifacts go: ``<S3OutputPath>/<job>/output/`` (model.tar.gz, output.tar.gz).

Local output locations (a path or a file:// URI) are written with a temporary name and renamed,
so a reader never sees half an archive. ``OutputDataConfig.CompressionType=NONE`` writes the
model files uncompressed under ``.../output/model/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from emulator.artifacts import PackResult, merge_tree, pack
from emulator.errors import SourceError
from emulator.paths import is_remote
from emulator.sources.local import local_path
from emulator.spec import JobSpec


def job_output_uri(spec: JobSpec) -> str:
    return f"{spec.output_path.rstrip('/')}/{spec.name}/output"


def check_output_location(spec: JobSpec) -> None:
    """Fail before the job starts when the output location cannot be used."""
    if is_remote(spec.output_path):
        raise SourceError(f"{spec.output_path}: S3 output locations are not supported yet")
    root = local_path(spec.output_path)
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        raise SourceError(
            f"OutputDataConfig.S3OutputPath {spec.output_path}: {existing} is not a writable "
            "directory; choose an output location you can write"
        )


def _as_uri(path: Path) -> str:
    return path.absolute().as_uri()


def publish_artifacts(
    spec: JobSpec,
    model_dirs: list[Path],
    output_dirs: list[Path],
    notice: Callable[[str], None],
) -> str:
    """Pack and write the artifacts of every host; return ModelArtifacts.S3ModelArtifacts."""
    target = local_path(job_output_uri(spec))
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".packing-") as scratch:
        staging = Path(scratch)
        output = pack(output_dirs, staging / "output.tar.gz")
        _report_clashes(output, "/opt/ml/output/data", notice)
        _replace(staging / "output.tar.gz", target / "output.tar.gz")
        if spec.output_compression == "NONE":
            model = merge_tree(model_dirs, staging / "model")
            _report_clashes(model, "/opt/ml/model", notice)
            shutil.rmtree(target / "model", ignore_errors=True)
            os.replace(staging / "model", target / "model")
            return _as_uri(target / "model") + "/"
        model = pack(model_dirs, staging / "model.tar.gz")
        _report_clashes(model, "/opt/ml/model", notice)
        _replace(staging / "model.tar.gz", target / "model.tar.gz")
        return _as_uri(target / "model.tar.gz")


def _replace(source: Path, destination: Path) -> None:
    os.replace(source, destination)


def _report_clashes(result: PackResult, area: str, notice: Callable[[str], None]) -> None:
    if result.clashes:
        names = ", ".join(result.clashes[:5]) + (" ..." if len(result.clashes) > 5 else "")
        notice(
            f"{len(result.clashes)} file(s) of {area} were written by several hosts; "
            f"algo-1's (the lowest-numbered host's) copy was kept: {names}"
        )
