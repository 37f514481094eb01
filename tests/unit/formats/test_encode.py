"""Encoding rows as JSON lines and CSV, and reading them back."""

from __future__ import annotations

import json
import random
from datetime import date, datetime, time
from decimal import Decimal

import pyarrow as pa
import pytest

from engine.formats.decode import Decoder
from engine.formats.encode import row_to_json, to_csv, to_json_lines
from engine.formats.timestamps import format_timestamp, format_timestamps, parse_timestamp
from engine.types import SEQ_COL
from tests.unit.formats.conftest import raw_batch


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (1714557600_000000, "2024-05-01T10:00:00Z"),
        (1714557600_250000, "2024-05-01T10:00:00.250Z"),
        (1714557600_000001, "2024-05-01T10:00:00.000001Z"),
        (1714557600_123400, "2024-05-01T10:00:00.123400Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_timestamp_spelling(micros: int, text: str) -> None:
    assert format_timestamp(micros) == text
    assert format_timestamps(pa.array([micros], pa.timestamp("us"))).to_pylist() == [text]
    assert parse_timestamp(text) == micros


def test_format_timestamps_matches_per_value_formatting() -> None:
    rng = random.Random(5)
    values = [rng.randint(-62135596800000000, 253402300799999999) for _ in range(2000)] + [None]
    values += [rng.randint(0, 10**9) * 1000 for _ in range(200)]
    got = format_timestamps(pa.array(values, pa.timestamp("us"))).to_pylist()
    assert got == [None if v is None else format_timestamp(v) for v in values]


def test_json_lines_spelling_of_every_type() -> None:
    table = pa.table(
        {
            "ts": pa.array([1714557600_250000, None], pa.timestamp("us")),
            "i": pa.array([1, None], pa.int64()),
            "f": pa.array([2.0, float("nan")]),
            "s": ['a"b\n', None],
            "b": [True, None],
            "d": pa.array([date(2024, 5, 1), None]),
            "dec": pa.array([Decimal("12.30"), None], pa.decimal128(5, 2)),
            "bin": pa.array([b"\x0a\xff", None]),
            "l": pa.array([[1, 2], None]),
            "t": pa.array([time(10, 0, 0, 250000), None]),
        }
    )
    lines = to_json_lines(table).decode().splitlines()
    assert lines[0] == (
        '{"ts":"2024-05-01T10:00:00.250Z","i":1,"f":2.0,"s":"a\\"b\\n","b":true,"d":"2024-05-01",'
        '"dec":12.30,"bin":"0aff","l":[1,2],"t":"10:00:00.250"}'
    )
    assert json.loads(lines[1]) == dict.fromkeys(table.column_names)


def test_json_lines_empty_table_is_empty_bytes() -> None:
    assert to_json_lines(pa.table({"a": pa.array([], pa.int64())})) == b""


def test_jsonl_round_trip_of_timestamps_and_values() -> None:
    schema = pa.schema([("ts", pa.timestamp("us")), ("name", pa.string()), ("v", pa.float64()), ("n", pa.int64())])
    rng = random.Random(11)
    rows = [
        {
            "ts": datetime(2024, 5, 1, 10, 0) if i % 7 == 0 else datetime.fromtimestamp(rng.randint(0, 2**31), tz=None),
            "name": rng.choice(["a", "é", 'q"uote', "tab\t", None]),
            "v": rng.choice([0.1, 1e-9, 2.0, None, 123456.789]),
            "n": rng.choice([None, -(2**63), 2**63 - 1, 0]),
        }
        for i in range(300)
    ]
    for row in rows:
        row["ts"] = row["ts"].replace(microsecond=rng.choice([0, 250000, 1, 123456]))
    table = pa.Table.from_pylist(rows, schema=schema)
    payloads = to_json_lines(table).splitlines()
    decoded, errors = Decoder("s", schema, "json").decode(raw_batch(payloads))
    assert errors.num_rows == 0
    assert decoded.drop_columns([SEQ_COL]).to_pylist() == rows


def test_csv_quotes_only_when_needed_and_round_trips() -> None:
    schema = pa.schema([("ts", pa.timestamp("us")), ("text", pa.string()), ("x", pa.float64())])
    table = pa.table(
        {
            "ts": pa.array([1714557600_000000, 1714557600_500000, None], pa.timestamp("us")),
            "text": ["plain", 'has,comma "and quote"', None],
            "x": [1.5, None, float("inf")],
        },
        schema=schema,
    )
    text = to_csv(table)
    assert text.decode().splitlines() == [
        "ts,text,x",
        "2024-05-01T10:00:00Z,plain,1.5",
        '2024-05-01T10:00:00.500Z,"has,comma ""and quote""",',
        ",,",
    ]
    decoded, errors = Decoder("s", schema, "csv").decode(raw_batch(text.splitlines()))
    assert errors.num_rows == 0
    assert decoded.column("text").to_pylist() == ["plain", 'has,comma "and quote"', None]
    assert decoded.column("ts").to_pylist()[1] == datetime(2024, 5, 1, 10, 0, 0, 500000)


def test_csv_header_only_for_empty_table_and_delimiter() -> None:
    table = pa.table({"a": pa.array([], pa.int64()), "b;c": pa.array([], pa.string())})
    assert to_csv(table, delimiter=";") == b'a;"b;c"\n'
    assert to_csv(table, header=False) == b""


def test_row_to_json_uses_house_spelling() -> None:
    row = {
        "ts": datetime(2024, 5, 1, 10, 0),
        "d": Decimal("2"),
        "x": float("nan"),
        "b": b"\x01",
        "l": [date(2024, 1, 2)],
    }
    assert row_to_json(row) == '{"ts":"2024-05-01T10:00:00Z","d":2,"x":null,"b":"01","l":["2024-01-02"]}'


def test_json_lines_10k_rows_is_one_vectorised_pass() -> None:
    n = 10_000
    table = pa.table(
        {
            "ts": pa.array(range(0, n * 1000, 1000), pa.timestamp("us")),
            "a": range(n),
            "b": [f"x{i}" for i in range(n)],
            "c": [i * 0.5 for i in range(n)],
        }
    )
    lines = to_json_lines(table).splitlines()
    assert len(lines) == n
    assert json.loads(lines[-1]) == {"ts": "1970-01-01T00:00:09.999Z", "a": n - 1, "b": f"x{n - 1}", "c": 4999.5}
