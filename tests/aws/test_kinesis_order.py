"""Records of different shards come out merged in arrival order, even from a backlog read in
pieces (kinesalite on 127.0.0.1)."""

from __future__ import annotations

import json
import time
from typing import Any

from connectors.kinesis import KinesisSource
from tests.aws.servers import Kinesalite
from tests.aws.test_kinesis_source import drain, new_stream, opened, source, started

__all__ = ["opened"]  # the fixture, imported for its name


def test_a_backlog_on_four_shards_is_handed_out_in_arrival_order(
    kinesalite: Kinesalite, opened: list[KinesisSource]
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 4)
    n = 0
    for _ in range(12):  # 12 calls, a few ms apart, each spreading 40 records over the shards
        records = [{"PartitionKey": f"k{i % 16}", "Data": json.dumps({"n": n + i}).encode()} for i in range(40)]
        assert client.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0
        n += 40
        time.sleep(0.005)
    # at most 25 records per GetRecords: each shard's backlog is read in several pieces
    src = started(opened, source(stream, max_records="25", poll_interval="10ms"))
    rows: list[dict[str, Any]] = drain(src, n, max_rows=30)
    arrivals = [r["arrival_time"] for r in rows]
    assert arrivals == sorted(arrivals), "rows of one shard overtook older rows of another"
    assert len({r["SHARD_ID"] for r in rows[:60]}) == 4  # the shards interleave from the start
    assert sorted(json.loads(r["payload"])["n"] for r in rows) == list(range(n))
