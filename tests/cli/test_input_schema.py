"""--input-schema: a KDA InputSchema file gives a source stream its columns and decoding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[2]
# The AWS demo stream's schema (KDA_SQL.md 7.3) plus a nested field, as describe-application prints it.
DESCRIBE = {
    "ApplicationDetail": {
        "ApplicationName": "demo",
        "InputDescriptions": [
            {
                "InputId": "1.1",
                "NamePrefix": "SOURCE_SQL_STREAM",
                "InAppStreamNames": ["SOURCE_SQL_STREAM_001"],
                "InputSchema": {
                    "RecordFormat": {
                        "RecordFormatType": "JSON",
                        "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}},
                    },
                    "RecordEncoding": "UTF-8",
                    "RecordColumns": [
                        {"Name": "TICKER_SYMBOL", "SqlType": "VARCHAR(4)", "Mapping": "$.TICKER_SYMBOL"},
                        {"Name": "SECTOR", "SqlType": "VARCHAR(16)", "Mapping": "$.SECTOR"},
                        {"Name": "CHANGE", "SqlType": "REAL", "Mapping": "$.CHANGE"},
                        {"Name": "PRICE", "SqlType": "REAL", "Mapping": "$.PRICE"},
                        {"Name": "EXCHANGE", "SqlType": "VARCHAR(8)", "Mapping": "$.venue.exchange"},
                    ],
                },
            }
        ],
    }
}
RECORDS = [
    {"TICKER_SYMBOL": "QXZZY", "SECTOR": "HEALTHCARE", "CHANGE": -0.5, "PRICE": 84.5, "venue": {"exchange": "NYSE"}},
    {"TICKER_SYMBOL": "AMZN", "SECTOR": "RETAIL", "CHANGE": 1, "PRICE": "abc"},
    {"TICKER_SYMBOL": "TGT", "SECTOR": "RETAIL", "CHANGE": True, "PRICE": 12.25},
]
PROGRAM = "SELECT TICKER_SYMBOL, EXCHANGE, CHANGE, PRICE FROM SOURCE_SQL_STREAM_001 WHERE PRICE > 10;\n"


def _files(tmp_path: Path, schema: object = DESCRIBE) -> tuple[Path, Path, Path]:
    sql = tmp_path / "app.sql"
    sql.write_text(PROGRAM)
    data = tmp_path / "trades.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    schema_file = tmp_path / "input-schema.json"
    schema_file.write_text(json.dumps(schema))
    return sql, data, schema_file


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_run_decodes_a_file_source_by_its_input_schema(tmp_path: Path) -> None:
    sql, data, schema = _files(tmp_path)
    errors = tmp_path / "errors.jsonl"
    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "run", str(sql), "--source", str(data)]
        + ["--input-schema", str(schema), "--errors", str(errors)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert _jsonl(result.stdout) == [
        {"TICKER_SYMBOL": "QXZZ", "EXCHANGE": "NYSE", "CHANGE": -0.5, "PRICE": 84.5},
        {"TICKER_SYMBOL": "TGT", "EXCHANGE": None, "CHANGE": 1.0, "PRICE": 12.25},
    ]
    (error,) = _jsonl(errors.read_text())
    assert (error["reason"], error["source_offset"]) == ("type", "SOURCE_SQL_STREAM_001:1")
    assert error["message"] == 'column "PRICE": "abc" is not a REAL'


def test_named_input_schema_and_check_and_explain(tmp_path: Path) -> None:
    sql, data, schema = _files(tmp_path)
    named = ["--source", f"SOURCE_SQL_STREAM_001={data}", "--input-schema", f"SOURCE_SQL_STREAM_001={schema}"]
    result = CliRunner().invoke(app, ["run", str(sql), *named])
    assert result.exit_code == 0, result.stderr
    assert [r["TICKER_SYMBOL"] for r in _jsonl(result.stdout)] == ["QXZZ", "TGT"]
    check = CliRunner().invoke(app, ["check", str(sql), *named])
    assert check.exit_code == 0, check.stderr
    explain = CliRunner().invoke(app, ["explain", str(sql), *named])
    assert explain.exit_code == 0, explain.stderr
    assert "EXCHANGE" in explain.stdout


def test_bad_input_schema_file_is_a_one_line_error(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(DESCRIBE))
    bad["ApplicationDetail"]["InputDescriptions"][0]["InputSchema"]["RecordColumns"][3]["SqlType"] = "REALL"
    sql, data, schema = _files(tmp_path, bad)
    result = CliRunner().invoke(app, ["run", str(sql), "--source", str(data), "--input-schema", str(schema)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --input-schema: {schema}: column PRICE: unknown SqlType 'REALL'"
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = CliRunner().invoke(app, ["check", str(sql), "--source", str(data), "--input-schema", str(broken)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --input-schema: {broken}: not valid JSON")
    assert len(result.stderr.strip().splitlines()) == 1


def test_input_schema_for_an_unknown_or_declared_stream_is_an_error(tmp_path: Path) -> None:
    sql, data, schema = _files(tmp_path)
    source = f"SOURCE_SQL_STREAM_001={data}"
    result = CliRunner().invoke(app, ["check", str(sql), "--source", source, "--input-schema", f"TRADES={schema}"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --input-schema: 'trades' has no --source of that name (sources: source_sql_stream_001)"
    )
    plain = tmp_path / "plain.sql"
    plain.write_text("SELECT TICKER_SYMBOL FROM SOURCE_SQL_STREAM_001;\n")
    result = CliRunner().invoke(app, ["check", str(plain), "--source", str(data), "--input-schema", f"TRADES={schema}"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --input-schema: 'trades' is not a source stream of this program with a --source "
        "(it reads SOURCE_SQL_STREAM_001)"
    )
    declared = tmp_path / "declared.sql"
    declared.write_text("CREATE TABLE t (TICKER_SYMBOL VARCHAR, PRICE REAL);\nSELECT * FROM t;\n")
    result = CliRunner().invoke(app, ["check", str(declared), "--source", f"t={data}", "--input-schema", f"t={schema}"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --input-schema: t is declared in the program; "
        "an input schema is for a source stream it does not declare"
    )
