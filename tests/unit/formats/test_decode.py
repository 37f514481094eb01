"""Decoder: JSON lines and CSV into rows plus error rows; typed rows conformed to a schema."""

from __future__ import annotations

import json
import random
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from engine.errors import ConnectorError
from engine.formats.decode import Decoder
from engine.types import ERROR_SCHEMA, SEQ_COL
from tests.unit.formats.conftest import raw_batch

READINGS = pa.schema([("ts", pa.timestamp("us")), ("device", pa.string()), ("temp", pa.int32())])
T0 = datetime(2024, 5, 1, 10, 0)


def good(i: int) -> bytes:
    return json.dumps({"ts": f"2024-05-01T10:00:{i % 60:02d}Z", "device": f"d{i % 3}", "temp": i}).encode()


def decode(lines: list[bytes], schema: pa.Schema = READINGS, **kwargs: object) -> tuple[list[dict], list[dict]]:
    kwargs.setdefault("time_column", "ts")
    decoder = Decoder("readings", schema, kwargs.pop("fmt", "json"), **kwargs)  # type: ignore[arg-type]
    rows, errors = decoder.decode(raw_batch(lines))
    assert errors.schema == ERROR_SCHEMA
    assert rows.schema == decoder.out_schema
    return rows.to_pylist(), errors.to_pylist()


BAD_RECORDS = {
    "truncated_json": (b'{"ts": "2024-05-01T10:00:00Z", "dev', "decode"),
    "whitespace_only": (b"   \t", "decode"),
    "invalid_utf8": (b'{"ts": "2024-05-01T10:00:00Z", "device": "\xff"}', "decode"),
    "not_an_object": (b"[1, 2, 3]", "decode"),
    "wrong_type": (b'{"ts": "2024-05-01T10:00:00Z", "temp": "abc"}', "type"),
    "fraction_into_int": (b'{"ts": "2024-05-01T10:00:00Z", "temp": 123.4}', "type"),
    "out_of_range_int": (b'{"ts": "2024-05-01T10:00:00Z", "temp": 3000000000}', "type"),
    "bad_timestamp": (b'{"ts": "yesterday", "temp": 1}', "type"),
    "missing_time": (b'{"device": "a", "temp": 1}', "missing_time"),
    "null_time": (b'{"ts": null, "temp": 1}', "missing_time"),
    "too_large": (b'{"ts": "2024-05-01T10:00:00Z", "device": "' + b"x" * 300 + b'"}', "too_large"),
}


@pytest.mark.parametrize("n_good", [3, 200], ids=["record_by_record", "whole_batch"])
@pytest.mark.parametrize("kind", sorted(BAD_RECORDS))
def test_decode_bad_record_gives_exactly_one_error_row(kind: str, n_good: int) -> None:
    payload, reason = BAD_RECORDS[kind]
    lines = [good(i) for i in range(n_good)]
    lines.insert(1, payload)
    rows, errors = decode(lines, max_record_bytes=200)
    assert len(rows) == n_good
    assert [r[SEQ_COL] for r in rows] == [0, *range(2, n_good + 1)]
    assert len(errors) == 1
    (error,) = errors
    assert error["reason"] == reason
    assert error["stream"] == "readings"
    assert error["step_id"] == "decode:readings"
    assert error["source_offset"] == "readings:1"
    assert error["detected_at"] is not None
    if reason == "too_large":
        assert error["payload"] == payload[:1024]
    else:
        assert error["payload"] == payload
    assert "\n" not in error["message"]


def test_decode_too_large_keeps_first_kilobyte() -> None:
    payload = b'{"device": "' + b"y" * 5000 + b'"}'
    _, errors = decode([payload], max_record_bytes=4096)
    assert errors[0]["reason"] == "too_large"
    assert errors[0]["payload"] == payload[:1024]
    assert "5014 bytes" in errors[0]["message"]


def test_decode_empty_line_is_skipped_without_error() -> None:
    rows, errors = decode([good(0), b"", good(1), b""])
    assert [r[SEQ_COL] for r in rows] == [0, 2]
    assert errors == []


def test_decode_messages_name_column_and_value() -> None:
    _, errors = decode(
        [
            b'{"ts": "2024-05-01T10:00:00Z", "temp": "abc"}',
            b'{"ts": "2024-05-01T10:00:00Z", "temp": 3000000000}',
            b'{"ts": "2024-05-01T10:00:00Z", "temp": 1.5}',
            b'{"ts": "2024-05-01T10:00:0',
            b'{"temp": 1}',
        ]
    )
    messages = [e["message"] for e in errors]
    assert messages[0] == 'column "temp": "abc" is not an INT'
    assert messages[1] == 'column "temp": 3000000000 is out of range for INT'
    assert messages[2] == 'column "temp": 1.5 is not an INT'
    assert messages[3].startswith("invalid JSON: ")
    assert messages[4] == 'time column "ts" is NULL or missing'


def test_decode_type_error_keeps_event_time_when_readable() -> None:
    _, errors = decode([b'{"ts": "2024-05-01T10:00:05Z", "temp": "abc"}', b'{"ts": "x", "temp": 1}'])
    assert errors[0]["event_time"] == datetime(2024, 5, 1, 10, 0, 5)
    assert errors[1]["event_time"] is None


def test_decode_rows_have_schema_columns_in_order_plus_seq() -> None:
    rows, errors = decode([b'{"temp": 5, "extra": [1], "device": "a", "ts": "2024-05-01T10:00:00Z"}'])
    assert errors == []
    assert rows == [{"ts": T0, "device": "a", "temp": 5, SEQ_COL: 0}]


def test_decode_keys_match_case_insensitively_exact_preferred() -> None:
    schema = pa.schema([("TS", pa.timestamp("us")), ("Temp", pa.int64())])
    rows, _ = decode(
        [
            b'{"ts": "2024-05-01T10:00:00Z", "temp": 1}',
            b'{"TS": "2024-05-01T10:00:00Z", "temp": 2, "Temp": 3}',
        ],
        schema=schema,
        time_column="TS",
    )
    assert [r["Temp"] for r in rows] == [1, 3]
    assert list(rows[0]) == ["TS", "Temp", SEQ_COL]


def test_decode_missing_key_is_null() -> None:
    rows, _ = decode([b'{"ts": "2024-05-01T10:00:00Z"}'])
    assert rows[0]["device"] is None and rows[0]["temp"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, 0)),
        ("2024-05-01T10:00:00.250Z", datetime(2024, 5, 1, 10, 0, 0, 250000)),
        ("2024-05-01T10:00:00.123456789Z", datetime(2024, 5, 1, 10, 0, 0, 123456)),
        ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, 0)),
        ("2024-05-01T04:30:00-0530", datetime(2024, 5, 1, 10, 0)),
        ("2024-05-01 10:00:00", datetime(2024, 5, 1, 10, 0)),
        ("2024-05-01T10:00", datetime(2024, 5, 1, 10, 0)),
        ("2024-05-01", datetime(2024, 5, 1)),
        (1714557600000, datetime(2024, 5, 1, 10, 0)),
        (1714557600000.5, datetime(2024, 5, 1, 10, 0, 0, 500)),
        ("1714557600000", datetime(2024, 5, 1, 10, 0)),
    ],
)
def test_decode_timestamp_forms(text: object, expected: datetime) -> None:
    rows, errors = decode([json.dumps({"ts": text}).encode()])
    assert errors == []
    assert rows[0]["ts"] == expected


@pytest.mark.parametrize(
    "text", ["2024-02-30T00:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T10:00:00+25:00", "10:00", True]
)
def test_decode_timestamp_rejects(text: object) -> None:
    rows, errors = decode([json.dumps({"ts": text}).encode()])
    assert rows == []
    assert [e["reason"] for e in errors] == ["type"]


COERCIONS = [
    # (type, JSON value, expected or "type" for a type error)
    (pa.int32(), 42, 42),
    (pa.int32(), 3.0, 3),
    (pa.int32(), "42", 42),
    (pa.int32(), "-7", -7),
    (pa.int32(), 1.5, "type"),
    (pa.int32(), True, "type"),
    (pa.int32(), 2**31, "type"),
    (pa.int8(), 127, 127),
    (pa.int8(), 128, "type"),
    (pa.int64(), 2**63, "type"),
    (pa.float64(), 1, 1.0),
    (pa.float64(), "2.5", 2.5),
    (pa.float64(), "x", "type"),
    (pa.float32(), 1e39, "type"),
    (pa.decimal128(5, 2), 84.51, Decimal("84.51")),
    (pa.decimal128(5, 2), "1.005", Decimal("1.01")),
    (pa.decimal128(5, 2), 12, Decimal("12.00")),
    (pa.decimal128(5, 2), 1234.5, "type"),
    (pa.string(), "x", "x"),
    (pa.string(), 5, "5"),
    (pa.string(), 1.5, "1.5"),
    (pa.string(), True, "true"),
    (pa.string(), {"a": [1, 2]}, '{"a":[1,2]}'),
    (pa.bool_(), True, True),
    (pa.bool_(), "FALSE", False),
    (pa.bool_(), 1, "type"),
    (pa.date32(), "2024-05-01", date(2024, 5, 1)),
    (pa.date32(), "2024-5-1", "type"),
    (pa.binary(), "0aff", b"\x0a\xff"),
    (pa.binary(), "xyz", "type"),
]


@pytest.mark.parametrize(("dtype", "value", "expected"), COERCIONS, ids=[f"{c[0]}-{c[1]!r}" for c in COERCIONS])
def test_decode_coercion_rules(dtype: pa.DataType, value: object, expected: object) -> None:
    schema = pa.schema([("v", dtype)])
    for copies in (1, 100):  # record by record, and the whole-batch path
        rows, errors = decode([json.dumps({"v": value}).encode()] * copies, schema=schema, time_column=None)
        if expected == "type":
            assert rows == [] and {e["reason"] for e in errors} == {"type"}, copies
            assert '"v"' in errors[0]["message"]
        else:
            assert errors == [], copies
            assert {r["v"] for r in rows} == {expected}, copies


def test_decode_not_null_column_rejects_null() -> None:
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), ("name", pa.string())])
    rows, errors = decode([b'{"id": 1}', b'{"name": "x"}'], schema=schema, time_column=None)
    assert [r["id"] for r in rows] == [1]
    assert [(e["reason"], e["source_offset"]) for e in errors] == [("type", "readings:1")]


def test_decode_is_independent_of_batch_split() -> None:
    rng = random.Random(7)
    values = [1, -3, 2.0, 2.5, "12", "x", None, True, 10**12, "2024-05-01T10:00:00Z", 1714557600000, {"a": 1}]
    lines: list[bytes] = []
    for i in range(600):
        pick = rng.random()
        if pick < 0.05:
            lines.append(rng.choice([b"", b" ", b"{", b"\xfe", b"[]", b'{"ts": 1} {"ts": 2}']))
            continue
        record = {"ts": rng.choice(["2024-05-01T10:00:00Z", f"2024-05-01 10:{i % 60:02d}:00", None, 1714557600000])}
        for key in ("device", "DEVICE", "temp", "Temp", "other"):
            if rng.random() < 0.5:
                record[key] = rng.choice(values)
        lines.append(json.dumps(record).encode())

    decoder = Decoder("readings", READINGS, "json", time_column="ts")
    whole_rows, whole_errors = decoder.decode(raw_batch(lines))
    cuts = sorted(rng.sample(range(1, len(lines)), 20))
    split_rows, split_errors = [], []
    for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True):
        rows, errors = decoder.decode(raw_batch(lines[a:b], start=a))
        split_rows += rows.to_pylist()
        split_errors += errors.to_pylist()
    single_rows, single_errors = [], []
    for i, line in enumerate(lines):
        rows, errors = decoder.decode(raw_batch([line], start=i))
        single_rows += rows.to_pylist()
        single_errors += errors.to_pylist()

    def error_keys(errors: list[dict]) -> list[tuple]:
        return sorted((e["source_offset"], e["reason"], e["message"]) for e in errors)

    assert whole_rows.to_pylist() == split_rows == single_rows
    assert error_keys(whole_errors.to_pylist()) == error_keys(split_errors) == error_keys(single_errors)
    assert whole_rows.num_rows + whole_errors.num_rows == sum(1 for line in lines if line)


# ---------------------------------------------------------------------- CSV

CSV_SCHEMA = pa.schema([("ts", pa.timestamp("us")), ("device", pa.string()), ("temp", pa.float64())])


def test_csv_header_maps_columns_by_name_case_insensitively() -> None:
    lines = [b"TEMP,Device,ts,unused", b"20.5,a,2024-05-01T10:00:00Z,x", b",b,2024-05-01T10:00:01Z,y"]
    rows, errors = decode(lines, schema=CSV_SCHEMA, fmt="csv")
    assert errors == []
    assert rows == [
        {"ts": T0, "device": "a", "temp": 20.5, SEQ_COL: 1},
        {"ts": datetime(2024, 5, 1, 10, 0, 1), "device": "b", "temp": None, SEQ_COL: 2},
    ]


def test_csv_without_header_is_positional() -> None:
    lines = [b"2024-05-01T10:00:00Z;a;1.5", b"2024-05-01T10:00:01Z;b;x"]
    rows, errors = decode(lines, schema=CSV_SCHEMA, fmt="csv", csv_options={"header": False, "delimiter": ";"})
    assert [(r["device"], r["temp"]) for r in rows] == [("a", 1.5)]
    assert [(e["reason"], e["source_offset"]) for e in errors] == [("type", "readings:1")]
    assert errors[0]["message"] == 'column "temp": "x" is not a DOUBLE'


@pytest.mark.parametrize("copies", [1, 100])
def test_csv_wrong_arity_and_bad_quoting_are_decode_errors(copies: int) -> None:
    lines = [b"ts,device,temp"]
    for _ in range(copies):
        lines += [
            b"2024-05-01T10:00:00Z,a,1",
            b"2024-05-01T10:00:00Z,a",
            b'2024-05-01T10:00:00Z,"a,1',
            b'2024-05-01T10:00:00Z,"a,b",2',
        ]
    rows, errors = decode(lines, schema=CSV_SCHEMA, fmt="csv")
    assert len(rows) == 2 * copies
    assert rows[1]["device"] == "a,b"
    assert sorted({e["reason"] for e in errors}) == ["decode"]
    assert len(errors) == 2 * copies
    assert "expected 3 fields, got 2" in errors[0]["message"]


def test_csv_header_is_remembered_across_batches_and_set_after_resume() -> None:
    decoder = Decoder("readings", CSV_SCHEMA, "csv", time_column="ts")
    rows, _ = decoder.decode(raw_batch([b"device,ts,temp"]))
    assert rows.num_rows == 0 and decoder.header == ["device", "ts", "temp"]
    rows, _ = decoder.decode(raw_batch([b"a,2024-05-01T10:00:00Z,1"], start=1))
    assert rows.to_pylist()[0]["device"] == "a"

    resumed = Decoder("readings", CSV_SCHEMA, "csv", time_column="ts")
    with pytest.raises(ConnectorError, match="header"):
        resumed.decode(raw_batch([b"a,2024-05-01T10:00:00Z,1"], start=5))
    resumed.set_header(b"device,ts,temp")
    rows, _ = resumed.decode(raw_batch([b"a,2024-05-01T10:00:00Z,1"], start=5))
    assert rows.to_pylist() == [{"ts": T0, "device": "a", "temp": 1.0, SEQ_COL: 5}]


def test_csv_header_with_byte_order_mark() -> None:
    rows, errors = decode([b"\xef\xbb\xbfts,device,temp", b"2024-05-01T10:00:00Z,a,1"], schema=CSV_SCHEMA, fmt="csv")
    assert errors == [] and rows[0]["temp"] == 1.0


def test_csv_batch_split_independence() -> None:
    rng = random.Random(3)
    lines = [b"ts,device,temp"]
    for i in range(400):
        temp = rng.choice(["1", "2.5", "", "x", "1e3", '"4"'])
        ts = rng.choice(["2024-05-01T10:00:00Z", "2024-05-01 10:00:01", "", "nope"])
        lines.append(f"{ts},d{i % 4},{temp}".encode())
    decoder = Decoder("readings", CSV_SCHEMA, "csv", time_column="ts")
    whole, whole_errors = decoder.decode(raw_batch(lines))
    parts, part_errors = [], 0
    for a in range(0, len(lines), 37):
        rows, errors = decoder.decode(raw_batch(lines[a : a + 37], start=a))
        parts += rows.to_pylist()
        part_errors += errors.num_rows
    assert whole.to_pylist() == parts
    assert whole_errors.num_rows == part_errors
    assert whole.num_rows + whole_errors.num_rows == 400


# ---------------------------------------------------------------------- conform (typed sources)


def test_conform_casts_matches_case_insensitively_and_fills_missing() -> None:
    schema = pa.schema(
        [("TS", pa.timestamp("us")), ("price", pa.float64()), ("qty", pa.int32()), ("note", pa.string())]
    )
    batch = pa.record_batch(
        {
            "ts": pa.array([0, 1_000_000], pa.timestamp("us", "UTC")),
            "PRICE": pa.array([1, 2], pa.int64()),
            "qty": pa.array([5, 6], pa.int64()),
            "offset": pa.array([10, 11], pa.int64()),
        }
    )
    rows, errors = Decoder("t", schema, None, time_column="TS").conform(batch)
    assert errors.num_rows == 0
    assert rows.schema == schema.append(pa.field(SEQ_COL, pa.int64()))
    assert rows.column("price").to_pylist() == [1.0, 2.0]
    assert rows.column("note").to_pylist() == [None, None]
    assert rows.column(SEQ_COL).to_pylist() == [10, 11]


def test_conform_rows_that_do_not_cast_become_type_errors() -> None:
    schema = pa.schema([("ts", pa.timestamp("us")), ("qty", pa.int8())])
    batch = pa.record_batch(
        {
            "ts": pa.array([0, 1, None, 3], pa.timestamp("us")),
            "qty": pa.array([1, 1000, 2, 3], pa.int64()),
            "offset": pa.array([0, 1, 2, 3], pa.int64()),
        }
    )
    rows, errors = Decoder("t", schema, None, time_column="ts").conform(batch)
    assert rows.column("qty").to_pylist() == [1, 3]
    got = {(e["reason"], e["source_offset"]) for e in errors.to_pylist()}
    assert got == {("type", "t:1"), ("missing_time", "t:2")}
    bad = next(e for e in errors.to_pylist() if e["reason"] == "type")
    assert json.loads(bad["payload"]) == {"ts": "1970-01-01T00:00:00.000001Z", "qty": 1000}
    assert 'column "qty": 1000' in bad["message"]


def test_conform_strings_follow_json_rules() -> None:
    schema = pa.schema([("ts", pa.timestamp("us")), ("n", pa.int64())])
    batch = pa.table(
        {"ts": ["2024-05-01T10:00:00Z", "bad"], "n": ["42", "3.0"], "offset": pa.array([0, 1], pa.int64())}
    )
    rows, errors = Decoder("t", schema, None).conform(batch)
    assert rows.to_pylist() == [{"ts": T0, "n": 42, SEQ_COL: 0}]
    assert errors.column("reason").to_pylist() == ["type"]


def test_decoder_rejects_bad_configuration() -> None:
    with pytest.raises(ConnectorError, match="xml"):
        Decoder("s", READINGS, "xml")
    with pytest.raises(ConnectorError, match="time column"):
        Decoder("s", READINGS, "json", time_column="nope")
    with pytest.raises(ConnectorError, match="quote"):
        Decoder("s", READINGS, "csv", csv_options={"quote": "'"})
    with pytest.raises(ConnectorError, match="use conform"):
        Decoder("s", READINGS, None).decode(raw_batch([b"{}"]))


VALUE_KINDS = {
    "small_ints": lambda r: r.randint(-200, 200),
    "big_ints": lambda r: r.choice([2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, 10**20]),
    "whole_floats": lambda r: float(r.randint(-100, 100)),
    "floats": lambda r: r.uniform(-1e6, 1e6),
    "tiny_floats": lambda r: r.choice([1e-7, 2.5e-300, 0.1 + 0.2, 1e308, -0.0]),
    "int_strings": lambda r: str(r.randint(-(10**6), 10**6)),
    "number_strings": lambda r: r.choice(["1.5", "-2e3", "007", "+5", " 5", "1.005", "5.", ".5", "nan", "0x10"]),
    "bools": lambda r: r.random() < 0.5,
    "bool_strings": lambda r: r.choice(["true", "False", "TRUE", "yes"]),
    "texts": lambda r: r.choice(["a", "é", "line\nbreak", 'quote"', "", "2024-05-01"]),
    "iso": lambda r: r.choice(
        [
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00.123456Z",
            "2024-05-01T10:00:00.1234567Z",
            "2024-05-01 10:00:00",
            "2024-05-01T10:00:00+05:30",
            "2024-05-01T10:00:00-0100",
            "2024-05-01t10:00:00z",
            "2024-05-01",
            "2024-02-30",
            "0000-01-01",
            "2024-05-01T10",
            "2024-05-01T10:00:00,5Z",
        ]
    ),
    "epoch_ms": lambda r: r.randint(0, 2 * 10**12),
    "nulls": lambda r: None,
    "objects": lambda r: r.choice([{"a": 1}, [1, "x"], []]),
}
FAST_TYPES = [
    pa.int8(),
    pa.int32(),
    pa.int64(),
    pa.uint16(),
    pa.float32(),
    pa.float64(),
    pa.decimal128(9, 3),
    pa.string(),
    pa.bool_(),
    pa.timestamp("us"),
    pa.date32(),
]


@pytest.mark.parametrize("dtype", FAST_TYPES, ids=str)
def test_decode_whole_batch_equals_record_by_record(dtype: pa.DataType) -> None:
    """The whole-batch path may decline, but never decides differently from the per-record path."""
    rng = random.Random(str(dtype))
    schema = pa.schema([("v", dtype), ("w", pa.int64())])
    batched = Decoder("s", schema, "json")
    reference = Decoder("s", schema, "json")
    reference.record_by_record_upto = 10**9
    kinds = sorted(VALUE_KINDS)
    for trial in range(len(kinds) * 2):
        mix = [kinds[trial % len(kinds)]] if trial < len(kinds) else rng.sample(kinds, 2)
        lines = [json.dumps({"v": VALUE_KINDS[rng.choice(mix)](rng), "w": i}).encode() for i in range(80)]
        rows, errors = batched.decode(raw_batch(lines))
        ref_rows, ref_errors = reference.decode(raw_batch(lines))
        assert rows.to_pylist() == ref_rows.to_pylist(), mix

        def keys(errors: pa.Table) -> list[tuple[str, str]]:
            offsets, messages = errors.column("source_offset").to_pylist(), errors.column("message").to_pylist()
            return sorted(zip(offsets, messages, strict=True))

        assert keys(errors) == keys(ref_errors), mix


@pytest.mark.parametrize("dtype", FAST_TYPES, ids=str)
def test_csv_whole_batch_equals_record_by_record(dtype: pa.DataType) -> None:
    rng = random.Random(str(dtype))
    schema = pa.schema([("v", dtype), ("w", pa.int64())])
    batched = Decoder("s", schema, "csv", csv_options={"header": False})
    reference = Decoder("s", schema, "csv", csv_options={"header": False})
    reference.record_by_record_upto = 10**9
    kinds = [k for k in sorted(VALUE_KINDS) if k not in ("objects", "nulls")]
    for trial in range(len(kinds)):
        lines = []
        for i in range(80):
            value = VALUE_KINDS[kinds[trial]](rng)
            text = json.dumps(value) if isinstance(value, bool) else str(value).replace("\n", " ")
            lines.append((f'"{text}"' if '"' in text or "," in text else text).encode() + f",{i}".encode())
        rows, errors = batched.decode(raw_batch(lines))
        ref_rows, ref_errors = reference.decode(raw_batch(lines))
        assert rows.to_pylist() == ref_rows.to_pylist(), kinds[trial]
        assert errors.column("message").to_pylist() == ref_errors.column("message").to_pylist()


def test_decode_lone_surrogate_is_a_type_error_with_a_printable_message() -> None:
    schema = pa.schema([("id", pa.int32()), ("name", pa.string())])
    lines = [
        b'{"id": 1, "name": "ok"}',
        b'{"id": 2, "name": "bad \\ud800 text"}',
        b'{"id": 3, "name": "\\ud83d\\ude00"}',
    ]
    for copies in (1, 40):
        rows, errors = decode(lines * copies, schema=schema, time_column=None)
        assert {r["name"] for r in rows} == {"ok", "\U0001f600"}
        assert {e["reason"] for e in errors} == {"type"}
        assert len(errors) == copies
        assert "\\ud800" in errors[0]["message"]
