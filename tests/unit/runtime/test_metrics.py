"""Live metrics: what the runner feeds, the Prometheus text, --metrics-port during a real run, --progress."""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from cli import app
from connectors.file import FileSource
from connectors.options import Options
from engine.plan.planner import compile_program
from engine.runtime.checkpoint import CheckpointStore, program_fingerprint
from engine.runtime.loop import Runner, RunOptions
from engine.runtime.metrics import Metrics, MetricsSnapshot, prometheus_text, status_line
from engine.testing import ListSink, ListSource

ROOT = Path(__file__).resolve().parents[3]
PROGRAM = """CREATE TABLE t (ts TIMESTAMP, k VARCHAR, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND);
SELECT k, window_start, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY k, window_start, window_end;
"""


def _row(second: int, k: str = "a") -> bytes:
    return json.dumps({"ts": f"2024-05-01T10:{second // 60:02d}:{second % 60:02d}Z", "k": k}).encode()


def _us(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp() * 1_000_000)


def test_the_runner_feeds_counts_watermarks_state_and_checkpoints(tmp_path: Path) -> None:
    program = compile_program(PROGRAM)
    batches = [[_row(5), _row(50), b"not json"], [_row(70), _row(10)]]  # 10:00:10 is late (watermark 10:01:05)
    store = CheckpointStore(str(tmp_path), program_fingerprint(program.text))
    options = RunOptions(idle_timeout_us=None, sleep=lambda s: None, flush=False)
    sources = {"t": ListSource("t", batches)}
    runner = Runner(
        program,
        sources,
        {o.stream: ListSink(o.name) for o in program.outputs},
        ListSink("e"),
        options,
        checkpoints=store,
    )
    runner.metrics = Metrics()
    runner.run()
    snap = runner.metrics.snapshot()
    assert snap.records_in == {"t": 5}
    assert snap.bytes_in == {"t": sum(len(p) for b in batches for p in b)}
    assert snap.rows_out == {"result": 1}  # [10:00, 10:01) closed by the watermark 10:01:05
    assert snap.errors["late"] == 1 and snap.late_rows == 1 and sum(snap.errors.values()) == 2
    assert snap.watermark_us == {"t": _us("2024-05-01T10:01:05")}
    assert snap.batches == 2
    assert snap.checkpoints == 1 and snap.last_checkpoint_seconds > 0
    assert snap.state_rows == 1  # the open window [10:01, 10:02) of key a (no flush)
    assert snap.fraction_done is None  # a list source does not know its size


def test_prometheus_text_has_help_type_and_escaped_labels() -> None:
    snap = MetricsSnapshot(
        records_in={'we"ird\\name': 3, "trades": 10},
        bytes_in={"trades": 1234},
        rows_out={"result": 2},
        errors={"late": 4, "decode": 1},
        watermark_us={"trades": 1_714_557_600_500_000},
        lag_ms={"trades": 1500},
        checkpoints=2,
        last_checkpoint_seconds=0.25,
    )
    text = prometheus_text(snap)
    lines = text.splitlines()
    assert "# HELP duckstream_records_in_total Records read, per source stream." in lines
    assert "# TYPE duckstream_records_in_total counter" in lines
    assert 'duckstream_records_in_total{stream="trades"} 10' in lines
    assert 'duckstream_records_in_total{stream="we\\"ird\\\\name"} 3' in lines
    assert 'duckstream_error_rows_total{reason="late"} 4' in lines
    assert "duckstream_late_rows_total 4" in lines
    assert 'duckstream_watermark_seconds{stream="trades"} 1714557600.5' in lines
    assert 'duckstream_source_lag_seconds{stream="trades"} 1.5' in lines
    assert "duckstream_checkpoints_total 2" in lines
    assert "duckstream_checkpoint_duration_seconds 0.25" in lines
    for line in lines:  # every sample belongs to a family announced just before
        if not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            assert f"# TYPE {name} " in text
    line = status_line(snap)
    assert "13 records in" in line and "5 errors (4 late)" in line and "lag trades 1.5 s" in line


def test_file_source_progress_is_bytes_read_of_the_size(tmp_path: Path) -> None:
    data = tmp_path / "t.jsonl"
    data.write_bytes(b"".join(_row(s) + b"\n" for s in range(50)))
    source = FileSource("t", str(data), Options({}, "test"))
    source.open(None)
    assert source.progress() == (0, data.stat().st_size)
    while source.poll(10, 0) is not None:
        pass
    assert source.progress() == (data.stat().st_size, data.stat().st_size)
    source.close()
    followed = FileSource("t", str(data), Options({"follow": "true"}, "test"))
    followed.open(None)
    assert followed.progress() is None  # no fixed size
    followed.close()


def test_progress_prints_a_status_line_with_the_share_read(tmp_path: Path) -> None:
    sql = tmp_path / "p.sql"
    sql.write_text(PROGRAM)
    data = tmp_path / "t.jsonl"
    data.write_bytes(b"\n".join([_row(5), _row(50), _row(70), _row(10), b"{"]) + b"\n")
    result = CliRunner().invoke(app, ["run", str(sql), "--source", str(data), "--progress"])
    assert result.exit_code == 0, result.stderr
    status = [line for line in result.stderr.splitlines() if line.startswith("duckstream: [")]
    assert status, result.stderr
    last = status[-1]
    assert last.startswith("duckstream: [100%] 5 records in (")
    assert "| 2 rows out | 2 errors (1 late) | watermark t 2024-05-01T10:01:05" in last


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}


def _until(port: int, key: str, value: float, deadline: float) -> dict[str, float]:
    while True:
        try:
            got = _scrape(port)
            if got.get(key) == value:
                return got
        except (urllib.error.URLError, ConnectionError):
            got = {}
        assert time.monotonic() < deadline, f"{key} never reached {value}: {got}"
        time.sleep(0.1)


def test_metrics_port_serves_a_running_program(tmp_path: Path) -> None:
    sql = tmp_path / "p.sql"
    sql.write_text(PROGRAM)
    data = tmp_path / "t.jsonl"
    first = [_row(5), _row(50), _row(70)]
    data.write_bytes(b"".join(p + b"\n" for p in first))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "cli.py", "run", str(sql), "--source", f"file:{data}?follow=true"]
        + ["--sink", str(tmp_path / "out.jsonl"), "--metrics-port", str(port), "--batch-interval", "50ms"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        got = _until(port, 'duckstream_records_in_total{stream="t"}', 3, deadline)
        assert got['duckstream_bytes_in_total{stream="t"}'] == sum(len(p) for p in first)
        assert got['duckstream_watermark_seconds{stream="t"}'] == _us("2024-05-01T10:01:05") / 1e6
        assert got["duckstream_late_rows_total"] == 0
        with data.open("ab") as f:  # one late row, one bad record, one more minute
            f.write(_row(10) + b"\n" + b"oops\n" + _row(130) + b"\n")
        got = _until(port, 'duckstream_records_in_total{stream="t"}', 6, deadline)
        assert got['duckstream_error_rows_total{reason="late"}'] == 1
        assert got["duckstream_late_rows_total"] == 1
        assert sum(v for k, v in got.items() if k.startswith("duckstream_error_rows_total")) == 2
        assert got['duckstream_rows_out_total{output="result"}'] == 2  # [10:00,10:01) and [10:01,10:02)
        assert got['duckstream_watermark_seconds{stream="t"}'] == _us("2024-05-01T10:02:05") / 1e6
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        try:
            _scrape(port)
            raise AssertionError("the metrics server outlived the run")
        except (urllib.error.URLError, ConnectionError):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_busy_metrics_port_is_a_one_line_error(tmp_path: Path) -> None:
    sql = tmp_path / "p.sql"
    sql.write_text(PROGRAM)
    data = tmp_path / "t.jsonl"
    data.write_bytes(_row(5) + b"\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["run", str(sql), "--source", str(data), "--metrics-port", str(port)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --metrics-port: cannot serve metrics on 127.0.0.1:{port}: ")
