"""``duckstream repl``, driven through a real pseudo-terminal (pexpect) and as a script (``-e``, ``-f``, stdin)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from engine.repl import is_complete, split_statements

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "demo:ticker?rows=500"
PROMPT = "duckstream>"
ANSI = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"  # rich and prompt_toolkit put styles between words
VIEW = "CREATE VIEW v AS SELECT TICKER_SYMBOL, PRICE, EVENT_TIME"
WINDOWED = (
    "SELECT window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE v, DESCRIPTOR(EVENT_TIME), INTERVAL '1' SECOND)) "
    "GROUP BY window_start, window_end;"
)


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(
        os.environ,
        DUCKSTREAM_HISTORY=str(tmp_path / "history"),
        PROMPT_TOOLKIT_NO_CPR="1",
        TERM="xterm",
        NO_COLOR="1",
        COLUMNS="120",
        LINES="40",
    )


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[pexpect.spawn]:
    child = pexpect.spawn(
        sys.executable,
        ["cli.py", "repl", "--source", SOURCE, "--source", "live=demo:ticker"],
        cwd=str(ROOT),
        env=_env(tmp_path),
        encoding="utf-8",
        timeout=15,
        dimensions=(40, 120),
    )
    child.expect(PROMPT)
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_live_query_errors_modes_and_catalog_in_a_terminal(shell: pexpect.spawn, tmp_path: Path) -> None:
    shell.sendline(VIEW)  # no ';' yet: the statement goes on
    shell.expect("->")
    shell.sendline("FROM SOURCE_SQL_STREAM_001;")
    shell.expect("v defined")
    shell.expect(PROMPT)

    shell.sendline(WINDOWED)
    shell.expect(r"2024-05-01T10:00:00Z" + ANSI + r"\s*" + ANSI + r"│" + ANSI + r"\s*91")  # the first window
    shell.expect(r"done")  # the status line of the last frame stays on screen
    shell.expect(PROMPT)

    shell.sendline("SELECT nope FROM v;")
    shell.expect(r"error:" + ANSI + r" input:1:8: unknown column \"nope\"")
    shell.expect(PROMPT)  # the shell goes on
    shell.sendline("SELEC 1;")
    shell.expect(r"error:" + ANSI + r" input:1:1")
    shell.expect(PROMPT)

    shell.sendline(".mode json")
    shell.expect(PROMPT)
    shell.sendline(WINDOWED)
    shell.expect(re.escape('{"window_start":"2024-05-01T10:00:00Z","n":91}'))
    shell.expect(PROMPT)

    shell.sendline("SHOW STREAMS;")
    shell.expect(r"SOURCE_SQL_STREAM_001" + ANSI + r"\s+" + ANSI + "source")
    shell.expect(PROMPT)
    shell.sendline("DESCRIBE v;")
    shell.expect(r"PRICE" + ANSI + r"\s+" + ANSI + r"DOUBLE")
    shell.expect(PROMPT)
    shell.sendline(".errors 1")
    shell.expect('"ERROR_NAME":"Late_Row"')  # the demo stream has late rows: one command away, in KDA's columns
    shell.expect(PROMPT)
    shell.sendline("SELECT ERROR_NAME, REASON FROM error_stream WHERE REASON = 'late';")  # or a query
    shell.expect(re.escape('{"ERROR_NAME":"Late_Row","REASON":"late"}'))
    shell.expect(r"done")  # no pump runs: error_stream ends after the rows it keeps
    shell.expect(PROMPT)

    shell.sendline(".quit")
    shell.expect(pexpect.EOF)
    shell.close()
    assert shell.exitstatus == 0
    history = (tmp_path / "history").read_text(encoding="utf-8")
    assert "SELECT nope FROM v;" in history and "FROM SOURCE_SQL_STREAM_001;" in history


def test_ctrl_c_stops_the_live_query_not_the_shell(shell: pexpect.spawn) -> None:
    shell.sendline("SELECT TICKER_SYMBOL, PRICE FROM live WHERE PRICE > 100;")  # an unbounded source
    shell.expect(r"running")
    shell.sendintr()
    shell.expect(r"stopped")
    shell.expect(PROMPT)
    shell.sendline(
        "SELECT COUNT(*) AS n FROM TABLE(TUMBLE(TABLE SOURCE_SQL_STREAM_001, DESCRIPTOR(EVENT_TIME), "
        "INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;"
    )
    shell.expect(r"500")  # the shell still runs queries
    shell.expect(PROMPT)
    shell.sendintr()  # Ctrl-C at the prompt clears the line, the shell stays
    shell.sendline("SHOW STREAMS;")  # answered only once the prompt is back (no race with the redraw)
    shell.expect(r"SOURCE_SQL_STREAM_001")
    shell.expect(PROMPT)
    shell.sendeof()
    shell.expect(pexpect.EOF)


def _run(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = _env(tmp_path)
    return subprocess.run(
        [sys.executable, "cli.py", "repl", "--source", SOURCE, *args],
        cwd=str(ROOT),
        env=env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_execute_prints_rows_and_exits(tmp_path: Path) -> None:
    sql = (
        ".mode json\nSELECT window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE SOURCE_SQL_STREAM_001, "
        "DESCRIPTOR(EVENT_TIME), INTERVAL '1' SECOND)) GROUP BY window_start, window_end;"
    )
    proc = _run(tmp_path, "-e", sql)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 5 and rows[0] == {"window_start": "2024-05-01T10:00:00Z", "n": 91}
    assert "500 records in" in proc.stderr


def test_script_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    program = tmp_path / "s.sql"
    program.write_text(
        "-- a script\nSHOW STREAMS;\n\nSELECT nope\n  FROM SOURCE_SQL_STREAM_001;\nDESCRIBE SOURCE_SQL_STREAM_001;\n",
        encoding="utf-8",
    )
    proc = _run(tmp_path, "-f", str(program))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f'error: {program}:4:8: unknown column "nope" (SOURCE_SQL_STREAM_001 has TICKER_SYMBOL, '
        "SECTOR, CHANGE, PRICE, VOLUME, EVENT_TIME, ROWTIME, APPROXIMATE_ARRIVAL_TIME)"
    ]
    assert "EVENT_TIME" in proc.stdout and "TIMESTAMP" in proc.stdout  # the statements after the error ran


def test_piped_stdin_is_a_script(tmp_path: Path) -> None:
    proc = _run(tmp_path, stdin=".mode csv\nSELECT TICKER_SYMBOL FROM SOURCE_SQL_STREAM_001 WHERE VOLUME > 2000;\n")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "TICKER_SYMBOL" and len(lines) > 1


def test_drop_needs_confirmation_in_scripts(tmp_path: Path) -> None:
    sql = "CREATE VIEW v AS SELECT PRICE FROM SOURCE_SQL_STREAM_001; DROP VIEW v; SHOW STREAMS;"
    refused = _run(tmp_path, "-e", sql)
    assert refused.returncode == 2 and "needs confirmation" in refused.stderr
    dropped = _run(tmp_path, "-y", "-e", sql)
    assert dropped.returncode == 0 and "v dropped" in dropped.stdout


def test_statements_split_at_semicolons_outside_quotes_and_comments() -> None:
    text = "SELECT ';' AS a; -- c; d\n.mode json\nSELECT /* ; */ 1\nFROM t;\nSELECT 2"
    statements, rest = split_statements(text)
    assert statements == [(1, "SELECT ';' AS a;"), (2, ".mode json"), (3, "SELECT /* ; */ 1\nFROM t;")]
    assert rest.strip() == "SELECT 2"
    assert is_complete("SELECT 1;") and is_complete(".mode csv") and is_complete("  ")
    assert not is_complete("SELECT 1") and not is_complete("SELECT ';'") and not is_complete("SELECT 1; SELECT")


def test_insert_into_a_table_with_a_connector_is_a_background_pump(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sql = (
        f"CREATE TABLE big (t VARCHAR, p DOUBLE) WITH ('connector' = 'file', 'path' = '{out}', 'format' = 'json');\n"
        "INSERT INTO big SELECT TICKER_SYMBOL, PRICE FROM SOURCE_SQL_STREAM_001 WHERE PRICE > 300;\n"
        "SHOW QUERIES;"
    )
    proc = _run(tmp_path, "-e", sql)
    assert proc.returncode == 0, proc.stderr
    assert "pump BIG started" in proc.stdout and ("RUNNING" in proc.stdout or "FINISHED" in proc.stdout)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and all(r["p"] > 300 for r in rows)  # the script waited for the pump to finish its input


def test_drop_asks_and_tab_completes_columns(shell: pexpect.spawn) -> None:
    shell.sendline("CREATE VIEW w AS SELECT PRICE FROM SOURCE_SQL_STREAM_001;")
    shell.expect("w defined")
    shell.expect(PROMPT)
    shell.sendline("DROP VIEW w;")
    shell.expect(r"drop w\?")
    shell.send("n")
    shell.expect("cancelled")
    shell.expect(PROMPT)
    shell.sendline("DROP VIEW w;")
    shell.expect(r"drop w\?")
    shell.send("y")
    shell.expect("w dropped")
    shell.expect(PROMPT)
    shell.sendline(".mode csv")
    shell.expect(PROMPT)
    shell.send("SELECT TICKER_SY\t")  # a column of the discovered source
    shell.sendline(" FROM SOURCE_SQL_STREAM_001 WHERE VOLUME > 2000;")
    shell.expect(r"TICKER_SYMBOL\r\n[A-Z]{2,4}\r\n")  # the CSV header and a row: the name was completed
    shell.expect(PROMPT)
    shell.sendline(".quit")
    shell.expect(pexpect.EOF)


DEST = "CREATE OR REPLACE STREAM DEST (ticker_symbol VARCHAR(4), n INTEGER);"
PUMP = (
    "CREATE OR REPLACE PUMP P AS INSERT INTO DEST SELECT STREAM ticker_symbol, COUNT(*) FROM SOURCE_SQL_STREAM_001 "
    "GROUP BY ticker_symbol, STEP(SOURCE_SQL_STREAM_001.ROWTIME BY INTERVAL '10' SECOND);"
)


def _spawn(tmp_path: Path, *sources: str) -> pexpect.spawn:
    args = ["cli.py", "repl"]
    for source in sources:
        args += ["--source", source]
    child = pexpect.spawn(
        sys.executable, args, cwd=str(ROOT), env=_env(tmp_path), encoding="utf-8", timeout=20, dimensions=(40, 120)
    )
    child.expect(PROMPT)
    return child


def test_rowtime_pumps_in_the_background_and_live_in_app_streams(tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(f'{{"sym": "S{i}", "price": {i}}}\n' for i in range(30)), encoding="utf-8")
    shell = _spawn(tmp_path, SOURCE, f"feed=file:{feed}?follow=true")
    try:
        shell.sendline(".mode json")
        shell.expect(PROMPT)
        # ROWTIME on the unnamed source: a window table function over it, and KDA SQL
        shell.sendline(
            "SELECT window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE SOURCE_SQL_STREAM_001, DESCRIPTOR(ROWTIME), "
            "INTERVAL '10' SECOND)) GROUP BY window_start, window_end;"
        )
        shell.expect(re.escape('{"window_start":"2024-05-01T10:00:00Z","n":500}'))
        shell.expect(PROMPT)
        shell.sendline(DEST)
        shell.expect("DEST defined")
        shell.expect(PROMPT)
        shell.sendline(PUMP)
        shell.expect("pump P started")
        shell.expect(PROMPT)
        shell.sendline("SELECT STREAM * FROM DEST WHERE N > 60;")  # what the pump wrote (kept), then live ones
        shell.expect(re.escape('{"TICKER_SYMBOL":"AAPL","N":66}'))
        shell.expect(PROMPT)

        # a pump over an input that does not end keeps RUNNING; its stream is queried live
        shell.sendline("CREATE STREAM HOT (sym VARCHAR(8), price DOUBLE);")
        shell.expect("HOT defined")
        shell.expect(PROMPT)
        shell.sendline("CREATE PUMP HOT_PUMP AS INSERT INTO HOT")
        shell.sendline("  SELECT STREAM sym, price * 10 FROM feed WHERE price > 20;")
        shell.expect("pump HOT_PUMP started")
        shell.expect(PROMPT)
        shell.sendline("SHOW PUMPS;")
        shell.expect(r"HOT_PUMP" + ANSI + r"\s+" + ANSI + "RUNNING")
        shell.expect(PROMPT)
        shell.sendline(".mode table")
        shell.expect(PROMPT)
        shell.sendline("SELECT STREAM * FROM HOT;")
        shell.expect(r"S29\s*" + ANSI + r"│" + ANSI + r"\s*290")  # a row the pump wrote before the query
        shell.expect("running")
        with feed.open("a", encoding="utf-8") as f:
            f.write('{"sym": "NEW", "price": 77}\n')
        shell.expect(r"NEW\s*" + ANSI + r"│" + ANSI + r"\s*770")  # written after: it arrives live
        shell.sendintr()
        shell.expect("stopped")
        shell.expect(PROMPT)
        shell.sendline("STOP PUMP HOT_PUMP;")
        shell.expect(r"stop pump HOT_PUMP\?")
        shell.send("y")
        shell.expect("HOT_PUMP stopped")
        shell.expect(PROMPT)
        shell.sendline("SHOW PUMPS;")
        shell.expect(r"HOT_PUMP" + ANSI + r"\s+" + ANSI + "STOPPED")
        shell.expect(PROMPT)
        shell.sendline("CREATE PUMP HOT_PUMP AS INSERT INTO HOT SELECT STREAM sym, price FROM feed;")
        shell.expect(r"error:" + ANSI + r" input:1:1: pump HOT_PUMP exists")  # one line, the shell goes on
        shell.expect(PROMPT)
        shell.sendline("DROP PUMP HOT_PUMP;")
        shell.expect(r"drop pump HOT_PUMP\?")
        shell.send("y")
        shell.expect("HOT_PUMP dropped")
        shell.expect(PROMPT)
        shell.sendline(".quit")
        shell.expect(pexpect.EOF)
    finally:
        if shell.isalive():
            shell.terminate(force=True)


def test_chart_draws_a_query_column_by_key_live(shell: pexpect.spawn) -> None:
    shell.sendline(".chart avg_price BY TICKER_SYMBOL")
    shell.expect("the next query draws avg_price by TICKER_SYMBOL")
    shell.expect(PROMPT)
    shell.sendline(
        "SELECT window_start, TICKER_SYMBOL, AVG(PRICE) AS avg_price FROM TABLE(TUMBLE(TABLE SOURCE_SQL_STREAM_001, "
        "DESCRIPTOR(EVENT_TIME), INTERVAL '1' SECOND)) GROUP BY window_start, window_end, TICKER_SYMBOL;"
    )
    shell.expect("avg_price by TICKER_SYMBOL")  # the title
    shell.expect(r"\d[\d.]* ┤")  # a y-axis label
    shell.expect(r"└─+")  # the x axis
    shell.expect(r"10:00:00\s+10:00:04")  # its first and last window_start
    shell.expect(r"window_start \(UTC, 2024-05-01\)")
    shell.expect(r"━━ " + ANSI + r"[A-Z]{2,4}" + ANSI + r"\s+" + ANSI + r"━━ ")  # the legend: a series per ticker
    shell.expect(r"chart: the first 5 of \d+ series")  # the status line says some were left out
    shell.expect(PROMPT)
    shell.sendline(".chart n")  # an unbounded query: Ctrl-C stops it, the last frame stays
    shell.expect(PROMPT)
    shell.sendline(
        "SELECT window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE live, DESCRIPTOR(EVENT_TIME), "
        "INTERVAL '1' SECOND)) GROUP BY window_start, window_end;"
    )
    shell.expect(r"━━ " + ANSI + "n")
    shell.expect("running")
    shell.sendintr()
    shell.expect("stopped")
    shell.expect(PROMPT)
    shell.sendline(".chart nope")
    shell.expect(PROMPT)
    shell.sendline("SELECT PRICE FROM SOURCE_SQL_STREAM_001;")
    shell.expect(r"error:" + ANSI + r' .chart: the query has no column "nope"')
    shell.expect(PROMPT)
    shell.sendline(".quit")
    shell.expect(pexpect.EOF)


def test_changes_mode_shows_each_change_with_its_op(shell: pexpect.spawn) -> None:
    shell.sendline(".mode changes")
    shell.expect(PROMPT)
    shell.sendline("SELECT TICKER_SYMBOL, COUNT(*) AS n FROM live GROUP BY TICKER_SYMBOL EMIT CHANGES;")
    shell.expect(r"│" + ANSI + r" U " + ANSI + r"\s*│" + ANSI + r" [A-Z]{2,4}")  # an update of a running count
    shell.expect(r"changes \+ [\d,]+ U [\d,]+")
    shell.sendintr()
    shell.expect("stopped")
    shell.expect(PROMPT)
    shell.sendline(
        "SELECT window_start, COUNT(*) AS n FROM TABLE(TUMBLE(TABLE SOURCE_SQL_STREAM_001, DESCRIPTOR(EVENT_TIME), "
        "INTERVAL '1' SECOND)) GROUP BY window_start, window_end;"
    )
    shell.expect(r"│" + ANSI + r" \+ " + ANSI + r"\s*│" + ANSI + r" 2024-05-01T10:00:00Z")  # final rows are inserts
    shell.expect(PROMPT)
    shell.sendline(".quit")
    shell.expect(pexpect.EOF)


def test_tab_completes_by_context(shell: pexpect.spawn) -> None:
    shell.send("DESCRIBE li\t")  # after DESCRIBE only streams: "li" is live, not LIKE or LIMIT
    shell.sendline(";")
    shell.expect(r"TICKER_SYMBOL" + ANSI + r"\s+" + ANSI + "VARCHAR")
    shell.expect(PROMPT)
    shell.sendline(".mode csv")
    shell.expect(PROMPT)
    shell.send("SELECT s.TICKER_SYMBOL FROM SOURCE_SQL_STREAM_001 AS s WHERE s.E\t")  # s's columns: EVENT_TIME
    shell.sendline(" IS NOT NULL AND s.VOLUME > 2000;")
    shell.expect(r"TICKER_SYMBOL\r\n[A-Z]{2,4}\r\n")  # it ran: the names were completed
    shell.expect(PROMPT)
    shell.sendline(".quit")
    shell.expect(pexpect.EOF)
