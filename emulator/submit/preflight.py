"""What runs only on this machine, refused before anything is uploaded or sent.

Each refusal names the member or flag and what to change. The choices:

- ``local`` / ``local_gpu`` instance types (also in InstanceGroups): SageMaker has neither.
- ``--gpus`` and ``--pass-aws-credentials``: they choose what the local engine gives the
  containers; SageMaker gives each host its instance type's GPUs and the role's credentials.
- RoleArn missing, or the emulator's placeholder (a request built from flags alone), without
  ``--role``: SageMaker must assume a real role.
- A local location (channel, manifest, checkpoint, output) without ``--staging``. With it,
  data is uploaded under the prefix and outputs are mapped there (``rewrite.py``): a local
  S3OutputPath names where *this machine* keeps results, which a remote job cannot write, so
  it goes to ``<staging>/output`` rather than being refused (the summary says where).
- ``--staging`` that is not an ``s3://BUCKET[/PREFIX]`` URI.
"""

from __future__ import annotations

from typing import Any

from emulator.errors import EmulatorError
from emulator.request.build import DEFAULT_ROLE_ARN
from emulator.request.schema import LOCAL_INSTANCE_TYPES
from emulator.submit.rewrite import local_locations, member_text

ROLE_HINT = "give --role arn:aws:iam::ACCOUNT:role/NAME (a role SageMaker can assume)"


class SubmitRefused(EmulatorError):
    """The request (or a flag) asks for what only the local emulator can do; ``problems``
    lists each as ``member or flag: what; what to change``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        heading = (
            f"The request cannot be submitted to SageMaker as it is ({count} "
            f"problem{'s' * (count != 1)}; nothing was uploaded):"
        )
        super().__init__("\n".join([heading, *(f"  - {p}" for p in self.problems)]))


def role_problems(request: dict[str, Any], role: str | None) -> list[str]:
    """RoleArn must be a real role: given in the request, or by ``--role``."""
    if role is not None:
        return []
    given = request.get("RoleArn")
    if not given:
        return [f"RoleArn: missing; {ROLE_HINT}"]
    if given == DEFAULT_ROLE_ARN:
        return [f"RoleArn: {given} is the emulator's placeholder; {ROLE_HINT}"]
    return []


def flag_problems(*, gpus: int | None, pass_aws_credentials: bool) -> list[str]:
    problems = []
    if gpus is not None:
        problems.append(
            "--gpus: chooses GPUs of the local Docker engine; SageMaker gives each host its "
            "instance type's GPUs: drop --gpus and choose an instance type with the GPUs you "
            "want (--instance-type ml.g5.xlarge)"
        )
    if pass_aws_credentials:
        problems.append(
            "--pass-aws-credentials: SageMaker containers get the credentials of the job's "
            "role (RoleArn), never yours: drop the flag"
        )
    return problems


def local_only_problems(request: dict[str, Any], staging: str | None) -> list[str]:
    """Instance types and, without a staging prefix, local locations (a validated request)."""
    problems = []
    resources = request.get("ResourceConfig") or {}
    typed: list[tuple[tuple[str | int, ...], object]] = [
        (("ResourceConfig", "InstanceType"), resources.get("InstanceType"))
    ]
    for index, group in enumerate(resources.get("InstanceGroups") or []):
        typed.append(
            (("ResourceConfig", "InstanceGroups", index, "InstanceType"), group.get("InstanceType"))
        )
    for path, instance_type in typed:
        if instance_type in LOCAL_INSTANCE_TYPES:
            problems.append(
                f"{member_text(path)}: {instance_type!r} runs only on this machine; give a "
                "SageMaker instance type (--instance-type ml.m5.large, or ml.g5.xlarge for a GPU)"
            )
    if staging is None:
        for location in local_locations(request):
            what = "is written by the job" if location.kind == "output" else "is uploaded"
            problems.append(
                f"{location.member}: {location.uri!r} is on this machine; give --staging "
                f"s3://BUCKET/PREFIX (where it {what}) or an s3:// URI"
            )
    return problems


def staging_problems(staging: str | None) -> list[str]:
    if staging is None or (staging.startswith("s3://") and staging[len("s3://") :].split("/")[0]):
        return []
    return [f"--staging {staging!r}: expected s3://BUCKET or s3://BUCKET/PREFIX"]
