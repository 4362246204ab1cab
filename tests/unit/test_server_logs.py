"""The CloudWatch Logs operations of `emulator serve` over jobs written as a job writes them (a
store record, the hosts' log files and their time indexes): every parameter, tokens at the end
of a stream and as a cursor across calls, two hosts, time bounds, errors. Every answer is
checked against botocore's logs service model (member names and types)."""

from __future__ import annotations

import base64
import functools
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.model import ServiceModel
from botocore.validate import ParamValidator

from emulator import api
from emulator.observe.joblogs import JobLogs
from emulator.observe.linetimes import TimesWriter
from emulator.observe.logs import Lines
from emulator.server.errors import ApiError
from emulator.server.logs_api import LOG_GROUP, LogsApi
from emulator.state.store import JobStore
from tests.fixtures.store_records import record_of

T0 = 1_700_000_000.0  # seconds: the times the tests give to lines
MS = int(T0 * 1000)
INVALID, NOT_FOUND = "InvalidParameterException", "ResourceNotFoundException"
NO_STREAM = "The specified log stream does not exist."
BAD_TOKEN = "The specified nextToken is invalid."
BAD_VALUE = "1 validation error detected: Value "
DEEP = base64.urlsafe_b64encode(b"[" * 100_000).decode()  # a token nested past recursion


@functools.cache
def logs_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("logs")


def check_shape(operation: str, answer: dict[str, Any]) -> None:
    """``answer`` holds only members of the operation's output shape, with their types."""
    shape = logs_model().operation_model(operation).output_shape
    report = ParamValidator().validate(answer, shape)
    assert not report.has_errors(), report.generate_report()


def call(logs: LogsApi, operation: str, **body: Any) -> dict[str, Any]:
    if operation != "DescribeLogGroups" and "logGroupIdentifier" not in body:
        body.setdefault("logGroupName", LOG_GROUP)
    answer = logs.handle(operation, body)
    check_shape(operation, answer)
    return answer


def get(logs: LogsApi, stream: str, **body: Any) -> dict[str, Any]:
    return call(logs, "GetLogEvents", logStreamName=stream, **body)


def follow_tokens(logs: LogsApi, operation: str, **body: Any) -> list[dict[str, Any]]:
    """Every page, passing each ``nextToken`` back until there is none (as SDKs loop)."""
    pages = [call(logs, operation, **body)]
    while "nextToken" in pages[-1]:
        pages.append(call(logs, operation, nextToken=pages[-1]["nextToken"], **body))
    return pages


def refused(logs: LogsApi, operation: str, code: str, **body: Any) -> str:
    with pytest.raises(ApiError) as raised:
        logs.handle(operation, {"logGroupName": LOG_GROUP, **body})
    assert raised.value.code == code, raised.value.message
    return raised.value.message


def new_job(store: JobStore, name: str, status: str = "Completed") -> None:
    record = record_of(name)
    store.create(record)
    record["TrainingJobStatus"] = status
    store.update(record)


def write_host(
    store: JobStore, job: str, host: str, batches: list[tuple[float, bytes]], created: float = T0
) -> str:
    """Write ``host``'s log as its JobLogs does, each batch read at its time; its stream name."""
    writer = TimesWriter(store.times_path(job, host), created=created)
    log = store.log_path(job, host)
    log.touch()
    for at, data in batches:
        with open(log, "ab") as file:
            file.write(data)
        writer([Lines(1, at, data.decode().splitlines(), log.stat().st_size)])
    return f"{job}/{host}-{int(created)}"


def lines(first: int, count: int, word: str = "step") -> bytes:
    return b"".join(f"{word} {i}\n".encode() for i in range(first, first + count))


def messages(answer: dict[str, Any]) -> list[str]:
    return [event["message"] for event in answer["events"]]


@pytest.fixture
def store(state_home: Path) -> JobStore:
    return JobStore(state_home)


@pytest.fixture
def logs(store: JobStore) -> LogsApi:
    return LogsApi(store.home)


def test_the_one_log_group(store: JobStore, logs: LogsApi) -> None:
    new_job(store, "job-a")
    write_host(store, "job-a", "algo-1", [(T0, b"hello\n")])
    [group] = call(logs, "DescribeLogGroups")["logGroups"]
    assert group["logGroupName"] == LOG_GROUP
    assert group["arn"] == f"arn:aws:logs:us-east-1:000000000000:log-group:{LOG_GROUP}:*"
    assert group["storedBytes"] == 6
    assert call(logs, "DescribeLogGroups", logGroupNamePrefix="/aws/sagemaker/")["logGroups"]
    assert call(logs, "DescribeLogGroups", logGroupNamePrefix="/aws/lambda")["logGroups"] == []
    [only] = call(logs, "DescribeLogGroups", logGroupNamePattern="Training")["logGroups"]
    assert set(only) == {"logGroupName", "creationTime", "arn"}
    assert "nextToken" not in call(logs, "DescribeLogGroups", limit=1)


def test_streams_by_job_and_host_named_with_their_creation_second(
    store: JobStore, logs: LogsApi
) -> None:
    new_job(store, "job-a")
    new_job(store, "job-b")
    a1 = write_host(store, "job-a", "algo-1", [(T0 + 1, b"a\n"), (T0 + 5, b"b\n")])
    a2 = write_host(store, "job-a", "algo-2", [(T0 + 3, b"c\n")], created=T0 + 0.5)
    b1 = write_host(store, "job-b", "algo-1", [(T0 + 9, b"d\n")], created=T0 + 8)
    assert (a1, a2, b1) == ("job-a/algo-1-1700000000", "job-a/algo-2-1700000000", b1)
    streams = call(logs, "DescribeLogStreams", logStreamNamePrefix="job-a/")["logStreams"]
    assert [s["logStreamName"] for s in streams] == [a1, a2]
    assert streams[0] == {
        "logStreamName": a1,
        "creationTime": MS,
        "firstEventTimestamp": MS + 1000,
        "lastEventTimestamp": MS + 5000,
        "lastIngestionTime": MS + 5000,
        "arn": f"arn:aws:logs:us-east-1:000000000000:log-group:{LOG_GROUP}:log-stream:{a1}",
        "storedBytes": 4,
    }
    every = call(logs, "DescribeLogStreams")["logStreams"]
    assert [s["logStreamName"] for s in every] == [a1, a2, b1]
    assert [
        s["logStreamName"] for s in call(logs, "DescribeLogStreams", descending=True)["logStreams"]
    ] == [b1, a2, a1]
    by_time = call(logs, "DescribeLogStreams", orderBy="LastEventTime")["logStreams"]
    assert [s["logStreamName"] for s in by_time] == [a2, a1, b1]
    assert call(logs, "DescribeLogStreams", logStreamNamePrefix="job-c")["logStreams"] == []
    assert len(call(logs, "DescribeLogStreams", logStreamNamePrefix="job")["logStreams"]) == 3


def test_a_stream_list_token_only_while_more_streams_follow(store: JobStore, logs: LogsApi) -> None:
    new_job(store, "job-a")
    names = [write_host(store, "job-a", f"algo-{n}", [(T0, b"x\n")]) for n in range(1, 6)]
    assert "nextToken" not in call(logs, "DescribeLogStreams", logStreamNamePrefix="job-a/")
    for descending in (False, True):
        pages = follow_tokens(logs, "DescribeLogStreams", limit=2, descending=descending)
        seen = [s["logStreamName"] for page in pages for s in page["logStreams"]]
        assert seen == (names[::-1] if descending else names)
    last = call(logs, "DescribeLogStreams", limit=5)
    assert "nextToken" not in last and len(last["logStreams"]) == 5


def test_get_log_events_from_head_page_by_page_to_the_same_token(
    store: JobStore, logs: LogsApi
) -> None:
    new_job(store, "job-a")
    name = write_host(store, "job-a", "algo-1", [(T0 + i, lines(i * 1000, 1000)) for i in range(7)])
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        more = {"nextToken": token} if token else {}
        page = get(logs, name, startFromHead=True, limit=3000, **more)
        pages += 1
        if not page["events"]:
            assert page["nextForwardToken"] == token  # the end: the same token again
            break
        seen += messages(page)
        token = page["nextForwardToken"]
    assert pages == 4
    assert seen == list(api.logs("job-a", home=store.home))
    assert seen[0] == "step 0" and len(seen) == 7000
    again = get(logs, name, nextToken=token, startFromHead=True)
    assert again["events"] == [] and again["nextForwardToken"] == token
    first = get(logs, name, startFromHead=True, limit=2)
    assert first["events"] == [
        {"timestamp": MS, "message": "step 0", "ingestionTime": MS},
        {"timestamp": MS, "message": "step 1", "ingestionTime": MS},
    ]


def test_without_start_from_head_the_latest_events_then_backward(
    store: JobStore, logs: LogsApi
) -> None:
    new_job(store, "job-a")
    name = write_host(store, "job-a", "algo-1", [(T0, lines(0, 25))])
    latest = get(logs, name, limit=10)
    assert messages(latest) == [f"step {i}" for i in range(15, 25)]
    back = get(logs, name, limit=10, nextToken=latest["nextBackwardToken"])
    assert messages(back) == [f"step {i}" for i in range(5, 15)]
    back = get(logs, name, limit=10, nextToken=back["nextBackwardToken"])
    assert messages(back) == [f"step {i}" for i in range(5)]
    head = back["nextBackwardToken"]
    at_head = get(logs, name, nextToken=head)
    assert at_head["events"] == [] and at_head["nextBackwardToken"] == head
    forward = get(logs, name, limit=3, nextToken=back["nextForwardToken"])
    assert messages(forward) == ["step 5", "step 6", "step 7"]
    tail = get(logs, name, nextToken=latest["nextForwardToken"])
    assert tail["events"] == [] and tail["nextForwardToken"] == latest["nextForwardToken"]


def test_start_time_is_inclusive_and_end_time_exclusive(store: JobStore, logs: LogsApi) -> None:
    new_job(store, "job-a")
    name = write_host(store, "job-a", "algo-1", [(T0 + i, lines(i * 3, 3)) for i in range(5)])

    def events(**times: Any) -> list[str]:
        head = get(logs, name, startFromHead=True, **times)
        tail = get(logs, name, **times)
        assert messages(head) == messages(tail)
        return messages(head)

    assert events(startTime=MS + 1000, endTime=MS + 3000) == [f"step {i}" for i in range(3, 9)]
    assert events(startTime=MS + 1001, endTime=MS + 3001) == [f"step {i}" for i in range(6, 12)]
    assert events(startTime=MS + 4000) == ["step 12", "step 13", "step 14"]
    assert events(endTime=MS) == []
    assert events(startTime=MS + 5000) == []
    assert events(startTime=MS + 3000, endTime=MS + 1000) == []
    # the SDK's resumption: the last event's time, then skip the ones it has seen
    page = get(logs, name, startFromHead=True, startTime=MS + 2000)
    assert [e["timestamp"] for e in page["events"]] == [MS + 2000] * 3 + [MS + 3000] * 3 + [
        MS + 4000
    ] * 3
    # a token and a time bound together: both hold
    first = get(logs, name, startFromHead=True, limit=2)
    bounded = get(logs, name, nextToken=first["nextForwardToken"], endTime=MS + 1000)
    assert messages(bounded) == ["step 2"]
    end = get(logs, name, nextToken=bounded["nextForwardToken"], endTime=MS + 1000)
    assert end["events"] == [] and end["nextForwardToken"] == bounded["nextForwardToken"]


class Feed:
    """A container's output that comes when the test gives it."""

    def __init__(self) -> None:
        self.frames: queue.Queue[bytes | None] = queue.Queue()

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        while (frame := self.frames.get()) is not None:
            yield 1, frame

    def close(self) -> None:
        self.frames.put(None)


def poll(logs: LogsApi, **body: Any) -> dict[str, Any]:
    """GetLogEvents until it has events (the index is written a moment after the log)."""
    deadline = time.monotonic() + 20
    while True:
        page = call(logs, "GetLogEvents", startFromHead=True, **body)
        if page["events"] or time.monotonic() > deadline:
            return page
        time.sleep(0.02)


def test_a_forward_token_is_a_cursor_across_calls_while_the_job_writes(
    store: JobStore, logs: LogsApi
) -> None:
    new_job(store, "job-a", status="InProgress")
    job_logs = JobLogs(store, "job-a", [], lambda host, line: None)
    feed = Feed()
    job_logs.follow("algo-1", feed)
    try:
        [stream] = call(logs, "DescribeLogStreams", logStreamNamePrefix="job-a/")["logStreams"]
        name = stream["logStreamName"]
        assert "firstEventTimestamp" not in stream  # the stream exists before any output
        feed.frames.put(b"one\ntwo\nthr")
        page = poll(logs, logStreamName=name)
        assert messages(page) == ["one", "two"]  # "thr" is not a whole line yet
        cursor = page["nextForwardToken"]
        still = get(logs, name, nextToken=cursor, startFromHead=True)
        assert still["events"] == [] and still["nextForwardToken"] == cursor
        feed.frames.put(b"ee\nfour\n")
        page = poll(logs, logStreamName=name, nextToken=cursor)
        assert messages(page) == ["three", "four"]
        assert page["events"][0]["timestamp"] >= stream["creationTime"]
    finally:
        feed.close()
        job_logs.wait()
    assert messages(get(logs, name, startFromHead=True)) == ["one", "two", "three", "four"]


def test_the_last_line_without_a_newline_is_an_event_once_the_job_ended(
    store: JobStore, logs: LogsApi
) -> None:
    new_job(store, "job-a", status="InProgress")
    name = write_host(store, "job-a", "algo-1", [(T0, b"done\nbye")])
    assert messages(get(logs, name)) == ["done"]
    record = store.get("job-a")
    record["TrainingJobStatus"] = "Failed"
    store.update(record)
    assert messages(get(logs, name)) == ["done", "bye"]


def test_a_page_holds_one_megabyte_at_most(store: JobStore, logs: LogsApi) -> None:
    new_job(store, "job-a")
    big = b"".join(b"%03d" % i + b"y" * 99_997 + b"\n" for i in range(25))
    name = write_host(store, "job-a", "algo-1", [(T0, big)])
    page = get(logs, name, startFromHead=True)
    assert len(page["events"]) == 10  # 10 x (100,000 + 26) bytes fit in 1 MB, 11 do not
    rest = get(logs, name, nextToken=page["nextForwardToken"])
    assert [m[:3] for m in messages(rest)] == [f"{i:03d}" for i in range(10, 20)]


def bytes_read() -> int:
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


def test_a_million_lines_are_served_page_by_page_reading_only_each_page(
    store: JobStore, logs: LogsApi
) -> None:
    new_job(store, "job-a")
    count = 1_000_000
    log = store.log_path("job-a", "algo-1")
    writer = TimesWriter(store.times_path("job-a", "algo-1"), created=T0)
    texts = [f"step={i} train_loss={1 / (i + 1):.6f}\n".encode() for i in range(count)]
    data = b"".join(texts)
    log.write_bytes(data)
    ends, end = [], 0
    for i, text in enumerate(texts):  # a record per 1,000 lines, a second apart
        end += len(text)
        if i % 1000 == 999:
            ends.append(end)
    writer([Lines(1, T0 + n, [], at) for n, at in enumerate(ends)])
    name = f"job-a/algo-1-{int(T0)}"
    before = bytes_read()
    middle = get(logs, name, startFromHead=True, startTime=MS + 600_000)
    after = get(logs, name, nextToken=middle["nextForwardToken"])
    latest = get(logs, name)
    read = bytes_read() - before
    assert len(data) > 30_000_000 and read < 3_000_000, read
    assert middle["events"][0]["message"].startswith("step=600000 ")
    assert len(middle["events"]) == len(after["events"]) == 10_000
    assert after["events"][0]["message"].startswith("step=610000 ")
    assert latest["events"][-1]["message"].startswith(f"step={count - 1} ")
    found = call(logs, "FilterLogEvents", filterPattern='"step=999999 "', startTime=MS + 999_000)
    assert len(found["events"]) == 1 and "nextToken" not in found
    # a search that finds nothing in what one call reads says where the next call goes on
    nothing = call(logs, "FilterLogEvents", filterPattern="absent")
    assert nothing["events"] == [] and nothing["nextToken"]


def test_filter_log_events_interleaves_hosts_by_time(store: JobStore, logs: LogsApi) -> None:
    new_job(store, "job-a")
    new_job(store, "job-b")
    a1 = write_host(store, "job-a", "algo-1", [(T0 + 1, b"a1 first\n"), (T0 + 3, b"a1 ERROR x\n")])
    a2 = write_host(store, "job-a", "algo-2", [(T0 + 2, b"a2 second\n"), (T0 + 3, b"a2 third\n")])
    b1 = write_host(store, "job-b", "algo-1", [(T0 + 2, b"b1 other job\n")])
    every = call(logs, "FilterLogEvents", logStreamNamePrefix="job-a/")
    assert "nextToken" not in every and every["searchedLogStreams"] == []
    assert [(e["logStreamName"], e["message"]) for e in every["events"]] == [
        (a1, "a1 first"),
        (a2, "a2 second"),
        (a1, "a1 ERROR x"),
        (a2, "a2 third"),
    ]
    assert every["events"][0]["timestamp"] == MS + 1000
    assert len({e["eventId"] for e in every["events"]}) == 4
    group = call(logs, "FilterLogEvents")
    assert [e["logStreamName"] for e in group["events"]] == [a1, a2, b1, a1, a2]
    named = call(logs, "FilterLogEvents", logStreamNames=[b1, a2, "job-z/algo-1-1"])
    assert messages(named) == ["a2 second", "b1 other job", "a2 third"]
    timed = call(logs, "FilterLogEvents", startTime=MS + 2000, endTime=MS + 3000)  # inclusive
    assert messages(timed) == ["a2 second", "b1 other job", "a1 ERROR x", "a2 third"]
    assert messages(call(logs, "FilterLogEvents", startTime=MS + 2001, endTime=MS + 2999)) == []
    newest = call(logs, "FilterLogEvents", logStreamNamePrefix="job-a/", startFromHead=False)
    assert messages(newest) == ["a2 third", "a1 ERROR x", "a2 second", "a1 first"]


def test_filter_patterns(store: JobStore, logs: LogsApi) -> None:
    new_job(store, "job-a")
    text = b"ERROR disk full\nWARN disk slow\nINFO all good\nERROR net down\nerror lower\n"
    write_host(store, "job-a", "algo-1", [(T0, text)])

    def found(pattern: str) -> list[str]:
        return messages(call(logs, "FilterLogEvents", filterPattern=pattern))

    assert found("") == found("  ") == text.decode().splitlines()
    assert found("ERROR") == ["ERROR disk full", "ERROR net down"]  # case-sensitive
    assert found("ERROR disk") == ["ERROR disk full"]  # every term
    assert found('"disk full"') == ["ERROR disk full"]
    assert found('"full disk"') == []
    assert found("?WARN ?INFO") == ["WARN disk slow", "INFO all good"]
    assert found("disk -ERROR") == ["WARN disk slow"]
    assert found("%^(ERROR|WARN) disk%") == ["ERROR disk full", "WARN disk slow"]
    for pattern in ('{ $.level = "ERROR" }', "[level, message]"):
        assert "not emulated" in refused(logs, "FilterLogEvents", INVALID, filterPattern=pattern)
    refused(logs, "FilterLogEvents", INVALID, filterPattern='"unclosed')
    refused(logs, "FilterLogEvents", INVALID, filterPattern="%(%")


def test_filter_log_events_pages_with_a_token_only_while_more_may_come(
    store: JobStore, logs: LogsApi
) -> None:
    new_job(store, "job-a")
    write_host(store, "job-a", "algo-1", [(T0 + i, lines(i * 10, 10)) for i in range(5)])
    write_host(store, "job-a", "algo-2", [(T0 + i, lines(i * 10, 10, "host2")) for i in range(5)])
    expected = messages(call(logs, "FilterLogEvents"))
    assert len(expected) == 100
    for descending in (False, True):
        pages = follow_tokens(logs, "FilterLogEvents", limit=7, startFromHead=not descending)
        seen = [message for page in pages for message in messages(page)]
        assert seen == (expected[::-1] if descending else expected)
    last = call(logs, "FilterLogEvents", limit=100)
    assert "nextToken" not in last and len(last["events"]) == 100
    matching = call(logs, "FilterLogEvents", filterPattern="host2", limit=50)
    assert "nextToken" not in matching and len(matching["events"]) == 50


def test_errors_as_aws_answers_them(store: JobStore, logs: LogsApi) -> None:
    new_job(store, "job-a")
    name = write_host(store, "job-a", "algo-1", [(T0, b"a\nb\n")])
    missing = ["job-a/algo-1-1", "job-x/algo-1-1700000000", "job-a/algo-3-1700000000"]
    missing += ["job-a/../algo-1-1700000000", "job-a"]
    bad_values = [{"limit": 0}, {"limit": 10_001}, {"limit": "10"}, {"limit": True}]
    bad_values += [{"startTime": -1}, {"startFromHead": "yes"}, {"logStreamName": 3}]
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("PutLogEvents", "UnknownOperationException", {}, "CloudWatch Logs PutLogEvents is not"),
        ("GetLogEvents", NOT_FOUND, {"logGroupName": "/aws/x", "logStreamName": name}, ""),
        *[("GetLogEvents", NOT_FOUND, {"logStreamName": m}, NO_STREAM) for m in missing],
        ("GetLogEvents", INVALID, {}, BAD_VALUE),  # no logStreamName
        *[
            ("GetLogEvents", INVALID, {"logStreamName": name, "nextToken": token}, BAD_TOKEN)
            for token in ("f/1", "x/0", "f/99999", "garbage", "b/-1")
        ],
        *[
            ("GetLogEvents", INVALID, {"logStreamName": name, **bad}, BAD_VALUE)
            for bad in bad_values
        ],
        ("GetLogEvents", INVALID, {"logGroupIdentifier": LOG_GROUP, "logStreamName": name}, ""),
        ("DescribeLogStreams", INVALID, {"logGroupName": None}, ""),  # no group at all
        (
            "DescribeLogStreams",
            INVALID,
            {"logStreamNamePrefix": "j", "orderBy": "LastEventTime"},
            "",
        ),
        ("DescribeLogStreams", INVALID, {"orderBy": "Size"}, BAD_VALUE),
        ("DescribeLogStreams", INVALID, {"limit": 51}, BAD_VALUE),
        ("DescribeLogStreams", INVALID, {"nextToken": "nope"}, BAD_TOKEN),
        ("DescribeLogStreams", INVALID, {"nextToken": DEEP}, BAD_TOKEN),
        ("FilterLogEvents", INVALID, {"logStreamNames": [name], "logStreamNamePrefix": "j"}, ""),
        ("FilterLogEvents", INVALID, {"nextToken": "WyJGIl0="}, BAD_TOKEN),
        ("FilterLogEvents", INVALID, {"nextToken": DEEP}, BAD_TOKEN),
        ("DescribeLogGroups", INVALID, {"nextToken": "x"}, BAD_TOKEN),
    ]
    for operation, code, body, message in cases:
        assert refused(logs, operation, code, **body).startswith(message), (operation, body)
    arn = f"arn:aws:logs:us-east-1:000000000000:log-group:{LOG_GROUP}"
    assert messages(call(logs, "GetLogEvents", logGroupIdentifier=arn, logStreamName=name)) == [
        "a",
        "b",
    ]


def test_a_job_of_an_earlier_version_without_an_index(store: JobStore, logs: LogsApi) -> None:
    new_job(store, "job-a")
    store.log_path("job-a", "algo-1").write_bytes(b"old\nlines\n")
    [stream] = call(logs, "DescribeLogStreams")["logStreams"]
    assert stream["logStreamName"].startswith("job-a/algo-1-")
    page = call(logs, "GetLogEvents", logStreamName=stream["logStreamName"], startFromHead=True)
    assert messages(page) == ["old", "lines"]  # all at the job's start: the stream's creation
    assert {e["timestamp"] for e in page["events"]} == {stream["creationTime"]}
