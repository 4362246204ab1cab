"""Where a job's artifacts go: ``<S3OutputPath>/<job>/output/`` (model.tar.gz, output.tar.gz).

The dispatcher between the two kinds of output location:

* S3 (``s3://bucket/prefix`` or an AWS https URL, through ``emulator.storage.s3``): the
  archives are packed in scratch space next to the hosts' trees (in the job's work dir) and
  uploaded with s3transfer (concurrent, multipart above 16 MiB). The preflight check is a
  HeadBucket: a missing bucket, denied access or an unreachable endpoint refuse the job before
  anything exists. ``ModelArtifacts.S3ModelArtifacts`` is the s3:// URI of what was written.
* Local (a path or a file:// URI): written with a temporary name and renamed, so a reader never
  sees half an archive.

``OutputDataConfig.CompressionType=NONE`` writes the model files uncompressed under
``.../output/model/`` (one object per file on S3; what an earlier run of the same job name left
there is removed). Symlinks the job left in /opt/ml/model are kept as symlinks locally; S3 has
no symlinks, so they are not uploaded (a notice names them) and never followed.

An OSError while packing or writing (a full disk, an output path that became a file, denied
access) becomes a SourceError naming the path: the job then ends Failed with a ClientError.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from emulator.config import S3Settings
from emulator.errors import SourceError
from emulator.finish.artifacts import PackResult, merge_tree, pack
from emulator.request.paths import is_remote
from emulator.request.spec import JobSpec
from emulator.storage.local import local_path

Notice = Callable[[str], None]


def job_output_uri(spec: JobSpec) -> str:
    return f"{spec.output_path.rstrip('/')}/{spec.name}/output"


def check_output_location(spec: JobSpec, settings: S3Settings | None = None) -> None:
    """Fail before the job starts when the output location cannot be used. ``settings``
    reach S3 (None: from the environment)."""
    if is_remote(spec.output_path):
        from emulator.storage.s3 import check_bucket

        check_bucket(spec.output_path, "OutputDataConfig.S3OutputPath", settings)
        return
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
    notice: Notice,
    settings: S3Settings | None = None,
) -> str:
    """Pack and write the artifacts of every host; return ModelArtifacts.S3ModelArtifacts.

    ``settings`` reach S3 (None: from the environment)."""
    try:
        if is_remote(spec.output_path):
            return _publish_to_s3(spec, model_dirs, output_dirs, notice, settings)
        return _publish_locally(spec, model_dirs, output_dirs, notice)
    except OSError as exc:
        path = f" ({exc.filename})" if exc.filename else ""
        raise SourceError(
            f"writing the job's artifacts to {job_output_uri(spec)} failed: "
            f"{exc.strerror or exc}{path}"
        ) from exc


def _publish_locally(
    spec: JobSpec, model_dirs: list[Path], output_dirs: list[Path], notice: Notice
) -> str:
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


def _publish_to_s3(
    spec: JobSpec,
    model_dirs: list[Path],
    output_dirs: list[Path],
    notice: Notice,
    settings: S3Settings | None,
) -> str:
    from emulator.storage.s3 import (
        Upload,
        delete_objects,
        list_objects,
        parse_s3_uri,
        upload_objects,
    )

    location = parse_s3_uri(job_output_uri(spec))
    bucket, prefix = location.bucket, location.key
    scratch_root = _scratch_root(model_dirs)
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix=".packing-") as scratch:
        staging = Path(scratch)
        output = pack(output_dirs, staging / "output.tar.gz")
        _report_clashes(output, "/opt/ml/output/data", notice)
        uploads = [Upload(f"{prefix}/output.tar.gz", staging / "output.tar.gz")]
        if spec.output_compression == "NONE":
            model = merge_tree(model_dirs, staging / "model")
            _report_clashes(model, "/opt/ml/model", notice)
            files = _uncompressed_files(staging / "model", notice)
            uploads += [Upload(f"{prefix}/model/{name}", path) for name, path in files]
            artifacts = f"s3://{bucket}/{prefix}/model/"
        else:
            model = pack(model_dirs, staging / "model.tar.gz")
            _report_clashes(model, "/opt/ml/model", notice)
            uploads.append(Upload(f"{prefix}/model.tar.gz", staging / "model.tar.gz"))
            artifacts = f"s3://{bucket}/{prefix}/model.tar.gz"
        _raise_first(upload_objects(bucket, uploads, settings))
    if spec.output_compression == "NONE":
        # Keys of an earlier run of this job name (--replace) that this run did not write.
        written = {upload.key for upload in uploads}
        stale = [
            entry.location
            for entry in list_objects(f"s3://{bucket}/{prefix}/model/", settings)
            if entry.location not in written
        ]
        _raise_first(delete_objects(bucket, stale, settings))
    return artifacts


def _raise_first(failures: dict[str, SourceError]) -> None:
    if failures:
        key = sorted(failures)[0]
        more = f" (and {len(failures) - 1} more object(s) failed)" if len(failures) > 1 else ""
        raise SourceError(f"uploading the job's artifacts failed: {failures[key]}{more}")


def _scratch_root(model_dirs: list[Path]) -> Path | None:
    """Scratch space for packing: the first host's tree (inside the job's work dir, removed with
    it, on the same disk as the model); the temp dir when there is none."""
    for model_dir in model_dirs:
        if model_dir.parent.is_dir():
            return model_dir.parent
    return None


def _uncompressed_files(root: Path, notice: Notice) -> list[tuple[str, Path]]:
    """(relative name, path) of every regular file below ``root``; symlinks are reported."""
    files: list[tuple[str, Path]] = []
    links: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*filenames, *(d for d in dirnames if Path(dirpath, d).is_symlink())]):
            path = Path(dirpath, name)
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                links.append(relative)
            elif path.is_file():
                files.append((relative, path))
    if links:
        names = ", ".join(links[:5]) + (" ..." if len(links) > 5 else "")
        notice(
            f"{len(links)} symlink(s) in /opt/ml/model not uploaded (S3 has no symlinks; "
            f"CompressionType GZIP keeps them in model.tar.gz): {names}"
        )
    return files


def _replace(source: Path, destination: Path) -> None:
    os.replace(source, destination)


def _report_clashes(result: PackResult, area: str, notice: Notice) -> None:
    if result.clashes:
        names = ", ".join(result.clashes[:5]) + (" ..." if len(result.clashes) > 5 else "")
        notice(
            f"{len(result.clashes)} file(s) of {area} were written by several hosts; "
            f"algo-1's (the lowest-numbered host's) copy was kept: {names}"
        )
