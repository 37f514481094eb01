"""KDA SQL programs on the command line: the demo stream, --rowtime-from, error_stream, outputs."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli import app

TUMBLING = """
CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (ticker_symbol VARCHAR(4), trade_count INTEGER, avg_price DOUBLE);
CREATE OR REPLACE PUMP "STREAM_PUMP" AS INSERT INTO "DESTINATION_SQL_STREAM"
SELECT STREAM ticker_symbol, COUNT(*), AVG(price)
FROM "SOURCE_SQL_STREAM_001"
GROUP BY ticker_symbol, STEP("SOURCE_SQL_STREAM_001".ROWTIME BY INTERVAL '10' SECOND);
"""

CHAINED = """
CREATE OR REPLACE STREAM "CLEAN" (sym VARCHAR(8), price DOUBLE, qty INTEGER);
CREATE OR REPLACE STREAM "RATIO" (sym VARCHAR(8), per_unit DOUBLE);
CREATE OR REPLACE PUMP "CLEAN_PUMP" AS INSERT INTO "CLEAN"
  SELECT STREAM sym, price, qty FROM "SOURCE_SQL_STREAM_001" WHERE price > 0;
CREATE OR REPLACE PUMP "RATIO_PUMP" AS INSERT INTO "RATIO"
  SELECT STREAM sym, price / qty FROM "CLEAN";
CREATE OR REPLACE PUMP "IDLE_PUMP" STOPPED AS INSERT INTO "RATIO"
  SELECT STREAM sym, price FROM "CLEAN";
"""


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def test_demo_stream_runs_a_kda_application(tmp_path: Path) -> None:
    sql = tmp_path / "app.sql"
    sql.write_text(TUMBLING)
    result = CliRunner().invoke(app, ["run", str(sql), "--source", "demo:ticker?rows=3000"])
    assert result.exit_code == 0, result.output
    rows = _lines(result.stdout)
    # 3000 events at 100 per simulated second: ROWTIME (the simulated arrival) spans 30 s, 3 windows
    assert sum(r["TRADE_COUNT"] for r in rows) == 3000
    assert set(rows[0]) == {"TICKER_SYMBOL", "TRADE_COUNT", "AVG_PRICE"}  # upper case, no ROWTIME
    assert len(rows) == 3 * len({r["TICKER_SYMBOL"] for r in rows})


def test_rowtime_from_a_field_and_kda_error_stream(tmp_path: Path) -> None:
    sql = tmp_path / "chain.sql"
    sql.write_text(CHAINED)
    data = tmp_path / "trades.jsonl"
    data.write_text(
        "\n".join(
            [
                '{"ts": "2024-05-01T10:00:01Z", "sym": "A", "price": 10.0, "qty": 2}',
                '{"ts": "2024-05-01T10:00:02Z", "sym": "B", "price": 6.0, "qty": 0}',
                "not json",
                '{"sym": "C", "price": 3.0, "qty": 1}',
                '{"ts": "2024-05-01T10:00:04Z", "sym": "D", "price": -1.0, "qty": 1}',
            ]
        )
        + "\n"
    )
    out, errors = tmp_path / "ratio.jsonl", tmp_path / "errors.jsonl"
    args = ["run", str(sql), "--source", str(data), "--rowtime-from", "ts"]
    args += ["--sink", f"RATIO={out}", "--sink", f"error_stream={errors}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # CLEAN is read by another pump, so it is written only when named; the STOPPED pump never ran
    assert _lines(out.read_text()) == [{"SYM": "A", "PER_UNIT": 5.0}]
    errs = _lines(errors.read_text())
    assert [e["REASON"] for e in errs] == ["eval", "decode", "missing_time"]
    assert set(errs[0]) == {
        "ERROR_TIME",
        "ERROR_LEVEL",
        "ERROR_NAME",
        "MESSAGE",
        "DATA_ROWTIME",
        "DATA_ROW",
        "PUMP_NAME",
        "REASON",
        "SOURCE_OFFSET",
    }
    assert errs[0]["PUMP_NAME"] == "RATIO_PUMP"  # the division by zero happened in that pump's query
    assert bytes.fromhex(errs[1]["DATA_ROW"]) == b"not json"
    assert errs[2]["SOURCE_OFFSET"].endswith(":3")


def test_intermediate_stream_is_written_when_named(tmp_path: Path) -> None:
    sql = tmp_path / "chain.sql"
    sql.write_text(CHAINED)
    data = tmp_path / "trades.jsonl"
    data.write_text('{"ts": "2024-05-01T10:00:01Z", "sym": "A", "price": 10.0, "qty": 2}\n')
    clean = tmp_path / "clean.jsonl"
    result = CliRunner().invoke(
        app, ["run", str(sql), "--source", str(data), "--rowtime-from", "ts", "--sink", f"CLEAN={clean}"]
    )
    assert result.exit_code == 0, result.output
    assert _lines(clean.read_text()) == [{"SYM": "A", "PRICE": 10.0, "QTY": 2}]
    assert _lines(result.stdout) == [{"SYM": "A", "PER_UNIT": 5.0}]  # RATIO, unnamed: stdout


def test_rowtime_from_mistakes_are_one_line(tmp_path: Path) -> None:
    sql = tmp_path / "app.sql"
    sql.write_text(TUMBLING)
    data = tmp_path / "t.jsonl"
    data.write_text('{"ts": "2024-05-01T10:00:01Z", "ticker_symbol": "A", "price": 1}\n')
    bad = CliRunner().invoke(app, ["run", str(sql), "--source", str(data), "--rowtime-from", "NOPE=ts"])
    assert bad.exit_code != 0
    assert "--rowtime-from" in bad.output and "'NOPE' is not an input stream" in bad.output
    flink = tmp_path / "flink.sql"
    flink.write_text("CREATE TABLE t (ts TIMESTAMP, x INT); SELECT x FROM t;")
    bad = CliRunner().invoke(app, ["run", str(flink), "--source", str(data), "--rowtime-from", "ts"])
    assert bad.exit_code != 0 and "only KDA programs" in bad.output
    both = CliRunner().invoke(
        app,
        ["run", str(sql), "--source", str(data), "--errors", "-", "--sink", f"error_stream={tmp_path / 'e.jsonl'}"],
    )
    assert both.exit_code != 0 and "either --errors or --sink error_stream" in both.output


def test_kda_program_mistakes_name_their_position(tmp_path: Path) -> None:
    sql = tmp_path / "bad.sql"
    sql.write_text(
        'CREATE OR REPLACE STREAM "D" (a INTEGER);\n'
        'CREATE OR REPLACE PUMP "P" AS INSERT INTO "D"\n'
        "SELECT STREAM a, COUNT(*) FROM s\n"
        "GROUP BY a, STEP(s.ROWTIME BY INTERVAL '1' MINUTE), FLOOR(s.ROWTIME TO HOUR);\n"
    )
    data = tmp_path / "s.jsonl"
    data.write_text('{"a": 1}\n')
    result = CliRunner().invoke(app, ["check", str(sql), "--source", f"S={data}"])
    assert result.exit_code != 0
    assert f"{sql}:4:53" in result.output and "only one ROWTIME expression" in result.output


def test_two_sources_join_as_streams_when_windowed(tmp_path: Path) -> None:
    """A --source that the program joins inside a windowed join is a stream, not reference data."""
    sql = tmp_path / "join.sql"
    sql.write_text(
        'CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (order_id INTEGER, trade_id INTEGER);\n'
        'CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM"\n'
        "SELECT STREAM o.order_id, t.trade_id\n"
        "FROM \"ORDERS\" OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS o\n"
        "JOIN \"TRADES\" OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS t ON o.order_id = t.order_id;\n"
    )
    orders, trades = tmp_path / "orders.jsonl", tmp_path / "trades.jsonl"
    orders.write_text('{"T": "2024-05-01T10:00:00Z", "ORDER_ID": 1}\n{"T": "2024-05-01T10:00:30Z", "ORDER_ID": 2}\n')
    trades.write_text('{"T": "2024-05-01T10:00:10Z", "ORDER_ID": 1, "TRADE_ID": 7}\n')
    args = ["run", str(sql), "--source", f"ORDERS={orders}", "--source", f"TRADES={trades}"]
    result = CliRunner().invoke(app, [*args, "--rowtime-from", "T"])
    assert result.exit_code == 0, result.output
    assert _lines(result.stdout) == [{"ORDER_ID": 1, "TRADE_ID": 7}]
