"""Fuzzing the JSON-lines and CSV decoders: any bytes in, exactly one row or error row out per record.

Every example is a batch of known-good records (each with the row it must give) mixed with junk:
random bytes, any JSON value, hostile values in the right columns, mutated good records, deep
nesting, lone surrogates (escaped, and raw as invalid UTF-8), and records around the size limit.
The batch is decoded whole, split into random micro-batches, record by record, and resumed
part-way with a fresh decoder; all four must agree, and no call may raise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.formats.decode import Decoder
from engine.types import ERROR_SCHEMA, REASONS, SEQ_COL
from tests.fuzz._records import (
    HUGE_INTS,
    JSON_VALUES,
    NAMES,
    SCHEMA,
    STREAM,
    Record,
    csv_line,
    good_csv_fields,
    good_json,
    junk_csv,
    junk_json,
    normalise,
    raw_batch,
    same_float,
    sized_json,
)

TOO_LARGE_KEEPS = 1024  # bytes of a too-large payload its error row keeps (decode.py)


def _filler_json(i: int) -> Record:
    ts = datetime(2024, 5, 1, 10, i // 60 % 60, i % 60)
    expected = dict.fromkeys(NAMES)
    expected.update(ts=ts, device=f"d{i % 3}", temp=i)
    return Record(f'{{"ts": "{ts.isoformat()}Z", "device": "d{i % 3}", "temp": {i}}}'.encode(), expected)


def _filler_csv(i: int, order: list[str], delimiter: str) -> Record:
    ts = datetime(2024, 5, 1, 10, i // 60 % 60, i % 60)
    expected = dict.fromkeys(NAMES)
    expected.update(ts=ts, device=f"d{i % 3}", temp=i)
    text = {"ts": f"{ts.isoformat()}Z", "device": f"d{i % 3}", "temp": str(i), "x": "", "d": "", "b": ""}
    return Record(csv_line([text.get(n, "") for n in order], delimiter), expected)


@st.composite
def mixed(draw: st.DrawFn, items: st.SearchStrategy[Record], filler: list[Record]) -> list[Record]:
    """``items`` dropped at random places among a random-length run of filler rows."""
    records = list(filler[: draw(st.integers(0, len(filler)))])
    for item in draw(st.lists(items, max_size=25)):
        records.insert(draw(st.integers(0, len(records))), item)
    return records


def _cuts(draw: Callable[..., Any], n: int) -> list[int]:
    return sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=5)))) if n > 1 else []


def _decode(make: Any, payloads: list[bytes], cuts: list[int], start: int = 0) -> tuple[list, list]:
    """Decode ``payloads`` (offsets from ``start``) cut at ``cuts``; rows and errors as lists."""
    decoder = make()
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    bounds = [0, *cuts, len(payloads)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        out, err = decoder.decode(raw_batch(payloads[lo:hi], start + lo))
        assert out.schema == decoder.out_schema
        assert err.schema == ERROR_SCHEMA
        rows += out.to_pylist()
        errors += err.to_pylist()
    for e in errors:
        e.pop("detected_at")
    return rows, errors


def _check(records: list[Record], rows: list[dict], errors: list[dict], limit: int, skip: int = 0) -> None:
    """The per-record contract, for records[skip:] (offsets are positions in ``records``)."""
    seqs = [r[SEQ_COL] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "rows out of input order or repeated"
    by_seq = {r[SEQ_COL]: r for r in rows}
    by_offset: dict[int, dict] = {}
    for e in errors:
        assert e["stream"] == STREAM and e["step_id"] == f"decode:{STREAM}"
        assert e["reason"] in REASONS, e
        assert e["message"] and "\n" not in e["message"] and "\r" not in e["message"], e
        prefix, _, number = e["source_offset"].partition(":")
        assert prefix == STREAM
        offset = int(number)
        assert offset not in by_offset, f"two error rows for record {offset}"
        by_offset[offset] = e
    assert not set(by_seq) & set(by_offset), "a record gave both a row and an error row"
    assert set(by_seq) | set(by_offset) <= set(range(skip, len(records)))
    for offset in range(skip, len(records)):
        record = records[offset]
        payload = record.payload
        if not payload:
            assert offset not in by_seq and offset not in by_offset, "an empty record was not skipped"
            continue
        assert (offset in by_seq) != (offset in by_offset), f"record {offset} {payload[:80]!r} gave no output"
        if len(payload) > limit:
            error = by_offset[offset]
            assert error["reason"] == "too_large"
            assert error["payload"] == payload[:TOO_LARGE_KEEPS]
            continue
        if offset in by_offset:
            error = by_offset[offset]
            assert error["reason"] != "too_large"
            assert error["payload"] == payload, "an error row must carry the original bytes"
            assert record.expected is None, f"good record {payload!r} was refused: {error['message']}"
            continue
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            raise AssertionError(f"invalid UTF-8 was accepted: {payload!r}") from None
        if record.expected is not None:
            row = dict(by_seq[offset])
            row.pop(SEQ_COL)
            assert list(row) == NAMES
            for name in NAMES:
                assert same_float(row[name], record.expected[name]) or (
                    row[name] == record.expected[name] and not isinstance(row[name], float)
                ), f"{name}: {row[name]!r} != {record.expected[name]!r} for {payload!r}"


def _equal(a: tuple[list, list], b: tuple[list, list]) -> None:
    assert normalise(a[0]) == normalise(b[0])
    assert [sorted(e.items()) for e in a[1]] == [sorted(e.items()) for e in b[1]]


def _run_all_ways(make: Any, records: list[Record], draw: Callable[..., Any], limit: int, header: bool = False) -> None:
    payloads = [r.payload for r in records]
    whole = _decode(make, payloads, [])
    _check(records, *whole, limit, skip=1 if header else 0)  # a CSV header record yields nothing
    split = _decode(make, payloads, _cuts(draw, len(payloads)))
    _equal(split, whole)

    def record_by_record() -> Decoder:
        decoder = make()
        decoder.record_by_record_upto = 1 << 40
        return decoder

    _equal(_decode(record_by_record, payloads, []), whole)
    # A fresh decoder resuming part-way (as after a restore) gives the same rows from there on.
    skip = draw(st.integers(1, len(payloads))) if len(payloads) > 1 else 1

    def resumed() -> Decoder:
        decoder = make()
        if header:
            decoder.set_header(payloads[0])
        return decoder

    rest = _decode(resumed, payloads[skip:], _cuts(draw, len(payloads) - skip), start=skip)
    _equal(rest, ([r for r in whole[0] if r[SEQ_COL] >= skip], [e for e in whole[1] if _offset(e) >= skip]))


def _offset(error: dict) -> int:
    return int(error["source_offset"].rpartition(":")[2])


# ---------------------------------------------------------------------- JSON

JSON_FILLER = [_filler_json(i) for i in range(90)]  # past 64 records the whole-batch reader is tried
LIMITS = st.sampled_from([64, 200, 1 << 20])


@given(data=st.data(), limit=LIMITS)
def test_json_decoder_gives_one_outcome_per_record_whatever_the_batch(data: st.DataObject, limit: int) -> None:
    records = data.draw(mixed(st.one_of(good_json(), junk_json()), JSON_FILLER))

    def make() -> Decoder:
        return Decoder(STREAM, SCHEMA, "json", time_column="ts", max_record_bytes=limit)

    _run_all_ways(make, records, data.draw, limit)


@given(data=st.data(), limit=st.integers(40, 300))
def test_json_decoder_size_limit_is_exact(data: st.DataObject, limit: int) -> None:
    ts = datetime(2024, 5, 1, 10, 0, 0)
    near = st.integers(-2, 2).map(lambda delta: sized_json(max(40, limit + delta), ts))
    records = data.draw(mixed(near, JSON_FILLER))

    def make() -> Decoder:
        return Decoder(STREAM, SCHEMA, "json", time_column="ts", max_record_bytes=limit)

    _run_all_ways(make, records, data.draw, limit)


@given(lines=st.lists(st.binary(max_size=64), max_size=80), fmt=st.sampled_from(["json", "csv"]))
def test_decoders_never_raise_on_random_bytes(lines: list[bytes], fmt: str) -> None:
    decoder = Decoder(STREAM, SCHEMA, fmt, time_column="ts", csv_options={"header": "false"})
    rows, errors = decoder.decode(raw_batch(lines))
    assert rows.num_rows + errors.num_rows == sum(1 for line in lines if line)
    assert set(errors.column("reason").to_pylist()) <= set(REASONS)


# ---------------------------------------------------------------------- CSV


@given(
    data=st.data(),
    limit=LIMITS,
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    header=st.booleans(),
)
def test_csv_decoder_gives_one_outcome_per_record_whatever_the_batch(
    data: st.DataObject, limit: int, delimiter: str, header: bool
) -> None:
    order = data.draw(st.permutations(NAMES)) if header else NAMES
    spelled = [data.draw(st.sampled_from([n, n.upper()])) for n in order] if header else order

    @st.composite
    def good(draw: st.DrawFn) -> Record:
        text, expected = draw(good_csv_fields())
        return Record(csv_line([text[n] for n in order], delimiter), expected)

    filler = [_filler_csv(i, order, delimiter) for i in range(90)]
    records = data.draw(mixed(st.one_of(good(), junk_csv(delimiter, len(NAMES))), filler))
    if header:
        bom = "\ufeff" if data.draw(st.booleans()) else ""
        records.insert(0, Record((bom + delimiter.join(spelled)).encode()))

    def make() -> Decoder:
        options = {"delimiter": delimiter, "header": header}
        return Decoder(STREAM, SCHEMA, "csv", time_column="ts", max_record_bytes=limit, csv_options=options)

    _run_all_ways(make, records, data.draw, limit, header=header)


# ---------------------------------------------------------------------- every column type

COLUMN_TYPES = [
    pa.int8(), pa.uint8(), pa.int64(), pa.uint64(), pa.float32(), pa.float64(),
    pa.decimal128(38, 10), pa.decimal128(5, 2), pa.decimal128(3, 0), pa.decimal256(50, 5),
    pa.date32(), pa.time64("us"), pa.binary(), pa.large_string(), pa.string(), pa.bool_(),
    pa.timestamp("us"), pa.timestamp("ms"), pa.timestamp("s"), pa.timestamp("ns"),
]  # fmt: skip
BIG_FLOATS = st.sampled_from([3.4028235e38, 3.5e38, 1e39, -1e39, 1e16, 2.0**53, 2.0**53 + 2, 9.3e18, 1.8e19, 1e-7])
TIME_TEXT = st.one_of(
    st.sampled_from(["10:00", "10:00:00.123456789", "24:00:00", "0a", "0aff", "2262-04-12T00:00:00Z"]),
    st.datetimes(min_value=datetime(1, 1, 1)).map(lambda t: t.isoformat() + "Z"),
    st.integers(-(10**15), 10**15).map(str),
)
VALUES = st.one_of(JSON_VALUES, HUGE_INTS, BIG_FLOATS, st.floats(), st.decimals(allow_nan=False).map(str), TIME_TEXT)


@given(
    dtype=st.sampled_from(COLUMN_TYPES),
    values=st.lists(VALUES, min_size=1, max_size=8),
    fmt=st.sampled_from(["json", "csv"]),
    data=st.data(),
)
def test_every_column_type_decodes_the_same_whatever_the_batch(
    dtype: pa.DataType, values: list[Any], fmt: str, data: st.DataObject
) -> None:
    schema = pa.schema([("c", dtype), ("n", pa.int64())])
    filler = [Record(f'{{"n": {i}}}'.encode() if fmt == "json" else f",{i}".encode()) for i in range(100)]
    items = []
    for value in values:
        if fmt == "json":
            items.append(Record(json.dumps({"c": value, "n": 0}).encode("utf-8", "surrogatepass")))
        else:
            text = repr(value) if isinstance(value, float) else str(value)
            items.append(Record(csv_line([text, "0"], ",")))
    records = data.draw(mixed(st.sampled_from(items), filler))

    def make() -> Decoder:
        return Decoder(STREAM, schema, fmt, csv_options={"header": False})

    payloads = [r.payload for r in records]
    whole = _decode(make, payloads, [])
    assert len(whole[0]) + len(whole[1]) == sum(1 for p in payloads if p)

    def record_by_record() -> Decoder:
        decoder = make()
        decoder.record_by_record_upto = 1 << 40
        return decoder

    _equal(_decode(record_by_record, payloads, []), whole)
    _equal(_decode(make, payloads, _cuts(data.draw, len(payloads))), whole)


# What the fuzzer found in the decoders (fixed): a row or an error row, the same on both paths.
FOUND = [
    # ArrowInvalid escaped: sub-millisecond or sub-second time into a coarser timestamp column
    (pa.timestamp("ms"), "2000-01-01T00:00:00.000001Z"),
    (pa.timestamp("s"), 1),
    # ArrowInvalid escaped: a time outside what nanoseconds can hold (years 1677-2262)
    (pa.timestamp("ns"), "1600-01-01T00:00:00Z"),
    # the whole-batch path gave -8904827492732973302050222097.1198906368 instead of an error row
    (pa.decimal128(38, 10), 3.4028235e38),
    (pa.decimal128(38, 10), "3.4028235e+38"),
    # the whole-batch path rounded an integer past int64 through a double
    (pa.decimal128(38, 10), 18446744073709551615),
]


@pytest.mark.parametrize(("dtype", "value"), FOUND, ids=[f"{t}-{v!r}" for t, v in FOUND])
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_decoder_found_value_gives_the_same_outcome_on_both_paths(dtype: pa.DataType, value: Any, fmt: str) -> None:
    schema = pa.schema([("c", dtype), ("n", pa.int64())])
    if fmt == "json":
        payloads = [b'{"n": 1}'] * 99 + [json.dumps({"c": value, "n": 2}).encode()]
    else:
        payloads = [b",1"] * 99 + [csv_line([repr(value) if isinstance(value, float) else str(value), "2"], ",")]
    outcomes = []
    for upto in (1, 1 << 40):  # whole batch first, and record by record
        decoder = Decoder(STREAM, schema, fmt, csv_options={"header": False})
        decoder.record_by_record_upto = upto
        rows, errors = decoder.decode(raw_batch(payloads))
        assert rows.num_rows + errors.num_rows == len(payloads)
        outcomes.append((rows.to_pylist(), errors.drop_columns(["detected_at"]).to_pylist()))
    assert outcomes[0] == outcomes[1]
