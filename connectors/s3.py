"""S3: rows written exactly once as objects under ``s3://BUCKET/PREFIX`` (a sink), and small helpers.

URI forms: ``s3://BUCKET/PREFIX`` with options in a query (``s3://lake/kpis?format=parquet``) or,
from SQL, ``WITH ('connector' = 's3', 'path' = 's3://lake/kpis', 'format' = 'csv')``.
Credentials, region and endpoint come from the standard AWS chain (``connectors._aws``).

Options (all optional):

=====================  ==========================================================================
``format``             ``json`` (JSON lines, default; also ``jsonl``/``ndjson``), ``csv``, ``parquet``
``compression``        ``none`` (default) or ``gzip`` for json/csv; ``snappy`` (default), ``gzip``
                       or ``none`` inside parquet files
``layout``             ``hive`` (default): ``PREFIX/year=YYYY/month=MM/day=DD/hour=HH/<sink>-<run>-
                       <epoch:010d>-<part:04d>.<ext>``; ``firehose``: ``PREFIX/YYYY/MM/DD/HH/<sink>-1-YYYY-
                       MM-DD-HH-mm-ss-<uuid>.<ext>``, as Kinesis Data Firehose names its objects
``time_column``        the timestamp (or date) column that picks the hour; default ``window_start``
                       when the rows have it, else none (hive: no ``year=...`` directories)
``buffer_size``        roll an object once this much is buffered: ``5MiB`` (default), ``1MB``,
                       ``65536`` (bytes); KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024
``buffer_interval``    ... or once the oldest buffered row is this old (default ``300s``); ``0``
                       rolls an object at every epoch (checkpoint) that has rows
``retry_timeout``      how long S3 calls are retried before the run stops (default ``24h``)
``endpoint``           an S3 endpoint URL (MinIO, moto); wins over ``AWS_ENDPOINT_URL[_S3]``
``region``             wins over ``AWS_REGION``
``delimiter``          CSV: one character (default ``,``)
``header``             CSV: a header line at the top of every object (default true)
=====================  ==========================================================================

Extensions: ``.json``/``.json.gz``, ``.csv``/``.csv.gz``, ``.parquet``. ``split_s3_uri`` and
``read_object`` are for other code that reads S3 (program files, checkpoints, sources).
"""

from __future__ import annotations

import gzip
import io
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors._aws import client, describe, error_code, is_retryable
from connectors.base import check_epoch_grows
from connectors.options import Options, take_csv_options
from engine.errors import ConnectorError
from engine.formats.encode import to_csv, to_json_lines
from engine.types import WINDOW_START, Epoch

DEFAULT_BUFFER_SIZE = "5MiB"
DEFAULT_BUFFER_INTERVAL = "300s"
DEFAULT_RETRY_TIMEOUT = "24h"
STATE_VERSION = 1
PART_BYTES = 16 * 1024 * 1024  # multipart part size (S3 wants >= 5 MiB for every part but the last)
_FORMATS = {"json": "json", "jsonl": "json", "ndjson": "json", "csv": "csv", "parquet": "parquet"}
_CONTENT_TYPES = {"json": "application/x-ndjson", "csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
_EXT_RE = r"(?:\.json(?:\.gz)?|\.csv(?:\.gz)?|\.parquet)"
_UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "duckstream:s3-sink")  # firehose object ids: uuid5(this, sink/epoch/part)
_HOUR_US = 3_600_000_000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NULL_HOUR = "/".join(f"{k}=__HIVE_DEFAULT_PARTITION__" for k in ("year", "month", "day", "hour"))
_EXTENSIONS = (".json", ".json.gz", ".csv", ".csv.gz", ".parquet")
_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


# -- helpers other code uses -------------------------------------------------------------------


def split_s3_uri(uri: str, where: str | None = None) -> tuple[str, str]:
    """``s3://BUCKET/KEY`` → ``(BUCKET, KEY)``; the key may be empty or a prefix.

    Args:
        uri: the URI as written (the ``s3://`` scheme is required, any case).
        where: a location for messages.

    Returns:
        The bucket and the key (without a leading ``/``).

    Raises:
        ConnectorError: for another scheme or a missing or malformed bucket name.

    >>> split_s3_uri("s3://lake/kpis/2024/a.json")
    ('lake', 'kpis/2024/a.json')
    """
    text = uri.strip()
    if not text[:5].lower() == "s3://":
        raise ConnectorError(f"{uri!r} is not an s3:// URI", where=where, hint="write s3://BUCKET/KEY")
    bucket, _, key = text[5:].partition("/")
    if not _BUCKET_RE.fullmatch(bucket):
        what = "names no bucket" if not bucket else f"has an invalid bucket name {bucket!r}"
        raise ConnectorError(f"{uri!r} {what}", where=where, hint="write s3://BUCKET/KEY")
    return bucket, key.lstrip("/")


@dataclass(frozen=True)
class RetryPolicy:
    """How S3 calls are retried: exponential backoff, capped, until a deadline per call."""

    timeout_s: float = 86_400.0
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


class _Rejected(Exception):
    """An S3 error code the caller asked to handle itself (NoSuchUpload, 404, ...)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _retryable(err: BaseException) -> bool:
    from botocore.exceptions import IncompleteReadError, ResponseStreamingError

    return is_retryable(err) or isinstance(err, (IncompleteReadError, ResponseStreamingError))


def _call(
    policy: RetryPolicy,
    what: str,
    where: str | None,
    fn: Callable[..., Any],
    *,
    handled: frozenset[str] = frozenset(),
    on_retry: Callable[[], None] | None = None,
    **kwargs: Any,
) -> Any:
    """``fn(**kwargs)``, retried while S3 is unreachable, throttles or fails on its side.

    Raises:
        _Rejected: for an error code in ``handled``.
        ConnectorError: ``<what>: <AWS's one-line reason>`` for any other error, or once
            ``policy.timeout_s`` has passed.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = policy.clock() + policy.timeout_s
    delay = policy.initial_backoff_s
    attempts = 0
    while True:
        try:
            return fn(**kwargs)
        except (BotoCoreError, ClientError, ConnectionError) as err:
            code = error_code(err)
            if code and code in handled:
                raise _Rejected(code) from None
            attempts += 1
            now = policy.clock()
            if not _retryable(err):
                raise ConnectorError(f"{what}: {describe(err)}", where=where) from None
            if now >= deadline:
                raise ConnectorError(
                    f"{what}: still failing after {attempts} attempts in {policy.timeout_s:g} s: {describe(err)}",
                    where=where,
                    hint="the last checkpoint is intact: restart when S3 is back",
                ) from None
            if on_retry is not None:
                on_retry()
            policy.sleep(min(delay, deadline - now))
            delay = min(delay * 2, policy.max_backoff_s)


def read_object(
    uri: str,
    *,
    where: str | None,
    endpoint: str | None = None,
    region: str | None = None,
    retry: RetryPolicy | None = None,
) -> bytes:
    """The bytes of one S3 object (GetObject), retried like the sink's calls.

    Args:
        uri: ``s3://BUCKET/KEY``.
        where: a location for messages.
        endpoint: an endpoint URL overriding the environment.
        region: a region overriding the environment.
        retry: the retry rules (default: ``RetryPolicy()``, 24 h).

    Returns:
        The object's bytes.

    Raises:
        ConnectorError: ``s3://b/k does not exist`` for a missing object or bucket, or another
            one-line S3 failure.
    """
    bucket, key = split_s3_uri(uri, where)
    if not key or key.endswith("/"):
        raise ConnectorError(f"{uri} names a prefix, not an object", where=where)
    s3 = client("s3", endpoint=endpoint, region=region, where=where or uri)

    def get() -> bytes:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    try:
        data: bytes = _call(
            retry or RetryPolicy(), f"cannot read {uri}", where, get, handled=frozenset({"NoSuchKey", "NoSuchBucket"})
        )
    except _Rejected as rejected:
        extra = f" (no bucket {bucket!r})" if rejected.code == "NoSuchBucket" else ""
        raise ConnectorError(f"s3://{bucket}/{key} does not exist{extra}", where=where) from None
    return data


def parse_size(text: str, where: str) -> int:
    """Bytes in a size such as ``5MiB``, ``1MB``, ``64 KiB`` or ``1048576``.

    Raises:
        ConnectorError: ``"5x" is not a size``.
    """
    m = _SIZE_RE.fullmatch(text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _SIZE_UNITS:
        raise ConnectorError(f'"{text}" is not a size', where=where, hint="write 5MiB, 1MB or a number of bytes")
    return round(float(m.group(1)) * _SIZE_UNITS[unit])


# -- the sink ----------------------------------------------------------------------------------


@dataclass
class _Upload:
    """One object of an epoch: a multipart upload, all parts sent, not completed (invisible)."""

    key: str
    upload_id: str
    parts: list[tuple[int, str]]
    rows: int
    size: int

    def state(self) -> dict[str, Any]:
        return {"key": self.key, "upload_id": self.upload_id, "parts": [list(p) for p in self.parts]}


@dataclass
class _Pending:
    """Buffered rows of one partition (an hour, or everything)."""

    tables: list[pa.Table] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)  # json/csv: the rows encoded, uncompressed
    size: int = 0
    rows: int = 0
    min_us: int | None = None  # the oldest time-column value (firehose names)


class S3Sink:
    """Rows as objects under ``s3://BUCKET/PREFIX``, visible exactly once per committed epoch.

    **Objects are multipart uploads.** S3 shows an object only once ``CompleteMultipartUpload``
    runs, so every object is uploaded (all parts) when it is *rolled* and completed at
    ``commit``. Its key is a pure function of (sink, epoch, part) plus the rows: hive layout
    ``PREFIX/year=YYYY/month=MM/day=DD/hour=HH/<sink>-<run>-<epoch:010d>-<part:04d>.<ext>``, the hour
    (UTC) from the time column, one object per hour the buffer spans (``__HIVE_DEFAULT_PARTITION__``
    for a NULL time), no ``year=`` directories without a time column; firehose layout
    ``PREFIX/YYYY/MM/DD/HH/<sink>-1-YYYY-MM-DD-HH-mm-ss-<uuid>.<ext>``, one object per roll, the
    time that of the oldest row's time column (else the buffer's first write, kept in the
    state), the uuid ``uuid5(namespace, "<sink>/<epoch>/<part>")``. Parts count from 0 per
    epoch in roll order (hive: hours in order); an object rolled at epoch ``n`` carries ``n``.

    **Buffering hints** (Firehose's): rows accumulate across epochs and roll into objects once
    ``buffer_size`` is reached (checked at every ``write``: memory stays bounded) or, at a
    ``prepare``, once the oldest buffered row is ``buffer_interval`` old (wall clock, injectable),
    whichever comes first; ``buffer_interval=0`` rolls at every ``prepare``. Sizes count the
    encoded, uncompressed bytes for json/csv and the in-memory Arrow size for parquet. Rows still
    buffered at a ``prepare`` go *into its state* (Arrow IPC, below the buffer size) so a crash
    after the checkpoint loses none of them; a resumed run carries on with them. ``flush()`` asks
    the next ``prepare`` to roll everything (the runtime calls it before the last checkpoint of a
    run that ends or stops on a signal). ``close()`` does no I/O.

    **Protocol.** ``prepare(n)`` rolls what is due and returns ``{"version": 1, "epoch": n,
    "run": token, "uploads": [{"key", "upload_id", "parts": [[number, etag], ...]}, ...], "held": None or
    {"since": wall-clock s, "rows": int, "ipc": bytes}}``. ``commit(n)`` completes the uploads
    (idempotent: an upload already completed is fine when its object exists). ``open(schema,
    None)`` is a fresh start: it draws a new *run token* (8 hex digits, part of every object name
    and of the state, so a restart from a checkpoint names its objects as the crashed run did)
    and aborts this sink's unfinished uploads; objects of earlier runs are left alone and never
    overwritten. ``open(schema, n, state)`` completes the uploads of ``state``,
    aborts every other unfinished upload of this sink and restores the held rows. Objects of
    epochs after ``n`` cannot exist: ``commit(n + 1)`` only runs once checkpoint ``n + 1`` is
    saved. ``abort(n)`` aborts epoch
    ``n``'s uploads and returns the buffer to what it held at the last commit.

    **Failures.** Every S3 call is retried on connection errors, 5xx and throttling with
    exponential backoff (capped at 10 s) for up to ``retry_timeout``, then ``ConnectorError``.
    While it retries the sink blocks, so the single-threaded runtime stops polling its sources:
    back-pressure, no loss. A missing bucket or denied access is a ``ConnectorError`` at ``open``.

    Traps: two sinks with the same name must not share a prefix; a fresh start deletes this
    sink's earlier objects; rows ``close`` publishes past the last checkpoint are deleted again
    (and re-sent) when a later run resumes from that checkpoint; the prefix ends at a ``/``
    boundary (``s3://b/kpis`` writes under ``kpis/``); S3 lifecycle rules should abort
    incomplete multipart uploads after some days, in case a run is abandoned after a crash;
    json/csv buffers keep the rows both as Arrow and encoded (about twice ``buffer_size`` in memory);
    the checkpoint is pickled, and ``held`` is bytes (not JSON-able).
    """

    def __init__(
        self,
        name: str,
        target: str,
        options: Options,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        initial_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
    ) -> None:
        """Take this connector's options and check them; no I/O.

        Args:
            name: the sink name (in every object name).
            target: ``BUCKET/PREFIX`` or ``s3://BUCKET/PREFIX``.
            options: the options left after the URI (see the module docstring);
                ``finish()`` is left to the caller.
            clock: wall-clock seconds, for ``buffer_interval`` and firehose names (tests inject one).
            sleep: how to wait between retries.
            initial_backoff_s: the first wait between retries (doubles up to ``max_backoff_s``).
            max_backoff_s: the longest wait between retries.

        Raises:
            ConnectorError: for a bad bucket name or option.
        """
        self.name = name
        self.where = options.where
        text = target if target[:5].lower() == "s3://" else "s3://" + target
        self.bucket, prefix = split_s3_uri(text, self.where)
        self.prefix = prefix.strip("/")
        self.root = self.prefix + "/" if self.prefix else ""
        self.label = f"s3://{self.bucket}/{self.root}"
        self.format = _FORMATS[options.take_choice("format", _FORMATS, "json")]
        self.csv_options = take_csv_options(options) if self.format == "csv" else None
        codecs = {"snappy", "gzip", "none"} if self.format == "parquet" else {"gzip", "none"}
        self.compression = options.take_choice("compression", codecs, "snappy" if self.format == "parquet" else "none")
        self.layout = options.take_choice("layout", {"hive", "firehose"}, "hive")
        self.time_column_option = options.take_optional("time_column")
        self.buffer_size = parse_size(options.take("buffer_size", DEFAULT_BUFFER_SIZE), f"{self.where}: 'buffer_size'")
        if self.buffer_size < 1:
            raise ConnectorError("option 'buffer_size': must be at least 1 byte", where=self.where)
        self.buffer_interval_s = options.take_duration("buffer_interval", DEFAULT_BUFFER_INTERVAL) / 1e6
        self.endpoint = options.take_optional("endpoint")
        self.region = options.take_optional("region")
        retry_s = options.take_duration("retry_timeout", DEFAULT_RETRY_TIMEOUT) / 1e6
        self.retry = RetryPolicy(retry_s, initial_backoff_s, max_backoff_s, sleep)
        self.clock = clock
        gz = ".gz" if self.compression == "gzip" and self.format != "parquet" else ""
        self.extension = "." + self.format + gz
        self.file_name = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"
        self.stats = {"objects": 0, "rows": 0, "bytes": 0, "retries": 0}  # objects made visible, S3 retries
        escaped = re.escape(self.file_name)
        self._hive_re = re.compile(
            rf"(?:year=[^/]+/month=[^/]+/day=[^/]+/hour=[^/]+/)?{escaped}-[0-9a-f]{{8}}-(\d{{10}})-\d{{4,}}{_EXT_RE}"
        )
        self._firehose_re = re.compile(
            rf"\d{{4}}/\d{{2}}/\d{{2}}/\d{{2}}/{escaped}-1-\d{{4}}(?:-\d{{2}}){{5}}-({_UUID_RE}){_EXT_RE}"
        )
        self._s3: Any = None
        self._schema: pa.Schema | None = None
        self.time_column: str | None = None
        self._ready = False
        self._reset()

    @classmethod
    def from_uri(cls, name: str, target: str | None, options: Options) -> S3Sink:
        """The registry's factory: ``target`` is ``BUCKET/PREFIX`` from the URI, else option ``path``."""
        path = target if target is not None else options.take("path")
        if not path or not path.strip():
            raise ConnectorError("the S3 location is empty", where=options.where, hint="write s3://BUCKET/PREFIX")
        return cls(name, path.strip(), options)

    def _reset(self) -> None:
        self._last_committed: int | None = None
        self._buffer: dict[str, _Pending] = {}
        self._buffer_size = 0
        self._buffer_rows = 0
        self._since: float | None = None  # wall-clock time the oldest buffered row was written
        self._held_cache: dict[str, Any] | None = None
        self._uploads: dict[int, list[_Upload]] = {}  # rolled, not completed, by epoch
        self._parts: dict[int, int] = {}  # the next part number by epoch
        self._prepared: dict[int, dict[str, Any]] = {}
        self._committed_held: dict[str, Any] | None = None  # the held rows as of the last commit
        self._flush_requested = False
        self._dirty = False  # rows written since the last commit (or abort)
        self.run = ""  # this run lineage's token in object names: new at a fresh start, kept in the state

    # -- names: pure functions of (sink, epoch, part) and the rows ---------------------------

    def object_key(
        self,
        epoch: int,
        part: int,
        partition: str = "",
        min_us: int | None = None,
        since: float = 0.0,
        layout: str | None = None,
        extension: str | None = None,
    ) -> str:
        """The key of part ``part`` of ``epoch``.

        Args:
            epoch: the epoch the object was rolled in.
            part: its number within the epoch.
            partition: hive: ``year=.../month=.../day=.../hour=...`` or ``""``.
            min_us: firehose: the oldest row's time (µs since the Unix epoch), or None.
            since: firehose without ``min_us``: the buffer's first write (wall-clock seconds).
            layout: default this sink's.
            extension: default this sink's.
        """
        extension = extension or self.extension
        if (layout or self.layout) == "firehose":
            when = _utc(min_us) if min_us is not None else None
            when = when or datetime.fromtimestamp(since, timezone.utc)
            ident = uuid.uuid5(_NAMESPACE, f"{self.name}/{self.run}/{epoch}/{part}")
            day = f"{when.year:04d}/{when.month:02d}/{when.day:02d}/{when.hour:02d}"
            stamp = f"{when.year:04d}-{when:%m-%d-%H-%M-%S}"
            return f"{self.root}{day}/{self.file_name}-1-{stamp}-{ident}{extension}"
        name = f"{self.file_name}-{self.run}-{epoch:010d}-{part:04d}{extension}"
        return f"{self.root}{partition}/{name}" if partition else self.root + name

    def _owns(self, key: str) -> bool:
        """Whether ``key`` is named like one of this sink's objects (either layout, any extension)."""
        if not key.startswith(self.root):
            return False
        rel = key[len(self.root) :]
        return bool(self._hive_re.fullmatch(rel) or self._firehose_re.fullmatch(rel))

    # -- the protocol ------------------------------------------------------------------------

    def open(self, schema: pa.Schema, last_committed: Epoch | None, state: dict | None = None) -> None:
        """Start fresh (``last_committed`` None) or recover to checkpoint ``last_committed``.

        Args:
            schema: the rows' schema (CSV header, parquet schema, the time column).
            last_committed: the newest checkpoint's epoch, or None on a first start.
            state: what ``prepare(last_committed)`` returned (required with ``last_committed``).

        Raises:
            ConnectorError: for a missing bucket or denied access (naming the bucket), a time
                column that is missing or not a timestamp, a missing or malformed state, an
                upload of the state that is gone without its object, or S3 down past
                ``retry_timeout``.
        """
        self._ready = False
        self._reset()
        self._schema = schema
        self.time_column = self._pick_time_column(schema)
        self._s3 = client("s3", endpoint=self.endpoint, region=self.region, where=self.where, max_attempts=1)
        self._check_bucket()
        if last_committed is None:
            self._start_fresh()
        else:
            self._recover(int(last_committed), state)
        self._ready = True

    def write(self, epoch: Epoch, batch: pa.Table) -> None:
        """Buffer rows for ``epoch``; roll them into (invisible) uploads once ``buffer_size`` is reached.

        Raises:
            ConnectorError: before ``open``; for an epoch already committed or prepared, or while
                an older epoch's uploads are neither prepared nor aborted; for rows without the
                time column or (parquet) not of the schema; S3 down past ``retry_timeout``.
        """
        self._check_ready("write")
        check_epoch_grows(epoch, self._last_committed, self.where)
        if epoch in self._prepared:
            raise ConnectorError(f"rows for epoch {epoch} after it was prepared", where=self.where)
        self._check_no_older_open(epoch)
        if batch.num_rows == 0:
            return
        self._dirty = True
        self._add(batch)
        if self._buffer_size >= self.buffer_size:
            self._roll(int(epoch))

    def prepare(self, epoch: Epoch) -> dict | None:
        """Roll what is due, upload it (invisible), and return the state for checkpoint ``epoch``.

        Returns:
            ``{"version", "epoch", "uploads", "held"}`` (see the class docstring). Preparing the
            same epoch again returns the same dict.

        Raises:
            ConnectorError: before ``open``; for an epoch already committed, or while an older
                epoch is still open; S3 down past ``retry_timeout``.
        """
        self._check_ready("prepare")
        if self._last_committed is not None and epoch <= self._last_committed:
            raise ConnectorError(f"prepare of epoch {epoch}, which is already committed", where=self.where)
        if epoch in self._prepared:
            return dict(self._prepared[epoch])
        self._check_no_older_open(epoch)
        if self._buffer_rows and self._due():
            self._roll(int(epoch))
        self._flush_requested = False
        state = {
            "version": STATE_VERSION,
            "run": self.run,
            "epoch": int(epoch),
            "uploads": [u.state() for u in self._uploads.get(int(epoch), [])],
            "held": self._held(),
        }
        self._prepared[int(epoch)] = state
        return dict(state)

    def commit(self, epoch: Epoch) -> None:
        """Make ``epoch``'s objects visible (CompleteMultipartUpload). Idempotent; an epoch
        already committed (or older) is a no-op; without ``prepare(epoch)`` it prepares first.

        Raises:
            ConnectorError: before ``open``; while an older epoch is open; an upload gone
                without its object; S3 down past ``retry_timeout``.
        """
        self._check_ready("commit")
        if self._last_committed is not None and epoch <= self._last_committed:
            return
        if int(epoch) not in self._prepared:
            self.prepare(epoch)
        state = self._prepared[int(epoch)]
        for upload in self._uploads.get(int(epoch), []):
            self._complete(upload.key, upload.upload_id, upload.parts, int(epoch))
            self.stats["objects"] += 1
            self.stats["rows"] += upload.rows
            self.stats["bytes"] += upload.size
        self._uploads.pop(int(epoch), None)
        self._parts.pop(int(epoch), None)
        self._committed_held = state["held"]
        self._last_committed = int(epoch)
        self._prepared = {e: s for e, s in self._prepared.items() if e > epoch}
        self._dirty = False

    def abort(self, epoch: Epoch) -> None:
        """Throw away what ``epoch`` staged: abort its uploads, return the buffer to the last commit.

        Raises:
            ConnectorError: S3 down past ``retry_timeout``.
        """
        self._check_ready("abort")
        for upload in self._uploads.pop(int(epoch), []):
            self._abort_upload(upload.key, upload.upload_id)
        self._parts.pop(int(epoch), None)
        self._prepared.pop(int(epoch), None)
        self._restore_buffer(self._committed_held)
        self._dirty = False

    def due(self) -> bool:
        """Whether buffered rows are due to roll at the next ``prepare`` (size or interval reached):
        a runtime that ends epochs only when rows arrive should end one anyway when this is True,
        or held rows wait for the next row through quiet spells."""
        return self._ready and self._buffer_rows > 0 and self._due()

    def flush(self) -> None:
        """Roll every buffered row at the next ``prepare``, whatever the buffering hints say
        (the end of a bounded input: the last checkpoint then holds no rows)."""
        self._flush_requested = True

    def close(self) -> None:
        """Let go of the sink; safe to call twice. It does no I/O: rows still held by the
        buffering hints are in the last checkpoint's state and go out when a later run resumes
        from it (the runtime flushes the sinks before the last checkpoint of a run that ends or
        stops on a signal, so then nothing is held). Publishing them here would show rows that
        no checkpoint covers, which a resumed run would have to take back."""
        self._ready = False

    # -- buffering ---------------------------------------------------------------------------

    def _pick_time_column(self, schema: pa.Schema) -> str | None:
        name = self.time_column_option
        if name is None:
            if WINDOW_START in schema.names and _is_time(schema.field(WINDOW_START).type):
                return WINDOW_START
            return None
        if name not in schema.names:
            raise ConnectorError(
                f"option 'time_column': the rows have no column {name!r}",
                where=self.where,
                hint=f"columns: {', '.join(schema.names)}",
            )
        if not _is_time(schema.field(name).type):
            raise ConnectorError(
                f"option 'time_column': {name!r} is {schema.field(name).type}, not a timestamp or date",
                where=self.where,
            )
        return name

    def _add(self, batch: pa.Table) -> None:
        """Buffer rows, split by partition (hive: the hour of the time column)."""
        if self.format == "parquet":
            assert self._schema is not None
            try:
                batch = batch.select(self._schema.names).cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError, ValueError) as err:
                raise ConnectorError(f"cannot write rows to {self.label}: {err}", where=self.where) from None
        if self.time_column is None:
            groups: list[tuple[str, pa.Table, int | None]] = [("", batch, None)]
        else:
            if self.time_column not in batch.column_names:
                raise ConnectorError(f"the rows have no time column {self.time_column!r}", where=self.where)
            groups = self._split_by_hour(batch, self.time_column, self.layout)
        if self._since is None:
            self._since = self.clock()
        for partition, rows, min_us in groups:
            pending = self._buffer.setdefault(partition, _Pending())
            pending.tables.append(rows)
            if self.format == "parquet":
                size = rows.nbytes
            else:
                pending.chunks.append(self._encode_rows(rows))
                size = len(pending.chunks[-1])
            pending.size += size
            pending.rows += rows.num_rows
            if min_us is not None:
                pending.min_us = min_us if pending.min_us is None else min(pending.min_us, min_us)
            self._buffer_size += size
            self._buffer_rows += rows.num_rows
        self._held_cache = None

    def _split_by_hour(self, batch: pa.Table, column: str, layout: str) -> list[tuple[str, pa.Table, int | None]]:
        """(partition, rows, oldest µs) per hour; the firehose layout keeps one group."""
        us = _micros(batch.column(column))
        valid = ~np.asarray(us.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        values = us.fill_null(0).to_numpy()
        if layout == "firehose":
            oldest = int(values[valid].min()) if valid.any() else None
            return [("", batch, oldest)]
        hours = values // _HOUR_US
        groups: list[tuple[str, pa.Table, int | None]] = []
        for hour in np.unique(hours[valid]):
            index = np.nonzero(valid & (hours == hour))[0]
            part = _hour_partition(int(hour))
            groups.append((part, batch.take(pa.array(index)), int(values[index].min())))
        if not valid.all():
            groups.append((_NULL_HOUR, batch.take(pa.array(np.nonzero(~valid)[0])), None))
        return groups

    def _encode_rows(self, rows: pa.Table) -> bytes:
        if self.csv_options is not None:
            return to_csv(rows, header=False, delimiter=self.csv_options["delimiter"])
        return to_json_lines(rows)

    def _due(self) -> bool:
        if self._flush_requested or self._buffer_size >= self.buffer_size or self.buffer_interval_s <= 0:
            return True
        return self._since is not None and self.clock() - self._since >= self.buffer_interval_s

    def _held(self) -> dict[str, Any] | None:
        """The buffered rows as checkpoint state (Arrow IPC, zstd)."""
        if not self._buffer_rows:
            return None
        if self._held_cache is None:
            tables = [t for p in self._buffer.values() for t in p.tables]
            table = pa.concat_tables(tables, promote_options="permissive").combine_chunks()  # one IPC batch
            sink = pa.BufferOutputStream()
            options = pa.ipc.IpcWriteOptions(compression="zstd")
            with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
                writer.write_table(table)
            self._held_cache = {"since": self._since, "rows": table.num_rows, "ipc": sink.getvalue().to_pybytes()}
        return dict(self._held_cache)

    def _restore_buffer(self, held: dict[str, Any] | None) -> None:
        self._buffer, self._buffer_size, self._buffer_rows, self._since = {}, 0, 0, None
        self._held_cache = None
        if not held:
            return
        table = pa.ipc.open_stream(held["ipc"]).read_all()
        if table.num_rows:
            self._add(table)
            self._since = float(held["since"]) if held.get("since") is not None else self._since
        self._held_cache = dict(held)

    def _body(self, pending: _Pending) -> bytes:
        """One object's bytes."""
        if self.format == "parquet":
            assert self._schema is not None
            out = io.BytesIO()
            table = pa.concat_tables(pending.tables) if len(pending.tables) > 1 else pending.tables[0]
            pq.write_table(table, out, compression=self.compression)
            return out.getvalue()
        data = b"".join(pending.chunks)
        if self.csv_options is not None and self.csv_options["header"]:
            assert self._schema is not None
            data = to_csv(self._schema.empty_table(), header=True, delimiter=self.csv_options["delimiter"]) + data
        return gzip.compress(data, compresslevel=6, mtime=0) if self.compression == "gzip" else data

    def _roll(self, epoch: int) -> None:
        """Every buffered row into uploads of ``epoch`` (one per partition); the buffer empties."""
        if not self._buffer_rows:
            return
        assert self._since is not None
        done: list[_Upload] = []
        part = self._parts.get(epoch, 0)
        for partition in sorted(self._buffer):  # a failure half-way leaves invisible uploads: open() aborts them
            pending = self._buffer[partition]
            key = self.object_key(epoch, part, partition, pending.min_us, self._since)
            done.append(self._upload(key, self._body(pending), pending.rows, epoch))
            part += 1
        self._uploads.setdefault(epoch, []).extend(done)
        self._parts[epoch] = part
        self._buffer, self._buffer_size, self._buffer_rows, self._since = {}, 0, 0, None
        self._held_cache = None

    # -- S3 calls ----------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., Any], handled: frozenset[str] = frozenset(), /, **kwargs: Any) -> Any:
        return _call(
            self.retry, f"{self.label}: {what}", self.where, fn, handled=handled, on_retry=self._retried, **kwargs
        )

    def _retried(self) -> None:
        self.stats["retries"] += 1

    def _check_bucket(self) -> None:
        try:
            self._call(f"cannot reach bucket {self.bucket!r}", self._s3.head_bucket, _BUCKET_CODES, Bucket=self.bucket)
        except _Rejected as rejected:
            if rejected.code in ("404", "NoSuchBucket"):
                raise ConnectorError(
                    f"bucket {self.bucket!r} does not exist ({self.label})", where=self.where
                ) from None
            raise ConnectorError(
                f"access denied to bucket {self.bucket!r} ({self.label})",
                where=self.where,
                hint="the credentials need s3:ListBucket, s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload",
            ) from None

    def _upload(self, key: str, body: bytes, rows: int, epoch: int) -> _Upload:
        content_type = "application/gzip" if self.extension.endswith(".gz") else _CONTENT_TYPES[self.format]
        started = self._call(
            f"cannot start the upload of {key}",
            self._s3.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            ContentType=content_type,
            Metadata={"duckstream-sink": self.file_name, "duckstream-epoch": str(epoch)},
        )
        upload_id = str(started["UploadId"])
        parts: list[tuple[int, str]] = []
        for number, offset in enumerate(range(0, max(len(body), 1), PART_BYTES), start=1):
            sent = self._call(
                f"cannot upload part {number} of {key}",
                self._s3.upload_part,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body[offset : offset + PART_BYTES],
            )
            parts.append((number, str(sent["ETag"])))
        return _Upload(key, upload_id, parts, rows, len(body))

    def _complete(self, key: str, upload_id: str, parts: list[tuple[int, str]], epoch: int) -> None:
        listed = [{"PartNumber": int(n), "ETag": str(etag)} for n, etag in parts]
        try:
            self._call(
                f"cannot complete {key}",
                self._s3.complete_multipart_upload,
                frozenset({"NoSuchUpload"}),
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
            )
        except _Rejected:
            if not self._exists(key):  # completed by an earlier attempt, or lost
                raise ConnectorError(
                    f"the upload of {self.bucket}/{key} (epoch {epoch}) is gone and the object does not exist",
                    where=self.where,
                    hint="something aborted it (a lifecycle rule?); start without the checkpoint to rewrite the output",
                ) from None

    def _exists(self, key: str) -> bool:
        try:
            self._call(f"cannot look at {key}", self._s3.head_object, _MISSING_CODES, Bucket=self.bucket, Key=key)
        except _Rejected:
            return False
        return True

    def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self._call(
                f"cannot abort the upload of {key}",
                self._s3.abort_multipart_upload,
                frozenset({"NoSuchUpload"}),
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
            )
        except _Rejected:
            pass  # already completed or aborted

    def _list_uploads(self) -> Iterator[tuple[str, str]]:
        markers: dict[str, str] = {}
        while True:
            page = self._call(
                "cannot list unfinished uploads",
                self._s3.list_multipart_uploads,
                Bucket=self.bucket,
                Prefix=self.root,
                **markers,
            )
            for item in page.get("Uploads", []):
                yield str(item["Key"]), str(item["UploadId"])
            if not page.get("IsTruncated"):
                return
            markers = {"KeyMarker": page.get("NextKeyMarker", ""), "UploadIdMarker": page.get("NextUploadIdMarker", "")}

    def _abort_others(self, keep: set[str]) -> None:
        """Abort this sink's unfinished uploads under the prefix, but those in ``keep``."""
        for key, upload_id in list(self._list_uploads()):
            if upload_id not in keep and self._owns(key):
                self._abort_upload(key, upload_id)

    def _start_fresh(self) -> None:
        """No checkpoint: a new run token (so no earlier object is overwritten or deleted), and
        this sink's unfinished uploads aborted (a crashed run's, never visible)."""
        self.run = secrets.token_hex(4)
        self._abort_others(keep=set())

    def _recover(self, epoch: int, state: dict | None) -> None:
        if state is None:
            raise ConnectorError(
                f"checkpoint {epoch} holds no state for sink {self.name!r} ({self.label})",
                where=self.where,
                hint="was the sink added after that checkpoint? start without the checkpoint to rewrite the output",
            )
        uploads = _check_state(state, epoch, self.name, self.where)
        self.run = str(state["run"])
        for key, upload_id, parts in uploads:
            self._complete(key, upload_id, parts, epoch)  # the commit may not have finished: redo it
        self._abort_others(keep={upload_id for _, upload_id, _ in uploads})
        held = state.get("held")
        self._restore_buffer(held)
        self._committed_held = held
        self._last_committed = epoch

    # -- checks ------------------------------------------------------------------------------

    def _check_ready(self, what: str) -> None:
        if not self._ready:
            raise ConnectorError(f"{what} before open", where=self.where)

    def _check_no_older_open(self, epoch: Epoch) -> None:
        for older in self._uploads:
            if older < epoch and older not in self._prepared:
                raise ConnectorError(
                    f"epoch {older} has uploads but was neither prepared nor aborted before epoch {epoch}",
                    where=self.where,
                )
        for older in self._prepared:
            if older < epoch:
                raise ConnectorError(
                    f"epoch {older} is prepared but neither committed nor aborted before epoch {epoch}",
                    where=self.where,
                )


_BUCKET_CODES = frozenset({"404", "NoSuchBucket", "403", "AccessDenied"})
_MISSING_CODES = frozenset({"404", "NoSuchKey"})


def _check_state(state: Any, epoch: int, name: str, where: str) -> list[tuple[str, str, list[tuple[int, str]]]]:
    """The (key, upload id, parts) of a prepare state, or a ConnectorError if it is not an S3 sink's."""
    try:
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError
        if not re.fullmatch(r"[0-9a-f]{8}", str(state.get("run"))):
            raise ValueError
        uploads = [
            (str(u["key"]), str(u["upload_id"]), [(int(n), str(e)) for n, e in u["parts"]]) for u in state["uploads"]
        ]
        held = state.get("held")
        if held is not None and not (isinstance(held, dict) and isinstance(held.get("ipc"), bytes)):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ConnectorError(
            f"the checkpoint state for sink {name!r} (epoch {epoch}) is not an S3 sink's", where=where
        ) from None
    return uploads


def _is_time(kind: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(kind) or pa.types.is_date(kind))


def _micros(column: pa.ChunkedArray) -> pa.Array:
    """A timestamp or date column as int64 µs since the Unix epoch (UTC), nulls kept."""
    array = column.combine_chunks()
    if pa.types.is_date(array.type):
        array = pc.cast(array, pa.timestamp("us"))
    else:
        array = pc.cast(array, pa.timestamp("us", tz=array.type.tz), safe=False)
    return pc.cast(array, pa.int64())


def _utc(micros: int) -> datetime | None:
    try:
        return _UNIX_EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return None


def _hour_partition(hour: int) -> str:
    when = _utc(hour * _HOUR_US)
    if when is None:
        return _NULL_HOUR
    return f"year={when.year:04d}/month={when.month:02d}/day={when.day:02d}/hour={when.hour:02d}"


__all__ = ["RetryPolicy", "S3Sink", "parse_size", "read_object", "split_s3_uri"]
