"""KDA input schemas: loading and validating them, decoding records by them, KDA-style discovery."""

from __future__ import annotations

import json
import random
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from engine.errors import ConnectorError
from engine.formats.kda_decode import SEQ_STRIDE, KdaDecoder, record_offsets
from engine.formats.kda_schema import (
    InputSchema,
    discover_input_schema,
    load_input_schema,
    parse_input_schema,
)
from engine.types import ERROR_SCHEMA, RAW_SCHEMA, SEQ_COL
from tests.unit.formats.conftest import raw_batch

# The AWS demo stream's discovered schema (KDA_SQL.md 7.3)
DEMO_COLUMNS = [
    {"Name": "TICKER_SYMBOL", "SqlType": "VARCHAR(4)", "Mapping": "$.TICKER_SYMBOL"},
    {"Name": "SECTOR", "SqlType": "VARCHAR(16)", "Mapping": "$.SECTOR"},
    {"Name": "CHANGE", "SqlType": "REAL", "Mapping": "$.CHANGE"},
    {"Name": "PRICE", "SqlType": "REAL", "Mapping": "$.PRICE"},
]
DEMO_SCHEMA = {
    "RecordFormat": {
        "RecordFormatType": "JSON",
        "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}},
    },
    "RecordEncoding": "UTF-8",
    "RecordColumns": DEMO_COLUMNS,
}


def json_schema(columns: list[dict[str, str]], row_path: str = "$") -> InputSchema:
    return parse_input_schema(
        {
            "RecordFormat": {
                "RecordFormatType": "JSON",
                "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": row_path}},
            },
            "RecordColumns": columns,
        },
        "test.json",
    )


def csv_schema(types: list[str], column_delimiter: str = ",", row_delimiter: str = "\n") -> InputSchema:
    return parse_input_schema(
        {
            "RecordFormat": {
                "RecordFormatType": "CSV",
                "MappingParameters": {
                    "CSVMappingParameters": {
                        "RecordColumnDelimiter": column_delimiter,
                        "RecordRowDelimiter": row_delimiter,
                    }
                },
            },
            "RecordColumns": [{"Name": f"C{i + 1}", "SqlType": t} for i, t in enumerate(types)],
        },
        "test.json",
    )


def decode(
    schema: InputSchema, lines: list[bytes], reference: bool = False, **kwargs: Any
) -> tuple[list[dict], list[dict]]:
    decoder = KdaDecoder("S", schema, **kwargs)
    if reference:
        decoder.record_by_record_upto = 1 << 30
    rows, errors = decoder.decode(raw_batch(lines))
    assert rows.schema == decoder.out_schema
    assert errors.schema == ERROR_SCHEMA
    return rows.to_pylist(), errors.drop_columns(["detected_at"]).to_pylist()


def one(schema: InputSchema, record: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    return decode(schema, [json.dumps(record).encode()])


# ---------------------------------------------------------------------- loading


def write(tmp_path: Path, document: Any, name: str = "input-schema.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"InputSchema": s},
        lambda s: {"NamePrefix": "SOURCE_SQL_STREAM", "KinesisStreamsInput": {"ResourceARN": "arn"}, "InputSchema": s},
        lambda s: {"ApplicationDetail": {"InputDescriptions": [{"InputId": "1.1", "InputSchema": s}]}},
        lambda s: {"Inputs": [{"NamePrefix": "SOURCE_SQL_STREAM", "InputSchema": s}]},
        lambda s: [{"InputSchema": s}],
    ],
    ids=["bare", "wrapped", "inputs_entry", "describe_application", "create_application", "list"],
)
def test_load_accepts_every_shape_the_aws_cli_prints(tmp_path: Path, wrap: Any) -> None:
    schema = load_input_schema(write(tmp_path, wrap(DEMO_SCHEMA)))
    assert schema.format == "json"
    assert schema.arrow_schema() == pa.schema(
        [("TICKER_SYMBOL", pa.string()), ("SECTOR", pa.string()), ("CHANGE", pa.float32()), ("PRICE", pa.float32())]
    )
    assert [c.max_length for c in schema.columns] == [4, 16, None, None]
    assert [c.path for c in schema.columns] == [("TICKER_SYMBOL",), ("SECTOR",), ("CHANGE",), ("PRICE",)]


def test_load_round_trips_to_json(tmp_path: Path) -> None:
    schema = load_input_schema(write(tmp_path, DEMO_SCHEMA))
    again = parse_input_schema(schema.to_json(), "again")
    assert again.columns == schema.columns and again.format == schema.format
    tsv = csv_schema(["INTEGER", "VARCHAR(3)"], "\t", "|")
    assert parse_input_schema(tsv.to_json()).columns == tsv.columns


def test_load_reads_every_sql_type() -> None:
    types = {
        "VARCHAR(4)": pa.string(),
        "CHAR(2)": pa.string(),
        "INTEGER": pa.int32(),
        "INT": pa.int32(),
        "BIGINT": pa.int64(),
        "SMALLINT": pa.int16(),
        "TINYINT": pa.int8(),
        "REAL": pa.float32(),
        "DOUBLE": pa.float64(),
        "DECIMAL(5,2)": pa.decimal128(5, 2),
        "BOOLEAN": pa.bool_(),
        "TIMESTAMP": pa.timestamp("us"),
        "DATE": pa.date32(),
        "TIME": pa.time64("us"),
        "VARBINARY(8)": pa.binary(),
    }
    columns = [{"Name": f"C{i}", "SqlType": t, "Mapping": f"$.c{i}"} for i, t in enumerate(types)]
    assert json_schema(columns).arrow_schema().types == list(types.values())


BAD_FILES = {
    "unknown_type": (
        {**DEMO_SCHEMA, "RecordColumns": [{"Name": "PRICE", "SqlType": "REALL", "Mapping": "$.PRICE"}]},
        "input-schema.json: column PRICE: unknown SqlType 'REALL'",
    ),
    "no_mapping": (
        {**DEMO_SCHEMA, "RecordColumns": [{"Name": "PRICE", "SqlType": "REAL"}]},
        "input-schema.json: column PRICE: Mapping is missing",
    ),
    "bad_mapping": (
        {**DEMO_SCHEMA, "RecordColumns": [{"Name": "A", "SqlType": "INT", "Mapping": "$.a[2]"}]},
        "input-schema.json: column A: Mapping '$.a[2]': cannot read '[2]' (an array is written [0:])",
    ),
    "not_dollar": (
        {**DEMO_SCHEMA, "RecordColumns": [{"Name": "A", "SqlType": "INT", "Mapping": "a.b"}]},
        "input-schema.json: column A: Mapping 'a.b': a JSONPath starts with $",
    ),
    "two_levels_below_explode": (
        {**DEMO_SCHEMA, "RecordColumns": [{"Name": "A", "SqlType": "INT", "Mapping": "$.a[0:].b.c"}]},
        "column A: Mapping '$.a[0:].b.c': only one level below an exploded array",
    ),
    "two_exploded_arrays": (
        {
            **DEMO_SCHEMA,
            "RecordColumns": [
                {"Name": "A", "SqlType": "INT", "Mapping": "$.a[0:].x"},
                {"Name": "B", "SqlType": "INT", "Mapping": "$.b[0:].x"},
            ],
        },
        "input-schema.json: column B: explodes another array than column A",
    ),
    "duplicate_name": (
        {**DEMO_SCHEMA, "RecordColumns": [*DEMO_COLUMNS, {"Name": "price", "SqlType": "INT", "Mapping": "$.p"}]},
        "input-schema.json: column price: the name is used twice (as PRICE)",
    ),
    "typo_key": (
        {**DEMO_SCHEMA, "RecordColumns": [{"Name": "A", "SQLType": "INT", "Mapping": "$.a"}]},
        "input-schema.json: column A: unknown key(s) SQLType",
    ),
    "varchar_zero": (
        {**DEMO_SCHEMA, "RecordColumns": [{"Name": "A", "SqlType": "VARCHAR(0)", "Mapping": "$.a"}]},
        "input-schema.json: column A: 'VARCHAR(0)': the length must be 1 to 65534",
    ),
    "no_columns": ({**DEMO_SCHEMA, "RecordColumns": []}, "RecordColumns must be a list of 1 to 1000 columns"),
    "bad_format": (
        {**DEMO_SCHEMA, "RecordFormat": {"RecordFormatType": "XML"}},
        "input-schema.json: RecordFormatType must be JSON or CSV, not 'XML'",
    ),
    "bad_encoding": ({**DEMO_SCHEMA, "RecordEncoding": "ISO-8859-1"}, "RecordEncoding 'ISO-8859-1' is not supported"),
    "row_path_array": (
        {
            **DEMO_SCHEMA,
            "RecordFormat": {
                "RecordFormatType": "JSON",
                "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$.r[0:]"}},
            },
        },
        "RecordRowPath '$.r[0:]': an array is not supported here",
    ),
    "same_delimiters": (
        {
            **DEMO_SCHEMA,
            "RecordFormat": {
                "RecordFormatType": "CSV",
                "MappingParameters": {
                    "CSVMappingParameters": {"RecordColumnDelimiter": "|", "RecordRowDelimiter": "|"}
                },
            },
        },
        "CSV delimiters '|' and '|' must differ",
    ),
    "two_inputs": (
        {"ApplicationDetail": {"InputDescriptions": [{"InputSchema": DEMO_SCHEMA}, {"InputSchema": DEMO_SCHEMA}]}},
        "InputDescriptions holds 2 inputs with an InputSchema",
    ),
    "something_else": ({"Outputs": []}, "input-schema.json: no InputSchema found"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_load_error_is_one_line_naming_file_and_column(tmp_path: Path, kind: str) -> None:
    document, expected = BAD_FILES[kind]
    with pytest.raises(ConnectorError) as info:
        load_input_schema(write(tmp_path, document))
    message = str(info.value).replace(str(tmp_path) + "/", "")
    assert expected in message
    assert message.startswith("input-schema.json: ")
    assert "\n" not in message


def test_load_error_for_a_file_that_is_not_json_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "input-schema.json"
    path.write_text('{"RecordColumns": [', encoding="utf-8")
    with pytest.raises(ConnectorError, match=r"input-schema.json: not valid JSON: .* \(line 1, column 20\)"):
        load_input_schema(path)
    with pytest.raises(ConnectorError, match="nothing.json: no such file"):
        load_input_schema(tmp_path / "nothing.json")


# ---------------------------------------------------------------------- JSON mappings


def test_demo_stream_records_decode_with_varchar_truncation() -> None:
    schema = parse_input_schema(DEMO_SCHEMA)
    rows, errors = one(schema, {"TICKER_SYMBOL": "QXZZY", "SECTOR": "HEALTHCARE", "CHANGE": -0.5, "PRICE": 84.5})
    assert errors == []
    assert rows == [{"TICKER_SYMBOL": "QXZZ", "SECTOR": "HEALTHCARE", "CHANGE": -0.5, "PRICE": 84.5, SEQ_COL: 0}]


def test_mapping_forms_nested_bracketed_whole_array_and_missing() -> None:
    schema = json_schema(
        [
            {"Name": "A", "SqlType": "INTEGER", "Mapping": "$.a"},
            {"Name": "ABC", "SqlType": "VARCHAR(8)", "Mapping": "$.a2.b.c"},
            {"Name": "ODD", "SqlType": "INTEGER", "Mapping": "$['odd.key']"},
            {"Name": "ARR", "SqlType": "VARCHAR(64)", "Mapping": "$.arr[0:]"},
            {"Name": "GONE", "SqlType": "INTEGER", "Mapping": "$.missing.deep"},
        ]
    )
    record = {"a": 1, "a2": {"b": {"c": "deep"}}, "odd.key": 7, "arr": [1, {"x": "y"}, None]}
    rows, errors = one(schema, record)
    assert errors == []
    assert rows == [{"A": 1, "ABC": "deep", "ODD": 7, "ARR": '[1,{"x":"y"},null]', "GONE": None, SEQ_COL: 0}]
    # a path through something that is not an object finds nothing
    rows, _ = one(schema, {"a": 2, "a2": {"b": 5}, "arr": "not an array"})
    assert rows[0]["ABC"] is None and rows[0]["ARR"] is None


def test_mapping_is_case_sensitive() -> None:
    schema = json_schema([{"Name": "PRICE", "SqlType": "REAL", "Mapping": "$.price"}])
    rows, _ = one(schema, {"PRICE": 1.5})
    assert rows[0]["PRICE"] is None
    rows, _ = one(schema, {"price": 1.5})
    assert rows[0]["PRICE"] == 1.5


def test_record_row_path_selects_the_row_object() -> None:
    schema = json_schema([{"Name": "ID", "SqlType": "INTEGER", "Mapping": "$.id"}], row_path="$.data.row")
    rows, errors = decode(schema, [b'{"data": {"row": {"id": 4}}, "id": 9}', b'{"data": {}}', b'{"data": []}'])
    assert rows == [{"ID": 4, SEQ_COL: 0}]
    assert [(e["reason"], e["source_offset"]) for e in errors] == [("decode", "S:1"), ("decode", "S:2")]
    assert "RecordRowPath: $.data.row is not an object" in errors[0]["message"]


ORDERS = [
    {"Name": "ORDER_ID", "SqlType": "BIGINT", "Mapping": "$.id"},
    {"Name": "SKU", "SqlType": "VARCHAR(8)", "Mapping": "$.lines[0:].sku"},
    {"Name": "QTY", "SqlType": "INTEGER", "Mapping": "$.lines[0:].qty"},
    {"Name": "LINES", "SqlType": "VARCHAR(200)", "Mapping": "$.lines[0:]"},
]


def test_explode_gives_one_row_per_element_and_one_null_row_for_an_empty_array() -> None:
    schema = json_schema(ORDERS[:3])
    records = [
        {"id": 1, "lines": [{"sku": "a", "qty": 2}, {"sku": "b"}, 5]},
        {"id": 2, "lines": []},
        {"id": 3},
        {"id": 4, "lines": None},
    ]
    rows, errors = decode(schema, [json.dumps(r).encode() for r in records])
    assert errors == []
    assert rows == [
        {"ORDER_ID": 1, "SKU": "a", "QTY": 2, SEQ_COL: 0},
        {"ORDER_ID": 1, "SKU": "b", "QTY": None, SEQ_COL: 1},
        {"ORDER_ID": 1, "SKU": None, "QTY": None, SEQ_COL: 2},  # an element that is not an object
        {"ORDER_ID": 2, "SKU": None, "QTY": None, SEQ_COL: SEQ_STRIDE},
        {"ORDER_ID": 3, "SKU": None, "QTY": None, SEQ_COL: 2 * SEQ_STRIDE},
        {"ORDER_ID": 4, "SKU": None, "QTY": None, SEQ_COL: 3 * SEQ_STRIDE},
    ]
    assert record_offsets(pa.array([r[SEQ_COL] for r in rows]), schema).tolist() == [0, 0, 0, 1, 2, 3]


def test_explode_repeats_a_whole_array_column_and_errors_use_the_row_numbering() -> None:
    schema = json_schema(ORDERS)
    lines = [b'{"id": 1, "lines": [{"sku": "a"}, {"sku": "b"}]}', b'{"id": 2, "lines": [{"qty": 1.5}]}', b"{oops"]
    rows, errors = decode(schema, lines)
    assert [(r["SKU"], r["LINES"], r[SEQ_COL]) for r in rows] == [
        ("a", '[{"sku":"a"},{"sku":"b"}]', 0),
        ("b", '[{"sku":"a"},{"sku":"b"}]', 1),
    ]
    # one bad element rejects its whole record: one error row, numbered like the record's first row
    assert [(e["reason"], e["source_offset"]) for e in errors] == [
        ("type", f"S:{SEQ_STRIDE}"),
        ("decode", f"S:{2 * SEQ_STRIDE}"),
    ]


def order(rng: random.Random, i: int) -> bytes:
    lines = [{"sku": f"s{rng.randint(0, 99)}", "qty": rng.randint(1, 9)} for _ in range(rng.randint(0, 3))]
    record: dict[str, Any] = {"id": i, "lines": lines}
    if rng.random() < 0.05:
        record["lines"] = [{"sku": "x", "qty": "many"}]  # a type error
    return json.dumps(record).encode()


def test_explode_rows_and_seq_do_not_depend_on_the_batch_split() -> None:
    rng = random.Random(3)
    lines = [order(rng, i) for i in range(400)]
    schema = json_schema(ORDERS[:3])
    whole_rows, whole_errors = decode(schema, lines)
    reference_rows, reference_errors = decode(schema, lines, reference=True)
    assert whole_rows == reference_rows and whole_errors == reference_errors
    decoder = KdaDecoder("S", schema)
    split_rows: list[dict] = []
    split_errors: list[dict] = []
    start = 0
    for size in (1, 7, 150, 2, 240):
        rows, errors = decoder.decode(raw_batch(lines[start : start + size], start=start))
        split_rows += rows.to_pylist()
        split_errors += errors.to_pylist()
        start += size
    assert split_rows == whole_rows
    assert [e["source_offset"] for e in split_errors] == [e["source_offset"] for e in whole_errors]
    seqs = [r[SEQ_COL] for r in whole_rows]
    assert seqs == sorted(set(seqs))  # unique and in arrival order


def test_flat_records_take_the_whole_batch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = parse_input_schema(DEMO_SCHEMA)
    decoder = KdaDecoder("S", schema)
    slow_calls: list[int] = []
    original = decoder._slow

    def counting(payloads: Any, *args: Any) -> Any:
        slow_calls.append(len(payloads))
        return original(payloads, *args)

    monkeypatch.setattr(decoder, "_slow", counting)
    record = {"TICKER_SYMBOL": "AMZN", "SECTOR": "RETAIL", "CHANGE": 1, "PRICE": 10.5}
    rows, errors = decoder.decode(raw_batch([json.dumps(record).encode()] * 500))
    assert rows.num_rows == 500 and errors.num_rows == 0
    assert slow_calls == []


def test_source_metadata_columns_follow_each_row_of_an_exploded_record() -> None:
    schema = json_schema(ORDERS[:2])
    stream = pa.schema([("ORDER_ID", pa.int64()), ("PARTITION_KEY", pa.string()), ("SKU", pa.string())])
    decoder = KdaDecoder("S", schema, schema=stream, metadata={"PARTITION_KEY": "partition_key"})
    lines = [b'{"id": 1, "lines": [{"sku": "a"}, {"sku": "b"}]}', b'{"id": 2}']
    raw = pa.table(
        [
            pa.array(lines, pa.large_binary()),
            pa.array([10, 11], pa.int64()),
            pa.array([0, 0], pa.timestamp("us")),
            pa.array(["k1", "k2"]),
        ],
        names=[*RAW_SCHEMA.names, "partition_key"],
    )
    rows, _ = decoder.decode(raw)
    assert [(r["ORDER_ID"], r["PARTITION_KEY"], r["SKU"]) for r in rows.to_pylist()] == [
        (1, "k1", "a"),
        (1, "k1", "b"),
        (2, "k2", None),
    ]
    assert decoder.batch_positions(rows, raw).to_pylist() == [0, 0, 1]
    with pytest.raises(ConnectorError, match="column NOPE is not in the input schema"):
        KdaDecoder("S", schema, schema=pa.schema([("NOPE", pa.int64())]))


def test_bad_records_give_one_error_row_each() -> None:
    schema = parse_input_schema(DEMO_SCHEMA)
    good = json.dumps({"TICKER_SYMBOL": "A", "PRICE": 1}).encode()
    lines = [good, b"\xff{}", b"[1]", b"   ", b"", b'{"PRICE": "x"}', b'{"TICKER_SYMBOL": "' + b"x" * 300 + b'"}']
    for reference in (False, True):
        rows, errors = decode(schema, lines * 30, reference=reference, max_record_bytes=200)
        assert len(rows) == 30
        reasons = [e["reason"] for e in errors[:5]]
        assert reasons == ["decode", "decode", "decode", "type", "too_large"]
        assert len(errors) == 150


def test_missing_time_is_per_row() -> None:
    schema = json_schema(
        [
            {"Name": "ID", "SqlType": "INTEGER", "Mapping": "$.id"},
            {"Name": "AT", "SqlType": "TIMESTAMP", "Mapping": "$.events[0:].at"},
        ]
    )
    line = b'{"id": 1, "events": [{"at": "2024-05-01T10:00:00Z"}, {}]}'
    rows, errors = decode(schema, [line], time_column="AT")
    assert [r[SEQ_COL] for r in rows] == [0]
    assert [(e["reason"], e["source_offset"]) for e in errors] == [("missing_time", "S:1")]


# ---------------------------------------------------------------------- CSV


def test_csv_columns_are_positional_with_a_tab_delimiter() -> None:
    schema = csv_schema(["VARCHAR(4)", "INTEGER", "DOUBLE"], column_delimiter="\t")
    lines = [b"AMZNX\t3\t1.5", b"B\t\t2", b"C\t4", b"D\t5\t6\textra"]
    for reference in (False, True):
        rows, errors = decode(schema, lines * 40, reference=reference)
        assert errors == []
        assert [(r["C1"], r["C2"], r["C3"], r[SEQ_COL]) for r in rows[:4]] == [
            ("AMZN", 3, 1.5, 0),
            ("B", None, 2.0, SEQ_STRIDE),
            ("C", 4, None, 2 * SEQ_STRIDE),
            ("D", 5, 6.0, 3 * SEQ_STRIDE),
        ]


def test_csv_custom_row_delimiter_splits_a_record_into_rows() -> None:
    schema = csv_schema(["VARCHAR(8)", "INTEGER"], column_delimiter=";", row_delimiter="|")
    lines = [b"a;1|b;2|", b"c;3", b'"d;x";4||e;5', b"f;nope|g;7"]
    for reference in (False, True):
        rows, errors = decode(schema, lines * 20, reference=reference)
        assert [(r["C1"], r["C2"], r[SEQ_COL]) for r in rows[:6]] == [
            ("a", 1, 0),
            ("b", 2, 1),
            ("c", 3, SEQ_STRIDE),
            ("d;x", 4, 2 * SEQ_STRIDE),  # quoted, with the delimiter inside
            ("e", 5, 2 * SEQ_STRIDE + 1),  # the empty row between || is skipped
            ("a", 1, 4 * SEQ_STRIDE),
        ]
        assert [(e["reason"], e["source_offset"]) for e in errors[:1]] == [("type", f"S:{3 * SEQ_STRIDE}")]
        assert len(errors) == 20


def test_csv_backslash_escapes_in_the_file_are_read_as_characters() -> None:
    schema = csv_schema(["INTEGER", "INTEGER"], column_delimiter="\\t", row_delimiter="\\n")
    assert (schema.column_delimiter, schema.row_delimiter) == ("\t", "\n")
    rows, _ = decode(schema, [b"1\t2\r\n"])
    assert [(r["C1"], r["C2"]) for r in rows] == [(1, 2)]


# ---------------------------------------------------------------------- coercion

COERCIONS = [
    # (SqlType, JSON value, expected value or "type" for an error row)
    ("INTEGER", None, None),
    ("INTEGER", True, 1),
    ("INTEGER", False, 0),
    ("INTEGER", 123.0, 123),
    ("INTEGER", 123.4, "type"),
    ("INTEGER", 3_000_000_000, "type"),
    ("INTEGER", "42", 42),
    ("INTEGER", "4x", "type"),
    ("INTEGER", [1], "type"),
    ("TINYINT", 127, 127),
    ("TINYINT", 128, "type"),
    ("REAL", True, 1.0),
    ("REAL", 1.5, 1.5),
    ("REAL", 1e39, "type"),
    ("DOUBLE", "2.5e3", 2500.0),
    ("DOUBLE", "abc", "type"),
    ("DECIMAL(5,2)", 123.456, Decimal("123.46")),
    ("DECIMAL(5,2)", 1234.5, "type"),
    ("DECIMAL(5,2)", True, Decimal("1.00")),
    ("BOOLEAN", True, True),
    ("BOOLEAN", 0, False),
    ("BOOLEAN", 2.5, True),
    ("BOOLEAN", "TRUE", True),
    ("BOOLEAN", "yes", False),
    ("BOOLEAN", {"a": 1}, "type"),
    ("VARCHAR(5)", True, "true"),
    ("VARCHAR(5)", 12, "12"),
    ("VARCHAR(5)", 1.25, "1.25"),
    ("VARCHAR(5)", "abcdefgh", "abcde"),
    ("VARCHAR(20)", {"a": [1, 2]}, '{"a":[1,2]}'),
    ("TIMESTAMP", "1992-02-14", datetime(1992, 2, 14)),
    ("TIMESTAMP", "1992-02-14 18:35:44.0", datetime(1992, 2, 14, 18, 35, 44)),
    ("TIMESTAMP", "2024-05-01T10:00:00.250Z", datetime(2024, 5, 1, 10, 0, 0, 250000)),
    ("TIMESTAMP", "1714557600000", "type"),
    ("TIMESTAMP", 1714557600000, "type"),
    ("TIMESTAMP", True, "type"),
    ("TIMESTAMP", "yesterday", "type"),
    ("DATE", "1992-02-14", date(1992, 2, 14)),
    ("DATE", 19920214, "type"),
    ("VARBINARY(4)", "X'3F67'", b"\x3f\x67"),
    ("VARBINARY(4)", True, b"\x01"),
    ("VARBINARY(4)", 5, "type"),
]


@pytest.mark.parametrize("path", ["record_by_record", "whole_batch"])
@pytest.mark.parametrize(("sql_type", "value", "expected"), COERCIONS, ids=[f"{t}-{v!r}" for t, v, _ in COERCIONS])
def test_coercion_follows_kda_rules(sql_type: str, value: Any, expected: Any, path: str) -> None:
    schema = json_schema([{"Name": "V", "SqlType": sql_type, "Mapping": "$.v"}])
    n = 1 if path == "record_by_record" else 300
    rows, errors = decode(schema, [json.dumps({"v": value}).encode()] * n)
    if expected == "type":
        assert rows == [] and len(errors) == n
        assert errors[0]["reason"] == "type"
        assert errors[0]["message"].startswith('column "V": ')
    else:
        assert errors == [] and len(rows) == n
        assert rows[0]["V"] == expected
        assert type(rows[0]["V"]) is type(expected)


def test_fast_and_record_by_record_paths_agree_on_mixed_values() -> None:
    rng = random.Random(11)
    values: list[Any] = [None, True, False, 0, 1, -7, 2.5, 1e10, "42", "2.5", "true", "x", "2024-05-01", [1], {"a": 1}]
    columns = [
        {"Name": f"C{i}", "SqlType": t, "Mapping": f"$.c{i}"}
        for i, t in enumerate(["INTEGER", "REAL", "DECIMAL(8,2)", "BOOLEAN", "VARCHAR(3)", "TIMESTAMP", "DATE"])
    ]
    schema = json_schema(columns)
    for _ in range(10):
        # a run of uniform records (the whole-batch path takes them) with a few odd ones
        kinds = [rng.choice(values) for _ in columns]
        lines = []
        for _ in range(300):
            row = {f"c{j}": (rng.choice(values) if rng.random() < 0.02 else kind) for j, kind in enumerate(kinds)}
            lines.append(json.dumps(row).encode())
        assert decode(schema, lines) == decode(schema, lines, reference=True)


# ---------------------------------------------------------------------- discovery


def test_discovery_names_and_types_like_kda() -> None:
    records = [
        {
            "ticker_symbol": "QXZ",
            "sector": "HEALTHCARE",
            "change": -0.05,
            "price": 84.51,
            "ts": "2024-05-01T10:00:00Z",
            "TIMESTAMP": 5,
            "user": "ann",
            "2fa": True,
            "@@": "x",
            "heart rate": 60,
            "geo": {"lat": 1.5, "lon": 2, "meta": {"src": "gps"}},
            "tags": ["a", "b"],
            "big": 2**40,
        },
        {"ticker_symbol": "AMZN", "sector": "TECHNOLOGY", "change": 1, "price": 10, "extra": None},
    ]
    schema = discover_input_schema([json.dumps(r).encode() for r in records], "json")
    found = {c.name: (c.sql_type, c.mapping) for c in schema.columns}
    assert found == {
        "TICKER_SYMBOL": ("VARCHAR(4)", "$.ticker_symbol"),
        "SECTOR": ("VARCHAR(16)", "$.sector"),
        "CHANGE": ("DOUBLE", "$.change"),
        "PRICE": ("DOUBLE", "$.price"),
        "TS": ("TIMESTAMP", "$.ts"),
        "COL_TIMESTAMP": ("INTEGER", "$.TIMESTAMP"),
        "COL_USER": ("VARCHAR(4)", "$.user"),
        "COL_2FA": ("BOOLEAN", "$.2fa"),
        "COL_0": ("VARCHAR(1)", "$.@@"),
        "COL_HEARTRATE": ("INTEGER", "$.heart rate"),
        "GEO_LAT": ("DOUBLE", "$.geo.lat"),
        "GEO_LON": ("INTEGER", "$.geo.lon"),
        "GEO_META": ("VARCHAR(16)", "$.geo.meta"),
        "TAGS": ("VARCHAR(16)", "$.tags[0:]"),
        "BIG": ("BIGINT", "$.big"),
        "EXTRA": ("VARCHAR(16)", "$.extra"),
    }
    # the discovered schema decodes the records it came from
    rows, errors = decode(schema, [json.dumps(r).encode() for r in records])
    assert errors == []
    assert rows[0]["GEO_META"] == '{"src":"gps"}' and rows[0]["TAGS"] == '["a","b"]' and rows[1]["PRICE"] == 10.0


def test_discovery_of_csv_names_columns_by_position() -> None:
    schema = discover_input_schema([b"QXZ\t1.5\ttrue|AMZN\t2\tfalse", b"X\t3"], "csv", "\t", "|")
    assert [(c.name, c.sql_type) for c in schema.columns] == [
        ("COL_1", "VARCHAR(4)"),
        ("COL_2", "DOUBLE"),
        ("COL_3", "BOOLEAN"),
    ]
    assert (schema.column_delimiter, schema.row_delimiter) == ("\t", "|")


def test_discovery_keeps_names_unique_and_refuses_an_empty_sample() -> None:
    schema = discover_input_schema([b'{"a-b": 1, "ab": 2, "a_b": 3, "A_B": 4}'], "json")
    assert [c.name for c in schema.columns] == ["COL_AB", "AB", "A_B", "A_B_2"]
    with pytest.raises(ConnectorError, match="there are no records"):
        discover_input_schema([b"not json", b"[1]"], "json")
    with pytest.raises(ConnectorError, match="cannot discover a schema for format 'xml'"):
        discover_input_schema([b"{}"], "xml")


def test_typed_rows_are_conformed_and_cut() -> None:
    schema = parse_input_schema(DEMO_SCHEMA)
    decoder = KdaDecoder("S", schema)
    batch = pa.table({"TICKER_SYMBOL": ["AMZNX"], "SECTOR": ["RETAIL"], "CHANGE": [0.5], "PRICE": [1.0], "offset": [0]})
    rows, errors = decoder.conform(batch)
    assert errors.num_rows == 0
    assert rows.to_pylist() == [{"TICKER_SYMBOL": "AMZN", "SECTOR": "RETAIL", "CHANGE": 0.5, "PRICE": 1.0, SEQ_COL: 0}]
    assert np.array_equal(record_offsets(np.array([5]), schema), np.array([5]))
