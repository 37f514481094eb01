"""SQL type names to Arrow types and back."""

from __future__ import annotations

import pyarrow as pa
import pytest

from engine.formats.types import parse_type, sql_type_name

CASES = [
    ("TINYINT", pa.int8()),
    ("smallint", pa.int16()),
    ("INT", pa.int32()),
    ("Integer", pa.int32()),
    ("BIGINT", pa.int64()),
    ("FLOAT", pa.float64()),
    ("REAL", pa.float32()),
    ("DOUBLE", pa.float64()),
    ("double precision", pa.float64()),
    ("DECIMAL(5,2)", pa.decimal128(5, 2)),
    ("NUMERIC(10, 3)", pa.decimal128(10, 3)),
    ("DECIMAL", pa.decimal128(18, 3)),
    ("VARCHAR(4)", pa.string()),
    ("CHAR", pa.string()),
    ("STRING", pa.string()),
    ("TEXT(4)", pa.string()),
    ("JSON", pa.string()),
    ("BOOLEAN", pa.bool_()),
    ("bool", pa.bool_()),
    ("TIMESTAMP", pa.timestamp("us")),
    ("TIMESTAMP(3)", pa.timestamp("us")),
    ("TIMESTAMP(3) WITHOUT TIME ZONE", pa.timestamp("us")),
    ("TIMESTAMP_LTZ(3)", pa.timestamp("us")),
    ("TIMESTAMP WITH LOCAL TIME ZONE", pa.timestamp("us")),
    ("timestamp with time zone", pa.timestamp("us")),
    ("TIMESTAMPTZ", pa.timestamp("us")),
    ("TIMESTAMPLTZ(3)", pa.timestamp("us")),
    ("DATE", pa.date32()),
    ("TIME", pa.time64("us")),
    ("BYTES", pa.binary()),
    ("VARBINARY(10)", pa.binary()),
    ("BLOB", pa.binary()),
]


@pytest.mark.parametrize(("text", "dtype"), CASES)
def test_parse_type(text: str, dtype: pa.DataType) -> None:
    assert parse_type(text) == dtype
    assert parse_type(sql_type_name(dtype)) == dtype


@pytest.mark.parametrize("text", ["VARCHR", "INT(3, 4)", "DECIMAL(40, 2)", "DECIMAL(2, 3)", "DATE WITH TIME ZONE", ""])
def test_parse_type_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="type"):
        parse_type(text)


def test_sql_type_names() -> None:
    assert [sql_type_name(t) for t in (pa.int64(), pa.float64(), pa.string(), pa.timestamp("us"))] == [
        "BIGINT",
        "DOUBLE",
        "VARCHAR",
        "TIMESTAMP",
    ]
    assert sql_type_name(pa.list_(pa.int32())) == "INT[]"
