"""Schema discovery from a sample of records."""

from __future__ import annotations

import pyarrow as pa
import pytest

from engine.errors import ConnectorError
from engine.formats.discover import discover_schema


def test_discover_json_types_and_first_seen_order() -> None:
    sample = [
        b'{"ts": "2024-05-01T10:00:00Z", "n": 1, "x": 1, "ok": true, "tags": [1], "day": "2024-05-01"}',
        b'{"n": 2, "x": 2.5, "name": "a", "gone": null, "mixed": 1}',
        b"not json",
        b'{"ts": "2024-05-01 10:00:01.5+02:00", "mixed": "one", "day": "2024-05-02"}',
        b"",
    ]
    schema = discover_schema(sample, "json")
    assert schema == pa.schema(
        [
            ("ts", pa.timestamp("us")),
            ("n", pa.int64()),
            ("x", pa.float64()),
            ("ok", pa.bool_()),
            ("tags", pa.string()),
            ("day", pa.date32()),
            ("name", pa.string()),
            ("gone", pa.string()),
            ("mixed", pa.string()),
            ("_extra", pa.string()),  # fields first seen after the sample are kept here
        ]
    )


def test_discover_csv_with_header() -> None:
    sample = [b"ts,price,qty,sym,flag", b"2024-05-01T10:00:00Z,1.5,3,AMZN,true", b"2024-05-01T10:00:01Z,2,,X,false"]
    schema = discover_schema(sample, "csv")
    assert schema == pa.schema(
        [
            ("ts", pa.timestamp("us")),
            ("price", pa.float64()),
            ("qty", pa.int64()),
            ("sym", pa.string()),
            ("flag", pa.bool_()),
        ]
    )


def test_discover_csv_without_header_names_columns() -> None:
    schema = discover_schema([b"1;a", b"2;b;x"], "csv", {"header": False, "delimiter": ";"})
    assert schema.names == ["COL_1", "COL_2", "COL_3"]
    assert schema.field("COL_1").type == pa.int64()


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_discover_empty_sample_is_an_error(fmt: str) -> None:
    with pytest.raises(ConnectorError, match="no records to discover a schema from"):
        discover_schema([], fmt, where="file:x")
    with pytest.raises(ConnectorError, match=r"^file:x: "):
        discover_schema([b""], fmt, where="file:x")
