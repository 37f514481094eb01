"""Typed rows into bytes: JSON lines and CSV, the house spelling of every type.

- timestamps: ``2024-05-01T10:00:00Z``, a fraction only when non-zero (``.250``, ``.000001``), UTC;
- dates ``2024-05-01``; times ``10:00:00[.250]``;
- floats: shortest round-trip text, always with a ``.`` or exponent (``2.0``); NaN and infinities
  become ``null`` in JSON and an empty field in CSV;
- decimals: their exact digits as a JSON number (``12.30``);
- binary: a hex string (``"0aff"``), which the decoder reads back;
- lists, structs and maps: nested JSON (in CSV, JSON text in one field).

Columns are formatted a whole column at a time with Arrow kernels; only strings that need escaping,
binary, times and nested values go value by value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.formats.timestamps import format_time, format_timestamp, format_timestamps
from engine.types import EXTRA_COL

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_JSON_ESCAPE = r'["\\\x00-\x1f]'


def to_json_lines(table: pa.Table | pa.RecordBatch) -> bytes:
    r"""One JSON object per row, keys in column order, each line ending in ``\\n``.

    Args:
        table: the rows (hidden ``__`` columns are written too; drop them first if unwanted).

    Returns:
        UTF-8 bytes; empty for a table without rows.
    """
    if table.num_rows == 0:
        return b""
    names = table.column_names
    extra = None
    if EXTRA_COL in names and pa.types.is_string(table.schema.field(EXTRA_COL).type):
        extra = _array(table.column(EXTRA_COL))
        names = [n for n in names if n != EXTRA_COL]
    parts: list[Any] = []
    for i, name in enumerate(names):
        parts.append(("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":")
        parts.append(_json_column(_array(table.column(name))))
    if extra is not None:
        parts.append(_merged_fields(extra, first=not names))
    elif not parts:
        return b"{}\n" * int(table.num_rows)
    parts.append("}")
    lines = pc.binary_join_element_wise(*parts, "")
    return bytes(lines_buffer(lines).to_pybytes())


def _merged_fields(extra: pa.Array, first: bool) -> pa.Array:
    """The members of each row's ``_extra`` object, to splice into that row's JSON object
    (``_extra`` holds the fields of a schema-less record that no column took). A value that is
    not one JSON object (text a query put there) stays an ordinary ``"_extra"`` string field."""
    lead = "{" if first else ","
    fragments: list[str] = []
    for text in extra.to_pylist():
        if text is None:
            fragments.append(lead if first else "")
            continue
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict):
            inner = json.dumps(value, ensure_ascii=False, separators=(",", ":"))[1:-1]
            fragments.append(lead + inner if inner or first else "")
        else:
            fragments.append(lead + json.dumps(EXTRA_COL) + ":" + json.dumps(text, ensure_ascii=False))
    return pa.array(fragments, pa.string())


def to_csv(table: pa.Table | pa.RecordBatch, header: bool = True, delimiter: str = ",") -> bytes:
    r"""CSV text: fields quoted only when they hold the delimiter, a quote or a line break.

    NULL (and NaN) is an empty field; timestamps are spelled as in JSON lines.

    Args:
        table: the rows.
        header: write the column names as the first line.
        delimiter: one character.

    Returns:
        UTF-8 bytes, each line ending in ``\\n``; just the header line for a table without rows.
    """
    head = b""
    if header:
        head = (delimiter.join(_csv_quote_one(n, delimiter) for n in table.column_names) + "\n").encode()
    if table.num_rows == 0:
        return head
    columns = [_csv_column(_array(table.column(i)), delimiter) for i in range(table.num_columns)]
    if not columns:
        return head + b"\n" * int(table.num_rows)
    lines = pc.binary_join_element_wise(*columns, delimiter)
    return head + bytes(lines_buffer(lines).to_pybytes())


def row_to_json(row: Mapping[str, Any]) -> str:
    """One row (as ``Table.to_pylist()`` gives it) as a compact JSON object.

    Args:
        row: column name to Python value (datetimes, dates, Decimals, bytes, nested lists/dicts).

    Returns:
        JSON text in the same spelling as ``to_json_lines``, without a newline.
    """
    return _dumps({k: json_value(v) for k, v in row.items()})


def json_value(value: Any) -> Any:
    """A Python value from Arrow as a value ``json.dumps`` can write in the house spelling.

    Args:
        value: any value ``pa.Array.to_pylist()`` returns.

    Returns:
        The value with datetimes as ISO-8601 text, decimals as numbers, bytes as hex, non-finite
        floats as None.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return format_timestamp((value - _EPOCH) // timedelta(microseconds=1))
        return format_timestamp((value - _EPOCH.replace(tzinfo=None)) // timedelta(microseconds=1))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return format_time(((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        exponent = value.as_tuple().exponent
        whole = isinstance(exponent, int) and exponent >= 0
        return int(value) if whole else float(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return {str(k): json_value(v) for k, v in value}  # a map column's key/value pairs
        return [json_value(v) for v in value]
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def lines_buffer(strings: pa.Array) -> pa.Buffer:
    r"""All strings, each followed by ``\\n``, as one contiguous buffer (no trip through Python).

    Args:
        strings: a string or large_string array without nulls.

    Returns:
        The bytes of every value and its newline, in order.
    """
    newline, empty = pa.scalar("\n", strings.type), pa.scalar("", strings.type)
    lines = pc.binary_join_element_wise(strings, newline, empty)
    width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(lines.buffers()[1], dtype=width)[lines.offset : lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    if data is None:
        return pa.py_buffer(b"")
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


# ---------------------------------------------------------------------- per-column formatting


def _array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _json_column(values: pa.Array) -> pa.Array:
    """JSON text of every value (``null`` for NULL), no nulls left."""
    dtype = values.type
    if pa.types.is_dictionary(dtype):
        return _json_column(values.dictionary_decode())
    if pa.types.is_null(dtype):
        return pa.array(["null"] * len(values), pa.string())
    if pa.types.is_integer(dtype) or pa.types.is_decimal(dtype):
        text = values.cast(pa.string())
    elif pa.types.is_boolean(dtype):
        text = pc.if_else(values, "true", "false")
    elif pa.types.is_floating(dtype):
        text = _float_text(values)
    elif pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        text = _json_strings(values)
    elif pa.types.is_timestamp(dtype):
        text = _quoted(format_timestamps(values))
    elif pa.types.is_date(dtype):
        text = _quoted(values.cast(pa.date32()).cast(pa.string()))
    else:
        text = pa.array(
            [None if v is None else _dumps(json_value(v)) for v in values.to_pylist()],
            pa.string(),
        )
    return pc.fill_null(text, "null")


def _csv_column(values: pa.Array, delimiter: str) -> pa.Array:
    """CSV field text of every value (empty for NULL), quoted where needed."""
    dtype = values.type
    if pa.types.is_dictionary(dtype):
        return _csv_column(values.dictionary_decode(), delimiter)
    if pa.types.is_null(dtype):
        return pa.array([""] * len(values), pa.string())
    if pa.types.is_integer(dtype) or pa.types.is_decimal(dtype):
        text = values.cast(pa.string())
    elif pa.types.is_boolean(dtype):
        text = pc.if_else(values, "true", "false")
    elif pa.types.is_floating(dtype):
        text = _float_text(values)
    elif pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        text = _csv_quote(values.cast(pa.string()), delimiter)
    elif pa.types.is_timestamp(dtype):
        text = format_timestamps(values)
    elif pa.types.is_date(dtype):
        text = values.cast(pa.date32()).cast(pa.string())
    else:
        plain = []
        for v in values.to_pylist():
            j = json_value(v)
            plain.append(None if j is None else j if isinstance(j, str) else _dumps(j))
        text = _csv_quote(pa.array(plain, pa.string()), delimiter)
    return pc.fill_null(text, "")


def _float_text(values: pa.Array) -> pa.Array:
    """Shortest round-trip text; whole numbers get ``.0``; NaN/inf become NULL."""
    text = values.cast(pa.string())
    text = pc.if_else(pc.match_substring_regex(text, r"^-?[0-9]+$"), pc.binary_join_element_wise(text, ".0", ""), text)
    return pc.if_else(pc.is_finite(values), text, pa.scalar(None, pa.string()))


def _quoted(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', text, '"', "")


def _json_strings(values: pa.Array) -> pa.Array:
    values = values.cast(pa.string())
    if not pc.any(pc.match_substring_regex(values, _JSON_ESCAPE)).as_py():
        return _quoted(values)
    encode = json.encoder.encode_basestring  # the C encoder when available; keeps non-ASCII as is
    return pa.array([None if v is None else encode(v) for v in values.to_pylist()], pa.string())


def _csv_quote(values: pa.Array, delimiter: str) -> pa.Array:
    special = pc.match_substring_regex(values, '["\r\n' + _re_escape(delimiter) + "]")
    quoted = _quoted(pc.replace_substring(values, '"', '""'))
    return pc.if_else(special, quoted, values)


def _csv_quote_one(text: str, delimiter: str) -> str:
    if any(c in text for c in ('"', "\r", "\n", delimiter)):
        return '"' + text.replace('"', '""') + '"'
    return text


def _re_escape(char: str) -> str:
    return "\\" + char if char in "\\^]-[" else char
