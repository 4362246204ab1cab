"""What a finished job leaves (CONTRACT.md section 3): model.tar.gz merged from every host with
relative names, the lowest-numbered host winning a clash, and SageMaker's FailureReason."""

from __future__ import annotations

import os
import tarfile

import pytest

from emulator.storage.local import local_path
from tests.fixtures.jobs import PROBE, JobRunner


@pytest.mark.docker
@pytest.mark.parametrize("compression", ["GZIP", "NONE"])
def test_a_job_whose_model_holds_symlinks_completes_and_keeps_them(
    jobs: JobRunner, compression: str
) -> None:
    script = (
        "cd /opt/ml/model && echo w > epoch-3.pt && ln -s /opt/ml/model/epoch-3.pt latest.pt"
        " && ln -s /etc/hostname host"
    )
    request = jobs.request(
        AlgorithmSpecification={
            "TrainingImage": PROBE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", script],
        },
        OutputDataConfig={"S3OutputPath": str(jobs.output), "CompressionType": compression},
    )
    record = jobs.run(request)
    assert record["TrainingJobStatus"] == "Completed", record.get("FailureReason")
    if compression == "GZIP":
        with tarfile.open(local_path(record["ModelArtifacts"]["S3ModelArtifacts"])) as tar:
            links = {m.name: m.linkname for m in tar.getmembers() if m.issym()}
    else:
        model = local_path(record["ModelArtifacts"]["S3ModelArtifacts"])
        links = {p.name: os.readlink(p) for p in model.iterdir() if p.is_symlink()}
    assert links == {"latest.pt": "/opt/ml/model/epoch-3.pt", "host": "/etc/hostname"}
    assert jobs.leftovers(request["TrainingJobName"]) == []


@pytest.mark.docker
def test_a_failure_file_linked_to_a_host_path_is_not_reported(jobs: JobRunner) -> None:
    secret = jobs.output / "host-secret"
    secret.write_text("the host's own file")
    script = f"ln -s {secret} /opt/ml/output/failure; exit 4"
    request = jobs.request(
        AlgorithmSpecification={
            "TrainingImage": PROBE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["sh", "-c", script],
        }
    )
    record = jobs.run(request)
    assert record["FailureReason"] == "AlgorithmError: , exit code: 4"
