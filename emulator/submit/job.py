"""``emulator submit``: the request `run` would run, sent to SageMaker instead.

    role (--role fills RoleArn) -> validation (the same rules as `run`) -> local paths made
    absolute -> refusals of what runs only locally -> plan (hash local files) -> [dry run ends]
    -> staging bucket checked -> uploads (what is missing only) -> CreateTrainingJob
    -> [--wait: follow the job to its end]

Every refusal comes before anything is uploaded; a dry run contacts nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from emulator.errors import RequestInvalid
from emulator.request.build import DEFAULT_ROLE_ARN
from emulator.request.paths import absolute_location
from emulator.request.validation import validate_request
from emulator.submit.follow import Follower
from emulator.submit.options import SubmitOptions, SubmitResult
from emulator.submit.preflight import (
    SubmitRefused,
    flag_problems,
    local_only_problems,
    role_problems,
    staging_problems,
)
from emulator.submit.remote import SageMakerApi
from emulator.submit.rewrite import local_locations, rewrite
from emulator.submit.upload import StagedLocation, missing_files, plan, upload


def prepare(request: dict[str, Any], options: SubmitOptions) -> SubmitResult:
    """The request to send and the staging plan; raises before anything leaves the machine."""
    request = copy.deepcopy(request)
    problems = flag_problems(gpus=options.gpus, pass_aws_credentials=options.pass_aws_credentials)
    problems += staging_problems(options.staging) + role_problems(request, options.role)
    if options.role is not None:
        request["RoleArn"] = options.role
    # The same rules as `run`; a missing RoleArn is reported above, with what to give.
    checked = request if "RoleArn" in request else {**request, "RoleArn": DEFAULT_ROLE_ARN}
    invalid = validate_request(checked)
    if invalid:
        raise RequestInvalid(invalid + problems)
    base_dir = options.base_dir or Path.cwd()
    absolute = {
        location.path: absolute_location(location.uri, base_dir)
        for location in local_locations(request)
    }
    request = rewrite(request, absolute)
    problems += local_only_problems(request, options.staging)
    if problems:
        raise SubmitRefused(problems)
    staged: list[StagedLocation] = []
    new_uris = {}
    if options.staging is not None:
        for location in local_locations(request):
            staged_location = plan(location, options.staging, request["TrainingJobName"])
            staged.append(staged_location)
            new_uris[location.path] = staged_location.uri
    return SubmitResult(rewrite(request, new_uris), staged)


def submit_job(request: dict[str, Any], options: SubmitOptions) -> SubmitResult:
    result = prepare(request, options)
    if options.dry_run:
        return result
    if result.staged and options.staging is not None:
        from emulator.storage.s3 import check_bucket

        check_bucket(options.staging, "--staging", options.s3)
        for staged in result.staged:
            files = missing_files(staged, options.s3)
            upload(staged, files, options.s3, options.progress)
            result.uploaded += [f.uri for f in files]
            skipped = len(staged.files) - len(files)
            if staged.files:
                options.notice(
                    f"{staged.member}: {staged.origin} -> {staged.uri} ({len(files)} uploaded"
                    f", {skipped} already there)"
                )
            else:
                options.notice(f"{staged.member}: {staged.origin} -> {staged.uri}")
    image = result.request.get("AlgorithmSpecification", {}).get("TrainingImage")
    if image and not _names_a_registry(image):
        options.notice(
            f"TrainingImage {image} names no registry: SageMaker pulls from ECR "
            "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME:TAG) or a registry it can reach"
        )
    api = SageMakerApi(options.profile, options.region)
    result.arn = api.create(result.request)
    options.notice(f"Created training job {result.name} ({result.arn}) at {api.endpoint}")
    if options.wait:
        result.record, result.interrupted = Follower(api, result.name, options).run()
    return result


def _names_a_registry(image: str) -> bool:
    """Docker's rule: the first path component is a registry when it has a '.' or ':'."""
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")
