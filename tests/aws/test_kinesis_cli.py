"""The Kinesis source through the command line: metadata columns in discovered and declared
streams, type mistakes as one-line errors, and --until-idle waiting for the stream to be read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.aws.servers import Kinesalite
from tests.aws.test_kinesis_source import FaultProxy, new_stream, proxy

__all__ = ["proxy"]  # the fixture, imported for its name

ROOT = Path(__file__).resolve().parents[2]


def _run(kinesalite: Kinesalite, tmp_path: Path, sql: str, stream: str, *extra: str) -> subprocess.CompletedProcess:
    program = tmp_path / "q.sql"
    program.write_text(sql)
    env = {**os.environ, **kinesalite.env(), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "cli.py"), "run", str(program), "-s", f"events=kinesis://{stream}", *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_discovered_stream_gets_metadata_columns_and_keeps_a_record_field_of_the_same_name(
    kinesalite: Kinesalite, tmp_path: Path
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 2)
    records = [{"n": i, "partition_key": f"payload-{i}"} for i in range(6)]
    client.put_records(
        StreamName=stream, Records=[{"Data": json.dumps(r).encode(), "PartitionKey": f"k{r['n']}"} for r in records]
    )
    out = tmp_path / "out.jsonl"
    done = _run(kinesalite, tmp_path, "SELECT * FROM events", stream, "-o", str(out), "--until-idle", "1s")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["n"] for r in rows) == list(range(6))
    for row in rows:
        assert row["partition_key"] == f"payload-{row['n']}"  # the record's own field wins
        assert row["SHARD_ID"].startswith("shardId-") and row["SEQUENCE_NUMBER"].isdigit()
        assert "PARTITION_KEY" not in row  # not added: the record has a field of that name
    raw = out.read_text().splitlines()[0]
    assert raw.lower().count('"partition_key"') == 1


def test_declared_metadata_columns_take_the_source_values_and_bad_types_are_one_line_errors(
    kinesalite: Kinesalite, tmp_path: Path
) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 1)
    client.put_record(StreamName=stream, Data=b'{"n": 1, "PARTITION_KEY": "from-payload", "x": 2}', PartitionKey="pk")
    sql = "CREATE TABLE events (n INT, PARTITION_KEY VARCHAR, _extra VARCHAR); SELECT * FROM events"
    out = tmp_path / "out.jsonl"
    done = _run(kinesalite, tmp_path, sql, stream, "-o", str(out), "--until-idle", "1s")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == [{"n": 1, "PARTITION_KEY": "pk", "x": 2}]
    bad = _run(kinesalite, tmp_path, "CREATE TABLE events (n INT, SHARD_ID INT); SELECT * FROM events", stream)
    assert bad.returncode == 2, bad.stderr
    assert "column SHARD_ID comes from the source as VARCHAR, not INT" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_until_idle_waits_for_a_slow_start(kinesalite: Kinesalite, proxy: FaultProxy, tmp_path: Path) -> None:
    client = kinesalite.client()
    stream = new_stream(client, 8)
    records = [{"Data": json.dumps({"n": i}).encode(), "PartitionKey": f"k{i}"} for i in range(200)]
    client.put_records(StreamName=stream, Records=records)
    proxy.throttle["GetRecords"] = 12  # the first reads are throttled: the shards answer late
    out = tmp_path / "out.jsonl"
    source = f"kinesis://{stream}?endpoint={proxy.endpoint}"
    program = tmp_path / "q.sql"
    program.write_text("CREATE TABLE events (n INT); SELECT n FROM events")  # no discovery: it would be throttled
    env = {**os.environ, **kinesalite.env(), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "cli.py"), "run", str(program), "-s", f"events={source}", "-o", str(out)]
    done = subprocess.run([*command, "--until-idle", "0.3s"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == 200, done.stderr  # not ended before the stream was read


def test_kda_program_reads_kinesis_metadata_columns(kinesalite: Kinesalite, tmp_path: Path) -> None:
    """A KDA application over a Kinesis stream: SHARD_ID, PARTITION_KEY, SEQUENCE_NUMBER and
    APPROXIMATE_ARRIVAL_TIME are columns of SOURCE_SQL_STREAM_001 (KDA checklist rows 17 and 18)."""
    client = kinesalite.client()
    stream = new_stream(client, 2)
    client.put_records(
        StreamName=stream,
        Records=[{"Data": json.dumps({"TICKER": f"T{i}"}).encode(), "PartitionKey": f"k{i}"} for i in range(4)],
    )
    program = tmp_path / "app.sql"
    program.write_text(
        'CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" '
        "(ticker VARCHAR(8), shard VARCHAR(64), pkey VARCHAR(8), arrived TIMESTAMP, seq VARCHAR(64));\n"
        'CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"\n'
        "SELECT STREAM ticker, SHARD_ID, PARTITION_KEY, APPROXIMATE_ARRIVAL_TIME, SEQUENCE_NUMBER\n"
        'FROM "SOURCE_SQL_STREAM_001";\n'
    )
    out = tmp_path / "out.jsonl"
    env = {**os.environ, **kinesalite.env(), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "cli.py"), "run", str(program), "-s", f"kinesis://{stream}"]
    command += ["-o", f"DESTINATION_SQL_STREAM={out}", "--until-idle", "1s"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["TICKER"] for r in rows) == ["T0", "T1", "T2", "T3"]
    for row in rows:
        assert row["SHARD"].startswith("shardId-") and row["SEQ"].isdigit()
        assert row["PKEY"] == "k" + row["TICKER"][1:]
        assert row["ARRIVED"].startswith("20")  # the Kinesis record's own arrival stamp
