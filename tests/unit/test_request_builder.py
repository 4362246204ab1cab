"""CLI flags folded into a CreateTrainingJob request: a request from flags alone is valid, flags
override a request file member by member, and the result is validated like any other request."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.errors import EmulatorError, RequestInvalid
from emulator.request.build import (
    Overrides,
    build_request,
    default_job_name,
    load_request,
    split_pair,
)
from emulator.request.validation import parse_request, validate_request
from tests.fixtures.jobs import PROBE, channel, probe_request

# CreateTrainingJob's TrainingJobName (botocore service model), length 1-63.
JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
OUTPUT = "/tmp/emulator-test-output"


def base_request(**members: Any) -> dict[str, Any]:
    return probe_request(Path(OUTPUT), **members)


def test_flags_alone_build_a_valid_request() -> None:
    flags = Overrides(
        image=PROBE,
        entrypoint=["python", "train.py"],
        arguments=["--epochs", "3"],
        input_mode="Pipe",
        channels=[("train", "data/train"), ("validation", "file:///data/validation")],
        hyperparameters=[("epochs", "3"), ("lr", "0.1")],
        environment=[("MODE", "fast")],
        metrics=[("loss", r"loss=([0-9.]+)")],
        output="out",
        job_name="my-job",
        max_runtime=60,
        instance_type="ml.c5.xlarge",
        instance_count=2,
    )
    request = build_request(None, flags, OUTPUT)
    assert validate_request(request) == []
    assert request["TrainingJobName"] == "my-job"
    assert request["AlgorithmSpecification"] == {
        "TrainingInputMode": "Pipe",
        "TrainingImage": PROBE,
        "ContainerEntrypoint": ["python", "train.py"],
        "ContainerArguments": ["--epochs", "3"],
        "MetricDefinitions": [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}],
    }
    assert request["InputDataConfig"] == [
        channel("train", "data/train"),
        channel("validation", "file:///data/validation"),
    ]
    assert request["HyperParameters"] == {"epochs": "3", "lr": "0.1"}
    assert request["Environment"] == {"MODE": "fast"}
    assert request["OutputDataConfig"] == {"S3OutputPath": "out"}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 60}
    assert request["ResourceConfig"]["InstanceType"] == "ml.c5.xlarge"
    assert request["ResourceConfig"]["InstanceCount"] == 2


def test_an_image_alone_builds_a_valid_request_with_sdk_defaults() -> None:
    request = build_request(None, Overrides(image=PROBE), OUTPUT)
    assert validate_request(request) == []
    assert request["AlgorithmSpecification"] == {
        "TrainingInputMode": "File",
        "TrainingImage": PROBE,
    }
    assert request["OutputDataConfig"] == {"S3OutputPath": OUTPUT}
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.m5.large",
        "InstanceCount": 1,
        "VolumeSizeInGB": 30,
    }
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert "InputDataConfig" not in request
    assert "HyperParameters" not in request


def test_flags_override_a_request_file_member_by_member() -> None:
    base = base_request(
        AlgorithmSpecification={"AlgorithmName": "my-algorithm", "TrainingInputMode": "File"},
        HyperParameters={"epochs": "10", "lr": "0.1"},
        Environment={"A": "1"},
        StoppingCondition={"MaxRuntimeInSeconds": 300, "MaxWaitTimeInSeconds": 600},
        EnableManagedSpotTraining=True,
    )
    original = copy.deepcopy(base)
    flags = Overrides(
        image=PROBE,
        hyperparameters=[("lr", "0.01"), ("batch", "32")],
        environment=[("B", "2")],
        job_name="overridden",
        max_runtime=120,
        output="elsewhere",
        instance_count=2,
    )
    request = build_request(base, flags, OUTPUT)
    assert validate_request(request) == []
    assert base == original, "the loaded request is not modified"
    # the image replaces AlgorithmName (they are mutually exclusive)
    assert request["AlgorithmSpecification"] == {
        "TrainingInputMode": "File",
        "TrainingImage": PROBE,
    }
    assert request["HyperParameters"] == {"epochs": "10", "lr": "0.01", "batch": "32"}
    assert request["Environment"] == {"A": "1", "B": "2"}
    assert request["TrainingJobName"] == "overridden"
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 120, "MaxWaitTimeInSeconds": 600}
    assert request["OutputDataConfig"] == {"S3OutputPath": "elsewhere"}
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert request["RoleArn"] == base["RoleArn"]


def test_no_flags_leave_the_request_as_it_was() -> None:
    base = base_request(HyperParameters={"a": "1"}, InputDataConfig=[channel("train", "/d")])
    assert build_request(base, Overrides(), OUTPUT) == base


def test_a_channel_flag_replaces_the_channel_of_the_same_name() -> None:
    base = base_request(
        InputDataConfig=[
            channel("train", "/old/train", ContentType="text/csv", InputMode="Pipe"),
            channel("validation", "/old/validation"),
        ]
    )
    flags = Overrides(channels=[("train", "/new/train"), ("test", "/new/test")])
    request = build_request(base, flags, OUTPUT)
    assert validate_request(request) == []
    assert {c["ChannelName"]: c for c in request["InputDataConfig"]} == {
        "train": channel("train", "/new/train"),
        "validation": channel("validation", "/old/validation"),
        "test": channel("test", "/new/test"),
    }


def test_a_channel_given_twice_on_the_command_line_is_kept_once() -> None:
    flags = Overrides(image=PROBE, channels=[("train", "/first"), ("train", "/second")])
    request = build_request(None, flags, OUTPUT)
    assert request["InputDataConfig"] == [channel("train", "/second")]


def test_a_metric_flag_replaces_the_definition_of_the_same_name_in_place() -> None:
    definitions = [
        {"Name": "train:loss", "Regex": "old=([0-9.]+)"},
        {"Name": "accuracy", "Regex": "acc=([0-9.]+)"},
    ]
    base = base_request(
        AlgorithmSpecification={
            "TrainingImage": PROBE,
            "TrainingInputMode": "File",
            "MetricDefinitions": definitions,
        }
    )
    flags = Overrides(metrics=[("train:loss", "loss=([0-9.]+)"), ("f1", "f1=([0-9.]+)")])
    request = build_request(base, flags, OUTPUT)
    assert validate_request(request) == []
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": "train:loss", "Regex": "loss=([0-9.]+)"},
        {"Name": "accuracy", "Regex": "acc=([0-9.]+)"},
        {"Name": "f1", "Regex": "f1=([0-9.]+)"},
    ]


def test_flags_never_bypass_validation() -> None:
    request = build_request(None, Overrides(image=PROBE, job_name="not_valid!", max_runtime=0), "")
    problems = validate_request(request)
    assert any(p.startswith("TrainingJobName:") for p in problems), problems
    assert any(p.startswith("StoppingCondition.MaxRuntimeInSeconds:") for p in problems), problems


@pytest.mark.parametrize(
    ("image", "prefix"),
    [
        (PROBE, "probe-"),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/my_repo:1.0", "my-repo-"),
        ("localhost:5000/team/trainer@sha256:" + "a" * 64, "trainer-"),
        ("x" * 200, "x" * 32 + "-"),
        ("a" * 31 + "__b" + "c" * 40, "a" * 31 + "-"),  # cut after the separator
        ("___", "training-"),
        (None, "training-"),
    ],
)
def test_the_default_job_name_is_base_and_timestamp_and_a_valid_name(
    image: str | None, prefix: str
) -> None:
    name = default_job_name(image)
    assert name.startswith(prefix)
    assert re.search(r"-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d-\d{3}$", name), name
    assert JOB_NAME.fullmatch(name) and len(name) <= 63, name


def test_a_request_built_without_job_name_gets_the_default_one() -> None:
    request = build_request(None, Overrides(image=PROBE), OUTPUT)
    assert request["TrainingJobName"].startswith("probe-")
    assert validate_request(request) == []


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("epochs=3", ("epochs", "3")),
        ("loss=loss=([0-9.]+)", ("loss", "loss=([0-9.]+)")),  # split at the first '='
        ("EMPTY=", ("EMPTY", "")),
    ],
)
def test_pairs_split_at_the_first_equals_sign(text: str, pair: tuple[str, str]) -> None:
    assert split_pair(text, "--env") == pair


@pytest.mark.parametrize("text", ["no-separator", "=value", ""])
def test_a_pair_without_name_is_refused_naming_the_flag(text: str) -> None:
    with pytest.raises(EmulatorError, match=r"--hyperparameter .*: expected NAME=VALUE"):
        split_pair(text, "--hyperparameter")


def test_load_request_returns_the_file_directory_as_base(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "request.json").write_text(json.dumps(base_request()))
    request, base = load_request(str(folder / "request.json"))
    assert request == base_request() | {"TrainingJobName": request["TrainingJobName"]}
    assert base == folder


def test_load_request_reads_stdin_for_a_dash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"TrainingJobName": "from-stdin"}'))
    monkeypatch.chdir(tmp_path)
    request, base = load_request("-")
    assert request == {"TrainingJobName": "from-stdin"}
    assert base == tmp_path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"TrainingJobName": ', "not valid JSON: Expecting value at line 1, column 21"),
        (
            "{\n  'single': 1\n}",
            "not valid JSON: Expecting property name enclosed in double quotes at line 2, column 3",
        ),
        ("[1, 2]", "must be a JSON object"),
        ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper than 32 levels"),
        ('"a string"', "must be a JSON object"),
    ],
)
def test_a_malformed_request_file_is_an_invalid_request(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "request.json"
    path.write_text(content)
    with pytest.raises(RequestInvalid) as caught:
        load_request(str(path))
    [problem] = caught.value.problems
    assert problem.startswith(f"(request file {path}): ")
    assert message in problem


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing.json", "No such file or directory"),
        (lambda root: root, "Is a directory"),
    ],
    ids=["missing", "directory"],
)
def test_an_unreadable_request_file_is_an_emulator_error(
    tmp_path: Path, make: Any, message: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(EmulatorError, match=f"Cannot read the request file {path}: {message}"):
        load_request(str(path))


def test_a_request_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_bytes(b'{"TrainingJobName": "\xff"}')
    with pytest.raises(EmulatorError, match="is not UTF-8 text"):
        load_request(str(path))


@pytest.mark.parametrize(
    ("uri", "resolved"),
    [
        ("data/train", "/work/dir/data/train"),
        ("./data/../train", "/work/dir/train"),
        ("/abs/train", "/abs/train"),
        ("file:///abs/train", "file:///abs/train"),
        ("s3://bucket/train", "s3://bucket/train"),
        ("s3:/bucket/typo", "s3:/bucket/typo"),  # left for validation to name
        ("ftp://host/x", "ftp://host/x"),
        ("", ""),
    ],
)
def test_paths_typed_as_flags_resolve_against_the_given_directory(uri: str, resolved: str) -> None:
    flags = Overrides(channels=[("train", uri)], output=uri).resolved_against(Path("/work/dir"))
    assert flags.channels == [("train", resolved)]
    assert flags.output == resolved


def test_resolving_flag_paths_leaves_other_flags_alone() -> None:
    flags = Overrides(image=PROBE, hyperparameters=[("path", "relative/value")])
    assert flags.resolved_against(Path("/work/dir")) == flags


# -- whatever the request file and the flags hold: problems, never a traceback -------------------

MEMBERS = [
    "TrainingJobName",
    "AlgorithmSpecification",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "HyperParameters",
    "Environment",
    "InputDataConfig",
    "MetricDefinitions",
    "InstanceGroups",
    "InstanceCount",
    "InstanceType",
    "TrainingImage",
    "TrainingInputMode",
    "ChannelName",
]
KEYS = st.sampled_from(MEMBERS) | st.text(max_size=8)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
TEXT = st.text(max_size=12)
PAIRS = st.lists(st.tuples(TEXT, TEXT), max_size=2)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def overrides(draw: st.DrawFn) -> Overrides:
    return Overrides(
        image=draw(maybe(TEXT)),
        entrypoint=draw(st.lists(TEXT, max_size=2)),
        arguments=draw(st.lists(TEXT, max_size=2)),
        input_mode=draw(maybe(st.sampled_from(["File", "Pipe", "FastFile"]))),
        channels=draw(PAIRS),
        hyperparameters=draw(PAIRS),
        environment=draw(PAIRS),
        metrics=draw(PAIRS),
        output=draw(maybe(TEXT)),
        job_name=draw(maybe(TEXT)),
        max_runtime=draw(maybe(st.integers())),
        instance_type=draw(maybe(TEXT)),
        instance_count=draw(maybe(st.integers())),
        managed_spot=draw(st.booleans()),
        max_wait=draw(maybe(st.integers())),
        max_retry_attempts=draw(maybe(st.integers())),
    )


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any] | None:
    """None (flags alone), junk, or a valid request with members replaced by junk."""
    kind = draw(st.sampled_from(["none", "junk", "mutated"]))
    if kind == "none":
        return None
    if kind == "junk":
        return draw(st.dictionaries(KEYS, JSON_VALUES, max_size=6))
    request = base_request(HyperParameters={"a": "1"}, Environment={"B": "2"})
    for member in draw(st.lists(st.sampled_from(sorted(request)), max_size=3)):
        request[member] = draw(JSON_VALUES)
    for member in draw(st.lists(st.sampled_from(MEMBERS), max_size=2)):
        request[member] = draw(JSON_VALUES)
    return request


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), overrides())
def test_any_request_with_any_flags_yields_problems_never_a_traceback(
    base: dict[str, Any] | None, flags: Overrides
) -> None:
    try:
        request = build_request(base, flags, OUTPUT)
        validate_request(request)
        parse_request(request)
    except (RequestInvalid, EmulatorError):
        pass


@pytest.mark.parametrize(
    ("member", "flags"),
    [
        ("ResourceConfig", Overrides(instance_type="ml.m5.large")),
        ("ResourceConfig", Overrides(instance_count=2)),
        ("OutputDataConfig", Overrides(output="/tmp/out")),
        ("StoppingCondition", Overrides(max_runtime=60)),
        ("HyperParameters", Overrides(hyperparameters=[("a", "1")])),
        ("Environment", Overrides(environment=[("A", "1")])),
        ("AlgorithmSpecification", Overrides(image=PROBE, job_name="named-by-flag")),
    ],
)
@pytest.mark.parametrize("junk", ["a string", None, 3, ["a", "list"]])
def test_a_flag_leaves_a_member_of_the_wrong_type_for_validation_to_report(
    member: str, flags: Overrides, junk: object
) -> None:
    request = build_request(base_request(**{member: junk}), flags, OUTPUT)
    assert request[member] == junk
    assert any(p.startswith(f"{member}: ") for p in validate_request(request))
    if flags.job_name is not None:  # the other flags still apply
        assert request["TrainingJobName"] == flags.job_name


@pytest.mark.parametrize("junk", [5, "abc", {"Name": "x"}, None])
def test_a_metric_flag_with_malformed_metric_definitions(junk: object) -> None:
    request = build_request(
        base_request(AlgorithmSpecification={"TrainingImage": PROBE, "MetricDefinitions": junk}),
        Overrides(metrics=[("loss", "loss=([0-9.]+)")]),
        OUTPUT,
    )
    definitions = request["AlgorithmSpecification"]["MetricDefinitions"]
    assert {"Name": "loss", "Regex": "loss=([0-9.]+)"} in definitions


def test_spot_and_retry_flags_set_their_members() -> None:
    base = probe_request(Path(OUTPUT), StoppingCondition={"MaxRuntimeInSeconds": 600})
    flags = Overrides(managed_spot=True, max_wait=1200, max_retry_attempts=2)
    request = build_request(base, flags, OUTPUT)
    assert validate_request(request) == []
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 600,
        "MaxWaitTimeInSeconds": 1200,
    }
    assert request["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    # Not given: the request is left as it was.
    assert "EnableManagedSpotTraining" not in build_request(base, Overrides(), OUTPUT)


def test_a_max_wait_without_managed_spot_is_refused_as_the_api_does() -> None:
    request = build_request(probe_request(Path(OUTPUT)), Overrides(max_wait=1200), OUTPUT)
    assert any("only valid with managed spot training" in p for p in validate_request(request))
