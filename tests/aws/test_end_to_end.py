"""Kinesis in, S3 out, through the command line, against real servers on 127.0.0.1.

Records go into a 4-shard stream on kinesalite; ``duckstream run`` windows them and writes the
results to S3 on moto, with checkpoints in S3; the objects are read back with pyarrow and DuckDB
and compared with the rows computed here from the generated events. The runs are killed with
SIGKILL, resharded in between, and S3 goes away for a while: the output is still every window
exactly once.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.aws.servers import CREDENTIALS, Kinesalite, MotoServer

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = """
CREATE TABLE events (ts TIMESTAMP, device VARCHAR, temp INT, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND);
SELECT device, window_start, window_end, COUNT(*) AS n, SUM(temp) AS total
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY device, window_start, window_end;
"""
START = dt.datetime(2024, 5, 1, 12, 0, 0)
DEVICES = [f"dev-{i}" for i in range(8)]
SECRET = "SECRET-e2e-marker-5d1c"


def _events(first: int, count: int, seed: int = 7) -> list[dict]:
    """Events 100 ms apart from START + first * 100 ms, a little out of order (< 5 s)."""
    rng = random.Random(seed * 1_000_003 + first)
    out = []
    for i in range(first, first + count):
        ts = START + dt.timedelta(milliseconds=100 * i - rng.randrange(0, 2000))
        out.append({"ts": ts.isoformat() + "Z", "device": rng.choice(DEVICES), "temp": rng.randrange(-20, 40)})
    return out


def _expected(events: list[dict]) -> list[tuple]:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for e in events:
        ts = dt.datetime.fromisoformat(e["ts"].rstrip("Z"))
        start = ts.replace(second=ts.second - ts.second % 10, microsecond=0)
        groups[(e["device"], start)].append(e["temp"])
    return sorted((d, s, s + dt.timedelta(seconds=10), len(v), sum(v)) for (d, s), v in groups.items())


def _put(kinesis, stream: str, events: list[dict]) -> None:  # noqa: ANN001
    """Put as a live producer would: small calls (2 s of events each), a few ms apart. Records of
    one call share their arrival time, so across shards their order is that of the call only."""
    for i in range(0, len(events), 20):
        time.sleep(0.003)
        chunk = events[i : i + 20]
        records = [{"Data": json.dumps(e).encode(), "PartitionKey": e["device"]} for e in chunk]
        response = kinesis.put_records(StreamName=stream, Records=records)
        assert response["FailedRecordCount"] == 0


def _wait_active(kinesis, stream: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
        if status == "ACTIVE":
            return
        time.sleep(0.05)
    raise AssertionError(f"stream {stream} did not become ACTIVE")


def _split_two(kinesis, stream: str) -> None:  # noqa: ANN001
    """SplitShard on two open shards, each at the middle of its hash-key range."""
    shards = [
        s
        for s in kinesis.list_shards(StreamName=stream)["Shards"]
        if "EndingSequenceNumber" not in s["SequenceNumberRange"]
    ]
    for shard in shards[:2]:
        low, high = (int(shard["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
        kinesis.split_shard(StreamName=stream, ShardToSplit=shard["ShardId"], NewStartingHashKey=str((low + high) // 2))
        _wait_active(kinesis, stream)
    # kinesalite stamps a new shard's records no earlier than the next whole second after it was
    # made (its sequence numbers carry the time); real Kinesis does not. Wait so that arrival
    # times stay true across shards.
    time.sleep(1.1)


def _env(kinesalite: Kinesalite, moto: MotoServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(CREDENTIALS)
    env["AWS_SECRET_ACCESS_KEY"] = SECRET  # the servers take any key; this one must never show up
    env["AWS_ENDPOINT_URL_KINESIS"] = kinesalite.endpoint
    env["AWS_ENDPOINT_URL_S3"] = moto.endpoint
    env["PYTHONPATH"] = str(ROOT)
    return env


def _command(tmp_path: Path, stream: str, sink: str, checkpoints: str, *extra: str) -> list[str]:
    program = tmp_path / "kpis.sql"
    program.write_text(PROGRAM)
    return [
        sys.executable,
        str(ROOT / "cli.py"),
        "run",
        str(program),
        "--source",
        f"events=kinesis://{stream}",
        "--sink",
        f"result={sink}",
        "--checkpoint-dir",
        checkpoints,
        "--checkpoint-interval",
        "1s",
        "--batch-interval",
        "100ms",
        *extra,
    ]


def _s3_rows(moto: MotoServer, bucket: str, prefix: str) -> tuple[list[tuple], list[str]]:
    """Every result row under the prefix (read with pyarrow for Parquet, DuckDB for JSON) and the keys."""
    s3 = moto.client("s3")
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    rows: list[tuple] = []
    con = duckdb.connect()
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if key.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(body))
        else:
            if key.endswith(".gz"):
                body = gzip.decompress(body)
            path = Path(f"/tmp/duckstream-e2e-{os.getpid()}.jsonl")
            path.write_bytes(body)
            table = con.sql(
                "SELECT device, window_start::TIMESTAMP AS window_start, window_end::TIMESTAMP AS window_end, "
                f"n, total FROM read_json('{path}', format='newline_delimited')"
            ).to_arrow_table()
            path.unlink()
        for r in table.to_pylist():
            rows.append((r["device"], r["window_start"], r["window_end"], r["n"], r["total"]))
    return sorted(rows), keys


def _wait_for_objects(moto: MotoServer, bucket: str, prefix: str, timeout_s: float = 60) -> None:
    s3 = moto.client("s3")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0):
            return
        time.sleep(0.1)
    raise AssertionError("no result object appeared in S3")


def test_kinesis_to_s3_parquet_through_the_cli(kinesalite: Kinesalite, moto: MotoServer, tmp_path: Path) -> None:
    kinesis = kinesalite.client()
    kinesis.create_stream(StreamName="e2e-plain", ShardCount=4)
    moto.client("s3").create_bucket(Bucket="lake")
    _wait_active(kinesis, "e2e-plain")
    events = _events(0, 3000)
    _put(kinesis, "e2e-plain", events)
    command = _command(
        tmp_path, "e2e-plain", "s3://lake/kpis?format=parquet&buffer_interval=0", "s3://lake/_checkpoints/kpis"
    )
    proc = subprocess.run(
        [*command, "--until-idle", "3s"], env=_env(kinesalite, moto), capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    rows, keys = _s3_rows(moto, "lake", "kpis/")
    assert rows == _expected(events)
    hours = {k.rsplit("/", 1)[0] for k in keys}  # the first windows start just before noon
    assert hours == {"kpis/year=2024/month=05/day=01/hour=11", "kpis/year=2024/month=05/day=01/hour=12"}
    assert all(k.endswith(".parquet") for k in keys)
    assert "late" not in proc.stderr  # shards are merged in arrival order: no row is late


def test_sigkill_reshard_and_restart_give_every_window_once(
    kinesalite: Kinesalite, moto: MotoServer, tmp_path: Path
) -> None:
    kinesis = kinesalite.client()
    kinesis.create_stream(StreamName="e2e-kill", ShardCount=4)
    moto.client("s3").create_bucket(Bucket="lake2")
    _wait_active(kinesis, "e2e-kill")
    env = _env(kinesalite, moto)
    command = _command(tmp_path, "e2e-kill", "s3://lake2/kpis?buffer_interval=0", "s3://lake2/_checkpoints")
    first, second, third = _events(0, 2000), _events(2000, 2000), _events(4000, 2000)
    _put(kinesis, "e2e-kill", first)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_objects(moto, "lake2", "kpis/")
        _put(kinesis, "e2e-kill", second[:1000])
        _split_two(kinesis, "e2e-kill")  # a reshard in the middle of the run: parents drained before children
        _put(kinesis, "e2e-kill", second[1000:])
        time.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)
    finally:
        proc.send_signal(signal.SIGKILL)  # killed again, mid-run, after the reshard
        proc.wait(timeout=30)
    _put(kinesis, "e2e-kill", third)
    done = subprocess.run([*command, "--until-idle", "3s"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    rows, keys = _s3_rows(moto, "lake2", "kpis/")
    assert len({r[:2] for r in rows}) == len(rows), "a window was written twice"
    assert rows == _expected(first + second + third)
    assert all(k.endswith(".json") for k in keys)
    # credentials are in no message and in no object (checkpoints included)
    assert SECRET not in done.stderr
    assert "behind the stream head: events 0 ms" in done.stderr  # the lag, reported at exit
    s3 = moto.client("s3")
    for obj in s3.list_objects_v2(Bucket="lake2")["Contents"]:
        assert SECRET.encode() not in s3.get_object(Bucket="lake2", Key=obj["Key"])["Body"].read()


def test_s3_outage_is_back_pressure_not_loss(kinesalite: Kinesalite, moto: MotoServer, tmp_path: Path) -> None:
    kinesis = kinesalite.client()
    kinesis.create_stream(StreamName="e2e-outage", ShardCount=4)
    moto.client("s3").create_bucket(Bucket="lake3")
    _wait_active(kinesis, "e2e-outage")
    events = _events(0, 3000)
    _put(kinesis, "e2e-outage", events[:1500])
    command = _command(
        tmp_path, "e2e-outage", "s3://lake3/kpis?buffer_interval=0&compression=gzip", str(tmp_path / "ckpt")
    )
    proc = subprocess.Popen(
        [*command, "--until-idle", "4s"],
        env=_env(kinesalite, moto),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_objects(moto, "lake3", "kpis/")
        moto.stop()  # S3 is gone: the sink retries and the engine stops reading
        _put(kinesis, "e2e-outage", events[1500:])
        time.sleep(4.0)
        assert proc.poll() is None, "the run must wait for S3, not fail"
    finally:
        moto.start()
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    rows, keys = _s3_rows(moto, "lake3", "kpis/")
    assert rows == _expected(events)
    assert all(k.endswith(".json.gz") for k in keys)


def test_a_second_signal_aborts_a_stop_that_waits_for_s3(
    kinesalite: Kinesalite, moto: MotoServer, tmp_path: Path
) -> None:
    kinesis = kinesalite.client()
    kinesis.create_stream(StreamName="e2e-abort", ShardCount=2)
    moto.client("s3").create_bucket(Bucket="lake4")
    _wait_active(kinesis, "e2e-abort")
    events = _events(0, 1000)
    _put(kinesis, "e2e-abort", events)
    env = _env(kinesalite, moto)
    # checkpoints in S3: the graceful stop's last checkpoint has to wait for S3
    command = _command(tmp_path, "e2e-abort", "s3://lake4/kpis?buffer_interval=0", "s3://lake4/_checkpoints")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_objects(moto, "lake4", "kpis/")
        moto.stop()
        proc.send_signal(signal.SIGTERM)  # the graceful stop's last checkpoint now waits for S3
        time.sleep(1.0)
        assert proc.poll() is None
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # a second signal aborts at once
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - started < 10
        assert proc.returncode not in (0, None), err
    finally:
        moto.start()
    # nothing is lost: the next run resumes from the last checkpoint and finishes the job
    done = subprocess.run([*command, "--until-idle", "3s"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    rows, _ = _s3_rows(moto, "lake4", "kpis/")
    assert rows == _expected(events)


@pytest.fixture(autouse=True)
def _moto_back_up(moto_server: MotoServer) -> None:
    """A failed outage test must not leave the shared moto server stopped for the next test."""
    yield
    if moto_server._server is None:
        moto_server.start()
