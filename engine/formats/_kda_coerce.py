"""One JSON value into one column the way KDA's input mapping did (the per-value reference).

``kda_coercer(column)`` returns a function taking a non-null value as ``json.loads`` gives it (CSV
fields are ``str``) and returning it as ``pa.array(values, type=storage_type(dtype))`` accepts, or
raising ``CoercionError`` with a one-line message naming the column and the value. ``None`` never
reaches it (JSON ``null`` and missing fields are NULL). The rules, from KDA's "JSON to SQL"
conversion table, where they differ from duckstream's own (``engine.formats._coerce``):

- ``true``/``false`` into a number column are 1/0; into ``BINARY`` one byte 1/0; into a date, time
  or timestamp an error.
- A number into ``BOOLEAN``: 0 is false, anything else true. A number into a date, time or
  timestamp is an error (duckstream's own rule reads epoch milliseconds; KDA's did not).
- A string into ``BOOLEAN`` is true when it is ``true`` in any case, false otherwise (never an
  error).
- A string into a timestamp: ISO-8601 (``1992-02-14``, ``1992-02-14 18:35:44.0``,
  ``2024-05-01T10:00:00Z``); a string of digits is an error, not epoch milliseconds.
- A string into ``BINARY``: hex digits, bare or as ``X'3F67'``.
- ``VARCHAR(n)``/``CHAR(n)``: a longer value is cut to ``n`` characters, silently, as KDA did.

Everything else is duckstream's rule: numbers are direct and an error when out of range or when a
fraction would be lost (``123.4`` into ``INTEGER``), strings are parsed (``"42"``, ``"1.5"``) or an
error, arrays and objects are their compact JSON text in a text column and an error elsewhere.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from engine.formats._coerce import Coercer, CoercionError, coercer, show
from engine.formats.kda_schema import RecordColumn
from engine.formats.types import sql_type_name

_HEX_LITERAL = re.compile(r"^[xX]'((?:[0-9a-fA-F]{2})*)'$")


def kda_coercer(column: RecordColumn) -> Coercer:
    """The KDA-rules function for one column (see the module docstring).

    Args:
        column: the schema column (its Arrow type, name and ``VARCHAR(n)`` length).

    Returns:
        ``value -> storage value``, raising ``CoercionError``.

    Raises:
        ValueError: for a column type that cannot be read from JSON or CSV.
    """
    dtype, name = column.dtype, column.name
    base = coercer(dtype, name)
    type_name = sql_type_name(dtype)
    article = "an" if type_name[0] in "AEIO" else "a"

    def not_a(value: Any) -> CoercionError:
        return CoercionError(f'column "{name}": {show(value)} is not {article} {type_name}')

    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        one, zero = base(1), base(0)

        def number(value: Any) -> Any:
            if value is True:
                return one
            if value is False:
                return zero
            return base(value)

        return number
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        limit = column.max_length
        if limit is None:
            return base

        def text(value: Any) -> str:
            result: str = base(value)
            return result[:limit] if len(result) > limit else result

        return text
    if pa.types.is_boolean(dtype):

        def boolean(value: Any) -> bool:
            kind = type(value)
            if kind is bool:
                return bool(value)
            if kind is str:
                return bool(value.lower() == "true")
            if kind is int or kind is float:
                return bool(value != 0)
            raise not_a(value)

        return boolean
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype) or pa.types.is_time(dtype):

        def moment(value: Any) -> Any:
            if type(value) is not str or value.isdigit():
                raise not_a(value)
            return base(value)

        return moment
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):

        def binary(value: Any) -> bytes:
            if value is True or value is False:
                return b"\x01" if value else b"\x00"
            if type(value) is str:
                literal = _HEX_LITERAL.match(value)
                if literal:
                    return bytes.fromhex(literal.group(1))
            result: bytes = base(value)
            return result

        return binary
    return base
