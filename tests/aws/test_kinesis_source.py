"""The Kinesis source against real servers on loopback: kinesalite (most tests) and moto (a smoke test).

Nothing mocks boto3. Two tests put ``FaultProxy`` (an HTTP proxy on 127.0.0.1 that forwards to
kinesalite and can answer some calls with a throttling error, or fail some PutRecords entries)
between the client and the server; the expired-iterator test ages a real kinesalite iterator
(kinesalite's iterator cipher is public) so that the server itself answers ExpiredIteratorException.
Every poll loop has a deadline.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pyarrow as pa
import pytest
from botocore.config import Config

from connectors import open_source
from connectors.kinesis import BATCH_SCHEMA, METADATA_SCHEMA, ROWS_KEY, SHARD_END, KinesisSource
from connectors.options import Options
from engine.errors import ConnectorError
from tests.aws.servers import REGION, Kinesalite, MotoServer
from tests.aws.test_kpl import aggregate

# -- helpers --------------------------------------------------------------------------------------


def new_stream(client: Any, shards: int) -> str:
    """A fresh ACTIVE stream with ``shards`` shards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    client.create_stream(StreamName=name, ShardCount=shards)
    wait_active(client, name)
    return name


def wait_active(client: Any, stream: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.02)
    raise AssertionError(f"stream {stream} is not ACTIVE after {timeout_s} s")


def put(client: Any, stream: str, records: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """PutRecords in order (kinesalite keeps a call's order); the result entries, one per record."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(records), 500):
        chunk = records[start : start + 500]
        response = client.put_records(StreamName=stream, Records=[{"PartitionKey": k, "Data": d} for k, d in chunk])
        assert response.get("FailedRecordCount", 0) == 0
        results += response["Records"]
    return results


def numbered(first: int, count: int, keys: int = 10) -> list[tuple[str, bytes]]:
    return [(f"k{i % keys}", json.dumps({"n": i}).encode()) for i in range(first, first + count)]


def source(stream: str, **options: str) -> KinesisSource:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    src = open_source(f"kinesis://{stream}" + (f"?{query}" if query else ""), "clicks")
    assert isinstance(src, KinesisSource)
    return src


def drain(src: KinesisSource, count: int, max_rows: int = 1000, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """Poll until ``count`` rows arrived (and fail after ``timeout_s``)."""
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(rows) < count:
        assert time.monotonic() < deadline, f"only {len(rows)} of {count} rows after {timeout_s} s"
        batch = src.poll(min(max_rows, count - len(rows)), 0.2)
        assert batch.schema == BATCH_SCHEMA
        rows += batch.to_pylist()
    return rows


def nothing_more(src: KinesisSource, wait_s: float = 0.6) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        extra = src.poll(100, 0.1)
        assert extra.num_rows == 0, f"unexpected rows: {extra.to_pylist()[:3]}"


def values(rows: list[dict[str, Any]]) -> list[int]:
    return [json.loads(r["payload"])["n"] for r in rows]


def check_key_order(rows: list[dict[str, Any]]) -> None:
    """Within a partition key, values come out in the order they were put (increasing ``n``)."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        by_key[row["PARTITION_KEY"]].append(json.loads(row["payload"])["n"])
    for key, ns in by_key.items():
        assert ns == sorted(ns), f"key {key} out of order: {ns}"


class FakeTime:
    """A clock that moves only when the reader sleeps; it stops moving at ``limit``."""

    def __init__(self, limit: float) -> None:
        self.now = 1000.0
        self.limit = 1000.0 + limit
        self.lock = threading.Lock()

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            if self.now < self.limit:
                self.now = min(self.limit, self.now + max(seconds, 0.0))
        time.sleep(0.002)  # let the test thread run


# kinesalite's iterators: 8 header bytes + AES-256-CBC("<ms, 14 digits>/<stream>/<shard>/<seq>/<zeros>")
_KEY = bytes.fromhex("1133a5a833666b49abf28c8ba302930f0b2fb240dccd43cf4dfbc0ca91f17751")
_IV = bytes.fromhex("7bf139dbabbea2d9995d6fcae1dff7da")


def _cipher() -> Any:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(_KEY), modes.CBC(_IV))


def iterator_fields(iterator: str) -> list[str]:
    from cryptography.hazmat.primitives import padding

    raw = base64.b64decode(iterator)
    decryptor = _cipher().decryptor()
    padded = decryptor.update(raw[8:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode().split("/")


def aged(iterator: str, seconds: float = 301.0) -> str:
    """The same kinesalite iterator, created ``seconds`` ago (kinesalite expires them after 300 s)."""
    from cryptography.hazmat.primitives import padding

    fields = iterator_fields(iterator)
    fields[0] = str(int(fields[0]) - int(seconds * 1000)).zfill(14)
    padder = padding.PKCS7(128).padder()
    padded = padder.update("/".join(fields).encode()) + padder.finalize()
    encryptor = _cipher().encryptor()
    raw = base64.b64decode(iterator)[:8] + encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(raw).decode()


def plain_client(endpoint: str, max_attempts: int = 1) -> Any:
    """A boto3 client without botocore's own retries (so the source's backoff is what we see)."""
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": max_attempts, "mode": "standard"}),
    )


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of a Kinesis server that can inject failures.

    ``throttle[operation]`` is the number of next calls of that operation (e.g. "GetRecords")
    to answer with ProvisionedThroughputExceededException instead of forwarding them.
    ``fail_put`` decides, per PutRecords call (0-based) and entry index, whether that entry
    fails (True: ProvisionedThroughputExceededException, or a string: that error code): failed
    entries are not forwarded, the others are, and the answer merges both as AWS does.
    ``calls`` counts calls per operation, ``put_sizes`` the entries of each PutRecords call.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.throttle: dict[str, int] = defaultdict(int)
        self.fail_put: Callable[[int, int], bool | str] = lambda call, index: False
        self.put_sizes: list[int] = []
        self.calls: dict[str, int] = defaultdict(int)
        self.failed_entries = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server hook
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, content = proxy.handle(dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def forward(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        keep = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
        request = urllib.request.Request(self.upstream, data=body, headers=keep, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        operation = headers.get("X-Amz-Target", "").rpartition(".")[2]
        with self.lock:
            call = self.calls[operation]
            self.calls[operation] += 1
            if self.throttle[operation] > 0:
                self.throttle[operation] -= 1
                error = {"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded for shard"}
                return 400, json.dumps(error).encode()
        if operation != "PutRecords":
            return self.forward(headers, body)
        request = json.loads(body)
        entries = request["Records"]
        failing = [self.fail_put(call, i) for i in range(len(entries))]
        passed = [e for e, f in zip(entries, failing) if not f]
        answers: list[dict[str, Any]] = []
        if passed:
            status, content = self.forward(headers, json.dumps({**request, "Records": passed}).encode())
            if status != 200:
                return status, content
            answers = json.loads(content)["Records"]
        merged, it = [], iter(answers)
        for f in failing:
            if f:
                code = f if isinstance(f, str) else "ProvisionedThroughputExceededException"
                merged.append({"ErrorCode": code, "ErrorMessage": "injected by the test proxy"})
            else:
                merged.append(next(it))
        failed = sum(1 for f in failing if f)
        with self.lock:
            self.failed_entries += failed
            self.put_sizes.append(len(entries))
        return 200, json.dumps({"FailedRecordCount": failed, "Records": merged}).encode()


@pytest.fixture()
def proxy(kinesalite: Kinesalite) -> Iterator[FaultProxy]:
    server = FaultProxy(kinesalite.endpoint)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture()
def opened() -> Iterator[list[KinesisSource]]:
    """Sources to close at the end of a test, whatever happens."""
    sources: list[KinesisSource] = []
    yield sources
    for src in sources:
        src.close()


def started(opened: list[KinesisSource], src: KinesisSource, resume: dict[str, str] | None = None) -> KinesisSource:
    opened.append(src)
    src.open(resume)
    return src


# -- reading ------------------------------------------------------------------------------------


def test_kinesis_source_reads_four_shards_in_order_with_metadata(
    kinesalite: Kinesalite, opened: list[KinesisSource]
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 4)
    records = numbered(0, 400, keys=13)
    results = put(client, stream, records)
    src = source(stream)
    assert src.lag_ms() is None
    started(opened, src)
    rows = drain(src, 400, max_rows=77)
    nothing_more(src)

    assert [r["offset"] for r in rows] == list(range(400))
    assert sorted(values(rows)) == list(range(400))
    put_at = {json.loads(d)["n"]: (k, r) for (k, d), r in zip(records, results)}
    assert len({r["SHARD_ID"] for r in rows}) == 4
    for row in rows:
        key, result = put_at[json.loads(row["payload"])["n"]]
        assert row["PARTITION_KEY"] == key
        assert row["SHARD_ID"] == result["ShardId"]
        assert row["SEQUENCE_NUMBER"] == result["SequenceNumber"]
        assert row["APPROXIMATE_ARRIVAL_TIME"] == row["arrival_time"]
        assert abs(row["arrival_time"].replace(tzinfo=timezone.utc).timestamp() - time.time()) < 60
    per_shard: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        per_shard[row["SHARD_ID"]].append(int(row["SEQUENCE_NUMBER"]))
    assert all(seqs == sorted(seqs) for seqs in per_shard.values())
    check_key_order(rows)
    offsets = src.offsets()
    assert offsets[ROWS_KEY] == "400"
    assert {k: v for k, v in offsets.items() if k != ROWS_KEY} == {
        shard: str(seqs[-1]) for shard, seqs in per_shard.items()
    }
    assert src.lag_ms() == 0
    assert list(src.metadata_schema.names) == [
        "APPROXIMATE_ARRIVAL_TIME",
        "PARTITION_KEY",
        "SHARD_ID",
        "SEQUENCE_NUMBER",
    ]
    assert src.metadata_schema == METADATA_SCHEMA
    assert (src.kind, src.bounded, src.format, src.schema()) == ("raw", False, "json", None)


def test_kinesis_source_resumes_exactly_after_a_checkpoint_with_rows_still_buffered(
    kinesalite: Kinesalite, opened: list[KinesisSource]
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 4)
    put(client, stream, numbered(0, 300))
    first = started(opened, source(stream, max_records="25"))
    rows = drain(first, 120, max_rows=37)
    deadline = time.monotonic() + 10
    reader = first._reader
    assert reader is not None
    while reader.buffer.rows < 300 - 120:  # everything fetched, 180 rows still buffered
        assert time.monotonic() < deadline
        time.sleep(0.02)
    checkpoint = first.offsets()
    assert checkpoint[ROWS_KEY] == "120"
    first.close()

    put(client, stream, numbered(300, 100))
    second = started(opened, source(stream, max_records="25"), checkpoint)
    rest = drain(second, 280, max_rows=50)
    nothing_more(second)
    assert sorted(values(rows + rest)) == list(range(400))
    assert [r["offset"] for r in rest] == list(range(120, 400))
    check_key_order(rows + rest)


def test_kinesis_source_poll_never_waits_longer_than_its_timeout(
    kinesalite: Kinesalite, opened: list[KinesisSource]
) -> None:
    stream = new_stream(kinesalite.client(), 1)
    src = started(opened, source(stream))
    for timeout_s in (0.0, 0.05, 0.3):
        began = time.monotonic()
        batch = src.poll(10, timeout_s)
        assert batch.num_rows == 0
        assert time.monotonic() - began < timeout_s + 0.2  # scheduling slack on a busy machine


# -- resharding -----------------------------------------------------------------------------------


def _split_all(client: Any, stream: str) -> None:
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        if "EndingSequenceNumber" in shard["SequenceNumberRange"]:
            continue
        low, high = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
        client.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((low + high) // 2))
        wait_active(client, stream)


def _merge_first_pair(client: Any, stream: str) -> tuple[str, str]:
    shards = client.list_shards(StreamName=stream)["Shards"]
    open_shards = sorted(
        (s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]),
        key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]),
    )
    a, b = open_shards[0]["ShardId"], open_shards[1]["ShardId"]
    client.merge_shards(StreamName=stream, ShardToMerge=a, AdjacentShardToMerge=b)
    wait_active(client, stream)
    return a, b


def test_kinesis_source_follows_split_and_merge_parents_first(
    kinesalite: Kinesalite, opened: list[KinesisSource]
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 2)
    put(client, stream, numbered(0, 150))
    src = started(opened, source(stream, max_records="20"))
    rows = drain(src, 40, max_rows=20)

    _split_all(client, stream)  # 2 -> 4 open shards, while the reader thread keeps polling
    put(client, stream, numbered(150, 150))
    rows += drain(src, 100, max_rows=25)
    checkpoint = src.offsets()  # mid-way: some parents drained, children started or not
    src.close()

    resumed = started(opened, source(stream, max_records="20"), checkpoint)
    rows += drain(resumed, 60, max_rows=30)
    merged = _merge_first_pair(client, stream)  # a child with two parents, while the reader runs
    put(client, stream, numbered(300, 150))
    rows += drain(resumed, 250, max_rows=40)
    nothing_more(resumed)

    assert sorted(values(rows)) == list(range(450))
    check_key_order(rows)
    shards = {s["ShardId"]: s for s in client.list_shards(StreamName=stream)["Shards"]}
    assert len(shards) == 7
    child = next(s for s in shards.values() if s.get("AdjacentParentShardId"))
    assert (child["ParentShardId"], child["AdjacentParentShardId"]) == merged
    offsets = resumed.offsets()
    closed = [i for i, s in shards.items() if "EndingSequenceNumber" in s["SequenceNumberRange"]]
    assert all(offsets[i] == SHARD_END for i in closed)
    assert resumed.lag_ms() == 0


def test_kinesis_source_child_born_after_the_checkpoint_is_read_from_its_start(
    kinesalite: Kinesalite, opened: list[KinesisSource]
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 1)
    put(client, stream, numbered(0, 30, keys=3))
    first = started(opened, source(stream, start="latest"))
    put(client, stream, numbered(30, 20, keys=3))
    rows = drain(first, 10, max_rows=10)
    checkpoint = first.offsets()
    first.close()
    _split_all(client, stream)
    put(client, stream, numbered(50, 40, keys=3))
    second = started(opened, source(stream, start="latest"), checkpoint)  # start= is ignored on resume
    rows += drain(second, 50)
    nothing_more(second)
    assert values(rows)[:20] == list(range(30, 50))  # the parent, drained before its children
    assert sorted(values(rows)) == list(range(30, 90))
    check_key_order(rows)


# -- starting positions -----------------------------------------------------------------------------


def test_kinesis_source_start_latest_reads_only_what_arrives_after_open(
    kinesalite: Kinesalite, opened: list[KinesisSource]
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 2)
    put(client, stream, numbered(0, 50))
    src = started(opened, source(stream, start="latest"))
    assert all(v.startswith("AT_TIMESTAMP:") for k, v in src.offsets().items() if k != ROWS_KEY)
    put(client, stream, numbered(50, 50))
    rows = drain(src, 50)
    nothing_more(src)
    assert sorted(values(rows)) == list(range(50, 100))
    # nothing handed out from a shard yet: a restart still starts at the time of the first open
    again = started(opened, source(stream, start="latest"))
    checkpoint = {k: v for k, v in again.offsets().items()}
    again.close()
    put(client, stream, numbered(100, 10))
    resumed = started(opened, source(stream), checkpoint)
    assert sorted(values(drain(resumed, 10))) == list(range(100, 110))
    nothing_more(resumed, 0.3)


def test_kinesis_source_start_at_timestamp_iso_and_epoch(kinesalite: Kinesalite, opened: list[KinesisSource]) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 2)
    put(client, stream, numbered(0, 40))
    time.sleep(0.05)
    middle = time.time()
    time.sleep(0.05)
    put(client, stream, numbered(40, 40))
    iso = datetime.fromtimestamp(middle, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for start in (f"at_timestamp:{iso}", f"at_timestamp:{middle:.3f}"):
        src = started(opened, source(stream, start=start))
        rows = drain(src, 40)
        nothing_more(src, 0.3)
        assert sorted(values(rows)) == list(range(40, 80)), start
        sample = src.sample(5)
        assert len(sample) == 5 and all(json.loads(p)["n"] >= 40 for p in sample)
        src.close()


def test_kinesis_source_sample_does_not_move_the_reader(kinesalite: Kinesalite, opened: list[KinesisSource]) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 3)
    src = source(stream)
    assert src.sample(10) == []  # an empty stream
    put(client, stream, numbered(0, 60))
    assert len(src.sample(10)) == 10
    started(opened, src)
    first = drain(src, 20)
    assert len(src.sample(7)) == 7
    rows = first + drain(src, 40)
    assert sorted(values(rows)) == list(range(60))
    assert len(source(stream, start="latest").sample(4)) == 4  # latest samples the oldest records


# -- payloads ------------------------------------------------------------------------------------


def test_kinesis_source_inflates_gzip_and_splits_kpl_aggregates(
    kinesalite: Kinesalite, opened: list[KinesisSource]
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 1)
    subs = [(f"sub-{i}", json.dumps({"n": i}).encode()) for i in range(1, 6)]
    blob = aggregate(subs)
    bad = aggregate([("x", b"{}")], corrupt_digest=True)
    gz = gzip.compress(b'{"n": 6}')
    not_gzip = b"\x1f\x8bnot really gzip"
    records = [("plain", b'{"n": 0}'), ("agg", blob), ("zip", gz), ("bad", bad), ("odd", not_gzip)]
    results = put(client, stream, records)
    src = started(opened, source(stream))
    rows = drain(src, 9, max_rows=3)
    nothing_more(src, 0.3)
    assert [r["payload"] for r in rows] == [
        b'{"n": 0}',
        *(d for _, d in subs),
        b'{"n": 6}',
        bad,
        not_gzip,
    ]
    assert [r["PARTITION_KEY"] for r in rows] == ["plain", *(k for k, _ in subs), "zip", "bad", "odd"]
    agg_seq = results[1]["SequenceNumber"]
    assert [r["SEQUENCE_NUMBER"] for r in rows[1:6]] == [f"{agg_seq}:{i}" for i in range(5)]

    # a checkpoint inside the aggregate: the rest of it, and only the rest, after a restart
    again = started(opened, source(stream))
    head = drain(again, 3, max_rows=3)
    checkpoint = again.offsets()
    assert checkpoint[results[0]["ShardId"]] == f"{agg_seq}:1"
    again.close()
    resumed = started(opened, source(stream), checkpoint)
    tail = drain(resumed, 6, max_rows=4)
    nothing_more(resumed, 0.3)
    assert [r["payload"] for r in head + tail] == [r["payload"] for r in rows]
    assert src.sample(10)[:6] == [b'{"n": 0}', *(d for _, d in subs)]


# -- failures and limits -----------------------------------------------------------------------------


def test_kinesis_source_renews_an_expired_iterator_from_the_last_record(
    kinesalite: Kinesalite, opened: list[KinesisSource]
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 1)
    put(client, stream, numbered(0, 30))
    src = source(stream, max_records="10")
    reader_client = src._kinesis()
    errors: list[str] = []
    answered = [0]

    def age_the_next_iterator(parsed: dict[str, Any], **_: Any) -> None:
        code = parsed.get("Error", {}).get("Code")
        if code:
            errors.append(code)
        elif parsed.get("NextShardIterator"):
            answered[0] += 1
            if answered[0] == 1:  # the server itself will find it expired
                parsed["NextShardIterator"] = aged(parsed["NextShardIterator"])

    reader_client.meta.events.register("after-call.kinesis.GetRecords", age_the_next_iterator)
    started(opened, src)
    rows = drain(src, 30, max_rows=7)
    nothing_more(src, 0.3)
    assert values(rows) == list(range(30))
    assert errors == ["ExpiredIteratorException"]


def test_kinesis_source_calls_each_shard_at_most_five_times_a_second(
    kinesalite: Kinesalite, opened: list[KinesisSource]
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 2)
    put(client, stream, numbered(0, 40))
    fake = FakeTime(limit=4.0)
    src = source(stream, max_records="3", shard_sync_interval="1s")
    src.clock, src.sleep = fake.clock, fake.sleep
    calls: dict[str, list[float]] = defaultdict(list)

    def count(params: dict[str, Any], **_: Any) -> None:
        calls[iterator_fields(params["ShardIterator"])[2]].append(fake.clock())

    src._kinesis().meta.events.register("provide-client-params.kinesis.GetRecords", count)
    started(opened, src)
    rows = drain(src, 40)
    deadline = time.monotonic() + 20
    while fake.clock() < fake.limit:
        assert time.monotonic() < deadline, "the reader stopped sleeping"
        time.sleep(0.01)
    time.sleep(0.05)
    src.close()
    assert sorted(values(rows)) == list(range(40))
    assert len(calls) == 2
    for shard, times in calls.items():
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert min(gaps) >= 0.2 - 1e-9, (shard, gaps)
        assert 15 <= len(times) <= 21, (shard, len(times))  # 4 fake seconds at 5 calls/s


def test_kinesis_source_backs_off_exponentially_when_throttled(
    kinesalite: Kinesalite, proxy: FaultProxy, opened: list[KinesisSource]
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 1)
    put(client, stream, numbered(0, 5))
    fake = FakeTime(limit=8.0)
    src = KinesisSource("clicks", stream, Options({}, "test"), client=plain_client(proxy.endpoint))
    src.clock, src.sleep = fake.clock, fake.sleep
    times: list[float] = []
    src._kinesis().meta.events.register(
        "provide-client-params.kinesis.GetRecords", lambda **_: times.append(fake.clock())
    )
    proxy.throttle["GetRecords"] = 4
    started(opened, src)
    rows = drain(src, 5)
    assert values(rows) == list(range(5))
    deadline = time.monotonic() + 10
    while len(times) < 7:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    gaps = [round(b - a, 6) for a, b in zip(times, times[1:])][:6]
    assert gaps[:4] == [0.4, 0.8, 1.6, 3.2]  # doubling from poll_interval, then back to 5 calls/s
    assert gaps[4:] == [0.2, 0.2]
    assert src.lag_ms() == 0


def test_kinesis_source_backoff_is_capped_at_five_seconds(
    kinesalite: Kinesalite, proxy: FaultProxy, opened: list[KinesisSource]
) -> None:
    stream = new_stream(kinesalite.client(), 1)
    fake = FakeTime(limit=40.0)
    src = KinesisSource("clicks", stream, Options({}, "test"), client=plain_client(proxy.endpoint))
    src.clock, src.sleep = fake.clock, fake.sleep
    times: list[float] = []
    src._kinesis().meta.events.register(
        "provide-client-params.kinesis.GetRecords", lambda **_: times.append(fake.clock())
    )
    proxy.throttle["GetRecords"] = 8
    started(opened, src)
    deadline = time.monotonic() + 20
    while len(times) < 10:
        assert time.monotonic() < deadline
        assert src.poll(10, 0.05).num_rows == 0  # throttling never stops the source
    gaps = [round(b - a, 6) for a, b in zip(times, times[1:])]
    assert gaps[:9] == [0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0, 0.2]


def test_kinesis_source_missing_stream_is_one_line(kinesalite: Kinesalite) -> None:
    src = source("no-such-stream")
    for attempt in (lambda: src.open(None), lambda: src.sample(5)):
        with pytest.raises(ConnectorError) as info:
            attempt()
        assert str(info.value).startswith("kinesis://no-such-stream: kinesis stream 'no-such-stream' does not exist")
        assert "\n" not in str(info.value)
    src.close()


def test_kinesis_source_deleted_stream_stops_poll_with_one_line(
    kinesalite: Kinesalite, opened: list[KinesisSource]
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 1)
    put(client, stream, numbered(0, 5))
    src = started(opened, source(stream))
    drain(src, 5)
    client.delete_stream(StreamName=stream)
    deadline = time.monotonic() + 10
    with pytest.raises(ConnectorError, match="does not exist") as info:
        while time.monotonic() < deadline:
            src.poll(10, 0.1)
    assert "\n" not in str(info.value) and "testing" not in str(info.value)


def test_kinesis_source_refused_credentials_are_one_line_without_secrets(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConnectorError, match="no AWS credentials found") as info:
        source("s").open(None)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=earliest", "is not trim_horizon, latest or at_timestamp"),
        ("start=at_timestamp:yesterday", "is not trim_horizon, latest or at_timestamp"),
        ("max_records=20000", "is more than 10000"),
        ("max_records=0", "less than 1"),
        ("poll_interval=0s", "must be more than 0"),
        ("format=parquet", "is not one of csv, json"),
        ("colour=blue", "unknown option 'colour'"),
    ],
)
def test_kinesis_source_rejects_bad_options(query: str, message: str) -> None:
    with pytest.raises(ConnectorError, match=message):
        open_source(f"kinesis://s?{query}", "clicks")


def test_kinesis_source_options_and_with_clause() -> None:
    src = open_source(None, "c", {"connector": "kinesis", "stream": "clicks", "format": "csv", "header": "false"})
    assert isinstance(src, KinesisSource)
    assert (src.stream, src.format, src.csv_options) == ("clicks", "csv", {"delimiter": ",", "header": False})
    with pytest.raises(ConnectorError, match="not a Kinesis stream name"):
        open_source("kinesis://bad name", "c")


@pytest.mark.parametrize(
    ("start", "position"),
    [
        ("trim_horizon", "TRIM_HORIZON"),
        ("LATEST", "LATEST"),
        ("at_timestamp:2024-05-01T10:00:00Z", "AT_TIMESTAMP:1714557600000"),
        ("at_timestamp:2024-05-01T10:00:00+02:00", "AT_TIMESTAMP:1714550400000"),  # the URI's "+" became a space
        ("at_timestamp:2024-05-01T08:00:00.250", "AT_TIMESTAMP:1714550400250"),
        ("at_timestamp:1714550400.25", "AT_TIMESTAMP:1714550400250"),
    ],
)
def test_kinesis_source_start_positions(start: str, position: str) -> None:
    src = open_source(f"kinesis://s?start={start}", "clicks")
    assert isinstance(src, KinesisSource) and src.start == position


def test_kinesis_source_rejects_a_malformed_resume_offset(kinesalite: Kinesalite) -> None:
    stream = new_stream(kinesalite.client(), 1)
    src = source(stream)
    with pytest.raises(ConnectorError, match="not a Kinesis position"):
        src.open({ROWS_KEY: "0", "shardId-000000000000": "somewhere"})
    src.close()


# -- moto ----------------------------------------------------------------------------------------


def test_kinesis_source_smoke_against_moto(moto: MotoServer, opened: list[KinesisSource]) -> None:
    client = moto.client("kinesis")
    stream = new_stream(client, 2)
    put(client, stream, numbered(0, 60))
    src = started(opened, source(stream))
    rows = drain(src, 25, max_rows=25)
    checkpoint = src.offsets()
    src.close()
    resumed = started(opened, source(stream), checkpoint)
    rows += drain(resumed, 35)
    nothing_more(resumed, 0.3)
    assert sorted(values(rows)) == list(range(60))
    assert len(resumed.sample(5)) == 5
    assert pa.array([r["offset"] for r in rows]).to_pylist() == list(range(60))
