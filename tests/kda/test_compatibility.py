# ruff: noqa: E501  (the snippets are SQL and rows that read best one to a line)
"""The KDA checklist in docs/kda-compatibility.md, tested row by row.

Every row marked ``supported`` (and every ``partial`` row that has one) runs its snippet below: a
small KDA program, its input, and the rows (or the error) KDA would give. A supported row without
a snippet fails, so does a snippet whose result changes; a row marked ``not yet`` whose snippet is
kept here must still fail the way the notes say (so a fix shows up as a failing test that asks for
the row to be promoted).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli import app
from engine.casefile import diff_rows, parse_case, run_case
from engine.errors import DuckstreamError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "kda-compatibility.md"
SRC = '"SOURCE_SQL_STREAM_001"'
ONE_MINUTE = "STEP(s.ROWTIME BY INTERVAL '1' MINUTE)"


def _checklist() -> dict[int, str]:
    """Row number -> status, from the checklist table of the doc."""
    rows: dict[int, str] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not re.match(r"^\| \d+ \|", line):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[int(cells[0])] = cells[3]
    return rows


@dataclass
class Snippet:
    """A program, its input rows (by stream), and what it must give."""

    sql: str
    rows: list[dict[str, Any]] | dict[str, list[Any]]
    expect: dict[str, list[dict[str, Any]]] | None = None  # output name -> rows
    error: str | None = None  # the program is rejected with this text
    errors: list[dict[str, Any]] = field(default_factory=list)  # error rows (keys compared)
    options: str = "rowtime-from=ts"
    files: dict[str, str] = field(default_factory=dict)  # files beside the case (input schemas)
    cli: list[str] | None = None  # run with `duckstream run` instead, files in a temp dir
    ordered: bool = False  # the output's order matters (streaming ORDER BY)


T = [
    {"ts": "2024-05-01T10:00:01Z", "TICKER_SYMBOL": "AMZN", "SECTOR": "TECHNOLOGY", "CHANGE": 1.0, "PRICE": 100.0},
    {"ts": "2024-05-01T10:00:04Z", "TICKER_SYMBOL": "TGT", "SECTOR": "RETAIL", "CHANGE": -0.5, "PRICE": 50.0},
    {"ts": "2024-05-01T10:00:09Z", "TICKER_SYMBOL": "AMZN", "SECTOR": "TECHNOLOGY", "CHANGE": 2.0, "PRICE": 102.0},
    {"ts": "2024-05-01T10:01:09Z", "TICKER_SYMBOL": "AMZN", "SECTOR": "TECHNOLOGY", "CHANGE": -1.0, "PRICE": 101.0},
]
ORDERS = [
    {"ts": "2024-05-01T10:00:00Z", "oid": 1, "sym": "AMZN"},
    {"ts": "2024-05-01T10:00:05Z", "oid": 2, "sym": "TGT"},
    {"ts": "2024-05-01T10:00:08Z", "oid": 3, "sym": "WMT"},
]
ONE = [{**T[2], "ts": "2024-05-01T10:00:09.250Z", "v": None, "ref": "http://www.example.com/a"}]
LOG = '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'
DEST = 'CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (sym VARCHAR(4), price DOUBLE);\n'
SYM_PRICE = [{"SYM": r["TICKER_SYMBOL"], "PRICE": r["PRICE"]} for r in T]
ALL_SYMS = [{"TICKER_SYMBOL": r["TICKER_SYMBOL"]} for r in T]


def pump(
    select: str, target: str = "DESTINATION_SQL_STREAM", name: str = "P", create: str = "CREATE OR REPLACE"
) -> str:
    return f'{create} PUMP "{name}" AS INSERT INTO "{target}" {select};\n'


def out(*rows: dict[str, Any], name: str = "result") -> dict[str, list[dict[str, Any]]]:
    return {name: list(rows)}


def dest(*rows: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return out(*rows, name="DESTINATION_SQL_STREAM")


def single(sql_items: str, **expected: Any) -> Snippet:
    """One row through ``SELECT STREAM <items>``: expected column values (upper-case names)."""
    return Snippet(f"SELECT STREAM {sql_items} FROM {SRC} AS s;", ONE, out(expected))


CSV_SCHEMA = json.dumps(
    {
        "InputSchema": {
            "RecordFormat": {
                "RecordFormatType": "CSV",
                "MappingParameters": {
                    "CSVMappingParameters": {"RecordColumnDelimiter": ";", "RecordRowDelimiter": "\n"}
                },
            },
            "RecordEncoding": "UTF-8",
            "RecordColumns": [
                {"Name": "TS", "SqlType": "TIMESTAMP"},
                {"Name": "SYM", "SqlType": "VARCHAR(4)"},
                {"Name": "PRICE", "SqlType": "DOUBLE"},
            ],
        }
    }
)
NESTED_SCHEMA = json.dumps(
    {
        "InputSchema": {
            "RecordFormat": {
                "RecordFormatType": "JSON",
                "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}},
            },
            "RecordEncoding": "UTF-8",
            "RecordColumns": [
                {"Name": "TS", "SqlType": "TIMESTAMP", "Mapping": "$.at"},
                {"Name": "CITY", "SqlType": "VARCHAR(3)", "Mapping": "$.order.ship_to.city"},
                {"Name": "QTY", "SqlType": "INTEGER", "Mapping": "$.order.qty"},
                {"Name": "SKU", "SqlType": "VARCHAR(8)", "Mapping": "$.order.lines[0:].sku"},
            ],
        }
    }
)
NESTED_ROWS = [
    {
        "at": "2024-05-01T10:00:01Z",
        "order": {"ship_to": {"city": "Paris"}, "qty": "3", "lines": [{"sku": "A"}, {"sku": "B"}]},
    },
    {"at": "2024-05-01T10:00:02Z", "order": {"ship_to": {"city": "Rome"}, "qty": 2.5, "lines": [{"sku": "C"}]}},
    {"at": "2024-05-01 10:00:03.0", "order": {"ship_to": {"city": "Oslo"}, "qty": 1, "lines": []}},
]
NESTED_SQL = f"SELECT STREAM city, qty, sku FROM {SRC};"
REF_SQL = (
    'CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (sym VARCHAR(4), price DOUBLE, sector_name VARCHAR(32));\n'
    + pump(
        f'SELECT STREAM s.ticker_symbol, 100 / s.price, c."name" FROM {SRC} AS s LEFT JOIN "Sectors" AS c ON s.sector = c."code"'
    )
)
REF_FILES = {
    "in.jsonl": '{"ts":"2024-05-01T10:00:01Z","TICKER_SYMBOL":"AMZN","SECTOR":"T","PRICE":100}\n'
    '{"ts":"2024-05-01T10:00:02Z","TICKER_SYMBOL":"X","SECTOR":"Z","PRICE":0}\n'
    '{"ts":"2024-05-01T10:00:03Z","TICKER_SYMBOL":"Y","SECTOR":"Q","PRICE":50}\n',
    "sectors.csv": "code,name\nT,Technology\n",
}
REF_ARGS = ["--source", "in.jsonl", "--rowtime-from", "ts", "--reference", "Sectors=sectors.csv"]

SNIPPETS: dict[int, Snippet] = {
    1: Snippet(
        'CREATE STREAM "DESTINATION_SQL_STREAM" (sym VARCHAR(4), price DOUBLE);\n'
        + pump(f"SELECT STREAM ticker_symbol, price FROM {SRC}", create="CREATE"),
        T,
        dest(*SYM_PRICE),
    ),
    2: Snippet(DEST + pump(f"SELECT STREAM ticker_symbol, price FROM {SRC}"), T, dest(*SYM_PRICE)),
    3: Snippet(
        "CREATE OR REPLACE STREAM \"DESTINATION_SQL_STREAM\" (sym VARCHAR(4), price DOUBLE) DESCRIPTION 'out';\n"
        + pump(f"SELECT STREAM ticker_symbol, price FROM {SRC}"),
        T,
        dest(*SYM_PRICE),
    ),
    # a NULL into a NOT NULL column of a stream a pump fills: the row goes to the error stream
    4: Snippet(
        'CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (sym VARCHAR(4) NOT NULL, price DOUBLE);\n'
        + pump(f"SELECT STREAM ticker_symbol, price FROM {SRC}"),
        [T[0], {"ts": "2024-05-01T10:00:10Z", "PRICE": 1.0}],
        dest({"SYM": "AMZN", "PRICE": 100.0}),
        errors=[{"reason": "eval", "source_offset": "SOURCE_SQL_STREAM_001:1"}],
    ),
    5: Snippet(
        DEST + pump(f"SELECT STREAM ticker_symbol, price FROM {SRC} WHERE price > 100"),
        T,
        dest({"SYM": "AMZN", "PRICE": 102.0}, {"SYM": "AMZN", "PRICE": 101.0}),
    ),
    6: Snippet(
        DEST + pump(f"SELECT STREAM ticker_symbol, price FROM {SRC} WHERE price < 100", create="CREATE"),
        T,
        dest({"SYM": "TGT", "PRICE": 50.0}),
    ),
    7: Snippet(
        DEST
        + f'CREATE OR REPLACE PUMP "OFF" STOPPED AS INSERT INTO "DESTINATION_SQL_STREAM" SELECT STREAM ticker_symbol, price FROM {SRC};\n'
        + pump(f"SELECT STREAM sector, change FROM {SRC} WHERE price < 100", name="ON"),
        T,
        dest({"SYM": "RETAIL", "PRICE": -0.5}),
    ),
    8: Snippet(
        'CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (a VARCHAR(4), b DOUBLE, c DOUBLE);\n'
        f'CREATE OR REPLACE PUMP "P" AS INSERT INTO "DESTINATION_SQL_STREAM" (a, c) SELECT STREAM ticker_symbol, price FROM {SRC} WHERE price < 100;',
        T,
        dest({"A": "TGT", "B": None, "C": 50.0}),
    ),
    9: Snippet(
        'CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (symbol VARCHAR(4), cents BIGINT);\n'
        + pump(f"SELECT STREAM ticker_symbol, price * 100 FROM {SRC} WHERE price < 100"),
        T,
        dest({"SYMBOL": "TGT", "CENTS": 5000}),
    ),
    10: Snippet(
        'CREATE OR REPLACE STREAM "MID" (sym VARCHAR(4), price DOUBLE);\n'
        + DEST
        + pump(f"SELECT STREAM ticker_symbol, price FROM {SRC} WHERE price > 60", target="MID", name="A")
        + pump('SELECT STREAM sym, price * 2 FROM "MID" WHERE price > 101', name="B"),
        T,
        dest({"SYM": "AMZN", "PRICE": 204.0}),
    ),
    11: Snippet(
        'CREATE OR REPLACE STREAM "OUT1" (sym VARCHAR(4));\nCREATE OR REPLACE STREAM "OUT2" (p DOUBLE);\n'
        + pump(f"SELECT STREAM ticker_symbol FROM {SRC} WHERE price < 100", target="OUT1", name="A")
        + pump(f"SELECT STREAM price FROM {SRC} WHERE price > 101", target="OUT2", name="B"),
        T,
        {"OUT1": [{"SYM": "TGT"}], "OUT2": [{"P": 102.0}]},
    ),
    12: Snippet(
        DEST
        + pump(f"SELECT STREAM ticker_symbol, price FROM {SRC} WHERE price > 101", name="P1")
        + pump(f"SELECT STREAM sector, change FROM {SRC} WHERE price < 60", name="P2"),
        T,
        dest({"SYM": "AMZN", "PRICE": 102.0}, {"SYM": "RETAIL", "PRICE": -0.5}),
    ),
    13: Snippet(
        'SELECT STREAM ticker_symbol FROM "SOURCE_SQL_STREAM_002";', {"SOURCE_SQL_STREAM_002": T}, out(*ALL_SYMS)
    ),
    14: Snippet(
        'CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("lowerSym" VARCHAR(4), Price DOUBLE);\n'
        + pump(f'SELECT STREAM "TICKER_SYMBOL", price FROM {SRC} WHERE Price < 100'),
        T,
        dest({"lowerSym": "TGT", "PRICE": 50.0}),
    ),
    15: Snippet(
        f'SELECT STREAM s.ROWTIME AS a, s."ROWTIME" AS b, rowtime AS c FROM {SRC} AS s WHERE price < 100;',
        T,
        out({"A": T[1]["ts"], "B": T[1]["ts"], "C": T[1]["ts"]}),
    ),
    16: Snippet(
        f'SELECT STREAM ROWTIME AS "resultrowtime", ticker_symbol FROM {SRC};',
        T,
        out(*[{"resultrowtime": r["ts"], "TICKER_SYMBOL": r["TICKER_SYMBOL"]} for r in T]),
    ),
    17: Snippet(
        f'SELECT STREAM APPROXIMATE_ARRIVAL_TIME AS a, "APPROXIMATE_ARRIVAL_TIME" AS b FROM {SRC} WHERE price < 100;',
        T,
        out({"A": T[1]["ts"], "B": T[1]["ts"]}),
    ),
    18: Snippet(f"SELECT STREAM ticker_symbol, SHARD_ID FROM {SRC};", T, error='unknown column "SHARD_ID"'),
    19: Snippet(
        'CREATE OR REPLACE STREAM "MID" (sym VARCHAR(4));\n'
        + pump(
            f"SELECT STREAM s.ROWTIME + INTERVAL '1' HOUR AS ROWTIME, ticker_symbol FROM {SRC} AS s WHERE price < 100",
            target="MID",
        )
        + 'SELECT STREAM sym, m.ROWTIME AS t FROM "MID" AS m;',
        T,
        out({"SYM": "TGT", "T": "2024-05-01T11:00:04Z"}),
    ),
    20: Snippet(f"SELECT STREAM ticker_symbol FROM {SRC};", T, out(*ALL_SYMS)),
    21: Snippet(
        'CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" (sym VARCHAR(4));\n'
        + pump(f"SELECT sym FROM (SELECT STREAM ticker_symbol AS sym FROM {SRC} WHERE price < 100) AS t"),
        T,
        dest({"SYM": "TGT"}),
    ),
    23: Snippet(
        f"SELECT STREAM ticker_symbol, change, price FROM {SRC} WHERE (ABS(Change/(Price-Change))*100) > 1;",
        T,
        out(
            {"TICKER_SYMBOL": "AMZN", "CHANGE": 1.0, "PRICE": 100.0},
            {"TICKER_SYMBOL": "AMZN", "CHANGE": 2.0, "PRICE": 102.0},
        ),
    ),
    24: Snippet(
        f"SELECT STREAM t.sym FROM (SELECT STREAM ticker_symbol AS sym, price FROM {SRC}) AS t WHERE t.price < 100;",
        T,
        out({"SYM": "TGT"}),
    ),
    25: Snippet(
        f"SELECT STREAM t.a, t.b FROM (SELECT STREAM ticker_symbol, price FROM {SRC} WHERE price < 101) AS t(a, b);",
        T,
        out({"A": "AMZN", "B": 100.0}, {"A": "TGT", "B": 50.0}),
    ),
    26: Snippet(
        f"SELECT STREAM ticker_symbol sym, price p FROM {SRC} src WHERE src.price > 101;",
        T,
        out({"SYM": "AMZN", "P": 102.0}),
    ),
    27: Snippet(
        f"SELECT STREAM CASE WHEN price > 100 THEN 'HI' ELSE 'LO' END AS lvl, CASE sector WHEN 'RETAIL' THEN 1 ELSE 0 END AS r FROM {SRC};",
        T,
        out({"LVL": "LO", "R": 0}, {"LVL": "LO", "R": 1}, {"LVL": "HI", "R": 0}, {"LVL": "HI", "R": 0}),
    ),
    28: Snippet(
        f"SELECT STREAM ticker_symbol FROM {SRC} WHERE ticker_symbol IN ('TGT', 'WMT') OR EXISTS (SELECT 1) AND price > 101;",
        T,
        out({"TICKER_SYMBOL": "TGT"}, {"TICKER_SYMBOL": "AMZN"}),
    ),
    29: Snippet(
        f"SELECT STREAM ticker_symbol AS x FROM {SRC} WHERE price > 101 UNION ALL SELECT STREAM sector FROM {SRC} WHERE price < 60;",
        T,
        out({"X": "AMZN"}, {"X": "RETAIL"}),
    ),
    30: Snippet("VALUES (1, 'a');", T, error="VALUES statements are not supported"),
    31: Snippet(
        f"SELECT STREAM ticker_symbol, {ONE_MINUTE} AS m, COUNT(*) AS n FROM {SRC} AS s GROUP BY ticker_symbol, {ONE_MINUTE};",
        T,
        out(
            {"TICKER_SYMBOL": "AMZN", "M": "2024-05-01T10:00:00Z", "N": 2},
            {"TICKER_SYMBOL": "TGT", "M": "2024-05-01T10:00:00Z", "N": 1},
            {"TICKER_SYMBOL": "AMZN", "M": "2024-05-01T10:01:00Z", "N": 1},
        ),
    ),
    32: Snippet(
        f"SELECT STREAM FLOOR(s.ROWTIME TO MINUTE) AS m, COUNT(*) AS n, SUM(price) AS p FROM {SRC} AS s GROUP BY FLOOR(s.ROWTIME TO MINUTE);",
        T,
        out({"M": "2024-05-01T10:00:00Z", "N": 3, "P": 252.0}, {"M": "2024-05-01T10:01:00Z", "N": 1, "P": 101.0}),
    ),
    33: Snippet(
        f"SELECT STREAM COUNT(*) AS n FROM {SRC} AS s GROUP BY FLOOR((s.ROWTIME - TIMESTAMP '1970-01-01 00:00:00') SECOND / 5 TO SECOND);",
        T,
        out({"N": 2}, {"N": 1}, {"N": 1}),
    ),
    34: Snippet(
        f"SELECT STREAM STEP(s.ev BY INTERVAL '1' MINUTE) AS ev_min, COUNT(*) AS n FROM {SRC} AS s GROUP BY {ONE_MINUTE}, STEP(s.ev BY INTERVAL '1' MINUTE);",
        [
            {"ts": "2024-05-01T10:00:50Z", "ev": "2024-05-01T10:00:40Z"},
            {"ts": "2024-05-01T10:00:55Z", "ev": "2024-05-01T10:00:50Z"},
            {"ts": "2024-05-01T10:01:10Z", "ev": "2024-05-01T10:01:02Z"},
        ],
        out({"EV_MIN": "2024-05-01T10:00:00Z", "N": 2}, {"EV_MIN": "2024-05-01T10:01:00Z", "N": 1}),
    ),
    # the window of the last row is never complete: without the end-of-input flush it is not emitted
    35: Snippet(
        f"SELECT STREAM COUNT(*) AS n FROM {SRC} AS s GROUP BY {ONE_MINUTE};",
        [{"ts": "2024-05-01T10:00:50Z"}, {"ts": "2024-05-01T10:00:59.999Z"}, {"ts": "2024-05-01T10:01:00Z"}],
        out({"N": 2}),
        options="rowtime-from=ts, no-flush",
    ),
    36: Snippet(
        f"SELECT STREAM STEP(s.ev BY INTERVAL '1' MINUTE) AS ev_min, COUNT(*) AS n FROM {SRC} AS s GROUP BY {ONE_MINUTE}, STEP(s.ev BY INTERVAL '1' MINUTE);",
        [
            {"ts": "2024-05-01T10:00:50Z", "ev": "2024-05-01T10:00:40Z"},
            {"ts": "2024-05-01T10:01:05Z", "ev": "2024-05-01T10:00:58Z"},
            {"ts": "2024-05-01T10:01:10Z", "ev": "2024-05-01T10:01:02Z"},
        ],
        out(
            {"EV_MIN": "2024-05-01T10:00:00Z", "N": 1},
            {"EV_MIN": "2024-05-01T10:00:00Z", "N": 1},
            {"EV_MIN": "2024-05-01T10:01:00Z", "N": 1},
        ),
    ),
    37: Snippet(
        f"SELECT STREAM sector, COUNT(*) AS n, MAX(price) AS hi FROM {SRC} AS s GROUP BY sector, {ONE_MINUTE};",
        T,
        out(
            {"SECTOR": "TECHNOLOGY", "N": 2, "HI": 102.0},
            {"SECTOR": "RETAIL", "N": 1, "HI": 50.0},
            {"SECTOR": "TECHNOLOGY", "N": 1, "HI": 101.0},
        ),
    ),
    38: Snippet(
        f"SELECT STREAM ticker_symbol, COUNT(*) AS n FROM {SRC} AS s GROUP BY ticker_symbol, {ONE_MINUTE} HAVING COUNT(*) > 1;",
        T,
        out({"TICKER_SYMBOL": "AMZN", "N": 2}),
    ),
    39: Snippet(
        f"SELECT STREAM COUNT(*) AS n FROM {SRC} AS s GROUP BY MONOTONIC({ONE_MINUTE});", T, out({"N": 3}, {"N": 1})
    ),
    40: Snippet(
        f"SELECT STREAM DISTINCT FLOOR(s.ROWTIME TO MINUTE) AS m, ticker_symbol FROM {SRC} AS s;",
        T,
        out(
            {"M": "2024-05-01T10:00:00Z", "TICKER_SYMBOL": "AMZN"},
            {"M": "2024-05-01T10:00:00Z", "TICKER_SYMBOL": "TGT"},
            {"M": "2024-05-01T10:01:00Z", "TICKER_SYMBOL": "AMZN"},
        ),
    ),
    41: Snippet(
        f"SELECT STREAM ticker_symbol, price FROM {SRC} AS s ORDER BY FLOOR(s.ROWTIME TO MINUTE), price DESC;",
        T,
        out(
            {"TICKER_SYMBOL": "AMZN", "PRICE": 102.0},
            {"TICKER_SYMBOL": "AMZN", "PRICE": 100.0},
            {"TICKER_SYMBOL": "TGT", "PRICE": 50.0},
            {"TICKER_SYMBOL": "AMZN", "PRICE": 101.0},
        ),
        ordered=True,
    ),
    42: Snippet(
        f"SELECT STREAM ts AS ROWTIME, ticker_symbol FROM {SRC} AS s ORDER BY ts WITHIN INTERVAL '2' SECOND;",
        T,
        error="WITHIN",
    ),
    43: Snippet(
        f"SELECT STREAM ticker_symbol, AVG(price) OVER W1 AS a, COUNT(*) OVER W1 AS n FROM {SRC} AS s "
        "WINDOW W1 AS (PARTITION BY ticker_symbol RANGE INTERVAL '1' MINUTE PRECEDING);",
        T,
        out(
            {"TICKER_SYMBOL": "AMZN", "A": 100.0, "N": 1},
            {"TICKER_SYMBOL": "TGT", "A": 50.0, "N": 1},
            {"TICKER_SYMBOL": "AMZN", "A": 101.0, "N": 2},
            {"TICKER_SYMBOL": "AMZN", "A": 101.5, "N": 2},
        ),
    ),
    44: Snippet(
        f"SELECT STREAM ticker_symbol, AVG(price) OVER (PARTITION BY ticker_symbol RANGE INTERVAL '1' HOUR PRECEDING) AS a FROM {SRC} AS s;",
        T,
        out(
            {"TICKER_SYMBOL": "AMZN", "A": 100.0},
            {"TICKER_SYMBOL": "TGT", "A": 50.0},
            {"TICKER_SYMBOL": "AMZN", "A": 101.0},
            {"TICKER_SYMBOL": "AMZN", "A": 101.0},
        ),
    ),
    45: Snippet(
        f"SELECT STREAM SUM(price) OVER (ROWS 2 PRECEDING) AS a FROM {SRC} AS s;",
        T,
        out({"A": 100.0}, {"A": 150.0}, {"A": 252.0}, {"A": 253.0}),
    ),
    46: Snippet(
        f"SELECT STREAM COUNT(*) OVER a AS na, COUNT(*) OVER b AS nb FROM {SRC} AS s "
        "WINDOW a AS (RANGE INTERVAL '5' SECOND PRECEDING), b AS (ROWS 1 PRECEDING);",
        T,
        out({"NA": 1, "NB": 1}, {"NA": 2, "NB": 2}, {"NA": 2, "NB": 2}, {"NA": 1, "NB": 2}),
    ),
    47: Snippet(
        f"SELECT STREAM MAX(price) OVER W1 AS hi FROM {SRC} AS s WINDOW W1 AS (RANGE INTERVAL '1' DAY PRECEDING);",
        T,
        out({"HI": 100.0}, {"HI": 100.0}, {"HI": 102.0}, {"HI": 102.0}),
    ),
    48: Snippet(
        f"SELECT STREAM COUNT(*) OVER (PARTITION BY ticker_symbol, STEP(approximate_arrival_time BY INTERVAL '10' SECOND) "
        f"RANGE INTERVAL '1' MINUTE PRECEDING) AS n FROM {SRC} AS s;",
        T,
        out({"N": 1}, {"N": 1}, {"N": 2}, {"N": 1}),
    ),
    49: Snippet(
        f"SELECT STREAM COUNT(*) OVER (ROWS CURRENT ROW) AS a, COUNT(*) OVER (RANGE CURRENT ROW) AS b FROM {SRC} AS s;",
        [{"ts": "2024-05-01T10:00:09Z"}, {"ts": "2024-05-01T10:00:09Z"}, {"ts": "2024-05-01T10:00:10Z"}],
        out({"A": 1, "B": 1}, {"A": 1, "B": 2}, {"A": 1, "B": 1}),
    ),
    50: Snippet(
        f"SELECT STREAM COUNT(*) OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS a, "
        f"COUNT(*) OVER (RANGE INTERVAL '0:59.999' MINUTE TO SECOND(3) PRECEDING) AS b FROM {SRC} AS s;",
        T,
        out({"A": 1, "B": 1}, {"A": 2, "B": 2}, {"A": 3, "B": 3}, {"A": 2, "B": 1}),
    ),
    51: Snippet(
        f"SELECT STREAM * FROM (SELECT STREAM ticker_symbol, COUNT(*) OVER W1 AS trigger_count FROM {SRC} AS s "
        "WINDOW W1 AS (PARTITION BY ticker_symbol RANGE INTERVAL '1' MINUTE PRECEDING)) AS t WHERE trigger_count >= 2;",
        T,
        out({"TICKER_SYMBOL": "AMZN", "TRIGGER_COUNT": 2}, {"TICKER_SYMBOL": "AMZN", "TRIGGER_COUNT": 2}),
    ),
    52: Snippet(
        f"SELECT STREAM ticker_symbol, COUNT(*) AS n FROM {SRC} AS s WINDOWED BY STAGGER (PARTITION BY ticker_symbol RANGE INTERVAL '1' MINUTE);",
        T,
        out({"TICKER_SYMBOL": "AMZN", "N": 2}, {"TICKER_SYMBOL": "TGT", "N": 1}, {"TICKER_SYMBOL": "AMZN", "N": 1}),
    ),
    53: Snippet(
        f"SELECT STREAM FLOOR(ts TO MINUTE) AS m, ticker_symbol, COUNT(*) AS n FROM {SRC} AS s "
        "WINDOWED BY STAGGER (PARTITION BY FLOOR(ts TO MINUTE), ticker_symbol RANGE INTERVAL '1' MINUTE);",
        T,
        out(
            {"M": "2024-05-01T10:00:00Z", "TICKER_SYMBOL": "AMZN", "N": 2},
            {"M": "2024-05-01T10:00:00Z", "TICKER_SYMBOL": "TGT", "N": 1},
            {"M": "2024-05-01T10:01:00Z", "TICKER_SYMBOL": "AMZN", "N": 1},
        ),
    ),
    54: Snippet(
        REF_SQL,
        [],
        cli=REF_ARGS,
        files=REF_FILES,
        expect=dest(
            {"SYM": "AMZN", "PRICE": 1.0, "SECTOR_NAME": "Technology"}, {"SYM": "Y", "PRICE": 2.0, "SECTOR_NAME": None}
        ),
    ),
    55: Snippet(
        f"SELECT STREAM o.oid, s.price FROM \"ORDERS\" OVER (RANGE INTERVAL '5' SECOND PRECEDING) AS o JOIN {SRC} AS s ON o.sym = s.ticker_symbol;",
        {SRC.strip('"'): T, "ORDERS": ORDERS},
        out({"OID": 1, "PRICE": 100.0}),
    ),
    56: Snippet(
        f"SELECT STREAM o.oid, s.price FROM \"ORDERS\" OVER (RANGE INTERVAL '5' SECOND PRECEDING) AS o "
        f"JOIN {SRC} OVER (RANGE INTERVAL '5' SECOND PRECEDING) AS s ON o.sym = s.ticker_symbol;",
        {SRC.strip('"'): T, "ORDERS": ORDERS},
        out({"OID": 1, "PRICE": 100.0}, {"OID": 2, "PRICE": 50.0}),
    ),
    57: Snippet(
        f"SELECT STREAM o.oid, s.price FROM \"ORDERS\" OVER (RANGE INTERVAL '5' SECOND PRECEDING) AS o RIGHT JOIN {SRC} AS s ON o.sym = s.ticker_symbol;",
        {SRC.strip('"'): T, "ORDERS": ORDERS},
        out(
            {"OID": 1, "PRICE": 100.0},
            {"OID": None, "PRICE": 50.0},
            {"OID": None, "PRICE": 102.0},
            {"OID": None, "PRICE": 101.0},
        ),
    ),
    58: Snippet(
        f"SELECT STREAM o.oid, s.price FROM \"ORDERS\" OVER (RANGE INTERVAL '5' SECOND PRECEDING) AS o "
        f"OUTER JOIN {SRC} OVER (RANGE INTERVAL '5' SECOND PRECEDING) AS s ON o.sym = s.ticker_symbol;",
        {SRC.strip('"'): T, "ORDERS": ORDERS},
        out(
            {"OID": 1, "PRICE": 100.0},
            {"OID": 2, "PRICE": 50.0},
            {"OID": 3, "PRICE": None},
            {"OID": None, "PRICE": 102.0},
            {"OID": None, "PRICE": 101.0},
        ),
    ),
    59: Snippet(
        f'SELECT STREAM o.oid, s.price FROM {SRC} AS s JOIN "ORDERS" OVER t AS o ON o.sym = s.ticker_symbol '
        "WINDOW t AS (RANGE INTERVAL '10' SECOND PRECEDING);",
        {SRC.strip('"'): T, "ORDERS": ORDERS},
        out({"OID": 1, "PRICE": 100.0}, {"OID": 1, "PRICE": 102.0}),
    ),
    60: Snippet(
        f"SELECT STREAM a.n, b.m FROM (SELECT STREAM COUNT(*) AS n FROM {SRC} AS s GROUP BY STEP(s.ROWTIME BY INTERVAL '10' SECOND)) AS a, "
        "(SELECT STREAM COUNT(*) AS m FROM \"ORDERS\" AS o GROUP BY STEP(o.ROWTIME BY INTERVAL '10' SECOND)) AS b WHERE a.ROWTIME = b.ROWTIME;",
        {SRC.strip('"'): T, "ORDERS": ORDERS},
        out({"N": 3, "M": 3}),
    ),
    # matched: the later row's ROWTIME; unmatched outer rows: held until the window ends
    61: Snippet(
        f"SELECT STREAM o.oid, s.price, ROWTIME AS rt FROM \"ORDERS\" OVER (RANGE INTERVAL '5' SECOND PRECEDING) AS o "
        f"LEFT JOIN {SRC} AS s ON o.sym = s.ticker_symbol;",
        {SRC.strip('"'): T, "ORDERS": ORDERS},
        out(
            {"OID": 1, "PRICE": 100.0, "RT": "2024-05-01T10:00:01Z"},
            {"OID": 2, "PRICE": None, "RT": "2024-05-01T10:00:10Z"},
            {"OID": 3, "PRICE": None, "RT": "2024-05-01T10:00:13Z"},
        ),
    ),
    # RANDOM_CUT_FOREST scores the first 256 rows (subSampleSize) 0, as KDA did
    64: Snippet(
        f"SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM price FROM {SRC}), 100, 256, 100000, 1));",
        T,
        out(*[{"PRICE": r["PRICE"], "ANOMALY_SCORE": 0.0} for r in T]),
    ),
    66: Snippet(
        f"SELECT STREAM * FROM TABLE(TOP_K_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM {SRC}), 'TICKER_SYMBOL', 5, 60)) WHERE MOST_FREQUENT_VALUES > 1;",
        T,
        out({"TICKER_SYMBOL": "AMZN", "MOST_FREQUENT_VALUES": 2}),
    ),
    67: Snippet(
        f"SELECT STREAM * FROM TABLE(HOTSPOTS(CURSOR(SELECT STREAM price, change FROM {SRC}), 100, 0.2, 17));",
        T,
        error="not supported yet",
    ),
    68: Snippet(
        f"SELECT STREAM * FROM TABLE(TOP_K_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM {SRC}), 'TICKER_SYMBOL', 5, 60));",
        T,
        out(
            {"TICKER_SYMBOL": "AMZN", "MOST_FREQUENT_VALUES": 2},
            {"TICKER_SYMBOL": "TGT", "MOST_FREQUENT_VALUES": 1},
            {"TICKER_SYMBOL": "AMZN", "MOST_FREQUENT_VALUES": 1},
        ),
    ),
    69: Snippet(
        f"SELECT STREAM * FROM TABLE(COUNT_DISTINCT_ITEMS_TUMBLING(CURSOR(SELECT STREAM * FROM {SRC}), 'TICKER_SYMBOL', 60));",
        T,
        out({"NUMBER_OF_DISTINCT_ITEMS": 2}, {"NUMBER_OF_DISTINCT_ITEMS": 1}),
    ),
    70: Snippet(
        f"SELECT STREAM * FROM TABLE(GROUP_RANK(CURSOR(SELECT STREAM * FROM {SRC}), 'PRICE', 'R', 'desc', 'asc', 5, 0));",
        T,
        error="not supported yet",
    ),
    71: Snippet(
        f"SELECT STREAM COUNT(*) AS n, SUM(price) AS s, AVG(price) AS a, MIN(price) AS lo, MAX(price) AS hi FROM {SRC} AS s GROUP BY {ONE_MINUTE};",
        T,
        out(
            {"N": 3, "S": 252.0, "A": 84.0, "LO": 50.0, "HI": 102.0},
            {"N": 1, "S": 101.0, "A": 101.0, "LO": 101.0, "HI": 101.0},
        ),
    ),
    72: Snippet(
        f"SELECT STREAM AVG(temp) AS a, SUM(temp) / COUNT(temp) AS b, 5 / 2 AS c FROM {SRC} AS s GROUP BY {ONE_MINUTE};",
        [{"ts": "2024-05-01T10:00:50Z", "temp": 1}, {"ts": "2024-05-01T10:00:51Z", "temp": 2}],
        out({"A": 1, "B": 1, "C": 2}),
    ),
    73: Snippet(
        f"SELECT STREAM ticker_symbol, FIRST_VALUE(price) AS f, LAST_VALUE(price) AS l FROM {SRC} AS s GROUP BY ticker_symbol, {ONE_MINUTE};",
        T,
        out(
            {"TICKER_SYMBOL": "AMZN", "F": 100.0, "L": 102.0},
            {"TICKER_SYMBOL": "TGT", "F": 50.0, "L": 50.0},
            {"TICKER_SYMBOL": "AMZN", "F": 101.0, "L": 101.0},
        ),
    ),
    74: Snippet(
        f"SELECT STREAM LAG(price, 1, 0) IGNORE NULLS OVER (PARTITION BY ticker_symbol ROWS 3 PRECEDING) AS p FROM {SRC} AS s;",
        T,
        out({"P": 0.0}, {"P": 0.0}, {"P": 100.0}, {"P": 102.0}),
    ),
    75: Snippet(
        f"SELECT STREAM NTH_VALUE(price, 2) OVER (ROWS 3 PRECEDING) AS p, NTH_VALUE(price, 2) FROM LAST IGNORE NULLS OVER (ROWS 3 PRECEDING) AS q FROM {SRC} AS s;",
        T,
        out({"P": None, "Q": None}, {"P": 50.0, "Q": 100.0}, {"P": 50.0, "Q": 50.0}, {"P": 50.0, "Q": 102.0}),
    ),
    # half-life 10 s: (100 * 0.5^0.3 + 50) / (0.5^0.3 + 1); (102 * 0.5^6 + 101) / (0.5^6 + 1)
    76: Snippet(
        f"SELECT STREAM EXP_AVG(price, INTERVAL '10' SECOND) OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS p FROM {SRC} AS s;",
        T,
        out(
            {"P": 100.0},
            {"P": (100 * 0.5**0.3 + 50) / (0.5**0.3 + 1)},
            {"P": (100 * 0.5**0.8 + 50 * 0.5**0.5 + 102) / (0.5**0.8 + 0.5**0.5 + 1)},
            {"P": (102 * 0.5**6 + 101) / (0.5**6 + 1)},
        ),
    ),
    78: Snippet(
        f"SELECT STREAM ANY(price < 60) AS a, EVERY(price < 60) AS e FROM {SRC} AS s GROUP BY {ONE_MINUTE};",
        T,
        out({"A": True, "E": False}, {"A": False, "E": False}),
    ),
    79: single("STEP(ts BY INTERVAL '30' SECOND) AS a, STEP(23 BY 5) AS b", A="2024-05-01T10:00:00Z", B=20),
    80: single("FLOOR(ts TO MINUTE) AS a, CEIL(ts TO HOUR) AS b", A="2024-05-01T10:00:00Z", B="2024-05-01T11:00:00Z"),
    81: single(
        "ABS(change - 5) AS a, EXP(0) AS e, LN(1) AS l, LOG10(100) AS g, POWER(2, 3) AS p, MOD(-4, 3) AS m, SQRT(16) AS q",
        A=3.0,
        E=1.0,
        L=0.0,
        G=2.0,
        P=8.0,
        M=-1,
        Q=4.0,
    ),
    82: single(
        "CAST(price AS VARCHAR(16)) AS a, CAST('2024-05-01 10:00:00' AS TIMESTAMP) AS b, CAST(price AS INTEGER) AS c",
        A="102.0",
        B="2024-05-01T10:00:00Z",
        C=102,
    ),
    83: single(
        "ts - INTERVAL '5' MINUTE AS a, ts + INTERVAL '1' DAY AS b",
        A="2024-05-01T09:55:09.250Z",
        B="2024-05-02T10:00:09.250Z",
    ),
    # the part that works: the interval is computed (written as [months, days, microseconds])
    84: single("(ts - TIMESTAMP '2024-05-01 09:00:00') MINUTE AS a", A=[0, 0, 3_600_000_000_000]),
    85: single(
        "EXTRACT(HOUR FROM ts) AS h, EXTRACT(MINUTE FROM ts) AS m, EXTRACT(DAY FROM ts) AS d, EXTRACT(SECOND FROM ts) AS sec",
        H=10,
        M=0,
        D=1,
        SEC=9.25,
    ),
    86: single("UNIX_TIMESTAMP(ts) AS a, TO_TIMESTAMP(1714557609000) AS b", A=1714557609250, B="2024-05-01T10:00:09Z"),
    87: Snippet(
        f"SELECT STREAM TSDIFF(LAG(s.ts, 1) OVER (ROWS 1 PRECEDING), s.ts) / 1000 AS d FROM {SRC} AS s;",
        T,
        out({"D": None}, {"D": 3}, {"D": 5}, {"D": 60}),
    ),
    88: single(
        "CHAR_TO_TIMESTAMP('dd/MMM/yyyy:HH:mm:ss z', '10/Oct/2000:13:55:36 -0700') AS a, CHAR_TO_TIMESTAMP('yyyy-MM-dd', '2024-05-01') AS b",
        A="2000-10-10T20:55:36Z",
        B="2024-05-01T00:00:00Z",
    ),
    89: single(
        "TIMESTAMP_TO_CHAR('yyyy-MM-dd HH:mm:ss', ts) AS a, DATE_TO_CHAR('dd/MM/yyyy', CAST(ts AS DATE)) AS b, "
        "TIME_TO_CHAR('HH:mm', CAST(ts AS TIME)) AS c, TIMESTAMP_TO_CHAR('yyyy', CAST(NULL AS TIMESTAMP)) AS d",
        A="2024-05-01 10:00:09",
        B="01/05/2024",
        C="10:00",
        D="null",
    ),
    90: single(
        "CHAR_TO_DATE('dd/MM/yyyy', '02/03/2024') AS a, CHAR_TO_TIME('HH:mm:ss', '13:14:15') AS b",
        A="2024-03-02",
        B="13:14:15",
    ),
    91: single(
        "CURRENT_TIMESTAMP > TIMESTAMP '2020-01-01 00:00:00' AS a, CURRENT_DATE > DATE '2020-01-01' AS b, "
        "LOCALTIMESTAMP > TIMESTAMP '2020-01-01 00:00:00' AS c",
        A=True,
        B=True,
        C=True,
    ),
    92: single("CURRENT_ROW_TIMESTAMP > TIMESTAMP '2020-01-01 00:00:00' AS a", A=True),
    93: Snippet(
        f"SELECT STREAM (ts, ts + INTERVAL '1' MINUTE) PRECEDES (ts + INTERVAL '2' MINUTE, ts + INTERVAL '3' MINUTE) AS a FROM {SRC};",
        T,
        error="unexpected",
    ),
    94: single("ticker_symbol || '_' || sector AS a", A="AMZN_TECHNOLOGY"),
    95: single(
        "SUBSTRING(sector, 3, 4) AS a, SUBSTRING(sector FROM 3 FOR 4) AS b, SUBSTRING(sector FROM 'N[A-Z]+') AS c",
        A="CHNO",
        B="CHNO",
        C="NOLOGY",
    ),
    96: single("POSITION('.com' IN ref) AS a, POSITION('zz' IN ref) AS b", A=19, B=0),
    97: single(
        "UPPER('ab') AS u, LOWER(sector) AS l, INITCAP('hello wORLD') AS i, CHAR_LENGTH(sector) AS n, "
        "TRIM(BOTH 'x' FROM 'xxaxx') AS t, OVERLAY('abcdef' PLACING 'ZZ' FROM 2 FOR 3) AS o",
        U="AB",
        L="technology",
        I="Hello World",
        N=10,
        T="a",
        O="aZZef",
    ),
    98: Snippet(
        f"SELECT STREAM REGEX_REPLACE(s, 'a', 'b', x, 0) AS a FROM {SRC};",
        [{"ts": "2024-05-01T10:00:50Z", "s": "aa", "x": 0}, {"ts": "2024-05-01T10:00:51Z", "s": "http://aa", "x": 1}],
        out({"A": "http://bb"}),
        errors=[{"reason": "eval", "source_offset": "SOURCE_SQL_STREAM_001:0"}],
    ),
    99: single(
        "ticker_symbol LIKE 'AM%' AS a, sector NOT LIKE 'TECH%' AS b, 'a_b' LIKE 'a!_b' ESCAPE '!' AS c, 'axb' LIKE 'a!_b' ESCAPE '!' AS d",
        A=True,
        B=False,
        C=True,
        D=False,
    ),
    100: single(
        "sector SIMILAR TO '%TECH%' AS a, sector SIMILAR TO '(TECH|RET)%' AS b, sector SIMILAR TO 'TECH' AS c",
        A=True,
        B=True,
        C=False,
    ),
    101: Snippet(
        f"SELECT STREAM t.r.COLUMN1 AS host, t.r.COLUMN2 AS code FROM (SELECT STREAM REGEX_LOG_PARSE(line, '(\\S+) .* (\\d+) \\d+') AS r FROM {SRC}) AS t;",
        [{"ts": "2024-05-01T10:00:50Z", "line": LOG}],
        out({"HOST": "127.0.0.1", "CODE": "200"}),
    ),
    102: Snippet(
        f"SELECT STREAM l.r.COLUMN1 AS host, l.r.COLUMN6 AS status, l.r.COLUMN7 AS bytes FROM (SELECT STREAM W3C_LOG_PARSE(line, 'COMMON') AS r FROM {SRC}) AS l;",
        [{"ts": "2024-05-01T10:00:50Z", "line": LOG}, {"ts": "2024-05-01T10:00:51Z", "line": "not a log line"}],
        out({"HOST": "127.0.0.1", "STATUS": 200, "BYTES": 2326}, {"HOST": None, "STATUS": None, "BYTES": None}),
    ),
    103: Snippet(
        f"SELECT STREAM t.r.COL_1 AS a, t.r.COL_2 AS b FROM (SELECT STREAM VARIABLE_COLUMN_LOG_PARSE(line, 'COL_1 TYPE VARCHAR(16), COL_2 TYPE INTEGER', ',') AS r FROM {SRC}) AS t;",
        [{"ts": "2024-05-01T10:00:50Z", "line": "x,12"}],
        out({"A": "x", "B": 12}),
    ),
    104: Snippet(
        f"SELECT STREAM t.f.A AS a, t.f.B AS b, t.y.COLUMN2 AS msg FROM (SELECT STREAM FIXED_COLUMN_LOG_PARSE(line, 'A TYPE VARCHAR(2) START 0 FOR 2, B TYPE INTEGER START 2 FOR 2') AS f, "
        f"SYS_LOG_PARSE('Oct 10 13:55:36 myhost hello world') AS y FROM {SRC}) AS t;",
        [{"ts": "2024-05-01T10:00:50Z", "line": "ab12"}],
        out({"A": "ab", "B": 12, "MSG": "myhost hello world"}),
    ),
    105: single(
        "COALESCE(v, 'd') AS a, NULLIF(ticker_symbol, 'AMZN') AS b, v IS NULL AS c, v IS DISTINCT FROM 'x' AS d, "
        "ticker_symbol IS NOT DISTINCT FROM 'AMZN' AS e",
        A="d",
        B=None,
        C=True,
        D=True,
        E=True,
    ),
    106: single(
        "(CAST(v AS BOOLEAN) AND TRUE) IS UNKNOWN AS a, price BETWEEN 100 AND 110 AS b, (1 = 1) IS TRUE AS c, (price > 200) IS NOT FALSE AS d",
        A=True,
        B=True,
        C=True,
        D=False,
    ),
    107: single(
        "ts + INTERVAL '2' HOUR AS a, ts - INTERVAL '1.5' SECOND AS b",
        A="2024-05-01T12:00:09.250Z",
        B="2024-05-01T10:00:07.750Z",
    ),
    108: single("U&'a\\0009b' AS a, CHAR_LENGTH(U&'a\\0009b') AS n", A="a\tb", N=3),
    109: Snippet(
        f"CREATE FUNCTION plus1(x DOUBLE) RETURNS DOUBLE CONTAINS SQL RETURN x + 1;\nSELECT STREAM plus1(price) AS a FROM {SRC};",
        T,
        out({"A": 101.0}, {"A": 51.0}, {"A": 103.0}, {"A": 102.0}),
    ),
    # nested mappings; "3" converts, 2.5 into INTEGER is a type error; "Paris" is cut to VARCHAR(3)
    110: Snippet(
        NESTED_SQL,
        NESTED_ROWS,
        files={"schema.json": NESTED_SCHEMA},
        expect=out(
            {"CITY": "Par", "QTY": 3, "SKU": "A"},
            {"CITY": "Par", "QTY": 3, "SKU": "B"},
            {"CITY": "Osl", "QTY": 1, "SKU": None},
        ),
        errors=[{"reason": "type", "payload": json.dumps(NESTED_ROWS[1])}],
        options="rowtime-from=TS",
    ),
    112: Snippet(
        'SELECT STREAM sym, price FROM "SOURCE_SQL_STREAM_001";',
        ["2024-05-01 10:00:01.0;AMZN;12.5", "2024-05-01 10:00:02.0;TGT;x", "2024-05-01 10:00:03.0;WMTXX;3"],
        files={"schema.json": CSV_SCHEMA},
        options="rowtime-from=TS",
        expect=out({"SYM": "AMZN", "PRICE": 12.5}, {"SYM": "WMTX", "PRICE": 3.0}),
        errors=[{"reason": "type", "payload": "2024-05-01 10:00:02.0;TGT;x"}],
    ),
    # the part that works: upper-cased names from a sample
    114: Snippet(
        f'SELECT STREAM heartrate, "HEARTRATE" AS h FROM {SRC};',
        [{"ts": "2024-05-01T10:00:09Z", "heartRate": 3}],
        out({"HEARTRATE": 3, "H": 3}),
    ),
    116: Snippet(
        REF_SQL,
        [],
        cli=REF_ARGS,
        files=REF_FILES,
        expect=dest(
            {"SYM": "AMZN", "PRICE": 1.0, "SECTOR_NAME": "Technology"}, {"SYM": "Y", "PRICE": 2.0, "SECTOR_NAME": None}
        ),
    ),
    # the part that works: KDA's columns, the pump's name, the hex row
    118: Snippet(
        REF_SQL,
        [],
        cli=[*REF_ARGS, "--sink", "error_stream=errors.jsonl"],
        files=REF_FILES,
        expect={
            "errors.jsonl": [
                {
                    "ERROR_LEVEL": "ERROR",
                    "ERROR_NAME": "Evaluation_Error",
                    "PUMP_NAME": "P",
                    "DATA_ROWTIME": "2024-05-01T10:00:02Z",
                    "REASON": "eval",
                    "SOURCE_OFFSET": "SOURCE_SQL_STREAM_001:1",
                }
            ]
        },
    ),
    # reserved words: quoted as names of a stream's columns; discovery renames record fields that
    # are reserved words with COL_ (as KDA's discovery did)
    122: Snippet(
        'CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM" ("VALUE" INTEGER, "USER" VARCHAR(8));\n'
        + pump(f'SELECT STREAM col_value, "COL_USER" FROM {SRC}'),
        [{"ts": "2024-05-01T10:00:09Z", "VALUE": 1, "USER": "u"}],
        dest({"VALUE": 1, "USER": "u"}),
    ),
}
# rows whose snippet is another row's
SNIPPETS[62] = SNIPPETS[68]  # TABLE(F(CURSOR(...)))
SNIPPETS[63] = Snippet(
    f"SELECT STREAM * FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT STREAM price FROM {SRC})));",
    T,
    out(*[{"PRICE": r["PRICE"], "ANOMALY_SCORE": 0.0} for r in T]),
)
SNIPPETS[111] = SNIPPETS[110]  # $.order.lines[0:].sku explodes; an empty array gives one row
SNIPPETS[113] = SNIPPETS[110]  # "3" -> 3, 2.5 into INTEGER is an error row, VARCHAR(3) truncates
SNIPPETS[77] = Snippet(
    f"SELECT STREAM STDDEV_POP(price) AS a, STDDEV_SAMP(price) AS b, VAR_POP(price) AS c, VAR_SAMP(price) AS d FROM {SRC} AS s GROUP BY {ONE_MINUTE};",
    T,
    out({"A": (1736 / 3) ** 0.5, "B": 868**0.5, "C": 1736 / 3, "D": 868.0}, {"A": 0.0, "B": None, "C": 0.0, "D": None}),
)
SNIPPETS[22] = Snippet(
    f"SELECT STREAM s.*, 'x' AS c FROM {SRC} AS s WHERE price < 100;",
    T,
    out(
        {
            "TS": T[1]["ts"],
            "TICKER_SYMBOL": "TGT",
            "SECTOR": "RETAIL",
            "CHANGE": -0.5,
            "PRICE": 50.0,
            "APPROXIMATE_ARRIVAL_TIME": T[1]["ts"],
            "C": "x",
        }
    ),
)


def _case_text(s: Snippet) -> str:
    parts = [s.sql, ""]
    if s.options:
        parts.append(f"-- options: {s.options}")
    if "schema.json" in s.files:
        parts.append(f"-- input-schema: {SRC.strip(chr(34))} from schema.json")
    inputs = s.rows if isinstance(s.rows, dict) else {SRC.strip('"'): s.rows}
    for name, rows in inputs.items():
        parts.append(f"-- input: {name}")
        parts += [r if isinstance(r, str) else json.dumps(r) for r in rows]
    parts.append("-- expect: output")
    return "\n".join(parts)


def _run_cli(s: Snippet, tmp_path: Path) -> tuple[dict[str, list[dict[str, Any]]], str]:
    (tmp_path / "prog.sql").write_text(s.sql)
    for name, text in s.files.items():
        (tmp_path / name).write_text(text)
    args = []  # file names in the arguments (FILE or NAME=FILE) live in tmp_path
    for a in s.cli or []:
        name, eq, file = a.rpartition("=")
        args.append(f"{name}{eq}{tmp_path / file}" if file in s.files or file.endswith(".jsonl") else a)
    result = CliRunner().invoke(
        app, ["run", str(tmp_path / "prog.sql"), *args, "--sink", f"DESTINATION_SQL_STREAM={tmp_path / 'out.jsonl'}"]
    )
    assert result.exit_code == 0, result.output
    outputs = {}
    for name in ("out.jsonl", "errors.jsonl"):
        path = tmp_path / name
        if path.exists():
            key = "DESTINATION_SQL_STREAM" if name == "out.jsonl" else name
            outputs[key] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return outputs, result.output


STATUS = _checklist()


def test_the_checklist_has_every_row() -> None:
    assert sorted(STATUS) == list(range(1, 123))
    assert set(STATUS.values()) <= {"supported", "partial", "not yet"}


def test_every_supported_row_has_a_snippet() -> None:
    missing = [n for n, status in STATUS.items() if status == "supported" and n not in SNIPPETS]
    assert not missing, f"rows marked supported without a snippet: {missing}"


@pytest.mark.parametrize("row", sorted(SNIPPETS), ids=lambda n: f"row{n}")
def test_snippet(row: int, tmp_path: Path) -> None:
    s = SNIPPETS[row]
    status = STATUS[row]
    if status == "not yet":
        assert s.error, f"row {row} is marked not yet: its snippet must show the error"
    if status == "supported":
        assert not s.error, f"row {row} is marked supported but its snippet expects an error: {s.error!r}"
    if s.cli is not None:
        outputs, _ = _run_cli(s, tmp_path)
        for name, expected in (s.expect or {}).items():
            partial = name == "errors.jsonl"
            assert not diff_rows(expected, outputs.get(name, []), partial=partial), (name, outputs.get(name))
        return
    for name, text in s.files.items():
        (tmp_path / name).write_text(text)
    try:
        outcome = run_case(parse_case(_case_text(s), str(tmp_path / "snippet.case")))
    except DuckstreamError as err:
        assert s.error is not None, f"row {row} ({status}) was rejected: {err}"
        assert s.error in str(err), f"row {row}: {err}"
        return
    assert s.error is None, f"row {row} is expected to fail with {s.error!r}, but it ran: promote the row in the doc"
    assert s.expect is not None
    for name, expected in s.expect.items():
        problems = diff_rows(expected, outcome.outputs.get(name, []))
        assert not problems, f"row {row} output {name}: {problems}"
        if s.ordered:
            assert outcome.outputs[name] == expected, f"row {row}: rows out of order: {outcome.outputs[name]}"
    problems = diff_rows(s.errors, outcome.errors, partial=True)
    assert not problems, f"row {row} error rows: {problems}"
