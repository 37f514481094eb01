"""Kinesis Data Streams as a source and a sink: ``kinesis://STREAM``.

**Source** ``kinesis://STREAM?start=trim_horizon|latest|at_timestamp:<ISO-8601 or epoch seconds>``
(or ``WITH ('connector' = 'kinesis', 'stream' = 'STREAM', ...)``). A raw, unbounded source: JSON
records by default, ``format=csv`` with ``header``/``delimiter`` as for files. Options:
``endpoint``, ``region`` (else the standard AWS chain, see ``connectors._aws``), ``poll_interval``
(default ``200ms``: at most 5 GetRecords calls per second per shard, the service's read limit),
``max_records`` (per GetRecords call, 1..10000, default 10000), ``shard_sync_interval`` (default
``10s``: how often ListShards runs again to pick up new shards; a shard that ends also triggers it).

Batches have the ``engine.types.RAW_SCHEMA`` columns (``arrival_time`` is the record's
``ApproximateArrivalTimestamp``) followed by ``METADATA_SCHEMA``: ``APPROXIMATE_ARRIVAL_TIME``,
``PARTITION_KEY``, ``SHARD_ID`` and ``SEQUENCE_NUMBER`` (``"<seq>:<sub>"`` for a KPL sub-record).
gzip payloads (``1f 8b``) are inflated and KPL-aggregated records split into their user records
(``connectors._kpl``); a payload that only looks compressed or aggregated is handed on unchanged.

Reading follows the KCL's habits: ListShards (paginated) finds the shards; one background thread
per source reads every shard with GetShardIterator/GetRecords at most once per ``poll_interval``,
backs off exponentially (up to 5 s) on throttling and other transient errors and keeps going,
renews an expired iterator from the last record it fetched, and drains a parent shard (until
``NextShardIterator`` is null) before it reads the children (``ParentShardId`` and
``AdjacentParentShardId``), so each partition key's records stay in order across a reshard.
``poll`` only takes rows from the thread's buffer, waiting at most ``timeout_s``; errors the thread
cannot get past (a deleted stream, refused credentials) are raised by the next ``poll``.

**Offsets** (the checkpoint), ``{"__rows": N, "<shard id>": position, ...}``: ``__rows`` is the
number of rows handed out so far (the next row's ``offset``); a shard's position is the sequence
number of the last record handed out (``"<seq>:<sub>"`` inside a KPL aggregate), ``"SHARD_END"``
once a closed shard was read to its end, or, for a shard nothing was handed out from yet, where it
starts (``"TRIM_HORIZON"``, ``"AT_TIMESTAMP:<epoch ms>"``; ``latest`` is kept as the time of
``open``, so a restart does not skip what arrived meanwhile). Rows fetched but still buffered are
never in it. ``open(resume)`` reads each shard after its position (a KPL position re-reads that
record and skips the sub-records already handed out); a shard missing from ``resume`` starts at
``TRIM_HORIZON`` if a parent is in it (a child born after the checkpoint), else at ``start``.
``start`` applies only to ``open(None)``. Entries of shards that no longer exist are dropped.

Traps: records the *producers* sent twice (their retries) arrive twice: the source replays
exactly, it does not de-duplicate; ``start=at_timestamp`` goes to the server in whole seconds
(boto3), and records that arrived earlier within that second are skipped here; a KPL sub-record
whose explicit hash key is outside its shard's range after a reshard is delivered, not dropped as
the KCL does; a server that never ends a closed shard's iterator (moto) is followed until its last
record was fetched (``EndingSequenceNumber``), then taken as drained; one thread reads all shards,
one call after another (and botocore may retry a throttled call itself before the backoff here).

**Sink** ``kinesis://STREAM?partition_key=COLUMN&format=json|csv``: one Kinesis record per row,
a JSON object (or a CSV line, ``delimiter`` option) without the line terminator. See ``KinesisSink``.
It is **at-least-once**: rows are sent at ``prepare``, before the checkpoint is written, so a crash
between the two sends them again on restart.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from connectors import _aws
from connectors._kpl import deaggregate, is_aggregated
from connectors.options import Options, take_csv_options
from engine.errors import ConnectorError
from engine.formats.encode import json_value, to_csv, to_json_lines
from engine.formats.timestamps import format_timestamps, parse_timestamp
from engine.types import RAW_SCHEMA, TS_TYPE, Epoch, Offsets

ROWS_KEY = "__rows"
SHARD_END = "SHARD_END"
TRIM_HORIZON = "TRIM_HORIZON"
LATEST = "LATEST"
AT_TIMESTAMP = "AT_TIMESTAMP:"

METADATA_SCHEMA = pa.schema(
    [
        ("APPROXIMATE_ARRIVAL_TIME", TS_TYPE),  # the record's ApproximateArrivalTimestamp (= arrival_time)
        ("PARTITION_KEY", pa.string()),  # a KPL sub-record's own key
        ("SHARD_ID", pa.string()),
        ("SEQUENCE_NUMBER", pa.string()),  # "<seq>", or "<seq>:<sub>" for a KPL sub-record
    ]
)
BATCH_SCHEMA = pa.schema([*RAW_SCHEMA, *METADATA_SCHEMA])

MAX_RECORDS_PER_CALL = 10_000
BACKOFF_CAP_S = 5.0
MAX_RECORD_BYTES = 1 << 20  # data + partition key, per record
MAX_PUT_RECORDS = 500
MAX_PUT_BYTES = 5 << 20  # data + partition keys, per PutRecords call
MAX_KEY_CHARS = 256
_BUFFER_ROWS = 100_000  # the reader pauses when this many rows (or bytes) wait for poll()
_BUFFER_BYTES = 64 << 20
_IDLE_SLEEP_S = 0.5
_OPEN_RETRY_S = 30.0  # open/sample: how long transient errors are retried before giving up
_SAMPLE_TIMEOUT_S = 3.0
_SAMPLE_CALLS = 8
_MAX_INFLATED = 64 << 20  # a gzip payload that inflates past this is handed on compressed
_JOIN_TIMEOUT_S = 2.0
# How far AWS's clock (arrival stamps) may be behind ours: a caught-up shard is taken to hold
# nothing that arrived before its last call minus this.
_CLOCK_SKEW_US = 100_000
_STREAM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_SEQUENCE = re.compile(r"[0-9]{1,128}")
_TRANSIENT_CODES = frozenset({"ResourceInUseException", "ExpiredNextTokenException"})
_SOURCE_FORMATS = {"json": "json", "jsonl": "json", "ndjson": "json", "csv": "csv"}


# -- shared helpers -----------------------------------------------------------------------------


def _aws_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a boto3 call raises for AWS and transport failures (botocore is imported late)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError, ConnectionError)


def _transient(err: BaseException) -> bool:
    return _aws.is_retryable(err) or _aws.error_code(err) in _TRANSIENT_CODES


def _failure(err: BaseException, stream: str, where: str) -> ConnectorError:
    """The one-line error for an AWS failure that retrying will not fix (no credentials in it)."""
    if _aws.error_code(err) == "ResourceNotFoundException":
        return ConnectorError(
            f"kinesis stream {stream!r} does not exist", where=where, hint="check the stream name, region and endpoint"
        )
    return ConnectorError(f"kinesis stream {stream!r}: {_aws.describe(err)}", where=where)


def _backoff_s(base_s: float, failures: int) -> float:
    """Exponential backoff: ``base_s * 2**failures``, at most ``BACKOFF_CAP_S``."""
    return min(BACKOFF_CAP_S, base_s * 2 ** min(failures, 30))


def _retrying(call: Callable[[], Any], stream: str, where: str, budget_s: float = _OPEN_RETRY_S) -> Any:
    """``call()``, retrying transient AWS errors with backoff for at most ``budget_s`` seconds.

    Raises:
        ConnectorError: for a permanent error, or a transient one that outlasts the budget.
    """
    deadline = time.monotonic() + budget_s
    failures = 0
    while True:
        try:
            return call()
        except _aws_errors() as err:
            delay = _backoff_s(0.1, failures)
            if not _transient(err) or time.monotonic() + delay > deadline:
                raise _failure(err, stream, where) from None
            failures += 1
            time.sleep(delay)


def _list_shards(client: Any, stream: str) -> list[dict[str, Any]]:
    """Every shard of ``stream`` that ListShards reports (all pages)."""
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        response = client.list_shards(**kwargs)
        shards.extend(response.get("Shards") or [])
        token = response.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token}


def _stream_of(target: str | None, options: Options) -> str:
    name = (target if target else options.take("stream")).strip().rstrip("/")
    if not _STREAM_NAME.fullmatch(name):
        raise ConnectorError(
            f"{name!r} is not a Kinesis stream name", where=options.where, hint="1-128 of A-Z a-z 0-9 _ . -"
        )
    return name


def _take_format(options: Options) -> str:
    """The ``format`` option: ``json`` (also ``jsonl``, ``ndjson``; the default) or ``csv``."""
    fmt = options.take("format", "json").strip().lower()
    if fmt not in _SOURCE_FORMATS:
        raise ConnectorError(f"option 'format': {fmt!r} is not one of csv, json", where=options.where)
    return _SOURCE_FORMATS[fmt]


def _take_endpoint(options: Options) -> tuple[str | None, str | None]:
    endpoint = options.take_optional("endpoint")
    region = options.take_optional("region")
    return (endpoint.strip() or None) if endpoint else None, (region.strip() or None) if region else None


def _iterator_args(position: str) -> dict[str, Any]:
    """GetShardIterator arguments that start reading at ``position`` (see the module docstring)."""
    if position in (TRIM_HORIZON, LATEST):
        return {"ShardIteratorType": position}
    if position.startswith(AT_TIMESTAMP):
        millis = int(position[len(AT_TIMESTAMP) :])
        return {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": datetime.fromtimestamp(millis / 1000, timezone.utc)}
    seq, _, sub = position.partition(":")
    kind = "AT_SEQUENCE_NUMBER" if sub else "AFTER_SEQUENCE_NUMBER"  # a KPL record is re-read, then skipped into
    return {"ShardIteratorType": kind, "StartingSequenceNumber": seq}


def _not_before_us(position: str) -> int | None:
    """For an AT_TIMESTAMP position, its time in microseconds (records that arrived earlier are
    skipped: boto3 sends the timestamp in whole seconds); None for any other position."""
    if position.startswith(AT_TIMESTAMP):
        return int(position[len(AT_TIMESTAMP) :]) * 1000
    return None


def _valid_position(text: str) -> bool:
    if text in (SHARD_END, TRIM_HORIZON):
        return True
    if text.startswith(AT_TIMESTAMP):
        return text[len(AT_TIMESTAMP) :].isdigit()
    seq, colon, sub = text.partition(":")
    return bool(_SEQUENCE.fullmatch(seq)) and (not colon or sub.isdigit())


def _inflate(data: bytes) -> bytes:
    """A gzip payload's content (every member); anything else, or a broken or huge gzip, unchanged."""
    if not data.startswith(b"\x1f\x8b"):
        return data
    out: list[bytes] = []
    size, rest = 0, data
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=31)
            piece = inflater.decompress(rest, _MAX_INFLATED - size)
            if inflater.unconsumed_tail or not inflater.eof:
                return data  # too large, or truncated
            out.append(piece)
            size += len(piece)
            rest = inflater.unused_data
            if rest and not rest.startswith(b"\x1f\x8b"):
                return data  # trailing bytes that are not another member
    except zlib.error:
        return data
    return b"".join(out)


def _micros(value: Any) -> int:
    """Microseconds since the epoch for a boto3 timestamp (a datetime, or epoch seconds)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return round(value.timestamp() * 1_000_000)
    return round(float(value) * 1_000_000)


def _parse_start(text: str, where: str) -> str:
    """``trim_horizon`` → TRIM_HORIZON, ``latest`` → LATEST, ``at_timestamp:<t>`` → AT_TIMESTAMP:<ms>."""
    word, colon, rest = text.strip().partition(":")
    word = word.lower()
    if not colon and word in ("trim_horizon", "latest"):
        return TRIM_HORIZON if word == "trim_horizon" else LATEST
    if colon and word == "at_timestamp":
        rest = rest.strip()
        # a URI query turns the "+" of "+02:00" into a space: put it back
        rest = re.sub(r"(?<=[0-9]) (?=[0-9]{2}(:?[0-9]{2})?$)", "+", rest) if "T" in rest.upper() else rest
        try:
            micros = round(float(rest) * 1_000_000) if re.fullmatch(r"[0-9]+(\.[0-9]*)?", rest) else None
            if micros is None:
                micros = parse_timestamp(rest)
        except ValueError:
            micros = None
        if micros is not None and micros >= 0:
            return f"{AT_TIMESTAMP}{micros // 1000}"
    raise ConnectorError(
        f"option 'start': {text!r} is not trim_horizon, latest or at_timestamp:<time>",
        where=where,
        hint="at_timestamp:2024-05-01T10:00:00Z or at_timestamp:1714557600 (epoch seconds)",
    )


# -- the source ---------------------------------------------------------------------------------


@dataclass
class _Shard:
    """The reader's view of one shard (lives in the reader thread only)."""

    shard_id: str
    parents: tuple[str, ...]
    position: str  # where (re)reading starts: TRIM_HORIZON, LATEST, AT_TIMESTAMP:ms, seq, seq:sub
    closed: bool = False
    ending_seq: str | None = None
    iterator: str | None = None
    skip: tuple[str, int] | None = None  # KPL resume: drop sub-records <= n of this sequence number
    not_before_us: int | None = None  # AT_TIMESTAMP: drop records that arrived earlier (boto3 sends whole seconds)
    done: bool = False
    next_call: float = 0.0
    failures: int = 0

    @classmethod
    def listed(cls, info: dict[str, Any], position: str) -> _Shard:
        """A shard from a ListShards entry, starting at ``position``."""
        parents = tuple(p for p in (info.get("ParentShardId"), info.get("AdjacentParentShardId")) if p)
        shard = cls(info["ShardId"], parents, position)
        shard.update(info)
        seq, colon, sub = position.partition(":")
        if seq.isdigit() and colon and sub.isdigit():
            shard.skip = (seq, int(sub))
        shard.not_before_us = _not_before_us(position)
        shard.done = position == SHARD_END
        return shard

    def update(self, info: dict[str, Any]) -> None:
        """Take the closed state and ending sequence number from a ListShards entry."""
        ending = (info.get("SequenceNumberRange") or {}).get("EndingSequenceNumber")
        self.closed = ending is not None
        self.ending_seq = ending

    def read_to_end(self) -> bool:
        """True if the last record fetched is the closed shard's last one (for servers that never
        end the iterator)."""
        seq = self.position.partition(":")[0]
        if not self.closed or self.ending_seq is None or not seq.isdigit() or not self.ending_seq.isdigit():
            return False
        return int(seq) >= int(self.ending_seq)


@dataclass
class _Chunk:
    """Rows from one GetRecords response, in order; ``ends_shard`` once the shard is drained."""

    shard_id: str
    payloads: list[bytes]
    arrivals: list[int]
    keys: list[str]
    seqs: list[str]
    ends_shard: bool = False
    taken: int = 0
    nbytes: int = 0


class _Buffer:
    """Rows fetched but not yet handed out, one queue per shard: the reader appends, ``poll``
    takes them merged in arrival order.

    ``frontier`` holds, for every shard being read, how far its arrivals are known: the arrival
    time of the last record fetched, ``inf`` once a call found it caught up (MillisBehindLatest 0:
    anything later arrives from now on) and ``-inf`` before its first answer. Rows are handed out
    only up to the smallest frontier, so a shard that is behind (catching up on a backlog) is
    never overtaken by the others: event-time watermarks then see the stream in arrival order,
    as KDA's ROWTIME did, instead of one shard's whole backlog before the next one's.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queues: dict[str, deque[_Chunk]] = {}
        self.frontier: dict[str, float] = {}
        self.behind: set[str] = set()  # shards read whose last answer was not "caught up" (or none yet)
        self.rows = 0
        self.nbytes = 0
        self.error: ConnectorError | None = None
        self.lag: dict[str, int] = {}
        self.lag_seen = False

    def put(self, chunk: _Chunk, frontier: float | None = None) -> None:
        """Queue ``chunk`` (a drained shard's last one leaves the merge) and move the frontier."""
        with self.cond:
            self.queues.setdefault(chunk.shard_id, deque()).append(chunk)
            self.rows += len(chunk.payloads)
            self.nbytes += chunk.nbytes
            if chunk.ends_shard:
                self.frontier.pop(chunk.shard_id, None)
                self.behind.discard(chunk.shard_id)
            elif frontier is not None:
                self.frontier[chunk.shard_id] = max(self.frontier.get(chunk.shard_id, -math.inf), frontier)
            self.cond.notify_all()

    def reading(self, shard_id: str) -> None:
        """The reader starts on ``shard_id``: the merge waits for its first answer."""
        with self.cond:
            if shard_id not in self.frontier:
                self.frontier[shard_id] = -math.inf
                self.behind.add(shard_id)

    def gone(self, shard_id: str) -> None:
        """``shard_id`` vanished (expired past the retention period): the merge stops waiting for it."""
        with self.cond:
            self.frontier.pop(shard_id, None)
            self.behind.discard(shard_id)
            self.cond.notify_all()

    def mark(self, shard_id: str, caught_up: bool) -> None:
        with self.cond:
            if caught_up:
                self.behind.discard(shard_id)
            else:
                self.behind.add(shard_id)

    def starved(self, shard_id: str) -> bool:
        """Whether nothing of ``shard_id`` is buffered (the merge may be waiting for it)."""
        return not any(len(c.payloads) > c.taken for c in self.queues.get(shard_id, ()))

    def horizon(self) -> float:
        """Rows that arrived up to this time can be handed out in order."""
        return min(self.frontier.values(), default=math.inf)

    def ready(self) -> bool:
        """Whether ``poll`` can take something now (rows up to the horizon, or a shard's end)."""
        horizon = self.horizon()
        for queue in self.queues.values():
            for chunk in queue:
                if chunk.taken < len(chunk.payloads):
                    if chunk.arrivals[chunk.taken] <= horizon:
                        return True
                    break
                if chunk.ends_shard:
                    return True
        return False

    def fail(self, err: ConnectorError) -> None:
        with self.cond:
            self.error = err
            self.cond.notify_all()

    def set_lag(self, shard_id: str, millis: int | None) -> None:
        with self.cond:
            if millis is None:
                self.lag.pop(shard_id, None)
            else:
                self.lag[shard_id] = millis
            self.lag_seen = True

    def full(self) -> bool:
        return self.rows >= _BUFFER_ROWS or self.nbytes >= _BUFFER_BYTES

    def wait_for_room(self, timeout_s: float) -> None:
        with self.cond:
            if self.full() and self.error is None:
                self.cond.wait(timeout_s)


@dataclass(frozen=True)
class _Settings:
    stream: str
    where: str
    poll_interval_s: float
    max_records: int
    sync_interval_s: float
    latest_position: str  # what LATEST becomes once its iterator exists (AT_TIMESTAMP:<open ms>)


class _Reader:
    """The background thread that reads every shard into a ``_Buffer``.

    Calls on each shard are at least ``poll_interval`` apart (by ``clock``); after a transient
    error the gap doubles (up to 5 s). All shard state lives here and is touched by this thread
    only (after ``start``).
    """

    def __init__(
        self,
        settings: _Settings,
        client: Any,
        shards: dict[str, _Shard],
        iterator: Callable[[str, str], str | None],
        clock: Callable[[], float],
        sleep: Callable[[float], Any] | None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.shards = shards
        self.buffer = _Buffer()
        self.stop_event = threading.Event()
        self.iterator = iterator
        self.clock = clock
        self.sleep = sleep if sleep is not None else self.stop_event.wait
        self.next_sync = clock() + settings.sync_interval_s
        self.sync_soon = False
        self.sync_failures = 0
        self.thread = threading.Thread(target=self.run, name=f"kinesis-{settings.stream}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        with self.buffer.cond:
            self.buffer.cond.notify_all()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(_JOIN_TIMEOUT_S)  # a call in flight may outlast this: the thread is a daemon

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.step()
        except ConnectorError as err:
            self.buffer.fail(err)
        except Exception as err:  # noqa: BLE001 - a thread must report every failure to poll()
            self.buffer.fail(ConnectorError(f"kinesis reader stopped: {_aws.describe(err)}", where=self.settings.where))

    def step(self) -> None:
        """One round: re-list shards when due, then one call on every shard that may be read now."""
        if self.sync_soon or self.clock() >= self.next_sync:
            self.sync()
        now = self.clock()
        readable = [s for s in self.shards.values() if not s.done and self.parents_done(s)]
        for shard in readable:
            self.buffer.reading(shard.shard_id)
        # A full buffer still lets through the shards with nothing buffered: the ordered merge
        # may be waiting for exactly those.
        due = [
            s for s in readable if s.next_call <= now and (not self.buffer.full() or self.buffer.starved(s.shard_id))
        ]
        if self.buffer.full() and not due:
            self.buffer.wait_for_room(0.1)
            return
        for shard in due:
            if self.stop_event.is_set():
                return
            self.fetch(shard)
        if not due:
            wake = min([s.next_call for s in readable] + [self.next_sync])
            self.sleep(min(max(wake - self.clock(), 0.0), _IDLE_SLEEP_S))

    def parents_done(self, shard: _Shard) -> bool:
        """A shard is read only after its parents are drained (or gone: expired, never listed)."""
        return all(p not in self.shards or self.shards[p].done for p in shard.parents)

    def sync(self) -> None:
        """ListShards again: new shards start at TRIM_HORIZON, vanished ones are done."""
        now = self.clock()
        try:
            listing = _list_shards(self.client, self.settings.stream)
        except _aws_errors() as err:
            if not _transient(err):
                raise _failure(err, self.settings.stream, self.settings.where) from None
            self.next_sync = now + _backoff_s(0.5, self.sync_failures)
            self.sync_failures += 1
            self.sync_soon = False
            return
        self.sync_failures = 0
        self.next_sync = now + self.settings.sync_interval_s
        self.sync_soon = False
        listed = set()
        for info in listing:
            listed.add(info["ShardId"])
            shard = self.shards.get(info["ShardId"])
            if shard is None:
                self.shards[info["ShardId"]] = _Shard.listed(info, TRIM_HORIZON)
            else:
                shard.update(info)
        for shard in self.shards.values():
            if shard.shard_id not in listed and not shard.done:
                shard.done = True  # expired (past the retention period) before it could be read
                self.buffer.gone(shard.shard_id)

    def fetch(self, shard: _Shard) -> None:
        """One GetRecords call on ``shard`` (after GetShardIterator if it has no iterator)."""
        started = self.clock()
        shard.next_call = started + self.settings.poll_interval_s
        try:
            if shard.iterator is None:
                shard.iterator = self.iterator(shard.shard_id, shard.position)
                if shard.position == LATEST:
                    shard.position = self.settings.latest_position
                if shard.position.startswith(AT_TIMESTAMP):
                    shard.not_before_us = _not_before_us(shard.position)
                if shard.iterator is None:
                    self.end(shard)
                    return
            asked_at_us = time.time_ns() // 1000  # the wall clock, as AWS stamps arrivals
            response = self.client.get_records(ShardIterator=shard.iterator, Limit=self.settings.max_records)
        except _aws_errors() as err:
            self.failed(shard, err, started)
            return
        shard.failures = 0
        self.take(shard, response, asked_at_us)

    def failed(self, shard: _Shard, err: BaseException, started: float) -> None:
        code = _aws.error_code(err)
        if code == "ExpiredIteratorException":
            shard.iterator = None  # renewed from shard.position (the last record fetched) on the next call
            return
        if code == "ResourceNotFoundException":
            self.sync()  # raises if the stream itself is gone; a vanished (expired) shard is done
            if shard.done:
                return
            if not self.sync_failures:  # the stream and the shard are listed, yet the call failed
                message = f"kinesis stream {self.settings.stream!r}: {_aws.describe(err)}"
                raise ConnectorError(message, where=self.settings.where) from None
        elif not _transient(err):
            raise _failure(err, self.settings.stream, self.settings.where) from None
        shard.failures += 1
        shard.next_call = started + _backoff_s(self.settings.poll_interval_s, shard.failures)

    def take(self, shard: _Shard, response: dict[str, Any], asked_at_us: int | None = None) -> None:
        """Decode a GetRecords response into a chunk of rows; notice the shard's end."""
        records = response.get("Records") or []
        shard.iterator = response.get("NextShardIterator")
        lag = response.get("MillisBehindLatest")
        chunk = _Chunk(shard.shard_id, [], [], [], [])
        for record in records:
            self.add(chunk, shard, record)
        if shard.iterator is None or (not records and lag == 0 and shard.read_to_end()):
            self.end(shard, chunk)
            return
        self.buffer.set_lag(shard.shard_id, None if lag is None else int(lag))
        caught_up = lag == 0 and len(records) < self.settings.max_records and not shard.closed
        self.buffer.mark(shard.shard_id, caught_up)
        if caught_up:
            # caught up: whatever comes next arrived after the call (a full answer may have more
            # behind it even at lag 0: kinesalite, for one, always says 0). Not so for a closed
            # shard: what comes next is in its children, which hold the merge back once it ends.
            frontier = math.inf if asked_at_us is None else float(asked_at_us - _CLOCK_SKEW_US)
            if records:
                frontier = max(frontier, float(_micros(records[-1]["ApproximateArrivalTimestamp"])))
        elif records:
            frontier = float(_micros(records[-1]["ApproximateArrivalTimestamp"]))
        else:
            frontier = None
        self.buffer.put(chunk, frontier)

    def add(self, chunk: _Chunk, shard: _Shard, record: dict[str, Any]) -> None:
        seq = str(record["SequenceNumber"])
        data = bytes(record.get("Data") or b"")
        arrival = _micros(record["ApproximateArrivalTimestamp"])
        shard.position = seq
        if shard.not_before_us is not None:
            if arrival < shard.not_before_us:
                return
            shard.not_before_us = None
        subs = deaggregate(data) if is_aggregated(data) else None
        if subs is None:
            rows = [(seq, str(record.get("PartitionKey", "")), data)]
        else:
            first = shard.skip[1] + 1 if shard.skip is not None and shard.skip[0] == seq else 0
            rows = [(f"{seq}:{i}", sub.partition_key, sub.data) for i, sub in enumerate(subs) if i >= first]
        shard.skip = None
        for row_seq, key, payload in rows:
            payload = _inflate(payload)
            chunk.payloads.append(payload)
            chunk.arrivals.append(arrival)
            chunk.keys.append(key)
            chunk.seqs.append(row_seq)
            chunk.nbytes += len(payload) + 64

    def end(self, shard: _Shard, chunk: _Chunk | None = None) -> None:
        """The shard is drained: its last rows (if any) go out marked so, and its children may start."""
        shard.done = True
        shard.iterator = None
        self.sync()  # learn its children now: they must hold the merge back before the parent leaves it
        for child in self.shards.values():
            if not child.done and shard.shard_id in child.parents and self.parents_done(child):
                self.buffer.reading(child.shard_id)  # their records are newer than the parent's, not than others'
        self.buffer.set_lag(shard.shard_id, None)
        chunk = chunk if chunk is not None else _Chunk(shard.shard_id, [], [], [], [])
        chunk.ends_shard = True
        self.buffer.put(chunk)


class KinesisSource:
    """Records of a Kinesis stream, as raw rows plus metadata columns (see the module docstring).

    Public beyond the ``Source`` protocol: ``metadata_schema`` (the four metadata columns, in
    batch order), ``lag_ms()`` and ``shard_iterator()``; ``clock`` and ``sleep`` are the reader
    thread's time source (tests replace them before ``open``; ``poll`` always waits in real time).
    """

    kind: Literal["raw", "typed"] = "raw"
    bounded = False
    metadata_schema: pa.Schema = METADATA_SCHEMA

    def __init__(self, name: str, stream: str, options: Options, client: Any = None) -> None:
        """Take this connector's options; no I/O.

        Args:
            name: the stream name in the program (keys metrics and error rows).
            stream: the Kinesis stream name.
            options: ``start``, ``format`` (+ CSV's ``header``/``delimiter``), ``endpoint``,
                ``region``, ``poll_interval``, ``max_records``, ``shard_sync_interval``.
            client: a boto3 Kinesis client to use instead of building one (tests).

        Raises:
            ConnectorError: for a bad stream name or option.
        """
        self.name = name
        self.stream = stream
        self.where = options.where
        self.format: str | None = _take_format(options)
        self.csv_options: dict[str, Any] | None = take_csv_options(options) if self.format == "csv" else None
        self.start = _parse_start(options.take("start", "trim_horizon"), self.where)
        self.endpoint, self.region = _take_endpoint(options)
        self.poll_interval_s = options.take_duration("poll_interval", "200ms") / 1e6
        if self.poll_interval_s <= 0:
            raise ConnectorError("option 'poll_interval': must be more than 0", where=self.where)
        self.max_records = options.take_int("max_records", MAX_RECORDS_PER_CALL, minimum=1)
        if self.max_records > MAX_RECORDS_PER_CALL:
            raise ConnectorError(
                f"option 'max_records': {self.max_records} is more than {MAX_RECORDS_PER_CALL}", where=self.where
            )
        self.shard_sync_interval_s = options.take_duration("shard_sync_interval", "10s") / 1e6
        if self.shard_sync_interval_s <= 0:
            raise ConnectorError("option 'shard_sync_interval': must be more than 0", where=self.where)
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], Any] | None = None  # default: wait on the reader's stop event
        self._client = client
        self._reader: _Reader | None = None
        self._offsets: dict[str, str] = {}
        self._rows = 0

    @classmethod
    def from_uri(cls, name: str, target: str | None, options: Options) -> KinesisSource:
        """The registry's factory: ``target`` is the stream from the URI, else option ``stream``."""
        return cls(name, _stream_of(target, options), options)

    def _kinesis(self) -> Any:
        if self._client is None:
            self._client = _aws.client("kinesis", endpoint=self.endpoint, region=self.region, where=self.where)
        return self._client

    def shard_iterator(self, shard_id: str, position: str) -> str | None:
        """One GetShardIterator call: an iterator that reads ``shard_id`` from ``position``.

        Args:
            shard_id: the shard.
            position: ``TRIM_HORIZON``, ``LATEST``, ``AT_TIMESTAMP:<ms>``, ``<seq>`` (read after
                it) or ``<seq>:<sub>`` (read at it).

        Returns:
            The iterator, or None if the shard has nothing more to read.

        Raises:
            botocore.exceptions.ClientError: as boto3 raises it (the reader handles it).
        """
        response = self._kinesis().get_shard_iterator(
            StreamName=self.stream, ShardId=shard_id, **_iterator_args(position)
        )
        return response.get("ShardIterator")

    def open(self, resume: Offsets | None) -> None:
        """List the shards and start the reader thread after ``resume`` (see the module docstring).

        Raises:
            ConnectorError: for a missing stream, refused credentials, a malformed resume offset,
                or transient errors that last longer than 30 s.
        """
        self.close()
        rows_text = (resume or {}).get(ROWS_KEY, "0")
        if not rows_text.isdigit():
            raise ConnectorError(f"resume offset {rows_text!r} for {ROWS_KEY} is not a row count", where=self.where)
        client = self._kinesis()
        listing = _retrying(lambda: _list_shards(client, self.stream), self.stream, self.where)
        self._listing = {info["ShardId"]: info for info in listing}
        open_ms = time.time_ns() // 1_000_000
        latest = f"{AT_TIMESTAMP}{open_ms}"
        shards: dict[str, _Shard] = {}
        offsets: dict[str, str] = {}
        for info in listing:
            position = self._start_of(info, resume)
            shard = _Shard.listed(info, position)
            if position == LATEST:  # "latest" means as of open(): take the iterators now, not in the thread
                shard.iterator = self._latest_iterator(shard.shard_id)
                shard.position = latest
            shards[shard.shard_id] = shard
            offsets[shard.shard_id] = shard.position
        settings = _Settings(
            self.stream, self.where, self.poll_interval_s, self.max_records, self.shard_sync_interval_s, latest
        )
        self._rows = int(rows_text)
        self._offsets = offsets
        self._reader = _Reader(settings, client, shards, self.shard_iterator, self.clock, self.sleep)
        self._reader.start()

    def _latest_iterator(self, shard_id: str) -> str | None:
        def call() -> str | None:
            return self.shard_iterator(shard_id, LATEST)

        iterator: str | None = _retrying(call, self.stream, self.where)
        return iterator

    def _start_of(self, info: dict[str, Any], resume: Offsets | None) -> str:
        """Where a shard listed at ``open`` starts: its resume position, TRIM_HORIZON for a child
        of a resumed shard, else the configured ``start``."""
        shard_id = info["ShardId"]
        if resume is None:
            return self.start
        if shard_id in resume:
            position = resume[shard_id]
            if not _valid_position(position):
                raise ConnectorError(
                    f"resume offset {position!r} for shard {shard_id} is not a Kinesis position", where=self.where
                )
            return position
        return TRIM_HORIZON if self._descends_from(info, resume) else self.start

    def _descends_from(self, info: dict[str, Any], resume: Offsets) -> bool:
        """Whether a shard is a child (or grandchild, after two reshards) of a shard in ``resume``."""
        by_id = self._listing
        todo = [p for p in (info.get("ParentShardId"), info.get("AdjacentParentShardId")) if p]
        seen: set[str] = set()
        while todo:
            parent = todo.pop()
            if parent in resume:
                return True
            if parent in seen or parent not in by_id:
                continue
            seen.add(parent)
            up = by_id[parent]
            todo += [p for p in (up.get("ParentShardId"), up.get("AdjacentParentShardId")) if p]
        return False

    def poll(self, max_rows: int, timeout_s: float) -> pa.RecordBatch:
        """Rows the reader has fetched (at most ``max_rows``), waiting at most ``timeout_s`` for
        the first; an empty batch if none arrived (never None: the stream has no end).

        Raises:
            ConnectorError: before ``open``, or when the reader stopped on an error it cannot
                get past (the stream was deleted, credentials were refused).
        """
        reader = self._reader
        if reader is None:
            raise ConnectorError("poll() before open()", where=self.where)
        buffer = reader.buffer
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with buffer.cond:
            while not buffer.ready() and buffer.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                buffer.cond.wait(remaining)
            if buffer.error is not None:
                raise buffer.error
            columns = self._take(buffer, max(max_rows, 0))
            buffer.cond.notify_all()  # room for the reader
        return self._batch(*columns)

    def _take(self, buffer: _Buffer, max_rows: int) -> tuple[list[bytes], list[int], list[str], list[str], list[str]]:
        """Up to ``max_rows`` rows, merged across shards in arrival order up to the horizon (ties:
        by shard id, then within a shard in sequence order); the offsets follow what is taken."""
        payloads: list[bytes] = []
        arrivals: list[int] = []
        keys: list[str] = []
        shard_ids: list[str] = []
        seqs: list[str] = []
        horizon = buffer.horizon()
        heads: list[tuple[int, str]] = []
        for shard_id in buffer.queues:
            head = self._head(buffer, shard_id)
            if head is not None and head <= horizon:
                heapq.heappush(heads, (head, shard_id))
        while heads and len(payloads) < max_rows:
            _, shard_id = heapq.heappop(heads)
            chunk = buffer.queues[shard_id][0]
            # take this shard's rows while they stay ahead of the next shard's head
            bound = min(horizon, heads[0][0] if heads else math.inf)
            start = chunk.taken
            stop = start
            limit = min(len(chunk.payloads), start + max_rows - len(payloads))
            while stop < limit and (stop == start or chunk.arrivals[stop] <= bound):
                stop += 1
            payloads += chunk.payloads[start:stop]
            arrivals += chunk.arrivals[start:stop]
            keys += chunk.keys[start:stop]
            seqs += chunk.seqs[start:stop]
            shard_ids += [shard_id] * (stop - start)
            chunk.taken = stop
            buffer.rows -= stop - start
            self._offsets[shard_id] = chunk.seqs[stop - 1]
            head = self._head(buffer, shard_id)
            if head is not None and head <= horizon:
                heapq.heappush(heads, (head, shard_id))
        for shard_id in list(buffer.queues):
            self._head(buffer, shard_id)  # a drained shard's end marker is consumed here
            if not buffer.queues[shard_id]:
                del buffer.queues[shard_id]
        return payloads, arrivals, keys, shard_ids, seqs

    def _head(self, buffer: _Buffer, shard_id: str) -> int | None:
        """The arrival time of ``shard_id``'s next buffered row, dropping used-up chunks (and
        marking the shard's end in the offsets when its last chunk is used up)."""
        queue = buffer.queues[shard_id]
        while queue:
            chunk = queue[0]
            if chunk.taken < len(chunk.payloads):
                return chunk.arrivals[chunk.taken]
            queue.popleft()
            buffer.nbytes -= chunk.nbytes
            if chunk.ends_shard:
                self._offsets[shard_id] = SHARD_END
        return None

    def _batch(
        self, payloads: list[bytes], arrivals: list[int], keys: list[str], shard_ids: list[str], seqs: list[str]
    ) -> pa.RecordBatch:
        n = len(payloads)
        arrival = pa.array(arrivals, TS_TYPE)
        batch = pa.record_batch(
            [
                pa.array(payloads, pa.large_binary()),
                pa.array(range(self._rows, self._rows + n), pa.int64()),
                arrival,
                arrival,
                pa.array(keys, pa.string()),
                pa.array(shard_ids, pa.string()),
                pa.array(seqs, pa.string()),
            ],
            schema=BATCH_SCHEMA,
        )
        self._rows += n
        return batch

    def schema(self) -> pa.Schema | None:
        """A raw source: None (the metadata columns are in ``metadata_schema``)."""
        return None

    def sample(self, max_rows: int) -> list[bytes]:
        """Up to ``max_rows`` payloads from the configured start, for schema discovery.

        Uses its own iterators (``open``/``poll`` are not disturbed) and stays cheap: at most 8
        GetRecords calls and about 3 s. ``start=latest`` has nothing to show yet, so it samples
        from the oldest records instead. Transient errors end the sample early.

        Raises:
            ConnectorError: for a missing stream or a permanent AWS error.
        """
        if max_rows <= 0:
            return []
        client = self._kinesis()
        listing = _retrying(lambda: _list_shards(client, self.stream), self.stream, self.where, _SAMPLE_TIMEOUT_S)
        position = TRIM_HORIZON if self.start == LATEST else self.start
        deadline = time.monotonic() + _SAMPLE_TIMEOUT_S
        payloads: list[bytes] = []
        calls = 0
        for info in listing:
            if len(payloads) >= max_rows or calls >= _SAMPLE_CALLS or time.monotonic() > deadline:
                break
            try:
                got, used = self._sample_shard(
                    info["ShardId"], position, max_rows - len(payloads), _SAMPLE_CALLS - calls
                )
            except _aws_errors() as err:
                if _transient(err):
                    break
                raise _failure(err, self.stream, self.where) from None
            payloads += got
            calls += used
        return payloads[:max_rows]

    def _sample_shard(self, shard_id: str, position: str, wanted: int, calls: int) -> tuple[list[bytes], int]:
        """Up to ``wanted`` payloads of one shard from ``position`` in at most 3 (and ``calls``)
        GetRecords calls; the payloads and the number of calls made."""
        client = self._kinesis()
        iterator = self.shard_iterator(shard_id, position)
        not_before = _not_before_us(position)
        payloads: list[bytes] = []
        used = 0
        while iterator is not None and used < min(calls, 3) and len(payloads) < wanted:
            used += 1
            response = client.get_records(ShardIterator=iterator, Limit=min(MAX_RECORDS_PER_CALL, max(wanted, 1000)))
            records = response.get("Records") or []
            payloads += _sample_payloads(records, not_before)
            iterator = response.get("NextShardIterator")
            if not records and not response.get("MillisBehindLatest"):
                break  # at the tip of the shard
        return payloads, used

    def offsets(self) -> Offsets:
        """``{"__rows": rows handed out, shard id: position, ...}`` for the rows ``poll`` returned."""
        return {ROWS_KEY: str(self._rows), **self._offsets}

    def caught_up(self) -> bool:
        """Whether every shard being read has answered that nothing more is waiting, and every
        row fetched was handed out (``--until-idle`` waits for this before it counts)."""
        reader = self._reader
        if reader is None:
            return False
        with reader.buffer.cond:
            return not reader.buffer.behind and reader.buffer.rows == 0

    def lag_ms(self) -> int | None:
        """The largest ``MillisBehindLatest`` of the last GetRecords call on each shard being read.

        Returns:
            Milliseconds (0 once every shard was drained), or None before any GetRecords answered.
        """
        reader = self._reader
        if reader is None:
            return None
        with reader.buffer.cond:
            if not reader.buffer.lag_seen:
                return None
            return max(reader.buffer.lag.values(), default=0)

    def close(self) -> None:
        """Stop the reader thread (safe to call twice); buffered rows are dropped."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()


def _sample_payloads(records: list[dict[str, Any]], not_before_us: int | None) -> list[bytes]:
    """The payloads of GetRecords records (inflated, de-aggregated), skipping records that arrived
    before ``not_before_us``."""
    payloads: list[bytes] = []
    for record in records:
        if not_before_us is not None and _micros(record["ApproximateArrivalTimestamp"]) < not_before_us:
            continue
        data = bytes(record.get("Data") or b"")
        subs = deaggregate(data) if is_aggregated(data) else None
        payloads += [_inflate(data)] if subs is None else [_inflate(s.data) for s in subs]
    return payloads


# -- the sink -----------------------------------------------------------------------------------


class KinesisSink:
    """Rows as Kinesis records, sent with PutRecords at ``prepare``: at-least-once.

    ``write`` encodes and buffers rows per epoch (nothing is sent); ``prepare(n)`` sends every
    buffered row of epochs ``<= n`` in PutRecords calls of at most 500 records and 5 MB (partition
    keys included), retrying only the records that failed (``ErrorCode``) and whole calls that were
    throttled, with exponential backoff (up to 5 s), for at most ``retry_timeout`` (default
    ``15m``); it returns None. ``commit`` does nothing (the records are already visible);
    ``abort`` drops the epoch's buffer. A crash after PutRecords and before the checkpoint sends
    the epoch again on restart: readers must tolerate duplicates.

    Partition key: the ``partition_key`` column's value as text (a NULL is ``"null"``, an empty
    string ``"(empty)"``, longer than 256 characters is cut to 256), else the MD5 hex digest of
    the encoded row (deterministic, spreads rows over the shards).

    Traps: a row that encodes to more than 1 MiB (with its key) is a ``ConnectorError`` that
    stops the pipeline (there are no sink-side error rows yet); records retried after a partial
    failure may land after records of the same key that were sent after them.
    """

    def __init__(self, name: str, stream: str, options: Options, client: Any = None) -> None:
        """Take this connector's options; no I/O.

        Args:
            name: the sink name.
            stream: the Kinesis stream name.
            options: ``partition_key``, ``format`` (json or csv), ``delimiter`` (csv),
                ``endpoint``, ``region``, ``retry_timeout``.
            client: a boto3 Kinesis client to use instead of building one (tests).

        Raises:
            ConnectorError: for a bad stream name or option.
        """
        self.name = name
        self.stream = stream
        self.where = options.where
        self.format = _take_format(options)
        self.delimiter = ","
        if self.format == "csv":
            self.delimiter = take_csv_options(_only(options, "delimiter"))["delimiter"]
        self.partition_key = options.take_optional("partition_key")
        self.endpoint, self.region = _take_endpoint(options)
        self.retry_timeout_s = options.take_duration("retry_timeout", "15m") / 1e6
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], Any] = time.sleep
        self._client = client
        self._key_column: str | None = None
        self._buffer: dict[int, list[tuple[bytes, str]]] = {}

    @classmethod
    def from_uri(cls, name: str, target: str | None, options: Options) -> KinesisSink:
        """The registry's factory: ``target`` is the stream from the URI, else option ``stream``."""
        return cls(name, _stream_of(target, options), options)

    def _kinesis(self) -> Any:
        if self._client is None:
            self._client = _aws.client("kinesis", endpoint=self.endpoint, region=self.region, where=self.where)
        return self._client

    def open(self, schema: pa.Schema, last_committed: Epoch | None, state: dict | None = None) -> None:
        """Check the partition key column and that the stream exists; nothing to recover.

        Raises:
            ConnectorError: for an unknown ``partition_key`` column, a missing stream or an AWS
                error that retrying does not fix.
        """
        self._buffer = {}
        self._key_column = None
        if self.partition_key is not None:
            self._key_column = _column_named(schema, self.partition_key, self.where)
        client = self._kinesis()
        _retrying(lambda: client.describe_stream_summary(StreamName=self.stream), self.stream, self.where)

    def write(self, epoch: Epoch, batch: pa.Table) -> None:
        """Encode the rows and buffer them for ``epoch`` (sent at ``prepare``).

        Raises:
            ConnectorError: for a row over 1 MiB as a record.
        """
        if batch.num_rows == 0:
            return
        if self.format == "csv":
            records = _csv_records(to_csv(batch, header=False, delimiter=self.delimiter))
        else:
            records = to_json_lines(batch).split(b"\n")[:-1]  # JSON escapes every line break inside a row
        keys = self._keys(batch, records)
        for i, (data, key) in enumerate(zip(records, keys)):
            size = len(data) + len(key.encode())
            if size > MAX_RECORD_BYTES:
                raise ConnectorError(
                    f"a row of epoch {epoch} is {size} bytes as a Kinesis record, "
                    f"over the {MAX_RECORD_BYTES} byte limit",
                    where=self.where,
                    hint=f"row {i} of the batch; shorten it or raise the stream's maximum record size",
                )
        self._buffer.setdefault(int(epoch), []).extend(zip(records, keys))

    def _keys(self, batch: pa.Table, records: list[bytes]) -> list[str]:
        if self._key_column is None:
            return [hashlib.md5(r, usedforsecurity=False).hexdigest() for r in records]
        texts = _key_texts(batch.column(self._key_column))
        return [_key(t) for t in texts]

    def prepare(self, epoch: Epoch) -> dict | None:
        """Send every buffered row of epochs ``<= epoch`` (PutRecords); returns None.

        Raises:
            ConnectorError: for a permanent AWS error, a record refused for good, or records
                still failing after ``retry_timeout``.
        """
        for buffered in sorted(e for e in self._buffer if e <= epoch):
            records = self._buffer.pop(buffered)
            for batch in _put_batches(records):
                self._put(batch)
        return None

    def _put(self, records: list[tuple[bytes, str]]) -> None:
        """One PutRecords batch, retrying failed records until they land or time runs out."""
        client = self._kinesis()
        deadline = self.clock() + self.retry_timeout_s
        pending, failures, problem = records, 0, ""
        while True:
            entries = [{"Data": data, "PartitionKey": key} for data, key in pending]
            try:
                response = client.put_records(StreamName=self.stream, Records=entries)
            except _aws_errors() as err:
                if not _transient(err):
                    raise _failure(err, self.stream, self.where) from None
                problem = _aws.describe(err)
            else:
                if not response.get("FailedRecordCount"):
                    return
                pending, problem = self._failed(pending, response.get("Records") or [])
                if not pending:
                    return
            delay = _backoff_s(0.1, failures)
            failures += 1
            if self.clock() + delay > deadline:
                raise ConnectorError(
                    f"kinesis stream {self.stream!r}: {len(pending)} records still not written after "
                    f"{self.retry_timeout_s:g} s: {problem}",
                    where=self.where,
                    hint="add shards or raise retry_timeout",
                )
            self.sleep(delay)

    def _failed(
        self, sent: list[tuple[bytes, str]], results: list[dict[str, Any]]
    ) -> tuple[list[tuple[bytes, str]], str]:
        """The records of a PutRecords call to send again, and the last error seen.

        Raises:
            ConnectorError: for a record refused with an error that retrying does not fix.
        """
        again: list[tuple[bytes, str]] = []
        problem = ""
        for record, result in zip(sent, results):
            code = result.get("ErrorCode")
            if not code:
                continue
            problem = f"{code} ({result.get('ErrorMessage', '')})".replace(" ()", "")
            if code not in _aws.RETRYABLE_CODES:
                raise ConnectorError(
                    f"kinesis stream {self.stream!r}: PutRecords refused a record: {problem}", where=self.where
                )
            again.append(record)
        if len(results) < len(sent):
            again += sent[len(results) :]  # not answered: send again
        return again, problem

    def commit(self, epoch: Epoch) -> None:
        """Nothing to do: records are visible once ``prepare`` sent them."""

    def abort(self, epoch: Epoch) -> None:
        """Drop the rows buffered for ``epoch`` (rows already sent stay in the stream)."""
        self._buffer.pop(int(epoch), None)

    def close(self) -> None:
        """Drop whatever is buffered (never sent: no checkpoint can name it)."""
        self._buffer = {}


def _only(options: Options, key: str) -> Options:
    """The option ``key`` alone, taken out of ``options`` (so no other CSV option is accepted)."""
    value = options.take_optional(key)
    return Options({} if value is None else {key: value}, options.where)


def _column_named(schema: pa.Schema, name: str, where: str) -> str:
    if name in schema.names:
        return name
    matches = [n for n in schema.names if n.lower() == name.lower()]
    if len(matches) == 1:
        return matches[0]
    raise ConnectorError(
        f"option 'partition_key': the rows have no column {name!r}",
        where=where,
        hint=f"columns: {', '.join(schema.names)}",
    )


def _key_texts(column: pa.ChunkedArray | pa.Array) -> list[str | None]:
    """Each value of the partition key column as text (None for NULL)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.to_pylist()
    if pa.types.is_timestamp(column.type):
        return format_timestamps(column).to_pylist()
    try:
        return pc.cast(column, pa.string()).to_pylist()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return [None if v is None else json.dumps(json_value(v), separators=(",", ":")) for v in column.to_pylist()]


def _key(text: str | None) -> str:
    if text is None:
        return "null"
    if text == "":
        return "(empty)"
    return text[:MAX_KEY_CHARS]


def _csv_records(blob: bytes) -> list[bytes]:
    """CSV lines without their terminator; a line break inside a quoted field stays in its record."""
    records: list[bytes] = []
    pieces: list[bytes] = []
    quotes = 0
    for piece in blob.split(b"\n")[:-1]:
        pieces.append(piece)
        quotes += piece.count(b'"')
        if quotes % 2 == 0:
            records.append(b"\n".join(pieces))
            pieces, quotes = [], 0
    return records


def _put_batches(records: list[tuple[bytes, str]]) -> list[list[tuple[bytes, str]]]:
    """Records cut into PutRecords calls of at most 500 records and 5 MB (keys included)."""
    batches: list[list[tuple[bytes, str]]] = []
    current: list[tuple[bytes, str]] = []
    size = 0
    for data, key in records:
        record_size = len(data) + len(key.encode())
        if current and (len(current) >= MAX_PUT_RECORDS or size + record_size > MAX_PUT_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append((data, key))
        size += record_size
    if current:
        batches.append(current)
    return batches
