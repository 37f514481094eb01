"""--reference NAME=URI (and a --source that is only joined) on the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = """
CREATE TABLE trades (ts TIMESTAMP, sym VARCHAR, qty INT, WATERMARK FOR ts AS ts);
SELECT t.sym, c.company, t.qty FROM trades AS t JOIN companies AS c ON t.sym = c.ticker;
"""


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    sql = tmp_path / "join.sql"
    sql.write_text(PROGRAM)
    data = tmp_path / "trades.jsonl"
    lines = [
        '{"ts": "2024-01-01T00:00:01Z", "sym": "AMZN", "qty": 5}',
        '{"ts": "2024-01-01T00:00:02Z", "sym": "IBM", "qty": 1}',
    ]
    data.write_text("\n".join(lines) + "\n")
    ref = tmp_path / "companies.csv"
    ref.write_text("ticker,company\nAMZN,Amazon\n")
    return sql, data, ref


def test_reference_and_joined_source_give_the_same_rows(tmp_path: Path) -> None:
    sql, data, ref = _files(tmp_path)
    for flag in ("--reference", "--source"):
        out = tmp_path / f"out{flag}.jsonl"
        result = CliRunner().invoke(
            app, ["run", str(sql), "-s", f"trades={data}", flag, f"companies={ref}", "-o", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert [json.loads(line) for line in out.read_text().splitlines()] == [
            {"sym": "AMZN", "company": "Amazon", "qty": 5}
        ]


def test_reference_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    sql, data, ref = _files(tmp_path)
    cases = [
        (["--reference", f"companies={tmp_path / 'missing.csv'}"], "--reference companies: no such file"),
        (["--reference", f"companies={ref}", "--reference", f"rates={ref}"], "'rates' is not a table this program"),
        (["--reference", "companies=kinesis://x"], "a reference table is a file or an s3:// object"),
        (["--reference", str(ref)], "give a reference table as NAME=URI"),
    ]
    for extra, message in cases:
        result = CliRunner().invoke(app, ["run", str(sql), "-s", f"trades={data}", *extra, "-o", str(tmp_path / "o")])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_sighup_reloads_the_reference_table(tmp_path: Path) -> None:
    sql, data, ref = _files(tmp_path)
    data.write_text("")
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "run", str(sql), "-s", f"trades={data}?follow=true",
         "-r", f"companies={ref}", "-o", str(out), "--batch-interval", "50ms"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        _append_and_wait(data, out, '{"ts": "2024-01-01T00:00:01Z", "sym": "AMZN", "qty": 5}', 1)
        ref.write_text("ticker,company\nAMZN,Amazon.com\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        _append_and_wait(data, out, '{"ts": "2024-01-01T00:00:02Z", "sym": "AMZN", "qty": 6}', 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    companies = [json.loads(line)["company"] for line in out.read_text().splitlines()]
    assert companies == ["Amazon", "Amazon.com"]


def _append_and_wait(data: Path, out: Path, line: str, rows: int) -> None:
    with data.open("a") as f:
        f.write(line + "\n")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_text().splitlines()) >= rows:
            return
        time.sleep(0.05)
    raise AssertionError(f"{out} did not reach {rows} rows")
