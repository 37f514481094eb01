"""The S3 sink against a real S3-protocol server (moto) on 127.0.0.1: formats, layouts, buffering,
exactly-once through checkpoint epochs (crashes simulated by throwing the sink away), outages."""

from __future__ import annotations

import gzip
import io
import json
import re
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq
import pytest

from connectors import open_sink
from connectors.options import Options
from connectors.s3 import S3Sink, parse_size, read_object, split_s3_uri
from engine.errors import ConnectorError
from engine.types import Epoch
from tests.aws.servers import MotoServer

BUCKET = "lake"
TS = pa.timestamp("us")
SCHEMA = pa.schema([("window_start", TS), ("k", pa.string()), ("n", pa.int64()), ("avg", pa.float64())])
READ_SCHEMA = SCHEMA.set(0, pa.field("window_start", pa.timestamp("us", tz="UTC")))
T0 = datetime(2024, 5, 1, 10, 0)
T0_S = 1714557600.0  # T0 as Unix seconds
KEYS = ["a", 'b,"x', "c\nd", "é"]  # quoting, line breaks and UTF-8 in CSV and JSON


class Clock:
    """Wall-clock seconds that move only when told."""

    def __init__(self, now: float = T0_S) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rows(start: int, count: int, step_min: int = 1) -> pa.Table:
    """``count`` rows numbered from ``start``, ``window_start`` ``step_min`` minutes apart from T0."""
    data = [
        {
            "window_start": T0 + timedelta(minutes=(start + i) * step_min),
            "k": KEYS[(start + i) % len(KEYS)],
            "n": None if (start + i) % 7 == 3 else start + i,
            "avg": (start + i) / 4,
        }
        for i in range(count)
    ]
    return pa.Table.from_pylist(data, schema=SCHEMA)


def make_sink(
    name: str = "out", uri: str = f"s3://{BUCKET}/kpis", clock: Clock | None = None, **options: Any
) -> S3Sink:
    opts = Options({"buffer_interval": "0", **{k: str(v) for k, v in options.items()}}, "test")
    sink = S3Sink(name, uri, opts, clock=clock or Clock(), initial_backoff_s=0.05, max_backoff_s=0.5)
    opts.finish()
    return sink


def listed(s3: Any, bucket: str = BUCKET) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def in_progress(s3: Any, bucket: str = BUCKET) -> list[str]:
    return sorted(u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def body(s3: Any, key: str, bucket: str = BUCKET) -> bytes:
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return gzip.decompress(data) if key.endswith(".gz") else data


def decode(data: bytes, key: str) -> pa.Table:
    if ".parquet" in key:
        table = pq.read_table(io.BytesIO(data))
    elif ".csv" in key:
        table = pcsv.read_csv(
            io.BytesIO(data),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(column_types=READ_SCHEMA),
        )
    else:
        table = pjson.read_json(io.BytesIO(data), parse_options=pjson.ParseOptions(explicit_schema=READ_SCHEMA))
    return table.cast(SCHEMA)


def read_back(s3: Any, keys: list[str] | None = None, bucket: str = BUCKET) -> pa.Table:
    """Every row of the objects (default: all of them), ordered by ``n`` then ``avg``."""
    tables = [decode(body(s3, key, bucket), key) for key in (listed(s3, bucket) if keys is None else keys)]
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables(tables).sort_by([("avg", "ascending")])


def expected(*tables: pa.Table) -> pa.Table:
    return pa.concat_tables(tables).sort_by([("avg", "ascending")])


@pytest.fixture(autouse=True)
def _fixed_run_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fresh sink draws the same run token, so the tests can spell object keys out."""
    monkeypatch.setattr("connectors.s3.secrets.token_hex", lambda n: "0123abcd")


@pytest.fixture()
def s3(moto: MotoServer) -> Any:
    client = moto.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


# -- small helpers -----------------------------------------------------------------------------


def test_split_s3_uri_splits_bucket_and_key() -> None:
    assert split_s3_uri("s3://lake/kpis/a.json") == ("lake", "kpis/a.json")
    assert split_s3_uri("S3://lake") == ("lake", "")
    for bad in ("lake/kpis", "s3://", "s3:///x", "s3://UPPER/x"):
        with pytest.raises(ConnectorError):
            split_s3_uri(bad)


def test_sizes_take_binary_and_decimal_units() -> None:
    assert parse_size("5MiB", "w") == 5 * 1024 * 1024
    assert parse_size("1MB", "w") == 1_000_000
    assert parse_size(" 64 kib ", "w") == 65_536
    assert parse_size("1048576", "w") == 1_048_576
    with pytest.raises(ConnectorError, match='"5x" is not a size'):
        parse_size("5x", "w")


def test_read_object_reads_and_names_what_is_missing(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="ref/a.csv", Body=b"x\n1\n")
    assert read_object(f"s3://{BUCKET}/ref/a.csv", where="--reference") == b"x\n1\n"
    with pytest.raises(ConnectorError) as info:
        read_object(f"s3://{BUCKET}/ref/b.csv", where="--reference")
    assert str(info.value) == "--reference: s3://lake/ref/b.csv does not exist"
    with pytest.raises(ConnectorError, match="does not exist .no bucket 'nope-bucket'"):
        read_object("s3://nope-bucket/k", where="--reference")


def test_options_are_checked_when_the_sink_is_built() -> None:
    sink = open_sink("s3://lake/kpis/?format=csv&compression=gzip&buffer_size=1MB&buffer_interval=1m", "out")
    assert isinstance(sink, S3Sink)
    assert (sink.bucket, sink.prefix, sink.extension) == ("lake", "kpis", ".csv.gz")
    assert (sink.buffer_size, sink.buffer_interval_s, sink.retry.timeout_s) == (1_000_000, 60.0, 86_400.0)
    with_clause = open_sink(None, "out", {"connector": "s3", "path": "s3://lake/p", "format": "parquet"})
    assert isinstance(with_clause, S3Sink) and with_clause.extension == ".parquet"
    for uri, message in [
        ("s3://lake/p?format=xml", "'format': 'xml' is not one of"),
        ("s3://lake/p?compression=snappy", "'compression': 'snappy' is not one of gzip, none"),
        ("s3://lake/p?layout=flat", "'layout'"),
        ("s3://lake/p?buffer_size=lots", '"lots" is not a size'),
        ("s3://lake/p?buffer_interval=soon", '"soon" is not a duration'),
        ("s3://lake/p?bufer_size=1", "unknown option 'bufer_size'"),
        ("s3://Bad_Bucket/p", "invalid bucket name"),
    ]:
        with pytest.raises(ConnectorError, match=re.escape(message) if "'" in message else message):
            open_sink(uri, "out")


# -- formats and layouts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "compression", "ext"),
    [
        ("json", "none", ".json"),
        ("json", "gzip", ".json.gz"),
        ("csv", "none", ".csv"),
        ("csv", "gzip", ".csv.gz"),
        ("parquet", "snappy", ".parquet"),
    ],
)
def test_each_format_round_trips_over_several_epochs(
    s3: Any, tmp_path: Path, fmt: str, compression: str, ext: str
) -> None:
    sink = make_sink(format=fmt, compression=compression, time_column="window_start")
    sink.open(SCHEMA, None)
    written = [rows(0, 4), rows(4, 6), rows(10, 3)]
    for epoch, table in enumerate(written, start=1):
        sink.write(Epoch(epoch), table.slice(0, 2))
        sink.write(Epoch(epoch), table.slice(2))
        sink.commit(Epoch(epoch))
    sink.close()
    keys = listed(s3)
    assert keys == [f"kpis/year=2024/month=05/day=01/hour=10/out-0123abcd-{e:010d}-0000{ext}" for e in (1, 2, 3)]
    assert read_back(s3).equals(expected(*written))
    if fmt == "parquet":
        assert pq.read_metadata(io.BytesIO(body(s3, keys[0]))).row_group(0).column(0).compression == "SNAPPY"
    if fmt == "csv":
        assert body(s3, keys[0]).startswith(b"window_start,k,n,avg\n")  # every object has its header
    if fmt in ("parquet", "json"):  # DuckDB, an independent reader, on local copies
        for key in keys:
            raw = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()  # as stored: DuckDB reads the gzip
            (tmp_path / key.rsplit("/", 1)[1]).write_bytes(raw)
        con = duckdb.connect()
        if fmt == "parquet":
            got = con.sql(f"SELECT * FROM read_parquet('{tmp_path}/*{ext}') ORDER BY avg").fetchall()
        else:
            columns = "{window_start: 'TIMESTAMP', k: 'VARCHAR', n: 'BIGINT', avg: 'DOUBLE'}"
            got = con.sql(f"SELECT * FROM read_json('{tmp_path}/*{ext}', columns={columns}) ORDER BY avg").fetchall()
        assert got == [tuple(r.values()) for r in expected(*written).to_pylist()]


def test_hive_keys_follow_the_hour_of_window_start_across_a_boundary(s3: Any) -> None:
    sink = make_sink()  # time_column defaults to window_start
    sink.open(SCHEMA, None)
    table = rows(57, 6)  # 10:57 .. 11:02
    sink.write(Epoch(1), table)
    sink.commit(Epoch(1))
    hour10 = "kpis/year=2024/month=05/day=01/hour=10/out-0123abcd-0000000001-0000.json"
    hour11 = "kpis/year=2024/month=05/day=01/hour=11/out-0123abcd-0000000001-0001.json"
    assert listed(s3) == [hour10, hour11]
    assert read_back(s3, [hour10]).equals(table.slice(0, 3))
    assert read_back(s3, [hour11]).equals(table.slice(3))


def test_without_a_time_column_objects_sit_right_under_the_prefix(s3: Any) -> None:
    sink = make_sink(uri=f"s3://{BUCKET}/a/b/")
    table = rows(0, 3).drop_columns(["window_start"])
    sink.open(table.schema, None)
    sink.write(Epoch(7), table)
    sink.commit(Epoch(7))
    assert listed(s3) == ["a/b/out-0123abcd-0000000007-0000.json"]
    with pytest.raises(ConnectorError, match="'time_column': the rows have no column 'ts'"):
        make_sink(time_column="ts").open(table.schema, None)


def test_firehose_layout_names_objects_like_firehose_deterministically(s3: Any) -> None:
    clock = Clock(T0_S + 3 * 3600 + 61)  # 13:01:01, the buffer's first write
    sink = make_sink(layout="firehose", clock=clock)
    sink.open(SCHEMA, None)
    sink.write(Epoch(1), pa.concat_tables([rows(75, 2), rows(7, 1)]))  # oldest row 10:07 though not first
    sink.commit(Epoch(1))
    no_time = rows(0, 2).drop_columns(["window_start"])
    other = make_sink(name="raw", layout="firehose", clock=clock)
    other.open(no_time.schema, None)
    other.write(Epoch(4), no_time)
    other.commit(Epoch(4))
    pattern = re.compile(r"kpis/(\d{4}/\d{2}/\d{2}/\d{2})/(\w+)-1-(\d{4}(?:-\d{2}){5})-([0-9a-f-]{36})\.json")
    found = {}
    for key in listed(s3):
        m = pattern.fullmatch(key)
        assert m, key
        found[m.group(2)] = m.groups()
        assert uuid.UUID(m.group(4)).version == 5
    assert found["out"][:3] == ("2024/05/01/10", "out", "2024-05-01-10-07-00")  # oldest row's time
    assert found["raw"][:3] == ("2024/05/01/13", "raw", "2024-05-01-13-01-01")  # first write (no time column)
    assert sink.object_key(1, 0, "", int((T0_S + 7 * 60) * 1e6)) in listed(s3)
    assert sink.object_key(2, 0, "", int((T0_S + 7 * 60) * 1e6)) not in listed(s3)  # the epoch is in the uuid


def _run(sink: S3Sink, clock: Clock) -> None:
    sink.open(SCHEMA, None)
    for epoch in range(1, 6):
        sink.write(Epoch(epoch), rows(epoch * 10, 7, step_min=5))
        clock.now += 40
        sink.commit(Epoch(epoch))
    sink.close()


def test_two_runs_with_the_same_epochs_give_the_same_keys_and_bytes(s3: Any) -> None:
    s3.create_bucket(Bucket="lake2")
    for bucket, fmt in [(BUCKET, "json"), ("lake2", "json"), (BUCKET, "parquet"), ("lake2", "parquet")]:
        clock = Clock()
        options = {"format": fmt, "buffer_size": "1500", "buffer_interval": "100s"}
        _run(make_sink(name=fmt, uri=f"s3://{bucket}/kpis", clock=clock, **options), clock)
    assert listed(s3) == listed(s3, "lake2")
    assert len(listed(s3)) > 5  # size and interval rolls, several hours
    for key in listed(s3):
        assert body(s3, key) == body(s3, key, "lake2")


# -- exactly once --------------------------------------------------------------------------------


def test_nothing_is_visible_before_commit(s3: Any) -> None:
    sink = make_sink()
    sink.open(SCHEMA, None)
    sink.write(Epoch(1), rows(0, 5))
    state = sink.prepare(Epoch(1))
    assert state is not None and len(state["uploads"]) == 1 and state["held"] is None
    assert listed(s3) == [] and len(in_progress(s3)) == 1
    json.dumps({k: v for k, v in state.items() if k != "held"})  # the uploads are plain data
    sink.commit(Epoch(1))
    assert len(listed(s3)) == 1 and in_progress(s3) == []
    sink.commit(Epoch(1))  # again: a no-op
    assert read_back(s3).equals(expected(rows(0, 5)))


def test_a_crash_after_prepare_is_committed_once_by_a_fresh_sink(s3: Any) -> None:
    first = make_sink()
    first.open(SCHEMA, None)
    first.write(Epoch(1), rows(0, 4))
    first.commit(Epoch(1))
    first.write(Epoch(2), rows(4, 4))
    state = first.prepare(Epoch(2))  # the runtime saves checkpoint 2 ... and the process dies
    del first
    assert len(listed(s3)) == 1
    for _ in range(2):  # and dies again during recovery: recovering twice changes nothing
        again = make_sink()
        again.open(SCHEMA, Epoch(2), state)
        again.commit(Epoch(2))  # already committed by open: a no-op
        assert read_back(s3).equals(expected(rows(0, 4), rows(4, 4)))
        assert len(listed(s3)) == 2 and in_progress(s3) == []


def test_a_crash_before_the_checkpoint_aborts_the_epoch_and_a_rerun_writes_its_new_rows(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="kpis/README.txt", Body=b"not ours")
    s3.create_multipart_upload(Bucket=BUCKET, Key="kpis/other-0123abcd-0000000002-0000.json")  # another sink's
    first = make_sink()
    first.open(SCHEMA, None)
    first.write(Epoch(1), rows(0, 4))
    state1 = first.prepare(Epoch(1))
    first.commit(Epoch(1))
    first.write(Epoch(2), rows(4, 4))
    first.prepare(Epoch(2))  # uploads started; the process dies before checkpoint 2 is saved
    del first
    ours = "kpis/year=2024/month=05/day=01/hour=10/out-0123abcd-0000000002-0000.json"
    assert in_progress(s3) == ["kpis/other-0123abcd-0000000002-0000.json", ours]
    second = make_sink()
    second.open(SCHEMA, Epoch(1), state1)
    assert in_progress(s3) == ["kpis/other-0123abcd-0000000002-0000.json"]  # ours aborted, the other sink's kept
    assert read_back(s3, [k for k in listed(s3) if "/out-" in k]).equals(expected(rows(0, 4)))
    second.write(Epoch(2), rows(20, 3))  # the rerun of epoch 2 has other rows
    second.commit(Epoch(2))
    ours = [k for k in listed(s3) if "/out-" in k]
    assert read_back(s3, ours).equals(expected(rows(0, 4), rows(20, 3)))
    assert "kpis/README.txt" in listed(s3)


def test_a_fresh_start_keeps_earlier_objects_and_never_overwrites_them(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_sink()
    first.open(SCHEMA, None)
    first.write(Epoch(1), rows(0, 4))
    first.commit(Epoch(1))
    first.write(Epoch(2), rows(4, 2))
    first.prepare(Epoch(2))  # a crash here: epoch 2 stays an unfinished upload
    monkeypatch.setattr("connectors.s3.secrets.token_hex", lambda n: "89abcdef")
    again = make_sink()
    again.open(SCHEMA, None)  # no checkpoint: a new run
    assert in_progress(s3) == []  # the crashed run's invisible upload is aborted
    again.write(Epoch(1), rows(10, 2))
    again.commit(Epoch(1))
    hour = "kpis/year=2024/month=05/day=01/hour=10/"
    assert listed(s3) == [hour + "out-0123abcd-0000000001-0000.json", hour + "out-89abcdef-0000000001-0000.json"]
    assert read_back(s3).equals(expected(rows(0, 4), rows(10, 2)))


def test_a_checkpoint_without_state_for_the_sink_is_refused(s3: Any) -> None:
    with pytest.raises(ConnectorError, match="checkpoint 3 holds no state for sink 'out'"):
        make_sink().open(SCHEMA, Epoch(3), None)
    with pytest.raises(ConnectorError, match="is not an S3 sink's"):
        make_sink().open(SCHEMA, Epoch(3), {"length_before": 0, "length_after": 0})


# -- buffering hints -----------------------------------------------------------------------------


def test_small_epochs_wait_for_the_size_hint(s3: Any) -> None:
    sink = make_sink(buffer_size="16KiB", buffer_interval="1h")
    sink.open(SCHEMA, None)
    sizes, epoch = [], 0
    while not listed(s3):
        epoch += 1
        assert epoch < 50
        sink.write(Epoch(epoch), rows(epoch * 20, 20, step_min=0))
        state = sink.prepare(Epoch(epoch))
        assert state is not None
        sizes.append(len(state["held"]["ipc"]) if state["held"] else 0)
        sink.commit(Epoch(epoch))
    assert epoch > 3  # several epochs were held back
    # rolled at that epoch
    assert listed(s3) == [f"kpis/year=2024/month=05/day=01/hour=10/out-0123abcd-{epoch:010d}-0000.json"]
    assert read_back(s3).equals(expected(*[rows(e * 20, 20, step_min=0) for e in range(1, epoch + 1)]))
    assert 0 < max(sizes) < 16 * 1024  # what a checkpoint holds stays under the buffer size
    assert len(body(s3, listed(s3)[0])) >= 16 * 1024


def test_small_epochs_wait_for_the_interval_hint(s3: Any) -> None:
    clock = Clock()
    sink = make_sink(clock=clock, buffer_interval="60s")
    sink.open(SCHEMA, None)
    for epoch in (1, 2, 3):
        sink.write(Epoch(epoch), rows(epoch * 3, 3))
        clock.now += 15
        sink.commit(Epoch(epoch))
        assert listed(s3) == [], epoch  # the oldest row is 15, 30, 45 s old
    assert not sink.due()
    clock.now += 15  # 60 s
    assert sink.due()  # a runtime may end an epoch for it even while no rows arrive
    sink.commit(Epoch(4))  # an epoch without rows rolls what is due
    assert listed(s3) == ["kpis/year=2024/month=05/day=01/hour=10/out-0123abcd-0000000004-0000.json"]
    assert read_back(s3).equals(expected(rows(3, 3), rows(6, 3), rows(9, 3)))


def test_held_rows_survive_a_crash_in_the_checkpoint_state(s3: Any) -> None:
    clock = Clock()
    first = make_sink(clock=clock, buffer_interval="5m")
    first.open(SCHEMA, None)
    for epoch in (1, 2):
        first.write(Epoch(epoch), rows(epoch * 4, 4))
        state = first.prepare(Epoch(epoch))
        first.commit(Epoch(epoch))
    assert listed(s3) == [] and state is not None and state["held"]["rows"] == 8
    del first  # crash after checkpoint 2
    clock.now += 200
    second = make_sink(clock=clock, buffer_interval="5m")
    second.open(SCHEMA, Epoch(2), state)
    second.write(Epoch(3), rows(40, 2))
    second.commit(Epoch(3))
    assert listed(s3) == []  # 200 s: the oldest held row keeps its age across the restart
    clock.now += 100
    second.commit(Epoch(4))
    assert read_back(s3).equals(expected(rows(4, 4), rows(8, 4), rows(40, 2)))


def test_close_publishes_nothing_and_held_rows_go_out_when_a_run_resumes(s3: Any) -> None:
    first = make_sink(buffer_interval="1h")
    first.open(SCHEMA, None)
    first.write(Epoch(1), rows(0, 3))
    first.commit(Epoch(1))
    first.write(Epoch(2), rows(3, 3))
    state = first.prepare(Epoch(2))
    first.commit(Epoch(2))
    first.close()  # no rows that no checkpoint covers may show up
    assert listed(s3) == [] and in_progress(s3) == []
    resumed = make_sink(buffer_interval="1h")
    resumed.open(SCHEMA, Epoch(2), state)  # a later run resumes from checkpoint 2, held rows included
    resumed.write(Epoch(3), rows(6, 2))
    resumed.flush()
    resumed.commit(Epoch(3))
    assert read_back(s3).equals(expected(rows(0, 8)))
    assert listed(s3) == ["kpis/year=2024/month=05/day=01/hour=10/out-0123abcd-0000000003-0000.json"]


def test_a_large_object_goes_up_in_several_parts(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import connectors.s3

    monkeypatch.setattr(connectors.s3, "PART_BYTES", 5 * 1024 * 1024)  # S3's smallest part size
    sink = make_sink(buffer_size="64MiB", buffer_interval="1h")
    sink.open(SCHEMA, None)
    big = pa.concat_tables([rows(0, 50)] * 1800)  # about 6 MiB of JSON lines
    sink.write(Epoch(1), big)
    state = sink.prepare(Epoch(1))
    assert state is not None and state["held"] is not None and state["uploads"] == []
    sink.commit(Epoch(1))
    sink.flush()
    sink.write(Epoch(2), rows(0, 1))
    state = sink.prepare(Epoch(2))
    assert state is not None and [len(u["parts"]) for u in state["uploads"]] == [2]
    sink.commit(Epoch(2))
    assert read_back(s3).num_rows == big.num_rows + 1


def test_close_after_a_failure_does_no_io(s3: Any, moto_server: MotoServer) -> None:
    sink = make_sink(buffer_interval="1h")
    sink.open(SCHEMA, None)
    sink.write(Epoch(1), rows(0, 3))
    sink.commit(Epoch(1))  # held, in checkpoint 1's state
    sink.write(Epoch(2), rows(3, 3))  # ... and the run fails before checkpoint 2
    moto_server.stop()
    try:
        started = time.monotonic()
        sink.close()  # must not wait for S3: a second Ctrl-C has to end the process at once
        assert time.monotonic() - started < 0.5
    finally:
        moto_server.start()
    assert listed(s3) == [] and in_progress(s3) == []


def test_a_resumed_run_with_other_options_writes_the_held_rows_its_way(s3: Any) -> None:
    first = make_sink(buffer_interval="1h")
    first.open(SCHEMA, None)
    first.write(Epoch(1), rows(50, 20))  # 10:50 .. 11:09: two hour partitions
    state = first.prepare(Epoch(1))
    first.commit(Epoch(1))
    first.close()
    assert listed(s3) == []
    resumed = make_sink(buffer_interval="1h", format="parquet", layout="firehose")
    resumed.open(SCHEMA, Epoch(1), state)
    resumed.flush()
    resumed.commit(Epoch(2))
    assert [k.rsplit(".", 1)[1] for k in listed(s3)] == ["parquet"]
    assert read_back(s3).equals(expected(rows(50, 20)))


def test_abort_drops_the_epoch_and_keeps_rows_held_at_the_last_commit(s3: Any) -> None:
    sink = make_sink(buffer_size="1KiB", buffer_interval="1h")
    sink.open(SCHEMA, None)
    sink.write(Epoch(1), rows(0, 2))
    sink.commit(Epoch(1))
    sink.write(Epoch(2), rows(2, 30))  # over the size: rolled into an upload at once
    assert len(in_progress(s3)) == 1
    sink.abort(Epoch(2))
    assert in_progress(s3) == []
    sink.write(Epoch(2), rows(50, 1))
    sink.flush()
    sink.commit(Epoch(2))
    assert read_back(s3).equals(expected(rows(0, 2), rows(50, 1)))


# -- the runtime drives it -----------------------------------------------------------------------


@pytest.mark.parametrize("buffer_interval", ["0", "1h"])
def test_a_run_stopped_and_resumed_writes_every_result_once(s3: Any, tmp_path: Path, buffer_interval: str) -> None:
    from engine.plan.planner import compile_program
    from engine.runtime.checkpoint import CheckpointStore, program_fingerprint
    from engine.runtime.loop import Runner, RunOptions
    from engine.testing import ListSink, ListSource, run_program

    sql = """
    CREATE TABLE t (ts TIMESTAMP, k VARCHAR, v INT, WATERMARK FOR ts AS ts);
    SELECT k, window_start, COUNT(*) AS n, SUM(v) AS total
    FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' MINUTE))
    GROUP BY k, window_start, window_end
    """
    data = [{"ts": f"2024-05-01T{10 + m // 60}:{m % 60:02d}:00Z", "k": "ab"[m % 2], "v": m} for m in range(0, 150, 3)]
    batches = [[json.dumps(r).encode() for r in data[i : i + 4]] for i in range(0, len(data), 4)]
    program = compile_program(sql)
    whole, _, _ = run_program(program, {"t": batches})
    want = sorted(whole["result"].rows(), key=repr)

    def run(stop: int | None) -> None:
        store = CheckpointStore(tmp_path / "ckpt", program_fingerprint(program.text))
        key = program.outputs[0].stream
        sink = make_sink(name="result", buffer_interval=buffer_interval)
        options = RunOptions(
            idle_timeout_us=None, sleep=lambda s: None, stop_after_batches=stop, checkpoint_interval_s=0
        )
        sources = {name: ListSource(program.streams[name].name, batches) for name in program.sources}
        Runner(program, sources, {key: sink}, ListSink("errors"), options, checkpoints=store).run()

    run(stop=5)
    run(stop=None)
    got = []
    for key in listed(s3):
        got += [json.loads(line) for line in body(s3, key).splitlines()]
    for row in want:
        row["window_start"] = row["window_start"].isoformat() + "Z"
    assert sorted(got, key=repr) == want
    assert in_progress(s3) == []


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["prepare", "commit"])
def test_an_s3_outage_blocks_the_sink_and_loses_nothing(s3: Any, moto_server: MotoServer, stage: str) -> None:
    sink = make_sink()
    sink.open(SCHEMA, None)
    sink.write(Epoch(1), rows(0, 4))
    sink.commit(Epoch(1))
    sink.write(Epoch(2), rows(4, 4))
    if stage == "commit":
        sink.prepare(Epoch(2))
    failures: list[BaseException] = []

    def finish_epoch() -> None:
        try:
            sink.prepare(Epoch(2))
            sink.commit(Epoch(2))
        except BaseException as err:  # reported to the test thread
            failures.append(err)

    moto_server.stop()
    try:
        worker = threading.Thread(target=finish_epoch, daemon=True)
        worker.start()
        worker.join(timeout=2.0)
        assert worker.is_alive()  # blocked, retrying: back-pressure
    finally:
        moto_server.start()
    worker.join(timeout=30.0)
    assert not worker.is_alive() and failures == []
    assert read_back(s3).equals(expected(rows(0, 8)))  # no loss, no duplicate
    assert len(listed(s3)) == 2 and in_progress(s3) == []


def test_s3_down_past_the_retry_timeout_is_a_one_line_error(s3: Any, moto_server: MotoServer) -> None:
    sink = make_sink(retry_timeout="0.2s")
    sink.open(SCHEMA, None)
    sink.write(Epoch(1), rows(0, 2))
    moto_server.stop()
    started = time.monotonic()
    try:
        with pytest.raises(ConnectorError) as info:
            sink.prepare(Epoch(1))
    finally:
        moto_server.start()
    assert time.monotonic() - started < 15
    text = str(info.value)
    assert "cannot start the upload of kpis/" in text and "still failing after" in text
    assert "\n" not in text and "testing" not in text


def test_a_missing_bucket_is_a_one_line_error_at_open(moto: MotoServer) -> None:
    sink = make_sink(uri="s3://no-such-bucket/kpis")
    with pytest.raises(ConnectorError) as info:
        sink.open(SCHEMA, None)
    text = str(info.value)
    assert text == "test: bucket 'no-such-bucket' does not exist (s3://no-such-bucket/kpis/)"
