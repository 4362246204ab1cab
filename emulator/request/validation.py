"""Validate a CreateTrainingJob request and turn it into a frozen ``JobSpec``.

The request is the exact boto3 / ``aws sagemaker create-training-job --cli-input-json`` shape.

How it works
------------
1. ``emulator.request.nesting`` refuses a request nested deeper than any shape of the API
   could be, before anything recurses over it.
2. The botocore service model is the source of truth: ``emulator.request.schema`` compiles the
   input shape of ``CreateTrainingJob`` once into a small tree of nodes, with the local
   additions (``local`` and ``local_gpu`` instance types, local paths as S3Uri).
3. ``emulator.request.walk`` walks the request against that tree and records every breach the
   model states (unknown keys, required members, types, sizes, enums, Java patterns, ranges).
4. Rules the model cannot express (``emulator.request.rules``) run afterwards on whatever parts
   are well typed, so one call reports every problem.
5. Only a request without problems becomes a ``JobSpec`` (``emulator.request.spec_builder``).

Every problem is one string ``Path.To.Field: what is wrong (got ...); how to fix it`` with list
indices in the path (``InputDataConfig[1].ChannelName``); the request itself is ``request``
(wording: ``emulator.request.messages``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, cast

from emulator.errors import RequestInvalid
from emulator.request.nesting import depth_problems
from emulator.request.rules import check_semantics
from emulator.request.schema import LOCAL_INSTANCE_TYPES, schema
from emulator.request.spec import JobSpec
from emulator.request.spec_builder import build_job_spec
from emulator.request.walk import check

__all__ = ["LOCAL_INSTANCE_TYPES", "parse_request", "validate_request"]


def validate_request(request: object) -> list[str]:
    """Every problem of ``request`` as ``Path.To.Field: message``; [] when it is valid."""
    too_deep = depth_problems(request)
    if too_deep:  # invalid whatever else it holds, and not to be walked
        return too_deep
    problems: list[str] = []
    check(schema(), request, "", problems)
    if isinstance(request, dict):
        check_semantics(request, problems)
    return list(_unique(problems))


def _unique(problems: list[str]) -> Iterator[str]:
    # Two rules may spot the same thing (e.g. a count of 0); say it once.
    seen: set[str] = set()
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            yield problem


def parse_request(request: object) -> JobSpec:
    """Validate a CreateTrainingJob request and return its frozen ``JobSpec``.

    Raises ``RequestInvalid`` listing every problem at once; nothing else, whatever the input.
    """
    problems = validate_request(request)
    if problems:
        raise RequestInvalid(problems)
    return build_job_spec(copy.deepcopy(cast(dict[str, Any], request)))
