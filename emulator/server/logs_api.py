"""CloudWatch Logs over the jobs' log files: the operations clients use to read training logs.

One log group, ``/aws/sagemaker/TrainingJobs``; one stream per host that has a log file, named
``<job>/algo-N-<epoch seconds>`` (when following the host began: stable for the job's life).
Events are the lines ``emulator logs`` shows (the log file split on ``\\n``), each with the time
its bytes were read (observe/linetimes.py). While a job runs, only the lines the index has
timed are events (so an event's time never changes); once it has ended, every line is.

Behaviour follows the CloudWatch Logs API reference (not moto):

- GetLogEvents: startTime inclusive, endTime exclusive; ``nextForwardToken`` and
  ``nextBackwardToken`` always, the same token again at the end of the stream; a token is a
  byte offset of the log file, so a forward token is a cursor: lines written later come with
  the next call. A page holds at most ``limit`` (default 10,000) events and 1 MB.
- DescribeLogStreams: ``nextToken`` only when more streams follow (SDK v2 loops on it).
- FilterLogEvents: every selected stream, interleaved by time; startTime and endTime both
  inclusive ("later than this time are not returned"); ``nextToken`` only when the search
  stopped early (page full, or ``SCAN_EVENTS`` lines read); filterPattern terms.
"""

from __future__ import annotations

import heapq
import re
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.config import DEFAULT_REGION
from emulator.errors import JobNotFound
from emulator.observe.linetimes import Event, LineTimes, TimedLog, to_ms
from emulator.request.spec import DEFAULT_ACCOUNT
from emulator.server.errors import ApiError
from emulator.server.logs_params import (
    FilterPattern,
    Params,
    bad_token,
    decode_token,
    encode_token,
    invalid,
    is_int,
    ms_of,
)
from emulator.state.store import TERMINAL_STATUSES, JobStore

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
OPERATIONS = ("DescribeLogGroups", "DescribeLogStreams", "GetLogEvents", "FilterLogEvents")
EVENTS_PER_PAGE = 10_000
BYTES_PER_PAGE = 1_048_576
EVENT_OVERHEAD = 26  # bytes CloudWatch counts per event, besides its message
STREAMS_PER_PAGE = 50
SCAN_EVENTS = 200_000  # lines one FilterLogEvents call reads at most; then a nextToken

_HOST = re.compile(r"algo-[1-9][0-9]*")
_POSITION = re.compile(r"([fb])/([0-9]{1,20})")


def _not_found(what: str) -> ApiError:
    return ApiError("ResourceNotFoundException", f"The specified {what} does not exist.")


@dataclass(frozen=True)
class _Stream:
    name: str
    created: int  # ms
    ended: bool  # the job is over: every line of the file is an event
    log: Path
    times: Path


class LogsApi:
    """The CloudWatch Logs operations, as functions of a JSON request body to a response."""

    def __init__(
        self,
        home: Path | None = None,
        *,
        region: str = DEFAULT_REGION,
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        self.store = JobStore(home)
        self.group_arn = f"arn:aws:logs:{region}:{account}:log-group:{LOG_GROUP}"
        self._operations: dict[str, Callable[[Params], dict[str, Any]]] = {
            "DescribeLogGroups": self._describe_log_groups,
            "DescribeLogStreams": self._describe_log_streams,
            "GetLogEvents": self._get_log_events,
            "FilterLogEvents": self._filter_log_events,
        }

    def handle(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        method = self._operations.get(operation)
        if method is None:
            raise ApiError(
                "UnknownOperationException",
                f"CloudWatch Logs {operation} is not emulated: emulator serve answers "
                f"{', '.join(OPERATIONS)} for the log group {LOG_GROUP}",
            )
        return method(Params(body))

    # -- operations ----------------------------------------------------------------------------

    def _describe_log_groups(self, params: Params) -> dict[str, Any]:
        prefix = params.text("logGroupNamePrefix")
        pattern = params.text("logGroupNamePattern")
        identifiers = params.texts("logGroupIdentifiers", 50)
        params.number("limit", 1, 50)
        if prefix is not None and pattern is not None:
            raise invalid("logGroupNamePrefix and logGroupNamePattern are mutually exclusive.")
        if params.text("nextToken") is not None:  # none is ever given out: one group
            raise bad_token()
        found = (
            (prefix is None or LOG_GROUP.startswith(prefix))
            and (pattern is None or pattern in LOG_GROUP)
            and (identifiers is None or any(self._is_group(name) for name in identifiers))
        )
        if not found:
            return {"logGroups": []}
        jobs = self.store.all_jobs()
        created = ms_of(jobs[-1].get("CreationTime")) if jobs else None
        group: dict[str, Any] = {
            "logGroupName": LOG_GROUP,
            "creationTime": created if created is not None else to_ms(time.time()),
            "arn": f"{self.group_arn}:*",
        }
        if pattern is None:  # with a pattern, AWS answers only these three
            logs = self.store.home / "jobs"
            group["metricFilterCount"] = 0
            group["storedBytes"] = sum(path.stat().st_size for path in logs.glob("*/algo-*.log"))
            group["logGroupClass"] = "STANDARD"
            group["logGroupArn"] = self.group_arn
        return {"logGroups": [group]}

    def _describe_log_streams(self, params: Params) -> dict[str, Any]:
        self._check_group(params)
        prefix = params.text("logStreamNamePrefix")
        order = params.choice("orderBy", ("LogStreamName", "LastEventTime")) or "LogStreamName"
        descending = bool(params.flag("descending"))
        limit = params.number("limit", 1, STREAMS_PER_PAGE) or STREAMS_PER_PAGE
        token = params.text("nextToken")
        if order == "LastEventTime" and prefix is not None:
            raise invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        streams = [self._describe(stream) for stream in self._streams(prefix)]

        def key(stream: dict[str, Any]) -> list[Any]:
            if order == "LogStreamName":
                return [stream["logStreamName"]]
            return [stream.get("lastEventTimestamp", 0), stream["logStreamName"]]

        streams.sort(key=key, reverse=descending)
        if token is not None:
            after = decode_token(token, ["S", order, descending])
            if len(after) != (1 if order == "LogStreamName" else 2):
                raise bad_token()
            try:
                streams = [s for s in streams if (key(s) < after if descending else key(s) > after)]
            except TypeError:
                raise bad_token() from None
        answer: dict[str, Any] = {"logStreams": streams[:limit]}
        if len(streams) > limit:
            answer["nextToken"] = encode_token(["S", order, descending, *key(streams[limit - 1])])
        return answer

    def _get_log_events(self, params: Params) -> dict[str, Any]:
        self._check_group(params)
        name = params.name("logStreamName")
        start = params.number("startTime", 0)
        end = params.number("endTime", 0)
        limit = params.number("limit", 1, EVENTS_PER_PAGE) or EVENTS_PER_PAGE
        head = bool(params.flag("startFromHead"))
        token = params.text("nextToken")
        with self._open(self._named(name)) as log:
            low, high = log.first_from(start), log.stop_before(end)
            if token is None:
                forward, position = head, low if head else high
            else:
                forward, position = _position(token, log)
            if forward:
                begin = max(position, low)
                events = _page(log.forward(begin, max(begin, high)), limit)
            else:
                stop = min(position, high)
                events = _page(log.backward(stop, min(low, stop)), limit)[::-1]
        if events:
            after, before = f"f/{events[-1].end}", f"b/{events[0].start}"
        else:  # nothing (more) that way: the cursor stays, the same token comes back
            after, before = f"f/{position}", f"b/{position}"
            if token is not None:
                after, before = (token, before) if forward else (after, token)
        return {
            "events": [
                {"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.timestamp}
                for e in events
            ],
            "nextForwardToken": after,
            "nextBackwardToken": before,
        }

    def _filter_log_events(self, params: Params) -> dict[str, Any]:
        self._check_group(params)
        names = params.texts("logStreamNames", 100)
        prefix = params.text("logStreamNamePrefix")
        start = params.number("startTime", 0)
        end = params.number("endTime", 0)
        pattern = FilterPattern(params.text("filterPattern", empty=True) or "")
        limit = params.number("limit", 1, EVENTS_PER_PAGE) or EVENTS_PER_PAGE
        head = params.flag("startFromHead")
        params.flag("interleaved")  # always interleaved, as AWS does since 2019
        token = params.text("nextToken")
        if names is not None and prefix is not None:
            raise invalid("logStreamNames and logStreamNamePrefix are mutually exclusive.")
        forward = head is not False
        after: tuple[int, str, int] | None = None
        if token is not None:  # the token's direction wins, as AWS documents
            decoded = decode_token(token, ["F"])
            if len(decoded) != 4 or decoded[0] not in ("f", "b"):
                raise bad_token()
            forward = decoded[0] == "f"
            ts, stream_name, offset = decoded[1:]
            if not (is_int(ts) and isinstance(stream_name, str) and is_int(offset)):
                raise bad_token()
            after = (ts, stream_name, offset)
        streams = self._streams(prefix)
        if names is not None:
            wanted = set(names)
            streams = [stream for stream in streams if stream.name in wanted]
        with ExitStack() as stack:
            sources = [
                _search(stack.enter_context(self._open(s)), s.name, start, end, after, forward)
                for s in streams
                if end is None or s.created <= end
            ]
            merged = heapq.merge(*sources, reverse=not forward)
            events, more = _scan(merged, pattern, limit)
        answer: dict[str, Any] = {
            "events": [
                {
                    "logStreamName": name,
                    "timestamp": event.timestamp,
                    "message": event.message,
                    "ingestionTime": event.timestamp,
                    "eventId": f"{event.timestamp:013d}{zlib.crc32(name.encode()):010d}"
                    f"{event.end:016d}",
                }
                for _, name, _, event in events
            ],
            "searchedLogStreams": [],  # no longer supported by AWS: always empty
        }
        if more is not None:
            answer["nextToken"] = encode_token(["F", "f" if forward else "b", *more])
        return answer

    # -- streams -------------------------------------------------------------------------------

    def _is_group(self, given: str) -> bool:
        return given in (LOG_GROUP, self.group_arn, f"{self.group_arn}:*")

    def _check_group(self, params: Params) -> None:
        name = params.text("logGroupName")
        identifier = params.text("logGroupIdentifier")
        if name is not None and identifier is not None:
            raise invalid(
                "LogGroup name and LogGroup identifier are mutually exclusive parameters."
            )
        given = name if name is not None else identifier
        if given is None:
            raise invalid("Either logGroupName or logGroupIdentifier must be specified.")
        if not self._is_group(given):
            raise _not_found("log group")

    def _streams(self, prefix: str | None) -> list[_Stream]:
        """The streams whose names start with ``prefix``, by name."""
        prefix = prefix or ""
        if "/" in prefix:  # one job's streams (the SDK's case): read that record only
            try:
                records = [self.store.get(prefix.split("/", 1)[0])]
            except JobNotFound:
                records = []
        else:
            records = [r for r in self.store.all_jobs() if r["TrainingJobName"].startswith(prefix)]
        streams = [self._stream(record, host) for record in records for host in self._hosts(record)]
        return sorted((s for s in streams if s.name.startswith(prefix)), key=lambda s: s.name)

    def _named(self, name: str) -> _Stream:
        job, _, rest = name.partition("/")
        host = rest.rpartition("-")[0]
        if _HOST.fullmatch(host):
            try:
                record = self.store.get(job)
            except JobNotFound:
                pass
            else:
                if self.store.log_path(job, host).is_file():
                    stream = self._stream(record, host)
                    if stream.name == name:
                        return stream
        raise _not_found("log stream")

    def _hosts(self, record: dict[str, Any]) -> list[str]:
        found = [path.stem for path in self.store.job_dir(record["TrainingJobName"]).glob("*.log")]
        return sorted((h for h in found if _HOST.fullmatch(h)), key=lambda h: (len(h), h))

    def _stream(self, record: dict[str, Any], host: str) -> _Stream:
        job = record["TrainingJobName"]
        log, times_path = self.store.log_path(job, host), self.store.times_path(job, host)
        times = LineTimes.read(times_path)
        ended = record.get("TrainingJobStatus") in TERMINAL_STATUSES
        if times is not None:
            created = times.created_ms
            times.close()
        else:  # a job of an earlier version (ended): its lines all get its start time
            started = ms_of(record.get("TrainingStartTime") or record.get("CreationTime"))
            created = started if started is not None else to_ms(log.stat().st_mtime)
            ended = True
        return _Stream(f"{job}/{host}-{created // 1000}", created, ended, log, times_path)

    def _open(self, stream: _Stream) -> TimedLog:
        times = LineTimes.read(stream.times) or LineTimes(stream.created)
        try:
            return TimedLog(stream.log, times, stream.ended)
        except OSError as exc:  # removed meanwhile (a job replaced, pruned)
            times.close()
            raise _not_found("log stream") from exc

    def _describe(self, stream: _Stream) -> dict[str, Any]:
        described: dict[str, Any] = {
            "logStreamName": stream.name,
            "creationTime": stream.created,
            "arn": f"{self.group_arn}:log-stream:{stream.name}",
        }
        with self._open(stream) as log:
            described["storedBytes"] = log.size
            first = next(log.forward(0, log.visible), None)
            if first is not None:
                last = log.times.time_at(log.visible)
                described["firstEventTimestamp"] = first.timestamp
                described["lastEventTimestamp"] = described["lastIngestionTime"] = last
        return described


Keyed = tuple[int, str, int, Event]  # (time, stream, end offset, event): the merge order


def _search(
    log: TimedLog,
    name: str,
    start: int | None,
    end: int | None,
    after: tuple[int, str, int] | None,
    forward: bool,
) -> Iterator[Keyed]:
    """One stream's events in [start, end] (ms, both inclusive), past ``after``."""
    if after is not None:
        if forward:
            start = after[0] if start is None else max(start, after[0])
        else:
            end = after[0] if end is None else min(end, after[0])
    low = log.first_from(start)
    high = max(low, log.stop_before(None if end is None else end + 1))
    if after is not None and after[1] == name:  # resume right at the last event read
        if not log.is_boundary(after[2]):
            raise bad_token()
        low, high = (max(low, after[2]), high) if forward else (low, min(high, after[2]))
        high = max(low, high)
    events = log.forward(low, high) if forward else log.backward(high, low)
    for event in events:
        keyed = (event.timestamp, name, event.end, event)
        if after is not None and (keyed[:3] <= after if forward else keyed[:3] >= after):
            continue
        yield keyed


def _scan(
    merged: Iterator[Keyed], pattern: FilterPattern, limit: int
) -> tuple[list[Keyed], tuple[int, str, int] | None]:
    """The matching events of a page, and where the next page starts (None: no more)."""
    found: list[Keyed] = []
    size = 0
    last: tuple[int, str, int] | None = None
    for scanned, keyed in enumerate(merged):
        if scanned == SCAN_EVENTS:
            return found, last
        event = keyed[3]
        if pattern.matches(event.message):
            size += len(event.raw) + EVENT_OVERHEAD
            if len(found) == limit or (found and size > BYTES_PER_PAGE):
                return found, last
            found.append(keyed)
        last = keyed[:3]
    return found, None


def _page(events: Iterator[Event], limit: int) -> list[Event]:
    """Events up to ``limit`` and 1 MB (one at least, however long)."""
    page: list[Event] = []
    size = 0
    for event in events:
        size += len(event.raw) + EVENT_OVERHEAD
        if page and size > BYTES_PER_PAGE:
            break
        page.append(event)
        if len(page) == limit:
            break
    return page


def _position(token: str, log: TimedLog) -> tuple[bool, int]:
    """A GetLogEvents token: its direction (forward?) and the line boundary it stands at."""
    found = _POSITION.fullmatch(token)
    if found is None or not log.is_boundary(int(found[2])):
        raise bad_token()
    return found[1] == "f", int(found[2])
