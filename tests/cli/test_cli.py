"""The command line: exit codes, one-line errors, sources and sinks by URI, every command's --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = """
CREATE TABLE readings (ts TIMESTAMP, device VARCHAR, temp INT,
                       WATERMARK FOR ts AS ts - INTERVAL '30' SECOND);
SELECT device, window_start, window_end, SUM(temp) AS sum_temp, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY device, window_start, window_end;
"""
ROWS = [
    '{"ts": "2024-05-01T10:00:05Z", "device": "a", "temp": 20}',
    '{"ts": "2024-05-01T10:00:40Z", "device": "a", "temp": 22}',
    '{"ts": "2024-05-01T10:02:10Z", "device": "a", "temp": 30}',
    '{"ts": "2024-05-01T10:00:50Z", "device": "a", "temp": 99}',
    "not json",
]


def _files(tmp_path: Path, program: str = PROGRAM) -> tuple[Path, Path]:
    sql = tmp_path / "prog.sql"
    sql.write_text(program)
    data = tmp_path / "readings.jsonl"
    data.write_text("\n".join(ROWS) + "\n")
    return sql, data


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_run_writes_json_lines_to_stdout_and_errors_to_stderr(tmp_path: Path) -> None:
    sql, data = _files(tmp_path)
    result = CliRunner().invoke(app, ["run", str(sql), "--source", str(data)])
    assert result.exit_code == 0, result.stderr
    rows = _jsonl(result.stdout)
    assert rows == [
        {
            "device": "a",
            "window_start": "2024-05-01T10:00:00Z",
            "window_end": "2024-05-01T10:01:00Z",
            "sum_temp": 42,
            "n": 2,
        },
        {
            "device": "a",
            "window_start": "2024-05-01T10:02:00Z",
            "window_end": "2024-05-01T10:03:00Z",
            "sum_temp": 30,
            "n": 1,
        },
    ]
    errors = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert sorted(e["reason"] for e in errors) == ["decode", "late"]
    assert "5 records in, 2 rows out, 2 error rows (decode: 1, late: 1)" in result.stderr


def test_run_named_source_and_sinks_to_files(tmp_path: Path) -> None:
    sql, data = _files(tmp_path)
    out, errs = tmp_path / "out" / "kpis.parquet", tmp_path / "errors.jsonl"
    result = CliRunner().invoke(
        app, ["run", str(sql), "--source", f"readings={data}", "--sink", f"result={out}", "--errors", str(errs)]
    )
    assert result.exit_code == 0, result.stderr
    assert pq.read_table(out).num_rows == 2
    assert [e["source_offset"] for e in _jsonl(errs.read_text())] == ["readings:3", "readings:4"]


def test_run_reads_stdin_and_strict_stops_at_first_bad_record(tmp_path: Path) -> None:
    sql, _ = _files(tmp_path)
    ok = CliRunner().invoke(app, ["run", str(sql), "--source", "-"], input="\n".join(ROWS[:3]) + "\n")
    assert ok.exit_code == 0, ok.stderr
    assert len(_jsonl(ok.stdout)) == 2
    strict = CliRunner().invoke(app, ["run", str(sql), "--source", "-", "--strict"], input="\n".join(ROWS) + "\n")
    assert strict.exit_code == 1
    assert "readings:3" in strict.stderr and "late" in strict.stderr


def test_run_no_flush_keeps_open_windows(tmp_path: Path) -> None:
    sql, data = _files(tmp_path)
    result = CliRunner().invoke(app, ["run", str(sql), "--source", str(data), "--no-flush"])
    assert result.exit_code == 0, result.stderr
    assert [r["sum_temp"] for r in _jsonl(result.stdout)] == [42]


def test_run_allowed_lateness_emits_a_corrected_row(tmp_path: Path) -> None:
    sql, data = _files(tmp_path)
    result = CliRunner().invoke(app, ["run", str(sql), "--source", str(data), "--allowed-lateness", "2m"])
    assert result.exit_code == 0, result.stderr
    rows = _jsonl(result.stdout)
    first_window = [r for r in rows if r["window_start"] == "2024-05-01T10:00:00Z"]
    assert first_window[-1]["sum_temp"] == 141  # 20 + 22 + the corrected late 99


@pytest.mark.parametrize(
    ("program", "where", "message"),
    [
        ("SELECT x FROM readings;", ":4:8:", 'unknown column "x"'),
        ("SELECT * FROM readngs;", ":4:15:", 'did you mean "readings"?'),
        ("SELEC * FROM readings;", ":4:1:", "unknown statement"),
        ("SELECT device FROM readings WHERE;", ":4:", "WHERE"),
    ],
)
def test_user_mistakes_print_one_line_with_location_and_exit_2(
    tmp_path: Path, program: str, where: str, message: str
) -> None:
    sql, data = _files(tmp_path, PROGRAM.split(";")[0] + ";\n" + program)
    result = CliRunner().invoke(app, ["run", str(sql), "--source", str(data)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{sql}{where}" in lines[0] and message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--batch-interval", "5x"], "--batch-interval"),
        (["--allowed-lateness", "soon"], "--allowed-lateness"),
        (["--sink", "nowhere://x"], "nowhere"),
        (["--source", "a=x.jsonl", "--source", "b=y.jsonl"], "--source"),
        (["--max-record-size", "big"], "--max-record-size"),
    ],
)
def test_bad_options_name_the_option(tmp_path: Path, args: list[str], needle: str) -> None:
    sql, data = _files(tmp_path)
    base = ["run", str(sql)] + ([] if any(a.startswith("--source") for a in args) else ["--source", str(data)])
    result = CliRunner().invoke(app, base + args)
    assert result.exit_code == 2, result.stdout
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_program_and_missing_input_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(tmp_path / "nope.sql")])
    assert result.exit_code == 2 and "no such file" in result.stderr
    sql, _ = _files(tmp_path)
    result = CliRunner().invoke(app, ["run", str(sql), "--source", str(tmp_path / "absent.jsonl")])
    assert result.exit_code == 2 and "absent.jsonl" in result.stderr


def test_check_and_explain(tmp_path: Path) -> None:
    sql, _ = _files(tmp_path)
    check = CliRunner().invoke(app, ["check", str(sql)])
    assert check.exit_code == 0 and "ok" in check.stdout
    explain = CliRunner().invoke(app, ["explain", str(sql)])
    assert explain.exit_code == 0
    assert "tumble size 1m" in explain.stdout and "SELECT" in explain.stdout and "readings" in explain.stdout


def test_undeclared_stream_takes_its_schema_from_the_source(tmp_path: Path) -> None:
    sql = tmp_path / "p.sql"
    sql.write_text("SELECT device, temp * 2 AS double_temp FROM readings WHERE temp > 21;")
    _, data = _files(tmp_path)
    result = CliRunner().invoke(app, ["run", str(sql), "--source", f"readings={data}"])
    assert result.exit_code == 0, result.stderr
    assert [r["double_temp"] for r in _jsonl(result.stdout)] == [44, 60, 198]


@pytest.mark.parametrize("command", ["run", "explain", "check"])
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_console_script_entry_point_runs_demo(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "run",
            str(ROOT / "queries" / "ticker_kpis.sql"),
            "--source",
            "demo:ticker?rows=2000",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = _jsonl(proc.stdout)
    assert rows and {"window_start", "ticker", "trades", "vwap"} <= set(rows[0])


def test_connectors_declared_in_the_program(tmp_path: Path) -> None:
    _, data = _files(tmp_path)
    out = tmp_path / "late_or_not.csv"
    sql = tmp_path / "with.sql"
    sql.write_text(
        f"""
        CREATE TABLE readings (ts TIMESTAMP, device VARCHAR, temp INT,
                               WATERMARK FOR ts AS ts - INTERVAL '30' SECOND)
          WITH ('connector' = 'file', 'path' = '{data}', 'allowed-lateness' = '2m');
        CREATE TABLE hot (device VARCHAR, window_start TIMESTAMP, total BIGINT)
          WITH ('connector' = 'file', 'path' = '{out}', 'format' = 'csv');
        INSERT INTO hot
        SELECT device, window_start, SUM(temp)
        FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
        GROUP BY device, window_start, window_end;
        """
    )
    result = CliRunner().invoke(app, ["run", str(sql)])
    assert result.exit_code == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "device,window_start,total"
    # the table's allowed lateness lets the late 99 count in the first window (the latest row wins)
    latest = {line.rsplit(",", 1)[0]: line.rsplit(",", 1)[1] for line in lines[1:]}
    assert latest == {"a,2024-05-01T10:00:00Z": "141", "a,2024-05-01T10:02:00Z": "30"}


def test_checkpoint_dir_resumes_and_refuses_damage(tmp_path: Path) -> None:
    sql, data = _files(tmp_path)
    ckpt = tmp_path / "ckpt"
    args = [
        "run",
        str(sql),
        "--source",
        str(data),
        "--checkpoint-dir",
        str(ckpt),
        "--errors",
        str(tmp_path / "e.jsonl"),
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.stderr
    assert len(_jsonl(first.stdout)) == 2 and (ckpt / "MANIFEST.json").exists()
    again = CliRunner().invoke(app, args)  # everything was read: nothing new to emit
    assert again.exit_code == 0, again.stderr
    assert _jsonl(again.stdout) == []
    blob = ckpt / json.loads((ckpt / "MANIFEST.json").read_text())["file"]
    blob.write_bytes(blob.read_bytes()[:-3] + b"xyz")
    damaged = CliRunner().invoke(app, args)
    assert damaged.exit_code == 2 and "checksum mismatch" in damaged.stderr


def test_max_ahead_diverts_far_future_rows(tmp_path: Path) -> None:
    sql, data = _files(tmp_path)
    data.write_text(data.read_text() + '{"ts": "2999-01-01T00:00:00Z", "device": "a", "temp": 1}\n')
    errs = tmp_path / "e.jsonl"
    result = CliRunner().invoke(
        app, ["run", str(sql), "--source", str(data), "--errors", str(errs), "--max-ahead", "1d"]
    )
    assert result.exit_code == 0, result.stderr
    assert [r["sum_temp"] for r in _jsonl(result.stdout)] == [42, 30]  # the future row moved nothing
    assert "future" in [e["reason"] for e in _jsonl(errs.read_text())]
