"""Validate a CreateTrainingJob request and turn it into a frozen ``JobSpec``.

The request is the exact boto3 / ``aws sagemaker create-training-job --cli-input-json`` shape.

How it works
------------
1. The botocore service model is the source of truth. ``_schema()`` loads the ``sagemaker``
   model once per process and compiles the input shape of ``CreateTrainingJob`` into a small
   tree of ``_Node`` objects (kind, min/max, enum, pattern, members, ...). Regexes are compiled
   lazily and cached, so validating a request is a plain walk over dicts: no botocore calls,
   no per-field code copied from the model.
2. ``_check`` walks the request against that tree and records every breach: unknown keys
   (reported like the real API: "Unknown parameter in ..."), missing required members, types,
   string lengths, list and map sizes, map keys and values, enums, patterns and integer ranges.
   (botocore's own ParamValidator checks only types, required members and minimums.) Integers
   are also held to the service's Java ranges: 32-bit for ``integer``, 64-bit for ``long``.
3. Patterns are Java regexes on the service side (java.util.regex), matched here with
   ``fullmatch`` after ``emulator.request.javaregex`` translates what differs and occurs in
   the model (Unicode and POSIX ``\\p{...}`` classes, ``.`` and Java's line terminators,
   ASCII-only ``\\d \\w \\s``). So a HyperParameters value (``.*``) cannot hold a line
   break, while an Environment value (``[\\S\\s]*``) can.
4. Local additions: a string of shape ``S3Uri`` (channel S3Uri, S3OutputPath of every config,
   CheckpointConfig.S3Uri) also accepts ``file:///abs/path`` (or ``file://localhost/...``)
   URIs and plain local paths, absolute or relative, as ``emulator.storage.local`` reads them;
   the model's pattern applies to s3:// and https:// URIs only, other schemes are refused.
   The ``TrainingInstanceType`` enum
   (ResourceConfig.InstanceType, InstanceGroups[].InstanceType) also accepts ``local`` and
   ``local_gpu``.
5. Rules the model cannot express run afterwards on whatever parts are well typed, so one call
   reports every problem (see ``_check_semantics`` for the list and the exact choices).
6. Only a request without problems becomes a ``JobSpec`` (``emulator.request.spec_builder``).

Every problem is one string ``Path.To.Field: what is wrong (got ...); how to fix it`` with list
indices in the path (``InputDataConfig[1].ChannelName``); the request itself is ``request``.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import botocore.session
from botocore.model import ListShape, MapShape, Shape, StringShape, StructureShape

from emulator.errors import RequestInvalid
from emulator.request.javaregex import LINE_TERMINATORS, compile_java
from emulator.request.spec import DEFAULT_CHECKPOINT_PATH, DEFAULT_MAX_RUNTIME_SECONDS, JobSpec
from emulator.request.spec_builder import build_job_spec
from emulator.storage.uris import is_s3_uri

__all__ = ["LOCAL_INSTANCE_TYPES", "parse_request", "validate_request"]

OPERATION = "CreateTrainingJob"
LOCAL_INSTANCE_TYPES = ("local", "local_gpu")
# Local additions to the model, keyed by shape name (see the module docstring, point 4).
_EXTRA_ENUM_VALUES: dict[str, tuple[str, ...]] = {"TrainingInstanceType": LOCAL_INSTANCE_TYPES}
_URI_SHAPE = "S3Uri"

# Java's integer types: values outside them cannot even be deserialized by the service.
_INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
_BIG_ENUM = 12  # list enums longer than this by a few examples, not in full
_SHOWN_CHARS = 60  # longest excerpt of a user's value echoed in a message
_MAX_UNKNOWN_SHOWN = 10  # unknown parameters reported one by one per object, then counted

# Hints appended to pattern failures, by shape name.
_PATTERN_HINTS = {
    "TrainingJobName": "use letters, digits and hyphens; start and end with a letter or digit",
    "ChannelName": "use letters, digits, '.', '-' and '_'",
    "TrainingEnvironmentKey": "use letters, digits and '_', not starting with a digit",
    "RoleArn": "give an IAM role ARN such as arn:aws:iam::123456789012:role/MyRole",
    _URI_SHAPE: "give s3://bucket/prefix, file:///absolute/path or a local path",
}


# --------------------------------------------------------------------------------------------
# The model, compiled once
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    """One shape of the model, reduced to what validation needs."""

    kind: str  # botocore type name: structure, list, map, string, integer, long, boolean, ...
    name: str  # the shape's name in the model, e.g. "TrainingJobName"
    min: int | None = None
    max: int | None = None
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    members: dict[str, _Node] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    member: _Node | None = None  # list member
    key: _Node | None = None  # map key
    value: _Node | None = None  # map value


def _compile_shape(shape: Shape, memo: dict[str, _Node]) -> _Node:
    # Memoized by shape name: shared shapes compile once and recursive shapes terminate.
    if shape.name in memo:
        return memo[shape.name]
    meta = shape.metadata
    enum = tuple(cast(StringShape, shape).enum) if shape.type_name == "string" else ()
    node = _Node(
        kind=shape.type_name,
        name=shape.name,
        min=meta.get("min"),
        max=meta.get("max"),
        enum=enum + _EXTRA_ENUM_VALUES.get(shape.name, ()) if enum else (),
        pattern=meta.get("pattern"),
    )
    memo[shape.name] = node
    if isinstance(shape, StructureShape):
        node.members = {k: _compile_shape(v, memo) for k, v in shape.members.items()}
        node.required = tuple(shape.required_members)
    elif isinstance(shape, ListShape):
        node.member = _compile_shape(shape.member, memo)
    elif isinstance(shape, MapShape):
        node.key = _compile_shape(shape.key, memo)
        node.value = _compile_shape(shape.value, memo)
    return node


@functools.cache
def _schema() -> _Node:
    """The input shape of CreateTrainingJob (loading the model takes ~0.3 s, so once)."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.operation_model(OPERATION).input_shape
    assert shape is not None, f"botocore's model has no input for {OPERATION}"
    return _compile_shape(shape, {})


# --------------------------------------------------------------------------------------------
# Describing values and expectations in messages
# --------------------------------------------------------------------------------------------


def _excerpt(text: str) -> str:
    """A JSON-quoted string, cut short: huge values must not flood the message."""
    head = json.dumps(text[:_SHOWN_CHARS], ensure_ascii=False)
    if len(text) > _SHOWN_CHARS:
        head = f'{head[:-1]}..." ({len(text)} characters)'
    # Lone surrogates (valid in JSON, not in UTF-8) would break printing the message.
    return head.encode("utf-8", "backslashreplace").decode("utf-8")


def _show(value: object) -> str:
    """What the user gave, e.g. ``int 10``, ``str "abc"``, ``list of 3 items``, ``None``."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return f"str {_excerpt(value)}"
    if isinstance(value, bool | float):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, int):
        return f"int {_number(value)}"
    if isinstance(value, list | tuple):
        return f"{type(value).__name__} of {_plural(len(value), 'item')}"
    if isinstance(value, dict):
        return f"dict with {_plural(len(value), 'key')}"
    return type(value).__name__


def _number(value: int) -> str:
    # str() of a huge int is slow (and refused past 4300 digits): show its size instead.
    if -(10**30) < value < 10**30:
        return str(value)
    return f"(a number of about {int(abs(value).bit_length() * 0.30103) + 1} digits)"


def _child_path(path: str, name: object) -> str:
    """``Parent.Child`` for plain names (``HyperParameters.epochs``), else ``Parent["odd key"]``."""
    if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_\-]{1,60}", name):
        return f"{path}.{name}" if path else name
    return f"{path}[{_excerpt(name) if isinstance(name, str) else _show(name)}]"


def _plural(count: int, word: str) -> str:
    if count == 1:
        return f"1 {word}"
    return f"{count} {'entries' if word == 'entry' else word + 's'}"


def _size_phrase(node: _Node, unit: str) -> str:
    low, high = node.min or 0, node.max
    if high is not None and low:
        return f" of {low}-{high} {unit}s"
    if high is not None:
        return f" of at most {_plural(high, unit)}"
    return f" of at least {_plural(low, unit)}" if low else ""


def _expectation(node: _Node) -> str:
    """What a member should be, e.g. ``a string of 1-63 characters``."""
    if node.name == _URI_SHAPE:
        return "an s3:// URI, a file:///absolute/path URI or a local path"
    if node.enum:
        shown = node.enum if len(node.enum) <= _BIG_ENUM else (*node.enum[:3], "...")
        return "one of " + ", ".join(shown)
    if node.kind == "string":
        return "a string" + _size_phrase(node, "character")
    if node.kind in _INT_RANGES:
        low = f" >= {node.min}" if node.min is not None else ""
        high = f" <= {node.max}" if node.max is not None else ""
        return "an integer" + (low + " and" + high if low and high else low or high)
    if node.kind == "boolean":
        return "true or false"
    if node.kind == "list":
        return "a list" + _size_phrase(node, "item")
    if node.kind == "map":
        return "an object of string keys and string values"
    if node.kind == "structure" and node.required:
        return "an object with " + ", ".join(node.required)
    return "an object" if node.kind == "structure" else f"a {node.kind}"


def _type_fix(node: _Node, value: object) -> str:
    """How to fix a value of the wrong type, when there is an obvious way."""
    if value is None and node is not _schema():
        return "; null is not a value here: give one or leave the member out"
    if node.kind == "string" and isinstance(value, int | float | bool):
        if type(value) is int and not -(10**30) < value < 10**30:
            return ""  # nobody meant a number that size
        quoted = json.dumps(value)
        scratch: _Problems = []
        _check_string(node, quoted, "", scratch)
        if not scratch:  # only suggest quoting where the quoted value is valid
            return f"; quote the value: {json.dumps(quoted)}"
    if node.kind in _INT_RANGES and isinstance(value, str) and re.fullmatch(r"-?\d{1,30}", value):
        return f"; remove the quotes: {int(value)}"
    if node.kind in _INT_RANGES and isinstance(value, float) and value.is_integer():
        return f"; use a whole number: {int(value)}"
    if node.kind == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
        return f"; use {value.lower()} without quotes"
    if node.kind == "list" and isinstance(value, str | dict):
        return "; wrap it in a list: [...]"
    return ""


_TYPE_WORDS = {
    "structure": "an object",
    "map": "an object",
    "list": "a list",
    "string": "a string",
    "integer": "an integer",
    "long": "an integer",
    "boolean": "a boolean (true or false)",
    "float": "a number",
    "double": "a number",
    "timestamp": "a timestamp",
    "blob": "binary data",
}


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """`; did you mean "X"?` for a near miss (case or a typo), else ''."""
    if len(word) > 100:
        return ""
    folded = [c for c in choices if c.lower() == word.lower()]
    prefixed = [c for c in choices if c.lower().endswith("." + word.lower())]  # m5.xlarge
    close = folded or prefixed or difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f'; did you mean "{close[0]}"?' if close else ""


# --------------------------------------------------------------------------------------------
# The model-driven walk
# --------------------------------------------------------------------------------------------

_Problems = list[str]


def _check(node: _Node, value: object, path: str, out: _Problems) -> None:
    """Record every breach of ``node``'s constraints by ``value`` (at ``path``) in ``out``."""
    checker = _CHECKERS.get(node.kind)
    if checker is not None:  # (a "document" member would take any JSON value)
        checker(node, value, path, out)


_ACCEPTED_TYPES: dict[str, tuple[type, ...]] = {
    "structure": (dict,),
    "map": (dict,),
    "list": (list, tuple),  # as botocore: a tuple is a list
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "boolean": (bool,),
    # Not used by CreateTrainingJob today; checked for type so a new member is not waved through.
    "float": (int, float),
    "double": (int, float),
    "timestamp": (str, int, float, datetime.datetime),
    "blob": (bytes, bytearray, str),
}


def _type_ok(node: _Node, value: object, path: str, out: _Problems) -> bool:
    expected = _ACCEPTED_TYPES[node.kind]
    # bool is an int in Python, but the API takes it only where a boolean is expected.
    if isinstance(value, expected) and (bool in expected or not isinstance(value, bool)):
        return True
    word = _TYPE_WORDS[node.kind]
    out.append(f"{path or 'request'}: must be {word} (got {_show(value)}){_type_fix(node, value)}")
    return False


def _check_structure(node: _Node, value: object, path: str, out: _Problems) -> None:
    if not _type_ok(node, value, path, out):
        return
    request = cast(dict[object, object], value)
    where = path or "input"
    unknown = 0
    for name in node.required:
        if name not in request:
            out.append(
                f"{_child_path(path, name)}: missing required parameter; "
                f"give {_expectation(node.members[name])}"
            )
    for key, item in request.items():
        if item is None and key in node.required:  # null is no value: say what to give
            out.append(
                f"{_child_path(path, key)}: required parameter is null; "
                f"give {_expectation(node.members[key])}"
            )
            continue
        if not isinstance(key, str):
            out.append(
                f"{_child_path(path, key)}: parameter names must be strings (got {_show(key)})"
            )
            continue
        known = node.members.get(key)
        if known is not None:
            _check(known, item, _child_path(path, key), out)
            continue
        unknown += 1
        if unknown <= _MAX_UNKNOWN_SHOWN:
            choices = ", ".join(node.members)
            out.append(
                f"{_child_path(path, key)}: Unknown parameter in {where}: "
                f"{_excerpt(key)}, must be one of: {choices}{_suggest(key, list(node.members))}"
            )
    if unknown > _MAX_UNKNOWN_SHOWN:  # a junk dict must not produce a million messages
        more = unknown - _MAX_UNKNOWN_SHOWN
        out.append(f"{path or 'request'}: {_plural(more, 'more unknown parameter')}; remove them")


def _check_count(node: _Node, count: int, unit: str, path: str, out: _Problems) -> None:
    if node.min is not None and count < node.min:
        out.append(f"{path}: must have at least {_plural(node.min, unit)} (got {count})")
    if node.max is not None and count > node.max:
        out.append(f"{path}: must have at most {_plural(node.max, unit)} (got {count})")


def _check_list(node: _Node, value: object, path: str, out: _Problems) -> None:
    if not _type_ok(node, value, path, out):
        return
    items = cast(list[object], value)
    _check_count(node, len(items), "item", path, out)
    assert node.member is not None
    # Past the maximum the request is already wrong: don't walk a million extra items.
    for index, item in enumerate(items[: node.max]):
        _check(node.member, item, f"{path}[{index}]", out)


def _check_map(node: _Node, value: object, path: str, out: _Problems) -> None:
    if not _type_ok(node, value, path, out):
        return
    entries = cast(dict[object, object], value)
    _check_count(node, len(entries), "entry", path, out)
    assert node.key is not None and node.value is not None
    for index, (key, item) in enumerate(entries.items()):
        if node.max is not None and index >= node.max:
            break
        entry_path = _child_path(path, key)
        if isinstance(key, str):
            _check_string(node.key, key, entry_path, out, subject="the key ")
        else:
            out.append(f"{entry_path}: keys must be strings (got {_show(key)}); quote the key")
        _check(node.value, item, entry_path, out)


def _check_string(node: _Node, value: object, path: str, out: _Problems, subject: str = "") -> None:
    """A string member, or a map key when ``subject`` is "the key " (then named so)."""
    if not _type_ok(node, value, path, out):
        return
    text = cast(str, value)
    size_ok = _check_length(node, text, path, out, subject)
    if node.enum:
        _check_enum(node, text, path, out)
    elif node.name == _URI_SHAPE and not is_s3_uri(text):
        _check_local_uri(text, path, out)  # local addition: the model's pattern is for S3
    elif node.pattern and size_ok:  # an over-long value already failed; spare the regex
        _check_pattern(node, text, path, out, subject)


def _check_length(node: _Node, text: str, path: str, out: _Problems, subject: str) -> bool:
    if node.min is not None and len(text) < node.min:
        out.append(
            f"{path}: {subject}must be at least {_plural(node.min, 'character')} long "
            f"(got {len(text)})"
        )
        return False
    if node.max is not None and len(text) > node.max:
        out.append(
            f"{path}: {subject}must be at most {_plural(node.max, 'character')} long "
            f"(got {len(text)}); shorten it"
        )
        return False
    return True


def _check_enum(node: _Node, text: str, path: str, out: _Problems) -> None:
    if text in node.enum:
        return
    if len(node.enum) <= _BIG_ENUM:
        allowed = "one of " + ", ".join(node.enum)
    else:
        examples = ", ".join((*node.enum[:3], *_EXTRA_ENUM_VALUES.get(node.name, ())))
        allowed = f"one of the {len(node.enum)} values of {node.name} (such as {examples})"
    out.append(f"{path}: must be {allowed} (got {_excerpt(text)}){_suggest(text, node.enum)}")


def _check_pattern(node: _Node, text: str, path: str, out: _Problems, subject: str) -> None:
    assert node.pattern is not None
    regex = compile_java(node.pattern)
    if regex is None or regex.fullmatch(text):
        return
    hint = _PATTERN_HINTS.get(node.name, "")
    if not hint and any(c in LINE_TERMINATORS for c in text):
        hint = "remove the line breaks (the API's '.' does not match them)"
    out.append(
        f"{path}: {subject}must match the pattern {node.pattern} (got {_excerpt(text)})"
        + (f"; {hint}" if hint else "")
    )


def _check_local_uri(text: str, path: str, out: _Problems) -> None:
    """file:///abs/path or a plain path (absolute or relative): the emulator's local sources."""
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", text)
    if text.startswith("file://"):
        rest = text[len("file://") :]
        if not (rest.startswith("/") or rest.startswith("localhost/")):
            out.append(
                f"{path}: a file:// URI names an absolute path (got {_excerpt(text)}); "
                "write file:///absolute/path, or give a relative path without file://"
            )
    elif not text.strip():
        out.append(f"{path}: must not be empty; {_PATTERN_HINTS[_URI_SHAPE]}")
    elif scheme and scheme.group(1).lower() in ("s3", "https", "http", "file", "s3a", "s3n"):
        out.append(
            f"{path}: malformed or unsupported URI (got {_excerpt(text)}); "
            + _PATTERN_HINTS[_URI_SHAPE]
        )
    elif "://" in text:
        out.append(
            f"{path}: unsupported URI scheme (got {_excerpt(text)}); " + _PATTERN_HINTS[_URI_SHAPE]
        )
    if "\x00" in text:
        out.append(f"{path}: must not contain NUL characters")


def _check_integer(node: _Node, value: object, path: str, out: _Problems) -> None:
    if not _type_ok(node, value, path, out):
        return
    number = cast(int, value)
    low, high = _INT_RANGES[node.kind]
    low = low if node.min is None else max(low, node.min)
    high = high if node.max is None else min(high, node.max)
    if number < low:
        out.append(f"{path}: must be at least {low} (got {_number(number)})")
    elif number > high:
        out.append(f"{path}: must be at most {high} (got {_number(number)})")


def _check_type(node: _Node, value: object, path: str, out: _Problems) -> None:
    _type_ok(node, value, path, out)


_CHECKERS: dict[str, Callable[[_Node, object, str, _Problems], None]] = {
    "structure": _check_structure,
    "list": _check_list,
    "map": _check_map,
    "string": _check_string,
    "integer": _check_integer,
    "long": _check_integer,
    "boolean": _check_type,
    "float": _check_type,
    "double": _check_type,
    "timestamp": _check_type,
    "blob": _check_type,
}


# --------------------------------------------------------------------------------------------
# Rules the model cannot express
# --------------------------------------------------------------------------------------------
# They read the request through these tolerant accessors: a part of the wrong type was already
# reported by the walk and is simply skipped here.


def _obj(value: object) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_INPUT_MODES = ("File", "Pipe", "FastFile")
_DOCKER_REFERENCE = re.compile(
    # distribution/reference grammar: [domain[:port]/]path[:tag][@digest], path lowercase.
    r"(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


def _check_semantics(request: dict[Any, Any], out: _Problems) -> None:
    """Cross-field rules and what cannot run locally. The exact choices:

    - AlgorithmSpecification is required (the model makes it optional only for serverless jobs,
      which cannot run locally, nor can ServerlessJobConfig).
    - Exactly one of TrainingImage and AlgorithmName; AlgorithmName alone is refused (algorithm
      resources run images only SageMaker can pull): give the algorithm's TrainingImage.
      TrainingImage must be a Docker image reference (``[registry/]repository[:tag][@digest]``,
      registry optional locally).
    - MetricDefinitions[].Regex must compile as a Python regex (the metrics engine uses one).
    - Channel names are unique. Each DataSource has exactly one source; FileSystemDataSource
      (EFS/FSx) and DatasetSource cannot run locally; S3DataType Converse is refused.
    - With the EFFECTIVE mode (channel InputMode, else TrainingInputMode): AugmentedManifestFile
      is streamed in Pipe mode only (the emulator does not stage it as files); FastFile takes
      S3Prefix only (no ManifestFile either); File and FastFile refuse
      CompressionType Gzip and RecordWrapperType RecordIO (Pipe-mode features). ShuffleConfig
      is accepted with every mode (in File mode it orders the ShardedByS3Key split).
    - A Pipe channel ``c`` owns the names ``c_0``, ``c_1``, ... (its FIFOs in
      /opt/ml/input/data): no channel of any mode may bear one of them.
    - ResourceConfig is required; InstanceGroups (non-empty) excludes InstanceType and
      InstanceCount, otherwise both are required; every InstanceCount >= 1; group names are
      unique; channel InstanceGroupNames must name groups of ResourceConfig.InstanceGroups.
    - StoppingCondition: MaxWaitTimeInSeconds >= MaxRuntimeInSeconds (default 86400), and, as
      the real API says, only with EnableManagedSpotTraining true.
    - CheckpointConfig.LocalPath, when given, is an absolute container path.
    """
    for rule in _SEMANTIC_RULES:
        rule(request, out)


def _check_algorithm(request: dict[Any, Any], out: _Problems) -> None:
    if "AlgorithmSpecification" not in request:
        out.append(
            "AlgorithmSpecification: missing; a local training job needs "
            '{"TrainingImage": "<image>", "TrainingInputMode": "File"}'
        )
        return
    if not isinstance(request["AlgorithmSpecification"], dict):
        return  # the walk reported the type
    algo = request["AlgorithmSpecification"]
    has_image, has_name = "TrainingImage" in algo, "AlgorithmName" in algo
    path = "AlgorithmSpecification"
    if has_image and has_name:
        out.append(
            f"{path}: give either TrainingImage or AlgorithmName, not both; "
            "keep TrainingImage to run locally"
        )
    elif has_name:
        out.append(
            f"{path}.AlgorithmName: algorithm resources cannot run locally (their images live "
            "in SageMaker's registry); give the algorithm's image as TrainingImage instead "
            "(DescribeAlgorithm shows it under TrainingSpecification.TrainingImage)"
        )
    elif not has_image:
        out.append(f"{path}.TrainingImage: missing; give the Docker image to run")
    image = _text(algo.get("TrainingImage"))
    if image is not None and len(image) <= 255 and not _DOCKER_REFERENCE.fullmatch(image):
        out.append(
            f"{path}.TrainingImage: not a Docker image reference (got {_excerpt(image)}); "
            "give [registry/]repository[:tag] or repository@sha256:<digest>, "
            "repository in lowercase"
        )
    for index, definition in enumerate(_items(algo.get("MetricDefinitions"))[:40]):
        regex = _text(_obj(definition).get("Regex"))
        if regex and len(regex) <= 500:  # longer ones broke the model's max already
            _check_python_regex(regex, f"{path}.MetricDefinitions[{index}].Regex", out)


def _check_python_regex(regex: str, path: str, out: _Problems) -> None:
    try:
        re.compile(regex)
    except (re.error, RecursionError, OverflowError) as exc:
        out.append(f"{path}: not a valid regular expression ({exc}); fix the expression")


def _group_names(request: dict[Any, Any]) -> list[str] | None:
    """Names of ResourceConfig.InstanceGroups, or None when there are no groups."""
    groups = _items(_obj(request.get("ResourceConfig")).get("InstanceGroups"))
    names = [_text(_obj(group).get("InstanceGroupName")) for group in groups]
    return [name for name in names if name is not None] if groups else None


def _effective_mode(channel: dict[Any, Any], request: dict[Any, Any]) -> str | None:
    """The channel's InputMode, else the job's TrainingInputMode; None if that is invalid."""
    if "InputMode" in channel:
        mode = channel["InputMode"]
    else:
        mode = _obj(request.get("AlgorithmSpecification")).get("TrainingInputMode")
    return mode if isinstance(mode, str) and mode in _INPUT_MODES else None


def _check_channels(request: dict[Any, Any], out: _Problems) -> None:
    seen: dict[str, int] = {}
    for index, channel in enumerate(_items(request.get("InputDataConfig"))[:20]):
        if not isinstance(channel, dict):
            continue
        path = f"InputDataConfig[{index}]"
        name = _text(channel.get("ChannelName"))
        if name is not None and name in seen:
            out.append(
                f"{path}.ChannelName: duplicate channel name {_excerpt(name)} (also "
                f"InputDataConfig[{seen[name]}]); channel names must be unique within the job"
            )
        elif name is not None:
            seen[name] = index
        _check_data_source(channel, request, path, out)
        _check_channel_mode(channel, request, path, out)
    _check_fifo_names(request, out)


def _check_fifo_names(request: dict[Any, Any], out: _Problems) -> None:
    """A Pipe channel ``c`` creates the FIFOs ``c_0``, ``c_1``, ... in /opt/ml/input/data:
    no other channel (of any mode) may be named like one of them."""
    channels = [
        (index, channel)
        for index, channel in enumerate(_items(request.get("InputDataConfig"))[:20])
        if isinstance(channel, dict) and _text(channel.get("ChannelName")) is not None
    ]
    pipes = {
        channel["ChannelName"]
        for _, channel in channels
        if _effective_mode(channel, request) == "Pipe"
    }
    for index, channel in channels:
        name: str = channel["ChannelName"]
        match = re.fullmatch(r"(.+)_(?:0|[1-9][0-9]*)", name)
        if match is None or match.group(1) not in pipes:
            continue
        pipe = match.group(1)
        out.append(
            f"InputDataConfig[{index}].ChannelName: channel {_excerpt(name)} has the name of a "
            f"FIFO of the Pipe channel {_excerpt(pipe)} ({pipe}_0, {pipe}_1, ... in "
            "/opt/ml/input/data); rename one of them"
        )


def _check_data_source(
    channel: dict[Any, Any], request: dict[Any, Any], path: str, out: _Problems
) -> None:
    source = channel.get("DataSource")
    if not isinstance(source, dict):
        return
    path = f"{path}.DataSource"
    given = [
        key for key in ("S3DataSource", "FileSystemDataSource", "DatasetSource") if key in source
    ]
    if not given:
        out.append(
            f"{path}: needs S3DataSource; give "
            '{"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://... or a local path"}}'
        )
    elif len(given) > 1:
        out.append(f"{path}: give exactly one of {', '.join(given)}")
    if "FileSystemDataSource" in source:
        out.append(
            f"{path}.FileSystemDataSource: EFS and FSx for Lustre file systems cannot be "
            "mounted locally; copy the data to a local directory or S3 and use S3DataSource "
            "with its S3Uri (s3://..., file:///... or a local path)"
        )
    if "DatasetSource" in source:
        out.append(
            f"{path}.DatasetSource: SageMaker hub datasets cannot be read locally; use "
            "S3DataSource with the dataset's S3 location or a local copy"
        )
    s3 = _obj(source.get("S3DataSource"))
    if s3.get("S3DataType") == "Converse":
        out.append(
            f"{path}.S3DataSource.S3DataType: Converse datasets (serverless model customization) "
            "cannot run locally; use S3Prefix, ManifestFile or AugmentedManifestFile"
        )
    _check_group_names(s3, request, f"{path}.S3DataSource", out)


def _check_group_names(
    s3: dict[Any, Any], request: dict[Any, Any], path: str, out: _Problems
) -> None:
    wanted = _items(s3.get("InstanceGroupNames"))
    if not wanted:
        return
    groups = _group_names(request)
    if groups is None:
        out.append(
            f"{path}.InstanceGroupNames: needs ResourceConfig.InstanceGroups; define the groups "
            "or remove InstanceGroupNames"
        )
        return
    for index, name in enumerate(wanted[:5]):
        if isinstance(name, str) and name not in groups:
            out.append(
                f"{path}.InstanceGroupNames[{index}]: no instance group named {_excerpt(name)}; "
                f"ResourceConfig.InstanceGroups has: {', '.join(groups) or 'none'}"
            )


def _check_channel_mode(
    channel: dict[Any, Any], request: dict[Any, Any], path: str, out: _Problems
) -> None:
    mode = _effective_mode(channel, request)
    if mode is None:
        return  # no valid mode to judge by: the walk reported why
    data_type = _obj(_obj(channel.get("DataSource")).get("S3DataSource")).get("S3DataType")
    if mode != "Pipe" and data_type == "AugmentedManifestFile":
        # channels/staging.py could only refuse it at run time: say so here, before the run.
        out.append(
            f"{path}.DataSource.S3DataSource.S3DataType: the emulator streams "
            f"AugmentedManifestFile in Pipe mode only (this channel's mode is {mode}); set the "
            "channel's InputMode to Pipe"
        )
    elif mode == "FastFile" and data_type == "ManifestFile":
        out.append(
            f"{path}.DataSource.S3DataSource.S3DataType: FastFile mode reads S3Prefix data only "
            f"(got {data_type}); use InputMode File or Pipe for manifests"
        )
    if mode == "Pipe":
        return
    pipe_only = {"CompressionType": "Gzip", "RecordWrapperType": "RecordIO"}
    for member, pipe_value in pipe_only.items():
        if channel.get(member) == pipe_value:
            out.append(
                f"{path}.{member}: {pipe_value} is a Pipe-mode feature (this channel's mode is "
                f"{mode}); set the channel's InputMode to Pipe or {member} to None"
            )


def _check_resources(request: dict[Any, Any], out: _Problems) -> None:
    if "ResourceConfig" not in request:
        out.append(
            'ResourceConfig: missing; give {"InstanceType": "local", "InstanceCount": 1} '
            "(or an ml.* instance type, or InstanceGroups)"
        )
        return
    if not isinstance(request["ResourceConfig"], dict):
        return  # the walk reported the type
    config = request["ResourceConfig"]
    groups = _items(config.get("InstanceGroups"))
    path = "ResourceConfig"
    if groups:
        for member in ("InstanceType", "InstanceCount"):
            if member in config:
                out.append(
                    f"{path}.{member}: cannot be used with InstanceGroups; give it in each "
                    "group instead"
                )
        _check_groups(groups, out)
        return
    for member in ("InstanceType", "InstanceCount"):
        if member not in config:
            out.append(f"{path}.{member}: missing; give it, or give InstanceGroups")
    _check_instance_count(config.get("InstanceCount"), f"{path}.InstanceCount", out)


def _check_groups(groups: list[Any], out: _Problems) -> None:
    seen: set[str] = set()
    for index, group in enumerate(groups[:5]):
        path = f"ResourceConfig.InstanceGroups[{index}]"
        name = _text(_obj(group).get("InstanceGroupName"))
        if name is not None and name in seen:
            out.append(f"{path}.InstanceGroupName: duplicate group name {_excerpt(name)}")
        elif name is not None:
            seen.add(name)
        _check_instance_count(_obj(group).get("InstanceCount"), f"{path}.InstanceCount", out)


def _check_instance_count(value: object, path: str, out: _Problems) -> None:
    count = _int(value)
    if count is not None and count == 0:  # the model allows 0; a job needs a host
        out.append(f"{path}: must be at least 1 (got 0)")


def _check_stopping(request: dict[Any, Any], out: _Problems) -> None:
    stopping = _obj(request.get("StoppingCondition"))
    wait = _int(stopping.get("MaxWaitTimeInSeconds"))
    if wait is None:
        return
    path = "StoppingCondition.MaxWaitTimeInSeconds"
    if request.get("EnableManagedSpotTraining") is not True:
        out.append(
            f"{path}: only valid with managed spot training; set EnableManagedSpotTraining to "
            "true or remove MaxWaitTimeInSeconds"
        )
    runtime = stopping.get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
    if _int(runtime) is not None and wait < runtime:
        default = "" if "MaxRuntimeInSeconds" in stopping else ", the default"
        out.append(
            f"{path}: must be at least MaxRuntimeInSeconds ({runtime}{default}) (got {wait}); "
            f"raise it to {runtime} or more"
        )


def _check_checkpoint(request: dict[Any, Any], out: _Problems) -> None:
    local_path = _text(_obj(request.get("CheckpointConfig")).get("LocalPath"))
    if local_path is not None and not local_path.startswith("/"):
        out.append(
            f"CheckpointConfig.LocalPath: must be an absolute path inside the container (got "
            f"{_excerpt(local_path)}); for example {DEFAULT_CHECKPOINT_PATH}"
        )


def _check_unsupported(request: dict[Any, Any], out: _Problems) -> None:
    if "ServerlessJobConfig" in request:
        out.append(
            "ServerlessJobConfig: serverless model-customization jobs cannot run locally; "
            "remove it and give AlgorithmSpecification.TrainingImage"
        )


_SEMANTIC_RULES: tuple[Callable[[dict[Any, Any], _Problems], None], ...] = (
    _check_algorithm,
    _check_channels,
    _check_resources,
    _check_stopping,
    _check_checkpoint,
    _check_unsupported,
)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def validate_request(request: object) -> list[str]:
    """Every problem of ``request`` as ``Path.To.Field: message``; [] when it is valid."""
    problems: list[str] = []
    _check(_schema(), request, "", problems)
    if isinstance(request, dict):
        _check_semantics(request, problems)
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
