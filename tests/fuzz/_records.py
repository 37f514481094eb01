"""Hypothesis strategies for raw records: known-good JSON/CSV rows (with the row they must give) and junk.

A *good* record is drawn together with the row it must decode to, so a test can check that good
rows come through unchanged whatever else is in the batch. Junk records come with no expectation
beyond "a row or exactly one error row".
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
from hypothesis import strategies as st

from engine.types import RAW_SCHEMA

STREAM = "s"
SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us")),
        ("device", pa.string()),
        ("temp", pa.int32()),
        ("x", pa.float64()),
        ("d", pa.decimal128(10, 2)),
        ("b", pa.bool_()),
    ]
)
NAMES = SCHEMA.names
EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class Record:
    """One raw payload and, for a known-good record, the row it must decode to (without ``__seq``)."""

    payload: bytes
    expected: dict[str, Any] | None = None


def raw_batch(payloads: list[bytes], start: int = 0) -> pa.RecordBatch:
    """Raw rows as a source hands them out, offsets counting from ``start``."""
    n = len(payloads)
    return pa.record_batch(
        [
            pa.array(payloads, pa.large_binary()),
            pa.array(range(start, start + n), pa.int64()),
            pa.array([0] * n, pa.timestamp("us")),
        ],
        schema=RAW_SCHEMA,
    )


# ---------------------------------------------------------------------- values

TEXT = st.text(st.characters(codec="utf-8"), max_size=20)  # no lone surrogates
TIMES = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 12, 31))
INT32 = st.integers(-(2**31), 2**31 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
DECIMALS = st.decimals(min_value=Decimal("-99999999.99"), max_value=Decimal("99999999.99"), places=2)
# Strings that look like numbers, times or special values without being them (or being them).
NEAR_MISSES = st.sampled_from(
    [
        "NaN",
        "nan",
        "-NaN",
        "Infinity",
        "-Infinity",
        "inf",
        "1e400",
        "-1e400",
        "1e-400",
        "0x10",
        "1_000",
        " 1",
        "1 ",
        "+1",
        "-0",
        "00",
        "1.",
        ".5",
        "1e5",
        "1E+2",
        "١٢",
        "１",
        "true",
        "FALSE",
        "null",
        "",
        "2024-05-01",
        "2024-05-01T10:00:00Z",
        "2024-05-01 10:00:00+02",
        "2024-02-30T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59.9999999Z",
        "2024-05-01T24:00:00Z",
        "1714557600000",
        "99999999999999999999",
        "-9223372036854775809",
        "\ufeff1",
        "1\x00",
        "\u2028",
    ]
)
HUGE_INTS = st.one_of(
    st.integers(),
    st.sampled_from([2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 10**30, 10**400, -(10**400)]),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    HUGE_INTS,
    st.floats(),  # NaN and infinities become NaN/Infinity literals
    st.text(max_size=20),  # lone surrogates included: escaped in JSON, invalid UTF-8 when not
    NEAR_MISSES,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


def _key(name: str, variant: int) -> str:
    return [name, name.upper(), name.capitalize()][variant % 3]


def _timestamp_text(value: datetime, style: int) -> str:
    if style == 0:
        return value.isoformat() + "Z"
    if style == 1:
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.isoformat() + "+00:00"


@st.composite
def good_json(draw: st.DrawFn) -> Record:
    """A JSON object every column of which fits (keys in any case and order, extra keys, NULLs)."""
    ts = draw(TIMES)
    expected: dict[str, Any] = dict.fromkeys(NAMES)
    obj: dict[str, Any] = {}
    if draw(st.booleans()):
        millis = (ts - EPOCH) // timedelta(milliseconds=1)
        obj["ts"] = millis if draw(st.booleans()) else str(millis)
        expected["ts"] = EPOCH + timedelta(milliseconds=millis)
    else:
        obj["ts"] = _timestamp_text(ts, draw(st.integers(0, 2)))
        expected["ts"] = ts
    if draw(st.booleans()):
        expected["device"] = obj["device"] = draw(TEXT)
    if draw(st.booleans()):
        temp = draw(INT32)
        obj["temp"] = draw(st.sampled_from([temp, str(temp), float(temp)]))
        expected["temp"] = temp
    if draw(st.booleans()):
        expected["x"] = obj["x"] = draw(FLOATS)
    if draw(st.booleans()):
        number = draw(DECIMALS)
        obj["d"] = draw(st.sampled_from([str(number), float(number)]))
        expected["d"] = number
    if draw(st.booleans()):
        flag = draw(st.booleans())
        obj["b"] = draw(st.sampled_from([flag, str(flag).lower(), str(flag).upper()]))
        expected["b"] = flag
    for name in NAMES[1:]:
        if name not in obj and draw(st.booleans()):
            obj[name] = None  # an explicit null is NULL, as is a missing key
    extras = draw(st.dictionaries(st.sampled_from(["extra", "note", "zz", "", "é"]), JSON_VALUES, max_size=2))
    items = [(_key(k, draw(st.integers(0, 2))), v) for k, v in obj.items()] + list(extras.items())
    items = draw(st.permutations(items))
    spaced = draw(st.booleans())
    text = json.dumps(dict(items), ensure_ascii=draw(st.booleans()), separators=(", ", ": ") if spaced else (",", ":"))
    text = draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " ", "\r"]))
    return Record(text.encode("utf-8"), expected)


def _with_value(name: str, value: Any) -> dict[str, Any]:
    return {"ts": "2024-05-01T10:00:00Z", name: value}


def _mutate(payload: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    data = bytearray(payload)
    for kind, where, byte in edits:
        if not data:
            data.append(byte)
            continue
        i = where % len(data)
        if kind == 0:
            del data[i]
        elif kind == 1:
            data.insert(i, byte)
        else:
            data[i] = byte
    return bytes(data)


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3)


def _dumps(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def junk_json(draw: st.DrawFn) -> Record:
    """A record that may or may not be good: anything from random bytes to a nearly-right object."""
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return Record(draw(st.binary(max_size=120)))
    if kind == 1:  # any JSON value at all, escaped or raw (raw lone surrogates are invalid UTF-8)
        return Record(_dumps(draw(JSON_VALUES), draw(st.booleans())))
    if kind == 2:  # an object with the schema's keys and any values
        obj = draw(st.dictionaries(st.sampled_from([*NAMES, "TS", "Temp", "DEVICE"]), JSON_VALUES, max_size=6))
        return Record(_dumps(obj, draw(st.booleans())))
    if kind == 3:  # one column holding a hostile value
        name = draw(st.sampled_from(NAMES))
        return Record(_dumps(_with_value(name, draw(JSON_VALUES)), draw(st.booleans())))
    if kind == 4:  # a good record with a few bytes changed
        return Record(_mutate(draw(good_json()).payload, draw(EDITS)))
    if kind == 5:  # deep nesting, in a column or at the top
        depth = draw(st.sampled_from([50, 900, 5000]))
        nested = "[" * depth + "]" * depth
        inside = draw(st.sampled_from(["device", "temp", "other"]))
        text = nested if draw(st.booleans()) else '{"ts": "2024-05-01T10:00:00Z", "' + inside + '": ' + nested + "}"
        return Record(text.encode())
    if kind == 6:  # literal oddities JSON parsers disagree on
        return Record(
            draw(
                st.sampled_from(
                    [
                        b'{"ts": "2024-05-01T10:00:00Z", "x": NaN}',
                        b'{"ts": "2024-05-01T10:00:00Z", "x": -Infinity}',
                        b'{"ts": "2024-05-01T10:00:00Z", "x": 1e400}',
                        b'{"ts": "2024-05-01T10:00:00Z", "temp": 1e2}',
                        b'{"ts": "2024-05-01T10:00:00Z", "temp": -0}',
                        b'{"ts": "2024-05-01T10:00:00Z", "temp": 01}',
                        b'{"ts": "2024-05-01T10:00:00Z", "temp": 1, "temp": "x"}',
                        b'{"ts": "2024-05-01T10:00:00Z", "temp": "x", "temp": 1}',
                        b'{"ts": "2024-05-01T10:00:00Z", "TEMP": 1, "temp": 2}',
                        b'{"ts": "2024-05-01T10:00:00Z", "device": "\\ud800"}',
                        b'{"ts": "2024-05-01T10:00:00Z", "device": "\\udc00\\ud800"}',
                        b'{"ts": "2024-05-01T10:00:00Z", "device": "\\ud83d\\ude00"}',
                        b'{"ts": "2024-05-01T10:00:00Z", "\\ud800": 1}',
                        b'{"ts": "2024-05-01T10:00:00Z", "device": "\xed\xa0\x80"}',
                        b'{"ts": "2024-05-01T10:00:00Z", "device": "\xc0\xaf"}',
                        b'{"ts": "2024-05-01T10:00:00Z", "device": "a\x00b"}',
                        b'{"ts": "2024-05-01T10:00:00Z", "device": "\\u0000"}',
                        b'{"ts": "2024-05-01T10:00:00Z"}\n{"ts": "2024-05-01T10:00:00Z"}',
                        b'{"ts": "2024-05-01T10:00:00Z"}{"ts": "2024-05-01T10:00:00Z"}',
                        b'{"ts": "2024-05-01T10:00:00Z"}\x00',
                        b'{"ts": "2024-05-01T10:00:00Z",}',
                        b"{'ts': '2024-05-01T10:00:00Z'}",
                        b'\xef\xbb\xbf{"ts": "2024-05-01T10:00:00Z"}',
                        b'{"ts": "2024-05-01T10:00:00Z"}\xef\xbb\xbf',
                        b"{}",
                        b"{",
                        b"}",
                        b"{}}",
                        b"null",
                        b"\n",
                        b"\r\n",
                        b"   ",
                        b"\x00",
                    ]
                )
            )
        )
    if kind == 7:  # empty record: skipped
        return Record(b"")
    # a huge or odd number where a number belongs, or the other way round
    name = draw(st.sampled_from(NAMES))
    return Record(_dumps(_with_value(name, draw(st.one_of(HUGE_INTS, st.floats(), NEAR_MISSES))), True))


def sized_json(size: int, ts: datetime) -> Record:
    """A good JSON record of exactly ``size`` bytes (padded in the ``device`` column)."""
    head = '{"ts": "' + ts.isoformat() + 'Z", "device": "'
    pad = max(0, size - len(head) - 2)
    device = "x" * pad
    expected = dict.fromkeys(NAMES)
    expected.update(ts=ts, device=device)
    return Record((head + device + '"}').encode(), expected)


# ---------------------------------------------------------------------- CSV


def csv_line(fields: list[str], delimiter: str) -> bytes:
    """One CSV record as Python's csv module writes it (quoting only where needed), no terminator."""
    out = io.StringIO()
    # the terminator's characters are what the writer quotes: "\r\n" makes it quote both
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerow(fields)
    return out.getvalue().removesuffix("\r\n").encode("utf-8")


@st.composite
def good_csv_fields(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, Any]]:
    """Field text per column name, and the row it must give (empty text is NULL)."""
    ts = draw(TIMES)
    text: dict[str, str] = {}
    expected: dict[str, Any] = dict.fromkeys(NAMES)
    text["ts"] = _timestamp_text(ts, draw(st.integers(0, 2)))
    expected["ts"] = ts
    device = draw(TEXT)
    text["device"] = device
    expected["device"] = device or None
    temp = draw(st.none() | INT32)
    text["temp"] = "" if temp is None else str(temp)
    expected["temp"] = temp
    x = draw(st.none() | FLOATS)
    text["x"] = "" if x is None else repr(x)
    expected["x"] = x
    number = draw(st.none() | DECIMALS)
    text["d"] = "" if number is None else str(number)
    expected["d"] = number
    flag = draw(st.none() | st.booleans())
    text["b"] = "" if flag is None else draw(st.sampled_from([str(flag), str(flag).lower()]))
    expected["b"] = flag
    return text, expected


@st.composite
def junk_csv(draw: st.DrawFn, delimiter: str, width: int) -> Record:
    """A CSV record that may or may not be good."""
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return Record(draw(st.binary(max_size=100)))
    if kind == 1:
        return Record(draw(st.text(max_size=60)).encode("utf-8", "surrogatepass"))
    if kind == 2:  # any fields, maybe the wrong number of them
        fields = draw(st.lists(st.one_of(TEXT, NEAR_MISSES, st.integers().map(str)), max_size=width + 2))
        return Record(csv_line(fields, delimiter))
    if kind == 3:  # the right number of fields with one hostile value
        fields = ["2024-05-01T10:00:00Z"] + [""] * (width - 1)
        fields[draw(st.integers(0, width - 1))] = draw(st.one_of(NEAR_MISSES, TEXT, st.integers().map(str)))
        return Record(csv_line(fields, delimiter))
    if kind == 4:  # quoting oddities
        sep = delimiter
        return Record(
            draw(
                st.sampled_from(
                    [
                        f'"2024-05-01T10:00:00Z{sep}a{sep}1{sep}{sep}{sep}'.encode(),
                        f'2024-05-01T10:00:00Z{sep}"a"b{sep}1{sep}{sep}{sep}'.encode(),
                        f'2024-05-01T10:00:00Z{sep}a"{sep}1{sep}{sep}{sep}'.encode(),
                        f'2024-05-01T10:00:00Z{sep}"a\nb"{sep}1{sep}{sep}{sep}'.encode(),
                        f'2024-05-01T10:00:00Z{sep}"a\r\nb"{sep}1{sep}{sep}{sep}'.encode(),
                        f"2024-05-01T10:00:00Z{sep}a\x00b{sep}1{sep}{sep}{sep}".encode(),
                        f"2024-05-01T10:00:00Z{sep}a\rb{sep}1{sep}{sep}{sep}".encode(),
                        f"2024-05-01T10:00:00Z{sep}a{sep}1{sep}{sep}{sep}\r".encode(),
                        f"2024-05-01T10:00:00Z{sep}a{sep}1{sep}{sep}{sep}\n".encode(),
                        f"\ufeff2024-05-01T10:00:00Z{sep}a{sep}1{sep}{sep}{sep}".encode(),
                        f"{sep}{sep}{sep}{sep}{sep}".encode(),
                        sep.encode() * (width + 3),
                        b'""',
                        b'"',
                        b"\n",
                        b" ",
                    ]
                )
            )
        )
    if kind == 5:
        return Record(b"")
    text, _ = draw(good_csv_fields())
    return Record(_mutate(csv_line([text[n] for n in NAMES], delimiter), draw(EDITS)))


def same_float(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN (and nothing else)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b) and type(a) is type(b)


def normalise(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows as comparable tuples (NaN spelled out, -0.0 kept apart from 0.0)."""
    out = []
    for row in rows:
        values = []
        for v in row.values():
            if isinstance(v, float):
                values.append(("float", repr(v)))
            else:
                values.append(v)
        out.append(tuple(values))
    return out
