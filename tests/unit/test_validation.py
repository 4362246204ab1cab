"""CreateTrainingJob validation: the botocore model's rules, our semantic rules, local additions.

Each case edits a valid request (tests/data/requests/minimal.json) and names the problem it must
produce: a fragment of the message (what is wrong and how to fix it) at a path, by default the
path of the case's first edit.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.errors import RequestInvalid
from emulator.request.schema import Node
from emulator.request.spec import (
    ChannelSpec,
    CheckpointSpec,
    DataSourceSpec,
    InstanceGroup,
    JobSpec,
    MetricDefinition,
    OutputFolderSpec,
    ResourceSpec,
)
from emulator.request.validation import parse_request, validate_request
from emulator.request.walk import check

REQUESTS = Path(__file__).parents[1] / "data" / "requests"
DELETE = object()  # as an edit value: remove the member


def load(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((REQUESTS / f"{name}.json").read_text())
    return result


def edited(edits: dict[str, object], base: str = "minimal") -> dict[str, Any]:
    """The base request with ``{"Path.To[0].Member": value}`` edits applied (DELETE removes)."""
    request = load(base)
    for path, value in edits.items():
        tokens = [int(t[1:-1]) if t[0] == "[" else t for t in re.findall(r"\[\d+\]|[^.[]+", path)]
        parent: Any = request
        for token in tokens[:-1]:
            parent = parent.setdefault(token, {}) if isinstance(token, str) else parent[token]
        if value is DELETE:
            del parent[tokens[-1]]
        else:
            parent[tokens[-1]] = copy.deepcopy(value)
    return request


def assert_problem(request: object, path: str, fragment: str) -> None:
    problems = validate_request(request)
    matching = [p for p in problems if p.startswith(f"{path}: ") and fragment in p]
    assert matching, f"no problem at {path} containing {fragment!r} in:\n" + "\n".join(problems)
    with pytest.raises(RequestInvalid) as caught:
        parse_request(request)
    assert caught.value.problems == problems


def case(name: str, edits: dict[str, object], fragment: str, path: str | None = None) -> Any:
    return pytest.param(edits, path or next(iter(edits)), fragment, id=name)


def check_case(edits: dict[str, object], path: str, fragment: str) -> None:
    assert_problem(edited(edits), path, fragment)


ALGO = "AlgorithmSpecification"
CHANNEL = "InputDataConfig[0]"
S3 = f"{CHANNEL}.DataSource.S3DataSource"
METRICS = f"{ALGO}.MetricDefinitions"
AUTH = f"{ALGO}.TrainingImageConfig.TrainingRepositoryAuthConfig"
CREDENTIALS = f"{AUTH}.TrainingRepositoryCredentialsProviderArn"
LAMBDA_CN = "arn:aws-cn:lambda:cn-north-1:123456789012:function:f"
VPC_AUTH = {f"{ALGO}.TrainingImageConfig": {"TrainingRepositoryAccessMode": "Vpc"}}
GROUPS = {
    "ResourceConfig": {
        "InstanceGroups": [
            {"InstanceType": "local", "InstanceCount": 1, "InstanceGroupName": "a"},
            {"InstanceType": "local", "InstanceCount": 1, "InstanceGroupName": "b"},
        ]
    }
}
PIPE_JOB = {f"{ALGO}.TrainingInputMode": "Pipe"}
FASTFILE_JOB = {f"{ALGO}.TrainingInputMode": "FastFile"}
SPOT = {"EnableManagedSpotTraining": True}
TRAIN_CHANNEL = load("minimal")["InputDataConfig"][0]
PIPE_TRAIN = {**TRAIN_CHANNEL, "InputMode": "Pipe"}
TRAIN_1 = {**TRAIN_CHANNEL, "ChannelName": "train_1"}
EFS = {
    "FileSystemId": "fs-0123456789",
    "FileSystemAccessMode": "ro",
    "FileSystemType": "EFS",
    "DirectoryPath": "/d",
}


# ---------------------------------------------------------------------------------------------
# Rules of the service model
# ---------------------------------------------------------------------------------------------

REQUIRED = [
    case("name", {"TrainingJobName": DELETE}, "missing required parameter; give a string of 1-63"),
    case("role", {"RoleArn": DELETE}, "missing required parameter; give a string of 20-2048"),
    case("output", {"OutputDataConfig": DELETE}, "give an object with S3OutputPath"),
    case("output-path", {"OutputDataConfig.S3OutputPath": DELETE}, "missing required parameter"),
    case("mode", {f"{ALGO}.TrainingInputMode": DELETE}, "give one of Pipe, File, FastFile"),
    case("channel-name", {f"{CHANNEL}.ChannelName": DELETE}, "missing required parameter"),
    case("data-source", {f"{CHANNEL}.DataSource": DELETE}, "missing required parameter"),
    case("data-type", {f"{S3}.S3DataType": DELETE}, "give one of ManifestFile, S3Prefix"),
    case("uri", {f"{S3}.S3Uri": DELETE}, "give an s3:// URI, a file:///absolute/path URI or a"),
    case("regex", {METRICS: [{"Name": "loss"}]}, "missing required", f"{METRICS}[0].Regex"),
    case("tag-key", {"Tags": [{"Value": "v"}]}, "missing required", "Tags[0].Key"),
    case(
        "retries",
        {"RetryStrategy": {}},
        "give an integer >= 1 and <= 30",
        "RetryStrategy.MaximumRetryAttempts",
    ),
    case(
        "checkpoint-uri",
        {"CheckpointConfig": {"LocalPath": "/opt/ml/checkpoints"}},
        "missing required",
        "CheckpointConfig.S3Uri",
    ),
    case(
        "vpc", {"VpcConfig": {"Subnets": ["s-1"]}}, "missing required", "VpcConfig.SecurityGroupIds"
    ),
    case("null", {"TrainingJobName": None}, "required parameter is null; give a string of 1-63"),
]

TYPES = [
    case(
        "hp-int",
        {"HyperParameters.epochs": 10},
        'must be a string (got int 10); quote the value: "10"',
    ),
    case("hp-float", {"HyperParameters.lr": 0.01}, '(got float 0.01); quote the value: "0.01"'),
    case("hp-bool", {"HyperParameters.verbose": True}, '(got bool True); quote the value: "true"'),
    case("hp-list", {"HyperParameters": ["epochs=10"]}, "must be an object (got list of 1 item)"),
    case(
        "env-null",
        {"Environment": {"MODE": None}},
        "(got None); null is not a value here",
        "Environment.MODE",
    ),
    case(
        "bool-str", {"EnableNetworkIsolation": "true"}, '(got str "true"); use true without quotes'
    ),
    case(
        "int-str",
        {"ResourceConfig.InstanceCount": "2"},
        'integer (got str "2"); remove the quotes: 2',
    ),
    case(
        "int-float", {"ResourceConfig.InstanceCount": 2.0}, "(got float 2.0); use a whole number: 2"
    ),
    case("int-bool", {"ResourceConfig.InstanceCount": True}, "must be an integer (got bool True)"),
    case(
        "list-dict",
        {"InputDataConfig": TRAIN_CHANNEL},
        "must be a list (got dict with 2 keys); wrap",
    ),
    case("list-str", {f"{ALGO}.ContainerEntrypoint": "python train.py"}, "must be a list (got str"),
    case(
        "long-float",
        {f"{CHANNEL}.ShuffleConfig": {"Seed": 1.5}},
        "(got float 1.5)",
        f"{CHANNEL}.ShuffleConfig.Seed",
    ),
    case("no-quote-hint-when-quoting-fails", {"RoleArn": 5}, "must be a string (got int 5)"),
    case("struct-null", {"VpcConfig": None}, "must be an object (got None)"),
    case(
        "nested-map-value",
        {"DebugHookConfig": {"S3OutputPath": "s3://b/d", "HookParameters": {"a": ["x"]}}},
        "must be a string (got list of 1 item)",
        "DebugHookConfig.HookParameters.a",
    ),
]

LENGTHS = [
    case("name-long", {"TrainingJobName": "a" * 64}, "must be at most 63 characters long (got 64)"),
    case("name-empty", {"TrainingJobName": ""}, "must be at least 1 character long (got 0)"),
    case("role-short", {"RoleArn": "arn:aws:iam::1:role"}, "at least 20 characters long (got 19)"),
    case(
        "hp-key-long",
        {"HyperParameters": {"k" * 257: "v"}},
        "the key must be at most 256 characters long (got 257)",
        'HyperParameters["' + "k" * 60 + '..." (257 characters)]',
    ),
    case(
        "hp-value-long",
        {"HyperParameters.x": "v" * 2501},
        "at most 2500 characters long (got 2501)",
    ),
    case(
        "hp-count",
        {"HyperParameters": {f"k{i}": "v" for i in range(101)}},
        "must have at most 100 entries (got 101)",
    ),
    case(
        "env-count",
        {"Environment": {f"K{i}": "v" for i in range(101)}},
        "must have at most 100 entries (got 101)",
    ),
    case(
        "env-value-long",
        {"Environment": {"V": "x" * 513}},
        "at most 512 characters",
        "Environment.V",
    ),
    case("channels-empty", {"InputDataConfig": []}, "must have at least 1 item (got 0)"),
    case(
        "channels-21",
        {"InputDataConfig": [TRAIN_CHANNEL] * 21},
        "must have at most 20 items (got 21)",
    ),
    case(
        "tags-51",
        {"Tags": [{"Key": "k", "Value": "v"}] * 51},
        "must have at most 50 items (got 51)",
    ),
    case(
        "entrypoint-empty", {f"{ALGO}.ContainerEntrypoint": []}, "must have at least 1 item (got 0)"
    ),
    case(
        "argument-long",
        {f"{ALGO}.ContainerArguments": ["x" * 257]},
        "must be at most 256 characters long",
        f"{ALGO}.ContainerArguments[0]",
    ),
    case(
        "arguments-101", {f"{ALGO}.ContainerArguments": ["x"] * 101}, "at most 100 items (got 101)"
    ),
    case(
        "metrics-41", {METRICS: [{"Name": "m", "Regex": "(x)"}] * 41}, "at most 40 items (got 41)"
    ),
    case(
        "metric-name-empty",
        {METRICS: [{"Name": "", "Regex": "(x)"}]},
        "must be at least 1 character long",
        f"{METRICS}[0].Name",
    ),
    case("image-long", {f"{ALGO}.TrainingImage": "a" * 256}, "must be at most 255 characters long"),
    case(
        "uri-long",
        {f"{S3}.S3Uri": "s3://b/" + "k" * 1018},
        "at most 1024 characters long (got 1025)",
    ),
    case("attributes-17", {f"{S3}.AttributeNames": ["a"] * 17}, "at most 16 items (got 17)"),
]

ENUMS = [
    case(
        "input-mode",
        {f"{ALGO}.TrainingInputMode": "file"},
        'must be one of Pipe, File, FastFile (got "file"); did you mean "File"?',
    ),
    case(
        "compression",
        {f"{CHANNEL}.CompressionType": "gzip", f"{CHANNEL}.InputMode": "Pipe"},
        'must be one of None, Gzip (got "gzip"); did you mean "Gzip"?',
    ),
    case("wrapper", {f"{CHANNEL}.RecordWrapperType": "recordio"}, 'did you mean "RecordIO"?'),
    case(
        "distribution",
        {f"{S3}.S3DataDistributionType": "Sharded"},
        "must be one of FullyReplicated, ShardedByS3Key",
    ),
    case(
        "data-type", {f"{S3}.S3DataType": "S3Object"}, "must be one of ManifestFile, S3Prefix, Aug"
    ),
    case(
        "instance-type",
        {"ResourceConfig.InstanceType": "m5.xlarge"},
        "values of TrainingInstanceType (such as ml.m4.xlarge, ml.m4.2xlarge, ml.m4.4xlarge, "
        'local, local_gpu) (got "m5.xlarge"); did you mean "ml.m5.xlarge"?',
    ),
    case("output-compression", {"OutputDataConfig.CompressionType": "ZIP"}, "one of GZIP, NONE"),
    case(
        "access-mode",
        {f"{ALGO}.TrainingImageConfig": {"TrainingRepositoryAccessMode": "private"}},
        "must be one of Platform, Vpc",
        f"{ALGO}.TrainingImageConfig.TrainingRepositoryAccessMode",
    ),
]

PATTERNS = [
    case(
        "name-underscore",
        {"TrainingJobName": "my_job"},
        'must match the pattern [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62} (got "my_job"); use letters',
    ),
    case("name-trailing-hyphen", {"TrainingJobName": "job-"}, "must match the pattern"),
    case(
        "channel-space", {f"{CHANNEL}.ChannelName": "a b"}, "match the pattern [A-Za-z0-9\\.\\-_]+"
    ),
    case(
        "env-key",
        {"Environment": {"1BAD": "x"}},
        "the key must match the pattern [a-zA-Z_][a-zA-Z0-9_]*",
        "Environment.1BAD",
    ),
    case("role", {"RoleArn": "arn:aws:iam::123:role/long-enough"}, "give an IAM role ARN such as"),
    case(
        "no-bucket",
        {"OutputDataConfig.S3OutputPath": "s3://"},
        "pattern (https|s3)://([^/]+)/?(.*)",
    ),
    case("kms-key", {"OutputDataConfig.KmsKeyId": "my key!"}, "pattern [a-zA-Z0-9:/_-]*"),
    case(
        "tag-key-symbol",
        {"Tags": [{"Key": "a#b", "Value": "v"}]},
        "must match the pattern ([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)",
        "Tags[0].Key",
    ),
    # \p{Z} is Unicode separators: a tab is not one.
    case("tag-tab", {"Tags": [{"Key": "k", "Value": "a\tb"}]}, "must match", "Tags[0].Value"),
    # Java's \p{Alnum} is ASCII-only.
    case(
        "alnum-is-ascii",
        {**VPC_AUTH, AUTH: {"TrainingRepositoryCredentialsProviderArn": "arn:awsé:lambda:x:1:f"}},
        "\\p{Alnum}",
        CREDENTIALS,
    ),
    # Java's '.' stops at line terminators.
    case(
        "dot-no-newline",
        {"HyperParameters.text": "line1\nline2"},
        "remove the line breaks (the API's '.' does not match them)",
    ),
    case(
        "experiment",
        {"ExperimentConfig": {"ExperimentName": "exp_1"}},
        "must match the pattern",
        "ExperimentConfig.ExperimentName",
    ),
    case(
        "security-group",
        {"VpcConfig": {"SecurityGroupIds": ["sg 1"], "Subnets": ["s-1"]}},
        "must match the pattern [-0-9a-zA-Z]+",
        "VpcConfig.SecurityGroupIds[0]",
    ),
]

RETRIES = "RetryStrategy.MaximumRetryAttempts"
RUNTIME = "StoppingCondition.MaxRuntimeInSeconds"
SEED = f"{CHANNEL}.ShuffleConfig.Seed"
RANGES = [
    case(
        "retries-0", {"RetryStrategy": {"MaximumRetryAttempts": 0}}, "at least 1 (got 0)", RETRIES
    ),
    case(
        "retries-31",
        {"RetryStrategy": {"MaximumRetryAttempts": 31}},
        "at most 30 (got 31)",
        RETRIES,
    ),
    case(
        "runtime-0",
        {"StoppingCondition": {"MaxRuntimeInSeconds": 0}},
        "at least 1 (got 0)",
        RUNTIME,
    ),
    case(
        "pending",
        {"StoppingCondition": {"MaxPendingTimeInSeconds": 1799}},
        "must be at least 1800 (got 1799)",
        "StoppingCondition.MaxPendingTimeInSeconds",
    ),
    case("keep-alive", {"ResourceConfig.KeepAlivePeriodInSeconds": 21601}, "must be at most 21600"),
    case("volume", {"ResourceConfig.VolumeSizeInGB": -1}, "must be at least 0 (got -1)"),
    case("int32", {"ResourceConfig.InstanceCount": 2**31}, "at most 2147483647 (got 2147483648)"),
    case(
        "int64", {f"{CHANNEL}.ShuffleConfig": {"Seed": 2**63}}, "at most 9223372036854775807", SEED
    ),
    case("huge", {"ResourceConfig.InstanceCount": 10**5000}, "(a number of about 5001 digits)"),
]

UNKNOWN = [
    case("top", {"Foo": 1}, 'Unknown parameter in input: "Foo", must be one of: TrainingJobName, '),
    case("top-case", {"trainingJobName": "x"}, 'did you mean "TrainingJobName"?'),
    case(
        "nested",
        {f"{ALGO}.TrainingImageUri": "x"},
        'Unknown parameter in AlgorithmSpecification: "TrainingImageUri", must be one of: ',
    ),
    case("in-list", {f"{CHANNEL}.Mode": "File"}, 'Unknown parameter in InputDataConfig[0]: "Mode"'),
    case("typo", {f"{S3}.S3Url": "s3://b/k"}, 'did you mean "S3Uri"?'),
    case(
        "map-key", {"HyperParameters": {1: "x"}}, "keys must be strings", "HyperParameters[int 1]"
    ),
]


@pytest.mark.parametrize(("edits", "path", "fragment"), REQUIRED)
def test_required_members(edits: dict[str, object], path: str, fragment: str) -> None:
    check_case(edits, path, fragment)


@pytest.mark.parametrize(("edits", "path", "fragment"), TYPES)
def test_types(edits: dict[str, object], path: str, fragment: str) -> None:
    check_case(edits, path, fragment)


@pytest.mark.parametrize(("edits", "path", "fragment"), LENGTHS)
def test_lengths_and_sizes(edits: dict[str, object], path: str, fragment: str) -> None:
    check_case(edits, path, fragment)


@pytest.mark.parametrize(("edits", "path", "fragment"), ENUMS)
def test_enums(edits: dict[str, object], path: str, fragment: str) -> None:
    check_case(edits, path, fragment)


@pytest.mark.parametrize(("edits", "path", "fragment"), PATTERNS)
def test_patterns(edits: dict[str, object], path: str, fragment: str) -> None:
    check_case(edits, path, fragment)


@pytest.mark.parametrize(("edits", "path", "fragment"), RANGES)
def test_integer_ranges(edits: dict[str, object], path: str, fragment: str) -> None:
    check_case(edits, path, fragment)


@pytest.mark.parametrize(("edits", "path", "fragment"), UNKNOWN)
def test_unknown_parameters(edits: dict[str, object], path: str, fragment: str) -> None:
    check_case(edits, path, fragment)


def test_the_exact_message_for_an_unquoted_hyperparameter() -> None:
    assert validate_request(edited({"HyperParameters": {"epochs": 10}})) == [
        'HyperParameters.epochs: must be a string (got int 10); quote the value: "10"'
    ]


def test_non_string_names_and_non_object_requests() -> None:
    request: dict[object, object] = {7: "x"}
    request.update(load("minimal"))
    assert validate_request(request) == ["[int 7]: parameter names must be strings (got int 7)"]
    assert validate_request([load("minimal")]) == [
        "request: must be an object (got list of 1 item)"
    ]
    assert validate_request(None) == ["request: must be an object (got None)"]


def test_a_flood_of_unknown_parameters_is_counted_not_listed() -> None:
    problems = validate_request({**load("minimal"), **{f"X{i}": 1 for i in range(100_000)}})
    assert len(problems) == 11
    assert problems[0].startswith('X0: Unknown parameter in input: "X0"')
    assert problems[-1] == "request: 99990 more unknown parameters; remove them"


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("double", 1.5, "1.5"),
        ("float", 2, True),
        ("timestamp", "2024-01-01T00:00:00Z", [1]),
        ("blob", b"x", 1),
    ],
)
def test_kinds_unused_by_the_operation_today_are_type_checked(
    kind: str, good: object, bad: object
) -> None:
    problems: list[str] = []
    check(Node(kind, "Member"), good, "Member", problems)
    assert problems == []
    check(Node(kind, "Member"), bad, "Member", problems)
    assert len(problems) == 1
    assert problems[0].startswith("Member: must be ")


@pytest.mark.parametrize(
    "edits",
    [
        pytest.param(
            {"Tags": [{"Key": "équipe:ß/=+-@", "Value": "日本 語 ١٢٣\u2003x"}]}, id="tags"
        ),
        pytest.param({"Environment": {"TEXT": "first\nsecond\r\n"}}, id="env-any-character"),
        pytest.param({"HyperParameters": {"ключ": "значение ✓"}}, id="hp-unicode"),
        pytest.param(
            {
                **VPC_AUTH,
                AUTH: {"TrainingRepositoryCredentialsProviderArn": LAMBDA_CN},
            },
            id="alnum-class",
        ),
        pytest.param({f"{CHANNEL}.ShuffleConfig": {"Seed": -(2**63)}}, id="int64-min"),
        pytest.param({"ResourceConfig.InstanceCount": 2**31 - 1}, id="int32-max"),
        pytest.param(
            {"HyperParameters": {}, "Environment": {}, "Tags": []}, id="empty-collections"
        ),
        pytest.param({"InputDataConfig": DELETE}, id="no-channels"),
        pytest.param({f"{ALGO}.ContainerArguments": ("a", "b")}, id="tuple-as-list"),
    ],
)
def test_valid_edge_values(edits: dict[str, object]) -> None:
    assert validate_request(edited(edits)) == []


# ---------------------------------------------------------------------------------------------
# Semantic rules
# ---------------------------------------------------------------------------------------------

NO_IMAGE = {f"{ALGO}.TrainingImage": DELETE, f"{ALGO}.AlgorithmName": "my-algorithm"}
WAIT = "StoppingCondition.MaxWaitTimeInSeconds"
GROUP_NAMES = f"{S3}.InstanceGroupNames"
SEMANTIC = [
    case(
        "image-and-algorithm",
        {f"{ALGO}.AlgorithmName": "my-algorithm"},
        "give either TrainingImage or AlgorithmName, not both",
        ALGO,
    ),
    case("algorithm-name", NO_IMAGE, "cannot run locally", f"{ALGO}.AlgorithmName"),
    case(
        "algorithm-name-fix",
        NO_IMAGE,
        "give the algorithm's image as TrainingImage instead",
        f"{ALGO}.AlgorithmName",
    ),
    case("no-image", {f"{ALGO}.TrainingImage": DELETE}, "missing; give the Docker image to run"),
    case("no-algorithm", {ALGO: DELETE}, "missing; a local training job needs"),
    case("bad-image", {f"{ALGO}.TrainingImage": "My Image"}, "not a Docker image reference"),
    case("empty-image", {f"{ALGO}.TrainingImage": ""}, "not a Docker image reference"),
    case(
        "metric-regex",
        {METRICS: [{"Name": "loss", "Regex": "loss=("}]},
        "not a valid regular expression",
        f"{METRICS}[0].Regex",
    ),
    case(
        "duplicate-channel",
        {"InputDataConfig": [TRAIN_CHANNEL] * 2},
        'duplicate channel name "train" (also InputDataConfig[0]); channel names must be unique',
        "InputDataConfig[1].ChannelName",
    ),
    case(
        "channel-dot",
        {f"{CHANNEL}.ChannelName": "."},
        '"." cannot name a channel: its directory /opt/ml/input/data/. would be the data '
        'directory itself (/opt/ml/input/data); use another name, such as "train"',
    ),
    case(
        "channel-dot-dot",
        {f"{CHANNEL}.ChannelName": "..", **PIPE_JOB},
        '".." cannot name a channel: its directory /opt/ml/input/data/.. would be the data '
        "directory's parent (/opt/ml/input); use another name",
    ),
    case("empty-data-source", {f"{CHANNEL}.DataSource": {}}, "needs S3DataSource"),
    case(
        "two-sources",
        {f"{CHANNEL}.DataSource.FileSystemDataSource": EFS},
        "give exactly one of S3DataSource, FileSystemDataSource",
        f"{CHANNEL}.DataSource",
    ),
    case(
        "file-system",
        {f"{CHANNEL}.DataSource": {"FileSystemDataSource": EFS}},
        "cannot be mounted locally; copy the data to a local directory or S3",
        f"{CHANNEL}.DataSource.FileSystemDataSource",
    ),
    case(
        "dataset",
        {f"{CHANNEL}.DataSource": {"DatasetSource": {"DatasetArn": "arn:x"}}},
        "cannot be read locally",
        f"{CHANNEL}.DataSource.DatasetSource",
    ),
    case("converse", {f"{S3}.S3DataType": "Converse"}, "Converse datasets"),
    case(
        "fastfile-job-manifest",
        {f"{S3}.S3DataType": "ManifestFile", **FASTFILE_JOB},
        "FastFile mode reads S3Prefix data only (got ManifestFile); use InputMode File or Pipe",
    ),
    case(
        "fastfile-channel-augmented",
        {f"{S3}.S3DataType": "AugmentedManifestFile", f"{CHANNEL}.InputMode": "FastFile"},
        "the emulator streams AugmentedManifestFile in Pipe mode only (this channel's mode is "
        "FastFile); set the channel's InputMode to Pipe",
    ),
    case(
        "file-job-augmented",
        {f"{S3}.S3DataType": "AugmentedManifestFile"},
        "the emulator streams AugmentedManifestFile in Pipe mode only (this channel's mode is "
        "File); set the channel's InputMode to Pipe",
    ),
    case(
        "file-channel-augmented-in-pipe-job",
        {f"{S3}.S3DataType": "AugmentedManifestFile", f"{CHANNEL}.InputMode": "File", **PIPE_JOB},
        "streams AugmentedManifestFile in Pipe mode only (this channel's mode is File)",
    ),
    case(
        "pipe-fifo-clashes-with-a-channel",
        {"InputDataConfig": [PIPE_TRAIN, TRAIN_1]},
        'channel "train_1" has the name of a FIFO of the Pipe channel "train" (train_0, '
        "train_1, ... in /opt/ml/input/data); rename one of them",
        "InputDataConfig[1].ChannelName",
    ),
    case(
        "pipe-job-fifo-clashes-with-an-earlier-channel",
        {
            "InputDataConfig": [
                {**TRAIN_CHANNEL, "ChannelName": "a_0", "InputMode": "File"},
                {**TRAIN_CHANNEL, "ChannelName": "a"},
            ],
            **PIPE_JOB,
        },
        'channel "a_0" has the name of a FIFO of the Pipe channel "a"',
        "InputDataConfig[0].ChannelName",
    ),
    case(
        "file-gzip",
        {f"{CHANNEL}.CompressionType": "Gzip"},
        "Gzip is a Pipe-mode feature (this channel's mode is File); set the channel's InputMode",
    ),
    case("file-recordio", {f"{CHANNEL}.RecordWrapperType": "RecordIO"}, "RecordIO is a Pipe-mode"),
    case(
        "fastfile-gzip",
        {f"{CHANNEL}.CompressionType": "Gzip", **FASTFILE_JOB},
        "(this channel's mode is FastFile)",
    ),
    case(
        "channel-file-in-pipe-job",
        {f"{CHANNEL}.RecordWrapperType": "RecordIO", f"{CHANNEL}.InputMode": "File", **PIPE_JOB},
        "(this channel's mode is File)",
    ),
    case(
        "no-resources", {"ResourceConfig": DELETE}, 'missing; give {"InstanceType": "local", "Ins'
    ),
    case(
        "groups-and-type",
        {**GROUPS, "ResourceConfig.InstanceType": "local"},
        "cannot be used with InstanceGroups; give it in each group instead",
        "ResourceConfig.InstanceType",
    ),
    case(
        "groups-and-count",
        {**GROUPS, "ResourceConfig.InstanceCount": 1},
        "cannot be used with InstanceGroups",
        "ResourceConfig.InstanceCount",
    ),
    case(
        "no-type",
        {"ResourceConfig.InstanceType": DELETE},
        "missing; give it, or give InstanceGroups",
    ),
    case(
        "no-count", {"ResourceConfig.InstanceCount": DELETE}, "missing; give it, or give Instance"
    ),
    case("count-0", {"ResourceConfig.InstanceCount": 0}, "must be at least 1 (got 0)"),
    case(
        "group-count-0",
        {**GROUPS, "ResourceConfig.InstanceGroups[1].InstanceCount": 0},
        "must be at least 1 (got 0)",
        "ResourceConfig.InstanceGroups[1].InstanceCount",
    ),
    case(
        "duplicate-group",
        {**GROUPS, "ResourceConfig.InstanceGroups[1].InstanceGroupName": "a"},
        'duplicate group name "a"',
        "ResourceConfig.InstanceGroups[1].InstanceGroupName",
    ),
    case(
        "unknown-group",
        {**GROUPS, GROUP_NAMES: ["a", "c"]},
        'no instance group named "c"; ResourceConfig.InstanceGroups has: a, b',
        f"{GROUP_NAMES}[1]",
    ),
    case("groups-needed", {GROUP_NAMES: ["a"]}, "needs ResourceConfig.InstanceGroups"),
    case(
        "wait-below-runtime",
        {"StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 60}, **SPOT},
        "must be at least MaxRuntimeInSeconds (3600) (got 60); raise it to 3600 or more",
        WAIT,
    ),
    case(
        "wait-below-default",
        {"StoppingCondition": {"MaxWaitTimeInSeconds": 3600}, **SPOT},
        "MaxRuntimeInSeconds (86400, the default)",
        WAIT,
    ),
    case(
        "wait-without-spot",
        {"StoppingCondition": {"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 120}},
        "only valid with managed spot training; set EnableManagedSpotTraining to true",
        WAIT,
    ),
    case(
        "checkpoint-relative",
        {"CheckpointConfig": {"S3Uri": "s3://b/c", "LocalPath": "checkpoints"}},
        "must be an absolute path inside the container",
        "CheckpointConfig.LocalPath",
    ),
    case(
        "serverless",
        {"ServerlessJobConfig": {"BaseModelArn": "arn:x", "JobType": "FineTuning"}},
        "serverless model-customization jobs cannot run locally",
    ),
]


@pytest.mark.parametrize(("edits", "path", "fragment"), SEMANTIC)
def test_semantic_rules(edits: dict[str, object], path: str, fragment: str) -> None:
    check_case(edits, path, fragment)


@pytest.mark.parametrize(
    "edits",
    [
        pytest.param(
            {f"{CHANNEL}.CompressionType": "Gzip", f"{CHANNEL}.RecordWrapperType": "RecordIO"}
            | PIPE_JOB,
            id="pipe-job-gzip-recordio",
        ),
        pytest.param(
            {f"{CHANNEL}.InputMode": "Pipe", f"{CHANNEL}.CompressionType": "Gzip"},
            id="pipe-channel-in-file-job",
        ),
        pytest.param(
            {f"{CHANNEL}.CompressionType": "None", f"{CHANNEL}.RecordWrapperType": "None"},
            id="file-explicit-none",
        ),
        pytest.param({f"{CHANNEL}.ShuffleConfig": {"Seed": 3}}, id="file-shuffle"),
        pytest.param(
            {f"{CHANNEL}.ShuffleConfig": {"Seed": 3}, **FASTFILE_JOB}, id="fastfile-shuffle"
        ),
        pytest.param(
            {f"{S3}.S3DataType": "AugmentedManifestFile", **PIPE_JOB}, id="pipe-augmented"
        ),
        pytest.param(
            {f"{CHANNEL}.InputMode": "File", f"{S3}.S3DataType": "ManifestFile", **FASTFILE_JOB},
            id="file-channel-in-fastfile-job",
        ),
        pytest.param({**GROUPS, GROUP_NAMES: ["b"]}, id="group-names"),
        pytest.param(
            {"InputDataConfig": [TRAIN_CHANNEL, TRAIN_1]}, id="file-channels-named-like-fifos"
        ),
        pytest.param(
            {"InputDataConfig": [PIPE_TRAIN, {**TRAIN_CHANNEL, "ChannelName": "train_01"}]},
            id="pipe-channel-and-a-name-no-fifo-takes",
        ),
        pytest.param(
            {"InputDataConfig": [PIPE_TRAIN, {**TRAIN_CHANNEL, "ChannelName": "train_x"}]},
            id="pipe-channel-and-a-similar-name",
        ),
        pytest.param(
            {"InputDataConfig": [{**TRAIN_CHANNEL, "ChannelName": n} for n in ("...", ".a", "a.")]},
            id="channel-names-with-dots",
        ),
        pytest.param({"EnableNetworkIsolation": True}, id="network-isolation"),
        pytest.param(
            {"StoppingCondition": {"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 60}, **SPOT},
            id="wait-equals-runtime",
        ),
        pytest.param({f"{ALGO}.TrainingImage": "localhost:5000/a/b:v1.2_3"}, id="image-registry"),
        pytest.param({f"{ALGO}.TrainingImage": "img@sha256:" + "a" * 64}, id="image-digest"),
    ],
)
def test_semantically_valid_requests(edits: dict[str, object]) -> None:
    assert validate_request(edited(edits)) == []


# ---------------------------------------------------------------------------------------------
# Local additions: local data locations and instance types
# ---------------------------------------------------------------------------------------------

URI_FIELDS = [
    f"{S3}.S3Uri",
    "OutputDataConfig.S3OutputPath",
    "CheckpointConfig.S3Uri",
    "TensorBoardOutputConfig.S3OutputPath",
]
GOOD_URIS = [
    "s3://bucket/prefix/",
    "s3://bucket",
    "https://bucket.s3.amazonaws.com/key",
    "file:///abs/dir",
    "file://localhost/abs/dir",
    "/abs/dir",
    "relative/dir",
    "./data",
    "../data",
    "data",
]
BAD_URIS = [
    ("file://relative/x", "a file:// URI names an absolute path"),
    ("", "must not be empty"),
    ("ftp://host/x", "unsupported URI scheme"),
    ("s3:/bucket/x", "malformed or unsupported URI"),
    ("http://bucket/x", "malformed or unsupported URI"),
    ("s3://", "must match the pattern (https|s3)://([^/]+)/?(.*)"),  # S3 URIs keep the model's
]


def with_uri(field: str, uri: str) -> dict[str, Any]:
    config, _, member = field.partition(".")
    if config in ("CheckpointConfig", "TensorBoardOutputConfig"):  # absent from minimal.json
        return edited({config: {member: uri}})
    return edited({field: uri})


@pytest.mark.parametrize("field", URI_FIELDS)
@pytest.mark.parametrize("uri", GOOD_URIS)
def test_uri_fields_accept_s3_file_uris_and_local_paths(field: str, uri: str) -> None:
    assert validate_request(with_uri(field, uri)) == []


@pytest.mark.parametrize("field", URI_FIELDS)
@pytest.mark.parametrize(("uri", "fragment"), BAD_URIS)
def test_uri_fields_refuse_malformed_locations(field: str, uri: str, fragment: str) -> None:
    assert_problem(with_uri(field, uri), field, fragment)


@pytest.mark.parametrize("instance_type", ["local", "local_gpu", "ml.m5.xlarge"])
def test_local_instance_types(instance_type: str) -> None:
    assert validate_request(edited({"ResourceConfig.InstanceType": instance_type})) == []
    groups: dict[str, object] = {
        **GROUPS,
        "ResourceConfig.InstanceGroups[0].InstanceType": instance_type,
    }
    assert validate_request(edited(groups)) == []


def test_local_instance_types_are_only_training_instance_types() -> None:
    check_case({"ResourceConfig.InstanceType": "LOCAL"}, "ResourceConfig.InstanceType", '"local"?')
    rule = {"RuleConfigurationName": "r", "RuleEvaluatorImage": "img", "InstanceType": "local"}
    path = "DebugRuleConfigurations[0].InstanceType"
    check_case({"DebugRuleConfigurations": [rule]}, path, "must be one of the")


# ---------------------------------------------------------------------------------------------
# The JobSpec
# ---------------------------------------------------------------------------------------------


def test_minimal_request_gets_the_defaults() -> None:
    request = load("minimal")
    assert parse_request(request) == JobSpec(
        name="minimal-job",
        image="busybox-emu:latest",
        input_mode="File",
        channels=(ChannelSpec("train", DataSourceSpec("S3Prefix", "data/train"), "File"),),
        output_path="file:///tmp/emulator-output",
        resources=ResourceSpec("local", 1, 30),
        entrypoint=None,
        arguments=None,
        hyperparameters={},
        environment={},
        output_compression="GZIP",
        max_runtime_seconds=86400,
        checkpoint=None,
        network_isolation=False,
        role_arn="arn:aws:iam::123456789012:role/SageMakerRole",
        extra_configs={},
        request=request,
    )


def test_full_request_with_every_member_parses_to_the_expected_spec() -> None:
    request = load("full")
    # Every member of the model but ServerlessJobConfig, which cannot run locally.
    assert "ServerlessJobConfig" not in request and len(request) >= 27
    spec = parse_request(request)
    assert spec == JobSpec(
        name="full-job-1",
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1.0",
        input_mode="File",
        channels=(
            ChannelSpec(
                "train",
                DataSourceSpec(
                    "S3Prefix", "s3://bucket/train/", "ShardedByS3Key", (), ("workers",)
                ),
                input_mode="FastFile",
                content_type="text/csv",
                shuffle_seed=7,
            ),
            ChannelSpec(
                "stream",
                DataSourceSpec(
                    "AugmentedManifestFile",
                    "file:///data/stream/manifest.jsonl",
                    attribute_names=("source-ref", "label"),
                ),
                input_mode="Pipe",
                compression="Gzip",
                record_wrapper="RecordIO",
            ),
            ChannelSpec(
                "validation", DataSourceSpec("ManifestFile", "data/validation.manifest"), "File"
            ),
        ),
        output_path="s3://bucket/output",
        resources=ResourceSpec(
            "local",
            3,
            50,
            (InstanceGroup("workers", "local", 2), InstanceGroup("gpu", "ml.g5.xlarge", 1)),
        ),
        entrypoint=("python3", "/opt/ml/code/train.py"),
        arguments=("--epochs", "10"),
        metric_definitions=(
            MetricDefinition("train:loss", "loss=([0-9.eE+-]+)"),
            MetricDefinition("validation:accuracy", "val_acc: ([0-9.]+)"),
        ),
        hyperparameters={
            "epochs": "10",
            "learning_rate": "0.01",
            "sagemaker_program": '"train.py"',
        },
        environment={"LOG_LEVEL": "debug", "MULTI_LINE": "first\nsecond"},
        output_compression="NONE",
        max_runtime_seconds=3600,
        checkpoint=CheckpointSpec("/tmp/checkpoints", "/opt/ml/checkpoints/run"),
        output_folders=(
            OutputFolderSpec(
                "TensorBoardOutputConfig",
                "file:///tmp/tb",
                "/opt/ml/output/tensorboard",
                "tensorboard-output",
            ),
            OutputFolderSpec(
                "DebugHookConfig", "s3://bucket/debug", "/opt/ml/output/tensors", "debug-output"
            ),
        ),
        network_isolation=True,
        role_arn="arn:aws:iam::123456789012:role/service-role/SageMakerRole",
        extra_configs={
            "debughookconfig.json": request["DebugHookConfig"],
            "profilerconfig.json": request["ProfilerConfig"],
            "tensorboardoutputconfig.json": request["TensorBoardOutputConfig"],
        },
        request=request,
    )
    assert [host.name for host in spec.resources.hosts()] == ["algo-1", "algo-2", "algo-3"]


def test_the_spec_is_frozen_and_owns_a_copy_of_the_request() -> None:
    request = load("full")
    spec = parse_request(request)
    request["HyperParameters"]["epochs"] = "99"
    request["DebugHookConfig"]["HookParameters"]["save_interval"] = "1"
    assert spec.request["HyperParameters"]["epochs"] == "10"
    assert spec.hyperparameters["epochs"] == "10"
    assert spec.extra_configs["debughookconfig.json"]["HookParameters"]["save_interval"] == "100"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]


def test_checkpoint_path_defaults_and_channels_take_the_job_mode() -> None:
    spec = parse_request(edited({"CheckpointConfig": {"S3Uri": "s3://b/ckpt"}, **PIPE_JOB}))
    assert spec.checkpoint == CheckpointSpec("s3://b/ckpt", "/opt/ml/checkpoints")
    assert [channel.input_mode for channel in spec.channels] == ["Pipe"]


# ---------------------------------------------------------------------------------------------
# All problems at once, and nothing but RequestInvalid
# ---------------------------------------------------------------------------------------------


def test_many_problems_come_back_at_once_with_their_paths() -> None:
    request = edited(
        {
            "TrainingJobName": "bad_name",
            "HyperParameters": {"epochs": 10, "lr": "0.1"},
            f"{ALGO}.TrainingInputMode": "file",
            f"{CHANNEL}.InputMode": "FastFile",
            f"{S3}.S3DataType": "ManifestFile",
            "ResourceConfig.InstanceCount": "1",
            "OutputDataConfig": {},
        }
    )
    source = {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "ftp://x"}}
    request["InputDataConfig"].append({"ChannelName": "train", "DataSource": source, "Extra": 1})
    with pytest.raises(RequestInvalid) as caught:
        parse_request(request)
    problems = caught.value.problems
    assert [problem.split(": ")[0] for problem in problems] == [
        # The model's rules, in the order of the request's members...
        "TrainingJobName",
        "AlgorithmSpecification.TrainingInputMode",
        "InputDataConfig[1].DataSource.S3DataSource.S3Uri",
        "InputDataConfig[1].Extra",
        "OutputDataConfig.S3OutputPath",
        "ResourceConfig.InstanceCount",
        "HyperParameters.epochs",
        # ...then the semantic rules.
        "InputDataConfig[0].DataSource.S3DataSource.S3DataType",
        "InputDataConfig[1].ChannelName",
    ]
    message = str(caught.value)
    assert message.startswith("The training job request is invalid (9 problems):")
    assert all(f"  - {problem}" in message for problem in problems)


def only_request_invalid(request: object) -> None:
    """parse_request either returns a JobSpec or raises RequestInvalid with sane problems."""
    try:
        spec = parse_request(request)
    except RequestInvalid as exc:
        assert exc.problems
        for problem in exc.problems:
            assert ": " in problem
            assert len(problem) < 3000
            problem.encode("utf-8")  # printable, whatever the input held
    else:
        assert isinstance(spec, JobSpec)


def member_names() -> list[str]:
    names: set[str] = set()
    stack: list[Any] = [load("full")]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            names.update(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return sorted(names)


# Keys drawn from real member names reach deep into the model; the others are unknown keys.
KEYS = st.sampled_from(member_names()) | st.text(max_size=12) | st.integers(-3, 3)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(JSON_VALUES | st.dictionaries(KEYS, JSON_VALUES, max_size=8))
def test_arbitrary_json_values_only_raise_request_invalid(value: object) -> None:
    only_request_invalid(value)


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_of(item, (*prefix, index))
    return found


FULL_PATHS = paths_of(load("full"))[1:]


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request with 1-3 members replaced by junk, deleted, or given junk siblings."""
    request = load(draw(st.sampled_from(["full", "minimal"])))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(FULL_PATHS))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        parent: Any = request
        try:
            for token in path[:-1]:
                parent = parent[token]
            if action == "delete" and isinstance(parent, dict):
                del parent[path[-1]]
            elif action == "add" and isinstance(parent, dict):
                parent[draw(KEYS)] = draw(JSON_VALUES)
            else:
                parent[path[-1]] = draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this part
    return request


@settings(FUZZ, max_examples=250)
@given(mutated_requests())
def test_mutated_requests_only_raise_request_invalid(request: dict[str, Any]) -> None:
    only_request_invalid(request)


def test_pathological_inputs_only_raise_request_invalid() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    huge = "x" * 10_000_000
    surrogate = "\ud800"
    junk: list[dict[str, Any]] = [
        {"HyperParameters": {"a": deep}},
        {"TrainingJobName": huge, "HyperParameters": {huge: huge}},
        {"Tags": [{"Key": surrogate, "Value": surrogate}], surrogate: 1},
        {"HyperParameters": {(1, 2): "x", None: "y"}},
        {"VpcConfig": object(), "Tags": {1, 2}, "HyperParameters": {"b": b"x"}},
        {"InputDataConfig": [None] * 1_000_000},
    ]
    cyclic = load("minimal")
    cyclic["HyperParameters"] = cyclic
    only_request_invalid(deep)
    only_request_invalid(cyclic)
    for members in junk:
        only_request_invalid({**load("minimal"), **members})  # no deep copy of the junk


def test_output_folders_default_their_local_path_and_go_under_the_job_name() -> None:
    request = load("minimal")
    request["TensorBoardOutputConfig"] = {"S3OutputPath": "s3://bucket/tb/"}
    request["DebugHookConfig"] = {"S3OutputPath": "s3://bucket/debug", "LocalPath": ""}
    tensorboard, debug = parse_request(request).output_folders
    assert tensorboard.local_path == "/opt/ml/output/tensorboard"
    assert tensorboard.destination("job-1") == "s3://bucket/tb/job-1/tensorboard-output"
    assert debug.local_path == "/opt/ml/output/tensors"
    assert debug.destination("job-1") == "s3://bucket/debug/job-1/debug-output"


@pytest.mark.parametrize("member", ["TensorBoardOutputConfig", "DebugHookConfig"])
def test_an_output_folder_needs_its_s3_output_path_and_an_absolute_local_path(
    member: str,
) -> None:
    request = load("minimal")
    request[member] = {"LocalPath": "relative/dir"}
    problems = validate_request(request)
    assert any(p.startswith(f"{member}.S3OutputPath") for p in problems), problems
    assert any(p.startswith(f"{member}.LocalPath: must be an absolute path") for p in problems), (
        problems
    )
