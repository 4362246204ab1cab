"""Where a job's artifacts go: ``<S3OutputPath>/<job>/output/`` (model.tar.gz, output.tar.gz).

The output folder is a ``Location`` (``emulator.storage.location``): an S3 prefix (``s3://``
or an AWS https URL) or a local directory (a path or a file:// URI). The archives are packed in
scratch space the location offers (inside the local directory, so that writing them is a
rename and a reader never sees half an archive) or else next to the hosts' trees (in the job's
work dir), then written: to S3 with s3transfer (concurrent, multipart above 16 MiB).
The preflight check refuses a location that cannot be written (a missing bucket, denied access
or an unreachable endpoint; a local path that is not a writable directory) before anything
exists. ``ModelArtifacts.S3ModelArtifacts`` is the URI of what was written.

``OutputDataConfig.CompressionType=NONE`` writes the model files uncompressed under
``.../output/model/`` (one object per file on S3); what an earlier run of the same job name left
there is removed. Symlinks the job left in /opt/ml/model are kept as symlinks locally; S3 has
no symlinks, so they are not uploaded (a notice names them) and never followed.

An OSError while packing or writing (a full disk, an output path that became a file, denied
access) becomes a SourceError naming the path: the job then ends Failed with a ClientError.
Files the container wrote that the emulator cannot read (a root container's 0700 directory or
0600 file, for an emulator run by a non-root user) are read through ``read_as_root`` (the
engine, as root); one that cannot be read that way either fails the job naming it
(``artifacts.UnreadableFile``), never a silent omission.

The packing folder is named ``.packing-<pid>-<hex>`` (``storage.local_folder.temporary_name``).
When it lies in the local output folder, that folder is first noted in the job's work dir
(``TEMPORARIES_NOTE``, read back by ``noted_folders``): after a SIGKILL of the emulator,
``emulator prune`` finds the folder there (the record keeps S3OutputPath as the request wrote
it, perhaps relative) and removes the dead emulator's temporaries in it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from emulator.config import S3Settings
from emulator.errors import SourceError
from emulator.finish.artifacts import PackResult, RootReader, merge_tree, pack
from emulator.request.spec import JobSpec
from emulator.storage import Location, Upload, location
from emulator.storage.local_folder import temporary_name

Notice = Callable[[str], None]
# In the job's work dir: the local folders where this job's emulator makes temporaries.
TEMPORARIES_NOTE = "temporaries"
WORK_DIR_OWNER_FILE = "owner.pid"  # run.workdir.OWNER_FILE (run/ lies above finish/)


def job_output_uri(spec: JobSpec) -> str:
    return f"{spec.output_path.rstrip('/')}/{spec.name}/output"


def check_output_location(spec: JobSpec, settings: S3Settings | None = None) -> None:
    """Fail before the job starts when the output location cannot be used. ``settings``
    reach S3 (None: from the environment)."""
    location(spec.output_path, settings).check_writable("OutputDataConfig.S3OutputPath")


def publish_artifacts(
    spec: JobSpec,
    model_dirs: list[Path],
    output_dirs: list[Path],
    notice: Notice,
    settings: S3Settings | None = None,
    read_as_root: RootReader | None = None,
) -> str:
    """Pack and write the artifacts of every host; return ModelArtifacts.S3ModelArtifacts.

    ``settings`` reach S3 (None: from the environment); ``read_as_root`` reads a host's tree
    holding files the emulator may not read (None: such a file fails the job)."""
    uri = job_output_uri(spec)
    try:
        folder = location(uri, settings)
        failures, artifacts = _publish(spec, folder, model_dirs, output_dirs, notice, read_as_root)
    except OSError as exc:
        path = f" ({exc.filename})" if exc.filename else ""
        raise SourceError(
            f"writing the job's artifacts to {uri} failed: {exc.strerror or exc}{path}"
        ) from exc
    if failures:
        name = sorted(failures)[0]
        more = f" (and {len(failures) - 1} more object(s) failed)" if len(failures) > 1 else ""
        raise SourceError(f"writing the job's artifacts to {uri} failed: {failures[name]}{more}")
    return artifacts


def _publish(
    spec: JobSpec,
    folder: Location,
    model_dirs: list[Path],
    output_dirs: list[Path],
    notice: Notice,
    read_as_root: RootReader | None,
) -> tuple[dict[str, SourceError], str]:
    """(failures by name, ModelArtifacts.S3ModelArtifacts)."""
    with _packing_dir(folder.scratch_dir(), model_dirs) as staging:
        output = pack(output_dirs, staging / "output.tar.gz", read_as_root)
        _report_clashes(output, "/opt/ml/output/data", notice)
        uploads = [Upload("output.tar.gz", staging / "output.tar.gz", movable=True)]
        if spec.output_compression == "NONE":
            model = merge_tree(model_dirs, staging / "model", read_as_root)
            _report_clashes(model, "/opt/ml/model", notice)
            files = _uncompressed_files(staging / "model", folder.holds_symlinks, notice)
            model_files = [Upload(name, path, movable=True) for name, path in files]
            failures = folder.upload(uploads)
            failures |= {
                f"model/{name}": error
                for name, error in folder.replace_folder("model", model_files).items()
            }
            return failures, folder.uri_of("model/")
        model = pack(model_dirs, staging / "model.tar.gz", read_as_root)
        _report_clashes(model, "/opt/ml/model", notice)
        uploads.append(Upload("model.tar.gz", staging / "model.tar.gz", movable=True))
        return folder.upload(uploads), folder.uri_of("model.tar.gz")


@contextmanager
def _packing_dir(local_root: Path | None, model_dirs: list[Path]) -> Iterator[Path]:
    """A new ``.packing-<pid>-<hex>`` folder, removed on exit: in ``local_root`` (the local
    output folder, noted in the work dir first) or else beside the hosts' trees."""
    if local_root is not None:
        work_dir = _work_dir(model_dirs)
        if work_dir is not None:
            with open(work_dir / TEMPORARIES_NOTE, "a", encoding="utf-8") as note:
                note.write(f"{local_root.absolute()}\n")
    root = local_root or _scratch_root(model_dirs) or Path(tempfile.gettempdir())
    staging = root / temporary_name("packing")
    staging.mkdir(mode=0o700)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def noted_folders(work_dir: Path) -> list[Path]:
    """The local folders a job noted in its work dir (``TEMPORARIES_NOTE``)."""
    try:
        lines = (work_dir / TEMPORARIES_NOTE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [Path(line) for line in dict.fromkeys(lines) if line.startswith("/")]


def _work_dir(model_dirs: list[Path]) -> Path | None:
    """The job's work dir: the parent of the hosts' trees (``<work>/<host>/model``), once it
    is claimed (it holds run.workdir's ``OWNER_FILE``); None for trees elsewhere."""
    for model_dir in model_dirs:
        if (model_dir.parent.parent / WORK_DIR_OWNER_FILE).is_file():
            return model_dir.parent.parent
    return None


def _scratch_root(model_dirs: list[Path]) -> Path | None:
    """Scratch space for packing: the first host's tree (inside the job's work dir, removed with
    it, on the same disk as the model); the temp dir when there is none."""
    for model_dir in model_dirs:
        if model_dir.parent.is_dir():
            return model_dir.parent
    return None


def _uncompressed_files(root: Path, symlinks: bool, notice: Notice) -> list[tuple[str, Path]]:
    """(relative name, path) of every regular file below ``root`` (the emulator's own copy),
    and of every symlink when the location holds ``symlinks``; else they are reported."""
    files: list[tuple[str, Path]] = []
    links: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
        dirnames.sort()
        for name in sorted([*filenames, *(d for d in dirnames if Path(dirpath, d).is_symlink())]):
            path = Path(dirpath, name)
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() and symlinks:
                files.append((relative, path))
            elif path.is_symlink():
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


def _raise(error: OSError) -> None:
    """os.walk's error handler: a folder that cannot be listed is an error, never skipped."""
    raise error


def _report_clashes(result: PackResult, area: str, notice: Notice) -> None:
    if result.clashes:
        names = ", ".join(result.clashes[:5]) + (" ..." if len(result.clashes) > 5 else "")
        notice(
            f"{len(result.clashes)} file(s) of {area} were written by several hosts; "
            f"algo-1's (the lowest-numbered host's) copy was kept: {names}"
        )
