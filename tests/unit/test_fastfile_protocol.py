"""emulator.stage.fastfile.protocol: every message between FastFileMount and its file system
process survives the trip (encoded by one end, decoded by the other). No FUSE needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.config import S3Settings
from emulator.errors import EmulatorError, EnvironmentProblem, SourceError
from emulator.request.spec import DataSourceSpec
from emulator.stage.fastfile import FastFileMount
from emulator.stage.fastfile.protocol import (
    MountConfig,
    Ready,
    StartError,
    decode_stats,
    encode_report,
    encode_stats,
    parse_report,
)
from emulator.storage.base import Entry

ENTRIES = (
    Entry("a.txt", "/data/a.txt", 1000, None),
    Entry("sub/ünicode & space.bin", "prefix/sub/ünicode & space.bin", 0, '"etag-1"'),
)


@pytest.mark.parametrize(
    "settings", [None, S3Settings("http://127.0.0.1:9", "p", "eu-west-1", max_attempts=2)]
)
def test_mount_config_round_trips(settings: S3Settings | None) -> None:
    config = MountConfig(
        data_source=DataSourceSpec(
            "AugmentedManifestFile",
            "s3://bucket/manifest",
            "ShardedByS3Key",
            attribute_names=("source-ref", "label"),
            instance_group_names=("group-a",),
        ),
        s3_settings=settings,
        entries=ENTRIES,
        mountpoint=Path("/work/jobs/job-1/data/train"),
        label="job-1.train",
        cache_bytes=8 << 20,
        block_size=1 << 20,
        readahead_blocks=3,
        fetch_workers=5,
    )
    line = config.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one line on the child's stdin
    assert MountConfig.decode(line) == config


def test_the_mount_sends_what_it_was_given(tmp_path: Path) -> None:
    spec = DataSourceSpec("S3Prefix", "s3://bucket/data/")
    mount = FastFileMount(
        spec, list(ENTRIES), tmp_path / "mnt", label="a b/c", block_size=4096, cache_bytes=8192
    )
    config = MountConfig.decode(mount.config().encode())
    assert config.data_source == spec
    assert config.entries == ENTRIES
    assert config.mountpoint == tmp_path / "mnt"
    assert config.label == "a_b_c"
    assert (config.block_size, config.cache_bytes) == (4096, 8192)


def test_ready_round_trips() -> None:
    assert encode_report(Ready()) == b"ready\n"
    assert parse_report(encode_report(Ready())) == Ready()


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (SourceError("no such bucket: b\nsecond line"), SourceError),
        (EnvironmentProblem('cannot load mfusepy/libfuse3: "quoted"'), EnvironmentProblem),
    ],
)
def test_start_error_round_trips(error: EmulatorError, kind: type[EmulatorError]) -> None:
    report = StartError.from_exception(error)
    line = encode_report(report)
    assert line.startswith(b"error ") and line.count(b"\n") == 1
    parsed = parse_report(line)
    assert parsed == report
    assert isinstance(parsed, StartError)
    raised = parsed.exception()
    assert type(raised) is kind and str(raised) == str(error)


def test_anything_else_is_no_report() -> None:
    assert parse_report(b"") is None  # the child died before saying anything
    assert parse_report(b"ready") is None
    assert parse_report(b"Traceback (most recent call last):\n") is None


def test_stats_round_trip() -> None:
    counters = {"fetches": 3, "hits": 10, "prefetches": 0}
    assert decode_stats(encode_stats(counters)) == counters
