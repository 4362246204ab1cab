"""`emulator submit`'s request rewrite and refusals, without any server: which members are
local, what they become under the staging prefix, and what is refused."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from emulator.errors import RequestInvalid, SourceError
from emulator.submit.job import prepare
from emulator.submit.options import SubmitOptions
from emulator.submit.preflight import SubmitRefused
from emulator.submit.rewrite import host_count, local_locations, member_text, rewrite
from emulator.submit.upload import s3_etag
from tests.fixtures.jobs import channel, probe_request

STAGING = "s3://bucket/stage"
ROLE = "arn:aws:iam::123456789012:role/Training"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def request(tmp_path: Path, **members: Any) -> dict[str, Any]:
    result = probe_request(tmp_path / "out", **members)
    result.setdefault("InputDataConfig", [channel("train", "data")])
    return result


def options(tmp_path: Path, **overrides: Any) -> SubmitOptions:
    return SubmitOptions(**{"staging": STAGING, "base_dir": tmp_path, **overrides})


def test_local_members_are_found_with_their_paths(tmp_path: Path) -> None:
    manifest = channel("m", "m.json")
    manifest["DataSource"]["S3DataSource"]["S3DataType"] = "ManifestFile"
    found = local_locations(
        request(
            tmp_path,
            InputDataConfig=[channel("s3", "s3://b/x"), channel("train", "file:///d"), manifest],
            CheckpointConfig={"S3Uri": "ckpt"},
            TensorBoardOutputConfig={"S3OutputPath": "tb"},
        )
    )
    assert [(f.member, f.kind) for f in found] == [
        ("InputDataConfig[1].DataSource.S3DataSource.S3Uri", "channel"),
        ("InputDataConfig[2].DataSource.S3DataSource.S3Uri", "manifest"),
        ("CheckpointConfig.S3Uri", "checkpoint"),
        ("OutputDataConfig.S3OutputPath", "output"),
        ("TensorBoardOutputConfig.S3OutputPath", "output"),
    ]
    assert member_text(("A", 0, "B")) == "A[0].B"


def test_rewrite_changes_only_the_given_members(tmp_path: Path) -> None:
    original = request(tmp_path)
    path = ("InputDataConfig", 0, "DataSource", "S3DataSource", "S3Uri")
    changed = rewrite(original, {path: "s3://b/p/"})
    assert changed["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://b/p/"
    assert original["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "data"
    changed["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = "data"
    assert changed == original


def test_a_channel_goes_to_a_folder_named_by_its_content(tmp_path: Path) -> None:
    tree(tmp_path / "data", {"a.csv": "1\n", "sub/b.csv": "2\n"})
    first = prepare(request(tmp_path), options(tmp_path))
    [staged] = [s for s in first.staged if s.files]
    assert staged.uri.startswith(f"{STAGING}/data/") and staged.uri.endswith("/")
    assert [f.uri.removeprefix(staged.uri) for f in staged.files] == ["a.csv", "sub/b.csv"]
    sent = first.request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert sent == staged.uri
    assert first.request["OutputDataConfig"]["S3OutputPath"] == f"{STAGING}/output"
    # The same content gives the same folder; any change another.
    assert prepare(request(tmp_path), options(tmp_path)).staged[0].uri == staged.uri
    (tmp_path / "data" / "a.csv").write_text("changed\n")
    assert prepare(request(tmp_path), options(tmp_path)).staged[0].uri != staged.uri


def test_a_single_file_channel_keeps_its_name(tmp_path: Path) -> None:
    tree(tmp_path, {"train.csv": "1\n"})
    result = prepare(
        request(tmp_path, InputDataConfig=[channel("t", "train.csv")]), options(tmp_path)
    )
    [file] = result.staged[0].files
    assert file.uri == result.staged[0].uri + "train.csv"


def test_a_local_manifest_is_rewritten_to_name_the_uploaded_files(tmp_path: Path) -> None:
    tree(tmp_path / "m", {"files/x.bin": "x", "files/y.bin": "y"})
    (tmp_path / "m" / "list.json").write_text(json.dumps([{"prefix": "files/"}, "y.bin"]))
    manifest = channel("m", "m/list.json")
    manifest["DataSource"]["S3DataSource"]["S3DataType"] = "ManifestFile"
    result = prepare(request(tmp_path, InputDataConfig=[manifest]), options(tmp_path))
    staged = result.staged[0]
    *data, generated = staged.files
    assert [f.uri.rsplit("/", 1)[-1] for f in data] == ["y.bin"]  # only what it lists
    assert generated.body is not None
    body = json.loads(generated.body)
    assert body == [{"prefix": data[0].uri.removesuffix("y.bin")}, "y.bin"]
    digest = hashlib.sha256(generated.body).hexdigest()
    assert staged.uri == f"{STAGING}/manifests/{digest}/list.json"


def test_a_manifest_with_an_s3_prefix_is_uploaded_as_it_is(tmp_path: Path) -> None:
    text = json.dumps([{"prefix": "s3://other/p/"}, "a"])
    (tmp_path / "list.json").write_text(text)
    manifest = channel("m", "list.json")
    manifest["DataSource"]["S3DataSource"]["S3DataType"] = "ManifestFile"
    [file] = (
        prepare(request(tmp_path, InputDataConfig=[manifest]), options(tmp_path)).staged[0].files
    )
    assert file.path == tmp_path / "list.json"
    assert hashlib.sha256(text.encode()).hexdigest() in file.uri


def test_checkpoints_go_to_a_folder_of_the_job(tmp_path: Path) -> None:
    tree(tmp_path, {"data/a": "1", "ckpt/s1.pt": "w"})
    req = request(tmp_path, CheckpointConfig={"S3Uri": "ckpt"})
    result = prepare(req, options(tmp_path))
    name = req["TrainingJobName"]
    assert result.request["CheckpointConfig"]["S3Uri"] == f"{STAGING}/checkpoints/{name}/"
    [file] = result.staged[1].files
    assert file.etag == hashlib.md5(b"w").hexdigest()


def test_multipart_etags_are_computed_as_s3_does(tmp_path: Path) -> None:
    path = tmp_path / "big"
    part = 16 * 1024 * 1024
    path.write_bytes(b"a" * part + b"b")
    md5s = hashlib.md5(b"a" * part).digest() + hashlib.md5(b"b").digest()
    assert s3_etag(path, part + 1) == f"{hashlib.md5(md5s).hexdigest()}-2"


@pytest.mark.parametrize(
    ("members", "overrides", "fragment"),
    [
        ({"ResourceConfig": {"InstanceType": "local", "InstanceCount": 1}}, {}, "'local' runs"),
        ({}, {"staging": None}, "InputDataConfig[0].DataSource.S3DataSource.S3Uri"),
        ({}, {"gpus": 1}, "--gpus"),
        ({}, {"pass_aws_credentials": True}, "--pass-aws-credentials"),
        ({"RoleArn": "arn:aws:iam::000000000000:role/SageMakerEmulator"}, {}, "placeholder"),
        ({}, {"staging": "bucket/x"}, "--staging 'bucket/x'"),
    ],
)
def test_local_only_requests_are_refused(
    tmp_path: Path, members: dict[str, Any], overrides: dict[str, Any], fragment: str
) -> None:
    tree(tmp_path / "data", {"a": "1"})
    with pytest.raises(SubmitRefused) as caught:
        prepare(request(tmp_path, **members), options(tmp_path, **overrides))
    assert fragment in str(caught.value)
    assert "nothing was uploaded" in str(caught.value)


def test_a_missing_role_is_refused_unless_given(tmp_path: Path) -> None:
    tree(tmp_path / "data", {"a": "1"})
    req = request(tmp_path)
    del req["RoleArn"]
    with pytest.raises(SubmitRefused, match="RoleArn: missing; give --role"):
        prepare(req, options(tmp_path))
    assert prepare(req, options(tmp_path, role=ROLE)).request["RoleArn"] == ROLE


def test_the_rules_of_run_apply(tmp_path: Path) -> None:
    with pytest.raises(RequestInvalid, match="MaxRuntimeInSeconds"):
        prepare(request(tmp_path, StoppingCondition={"MaxRuntimeInSeconds": 0}), options(tmp_path))


def test_host_count() -> None:
    assert host_count({"ResourceConfig": {"InstanceCount": 3}}) == 3
    groups = [{"InstanceCount": 2}, {"InstanceCount": 1}]
    assert host_count({"ResourceConfig": {"InstanceGroups": groups}}) == 3
    assert host_count({}) == 1


def test_an_augmented_manifest_must_reference_s3_only(tmp_path: Path) -> None:
    lines = [{"source-ref": "s3://b/a.jpg", "label": 1}, {"source-ref": "images/b.jpg"}]
    (tmp_path / "aug.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    augmented = channel("a", "aug.jsonl", InputMode="Pipe")
    source = augmented["DataSource"]["S3DataSource"]
    source.update(S3DataType="AugmentedManifestFile", AttributeNames=["source-ref", "label"])
    with pytest.raises(
        SourceError, match=re.escape("line 2: source-ref 'images/b.jpg' is not an S3 URI")
    ):
        prepare(request(tmp_path, InputDataConfig=[augmented]), options(tmp_path))


def test_the_cli_shows_the_library_default_poll_interval() -> None:
    from emulator.cli import submit as cli
    from emulator.submit import options

    assert cli.DEFAULT_POLL_SECONDS == options.DEFAULT_POLL_SECONDS
