"""SQL type names to Arrow types and back.

One table maps what users write in ``CREATE TABLE``/``CREATE STREAM`` (Flink, KDA and DuckDB
spellings, case-insensitive) to the Arrow type the engine carries. Length and precision arguments
that Arrow has no use for (``VARCHAR(4)``, ``TIMESTAMP(3)``) are accepted and ignored: strings are
never truncated and every timestamp is ``timestamp[us]`` (UTC, no zone).
"""

from __future__ import annotations

import re

import pyarrow as pa

from engine.types import TS_TYPE

_DEFAULT_DECIMAL = (18, 3)  # DuckDB's DECIMAL without arguments

_SIMPLE: dict[str, pa.DataType] = {
    "TINYINT": pa.int8(),
    "INT1": pa.int8(),
    "SMALLINT": pa.int16(),
    "INT2": pa.int16(),
    "INT": pa.int32(),
    "INTEGER": pa.int32(),
    "INT4": pa.int32(),
    "BIGINT": pa.int64(),
    "INT8": pa.int64(),
    "LONG": pa.int64(),
    "UTINYINT": pa.uint8(),
    "USMALLINT": pa.uint16(),
    "UINTEGER": pa.uint32(),
    "UBIGINT": pa.uint64(),
    "FLOAT": pa.float64(),
    "FLOAT8": pa.float64(),
    "DOUBLE": pa.float64(),
    "DOUBLE PRECISION": pa.float64(),
    "REAL": pa.float32(),
    "FLOAT4": pa.float32(),
    "VARCHAR": pa.string(),
    "CHAR": pa.string(),
    "CHARACTER": pa.string(),
    "CHARACTER VARYING": pa.string(),
    "NVARCHAR": pa.string(),
    "STRING": pa.string(),
    "TEXT": pa.string(),
    "JSON": pa.string(),
    "BOOLEAN": pa.bool_(),
    "BOOL": pa.bool_(),
    "DATE": pa.date32(),
    "TIME": pa.time64("us"),
    "BYTES": pa.binary(),
    "BINARY": pa.binary(),
    "VARBINARY": pa.binary(),
    "BINARY VARYING": pa.binary(),
    "BLOB": pa.binary(),
    "TIMESTAMP": TS_TYPE,
    "DATETIME": TS_TYPE,
    "TIMESTAMPTZ": TS_TYPE,
    "TIMESTAMP_LTZ": TS_TYPE,
    "TIMESTAMPLTZ": TS_TYPE,  # sqlglot's default spelling of TIMESTAMP_LTZ
    "TIMESTAMP_NTZ": TS_TYPE,
    "TIMESTAMPNTZ": TS_TYPE,
    "TIMESTAMP_S": TS_TYPE,
    "TIMESTAMP_MS": TS_TYPE,
    "TIMESTAMP_US": TS_TYPE,
    "TIMESTAMP_NS": TS_TYPE,
}

# Names that take an optional "(n)" argument we ignore.
_SIZED = {
    "VARCHAR",
    "CHAR",
    "CHARACTER",
    "CHARACTER VARYING",
    "NVARCHAR",
    "TEXT",
    "STRING",
    "BINARY",
    "VARBINARY",
    "BINARY VARYING",
    "BLOB",
    "BYTES",
    "TIMESTAMP",
    "TIMESTAMP_LTZ",
    "TIMESTAMPLTZ",
    "TIMESTAMP_NTZ",
    "TIMESTAMPNTZ",
    "TIMESTAMPTZ",
    "DATETIME",
    "TIME",
    "FLOAT",
}

_TYPE_RE = re.compile(
    r"""^\s*(?P<name>[A-Z_][A-Z0-9_]*(?:\s+(?:PRECISION|VARYING))?)\s*
        (?:\(\s*(?P<args>[^)]*)\))?\s*
        (?P<zone>(?:WITH|WITHOUT)\s+(?:LOCAL\s+)?TIME\s+ZONE)?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


def parse_type(sql_type: str) -> pa.DataType:
    """The Arrow type for a SQL type name.

    Accepted (case-insensitive): ``TINYINT``, ``SMALLINT``, ``INT``/``INTEGER``, ``BIGINT``,
    ``FLOAT``/``DOUBLE [PRECISION]`` (float64), ``REAL`` (float32), ``DECIMAL(p, s)``/``NUMERIC(p, s)``
    (decimal128; bare ``DECIMAL`` is ``DECIMAL(18, 3)``), ``VARCHAR[(n)]``/``CHAR[(n)]``/``STRING``/
    ``TEXT``/``JSON`` (string; ``n`` is ignored), ``BOOLEAN``/``BOOL``, ``TIMESTAMP[(p)] [WITH[OUT]
    [LOCAL] TIME ZONE]``/``TIMESTAMP_LTZ[(p)]``/``TIMESTAMPTZ`` (all ``timestamp[us]``, read as UTC),
    ``DATE`` (date32), ``TIME`` (time64[us]), ``BYTES``/``VARBINARY``/``BINARY``/``BLOB`` (binary),
    and DuckDB's unsigned ``UTINYINT`` … ``UBIGINT``.

    Args:
        sql_type: the type as written, e.g. ``"decimal(5,2)"`` or ``"TIMESTAMP(3) WITHOUT TIME ZONE"``.

    Returns:
        The Arrow data type.

    Raises:
        ValueError: for a name this table does not know or malformed arguments; the message names
            the type. The planner turns it into a located error.
    """
    m = _TYPE_RE.match(sql_type)
    if not m:
        raise ValueError(f"unknown type {sql_type.strip()!r}")
    name = " ".join(m.group("name").upper().split())
    args_text = m.group("args")
    zone = m.group("zone")
    args = [a.strip() for a in args_text.split(",")] if args_text is not None else []
    if zone is not None and name not in ("TIMESTAMP", "TIME"):
        raise ValueError(f"unknown type {sql_type.strip()!r} (only TIMESTAMP takes a time zone clause)")
    if name in ("DECIMAL", "NUMERIC", "DEC"):
        return _decimal(args, sql_type)
    if name not in _SIMPLE:
        raise ValueError(f"unknown type {sql_type.strip()!r}")
    if args_text is not None:
        if name not in _SIZED or len(args) != 1 or not args[0].isdigit():
            raise ValueError(f"bad arguments in type {sql_type.strip()!r}")
    return _SIMPLE[name]


def _decimal(args: list[str], text: str) -> pa.DataType:
    if not args:
        precision, scale = _DEFAULT_DECIMAL
    elif len(args) <= 2 and all(a.isdigit() for a in args):
        precision = int(args[0])
        scale = int(args[1]) if len(args) == 2 else 0
    else:
        raise ValueError(f"bad arguments in type {text.strip()!r}")
    if not 1 <= precision <= 38 or scale > precision:
        raise ValueError(f"type {text.strip()!r}: precision must be 1..38 and scale at most the precision")
    return pa.decimal128(precision, scale)


_NAMES: dict[pa.DataType, str] = {
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INT",
    pa.int64(): "BIGINT",
    pa.uint8(): "UTINYINT",
    pa.uint16(): "USMALLINT",
    pa.uint32(): "UINTEGER",
    pa.uint64(): "UBIGINT",
    pa.float16(): "REAL",
    pa.float32(): "REAL",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE",
    pa.date64(): "DATE",
    pa.binary(): "VARBINARY",
    pa.large_binary(): "VARBINARY",
    pa.null(): "NULL",
}


def sql_type_name(dtype: pa.DataType) -> str:
    """The SQL name to show for an Arrow type (``BIGINT``, ``DOUBLE``, ``VARCHAR``, ``TIMESTAMP`` …).

    Args:
        dtype: any Arrow data type.

    Returns:
        A display name; ``parse_type(sql_type_name(t)) == t`` for every type ``parse_type`` returns.
        Types without a SQL name fall back to Arrow's own spelling.
    """
    if dtype in _NAMES:
        return _NAMES[dtype]
    if pa.types.is_timestamp(dtype):
        return "TIMESTAMP WITH TIME ZONE" if dtype.tz else "TIMESTAMP"
    if pa.types.is_time(dtype):
        return "TIME"
    if pa.types.is_decimal(dtype):
        return f"DECIMAL({dtype.precision}, {dtype.scale})"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return f"{sql_type_name(dtype.value_type)}[]"
    if pa.types.is_struct(dtype):
        inner = ", ".join(f"{f.name} {sql_type_name(f.type)}" for f in dtype)
        return f"STRUCT({inner})"
    if pa.types.is_dictionary(dtype):
        return sql_type_name(dtype.value_type)
    return str(dtype).upper()
