"""The Kinesis sink against kinesalite on loopback.

Nothing mocks boto3. The partial-failure and throttling tests put ``FaultProxy`` (from the source
tests: an HTTP proxy on 127.0.0.1 in front of kinesalite) between the sink and the server; it fails
chosen PutRecords entries without forwarding them, so what the server holds afterwards shows that
exactly the failed records were sent again. Waits between retries go through the sink's
injectable ``sleep``/``clock``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pyarrow as pa
import pytest

from connectors import open_sink
from connectors.kinesis import KinesisSink
from connectors.options import Options
from engine.errors import ConnectorError
from engine.formats.encode import to_json_lines
from engine.types import Epoch
from tests.aws.servers import Kinesalite
from tests.aws.test_kinesis_source import FaultProxy, new_stream, plain_client


@pytest.fixture()
def proxy(kinesalite: Kinesalite) -> Iterator[FaultProxy]:
    server = FaultProxy(kinesalite.endpoint)
    try:
        yield server
    finally:
        server.close()


def readings(count: int, first: int = 0) -> pa.Table:
    return pa.table(
        {
            "device": [f"dev-{i % 7}" for i in range(first, first + count)],
            "n": pa.array(range(first, first + count), pa.int64()),
            "note": [None if i % 5 == 0 else f"row {i}" for i in range(first, first + count)],
        }
    )


def read_all(client: Any, stream: str) -> list[tuple[str, bytes]]:
    """Every record of the stream as (partition key, data), shard by shard."""
    records: list[tuple[str, bytes]] = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = client.get_records(ShardIterator=iterator, Limit=10000)
            records += [(r["PartitionKey"], r["Data"]) for r in response["Records"]]
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
    return records


def count_puts(sink: KinesisSink) -> list[int]:
    """The number of records in each PutRecords call the sink makes (counted by a botocore hook)."""
    sizes: list[int] = []
    sink._kinesis().meta.events.register(
        "provide-client-params.kinesis.PutRecords", lambda params, **_: sizes.append(len(params["Records"]))
    )
    return sizes


def sink_for(stream: str, **options: str) -> KinesisSink:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    sink = open_sink(f"kinesis://{stream}" + (f"?{query}" if query else ""), "out")
    assert isinstance(sink, KinesisSink)
    return sink


def test_kinesis_sink_1200_rows_in_three_put_records_calls(kinesalite: Kinesalite) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 4)
    table = readings(1200)
    sink = sink_for(stream, partition_key="device")
    sizes = count_puts(sink)
    sink.open(table.schema, None)
    for start in range(0, 1200, 400):
        sink.write(Epoch(1), table.slice(start, 400))
    assert sizes == []  # nothing is sent before prepare
    assert sink.prepare(Epoch(1)) is None
    sink.commit(Epoch(1))
    assert sizes == [500, 500, 200]

    got = read_all(client, stream)
    expected = [(row["device"], line) for row, line in zip(table.to_pylist(), to_json_lines(table).split(b"\n"))]
    assert sorted(got) == sorted(expected)
    assert json.loads(got[0][1]).keys() == {"device", "n", "note"}
    assert sink.prepare(Epoch(2)) is None and sizes == [500, 500, 200]  # an epoch without rows sends nothing
    sink.close()


def test_kinesis_sink_csv_with_hashed_keys_keeps_line_breaks_inside_fields(kinesalite: Kinesalite) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 2)
    table = pa.table({"id": [1, 2, 3], "text": ["plain", "two\nlines, and a comma", 'a "quote"']})
    sink = sink_for(stream, format="csv")
    sink.open(table.schema, None)
    sink.write(Epoch(1), table)
    sink.prepare(Epoch(1))
    got = read_all(client, stream)
    lines = [b"1,plain", b'2,"two\nlines, and a comma"', b'3,"a ""quote"""']
    assert sorted(got) == sorted((hashlib.md5(line).hexdigest(), line) for line in lines)


def test_kinesis_sink_partition_key_texts(kinesalite: Kinesalite) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 1)
    table = pa.table(
        {
            "k": ["a", None, "", "x" * 300],
            "at": pa.array([datetime(2024, 5, 1, 10, 0, 0, 250000)] * 4, pa.timestamp("us")),
            "n": [1, 2, 3, 4],
        }
    )
    for column, keys in (
        ("k", ["a", "null", "(empty)", "x" * 256]),
        ("n", ["1", "2", "3", "4"]),
        ("AT", ["2024-05-01T10:00:00.250Z"] * 4),  # the column is found ignoring case
    ):
        sink = sink_for(stream, partition_key=column)
        sink.open(table.schema, None)
        sink.write(Epoch(1), table)
        sink.prepare(Epoch(1))
        got = read_all(client, stream)[-4:]
        assert [k for k, _ in got] == keys, column


def test_kinesis_sink_cuts_calls_at_five_megabytes(kinesalite: Kinesalite) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 2)
    table = pa.table({"id": list(range(120)), "blob": ["x" * 100_000] * 120})
    sink = sink_for(stream, partition_key="id")
    sizes = count_puts(sink)
    sink.open(table.schema, None)
    sink.write(Epoch(1), table)
    sink.prepare(Epoch(1))
    record = len(to_json_lines(table.slice(0, 1))) - 1
    per_call = (5 << 20) // (record + 3)
    assert sizes == [per_call, per_call, 120 - 2 * per_call]
    assert len(read_all(client, stream)) == 120


def test_kinesis_sink_refuses_a_row_over_one_mebibyte(kinesalite: Kinesalite) -> None:
    stream = new_stream(kinesalite.client(), 1)
    table = pa.table({"blob": ["x" * (1 << 20)]})  # 11 bytes of JSON around it, a 32-character hashed key
    sink = sink_for(stream)
    sink.open(table.schema, None)
    with pytest.raises(ConnectorError, match=r"is 1048619 bytes as a Kinesis record, over the 1048576 byte limit"):
        sink.write(Epoch(1), table)


def test_kinesis_sink_retries_only_the_failed_records(kinesalite: Kinesalite, proxy: FaultProxy) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 2)
    table = readings(600)
    sink = KinesisSink("out", stream, Options({"partition_key": "device"}, "test"), client=plain_client(proxy.endpoint))
    sleeps: list[float] = []
    sink.sleep = sleeps.append
    proxy.fail_put = lambda call, index: call in (0, 1) and index % 3 == 0  # a third of the first two calls
    sink.open(table.schema, None)
    sink.write(Epoch(1), table)
    sink.prepare(Epoch(1))
    # 500 -> 167 failed, 333 pass; retry 167 -> 56 fail; retry 56 -> all pass; then 100 in one go
    assert proxy.put_sizes == [500, 167, 56, 100]
    assert proxy.failed_entries == 167 + 56
    assert sleeps == [0.1, 0.2]
    got = read_all(client, stream)
    assert len(got) == 600  # each row exactly once: failed entries were never forwarded
    assert sorted(got) == sorted(
        (row["device"], line) for row, line in zip(table.to_pylist(), to_json_lines(table).split(b"\n"))
    )


def test_kinesis_sink_retries_throttled_calls(kinesalite: Kinesalite, proxy: FaultProxy) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 1)
    sink = KinesisSink("out", stream, Options({}, "test"), client=plain_client(proxy.endpoint))
    sleeps: list[float] = []
    sink.sleep = sleeps.append
    table = readings(10)
    sink.open(table.schema, None)
    proxy.throttle["PutRecords"] = 3
    sink.write(Epoch(1), table)
    sink.prepare(Epoch(1))
    assert sleeps == [0.1, 0.2, 0.4]
    assert len(read_all(client, stream)) == 10


def test_kinesis_sink_gives_up_after_retry_timeout(kinesalite: Kinesalite, proxy: FaultProxy) -> None:
    stream = new_stream(kinesalite.client(), 1)
    sink = KinesisSink("out", stream, Options({"retry_timeout": "20s"}, "test"), client=plain_client(proxy.endpoint))
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    sink.clock, sink.sleep = (lambda: now[0]), sleep
    proxy.fail_put = lambda call, index: index == 0  # the first record never lands
    table = readings(3)
    sink.open(table.schema, None)
    sink.write(Epoch(1), table)
    with pytest.raises(ConnectorError, match=r"1 records still not written after 20 s: ProvisionedThroughput") as info:
        sink.prepare(Epoch(1))
    assert "\n" not in str(info.value)
    assert sleeps == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]  # capped at 5 s, stops before passing 20 s


def test_kinesis_sink_record_refused_for_good_fails_at_once(kinesalite: Kinesalite, proxy: FaultProxy) -> None:
    stream = new_stream(kinesalite.client(), 1)
    sink = KinesisSink("out", stream, Options({}, "test"), client=plain_client(proxy.endpoint))
    sink.sleep = lambda seconds: None
    proxy.fail_put = lambda call, index: "KMSAccessDeniedException" if index == 1 else False
    table = readings(3)
    sink.open(table.schema, None)
    sink.write(Epoch(1), table)
    with pytest.raises(ConnectorError, match="PutRecords refused a record: KMSAccessDeniedException"):
        sink.prepare(Epoch(1))
    assert proxy.put_sizes == [3]


def test_kinesis_sink_abort_drops_the_epoch(kinesalite: Kinesalite) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 1)
    sink = sink_for(stream)
    sizes = count_puts(sink)
    table = readings(5)
    sink.open(table.schema, None)
    sink.write(Epoch(1), table)
    sink.abort(Epoch(1))
    sink.prepare(Epoch(1))
    sink.write(Epoch(2), table.slice(0, 2))
    sink.prepare(Epoch(2))
    assert sizes == [2]
    assert len(read_all(client, stream)) == 2


def test_kinesis_sink_open_checks_stream_and_key_column(kinesalite: Kinesalite) -> None:
    schema = readings(1).schema
    with pytest.raises(ConnectorError, match="kinesis stream 'missing-stream' does not exist"):
        sink_for("missing-stream").open(schema, None)
    stream = new_stream(kinesalite.client(), 1)
    with pytest.raises(ConnectorError, match="the rows have no column 'nope'"):
        sink_for(stream, partition_key="nope").open(schema, None)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("format=parquet", "is not one of csv, json"),
        ("format=csv&header=true", "unknown option 'header'"),
        ("retry_timeout=soon", "is not a duration"),
        ("format=csv&delimiter=ab", "is not one character"),
    ],
)
def test_kinesis_sink_rejects_bad_options(query: str, message: str) -> None:
    with pytest.raises(ConnectorError, match=message):
        open_sink(f"kinesis://s?{query}", "out")
