"""One value into one column type, the per-value way (the reference for every faster path).

``coercer(dtype, column)`` returns a function taking a value as ``json.loads`` gives it (``int``,
``float``, ``str``, ``bool``, ``list``, ``dict``; CSV fields are ``str``) and returning it in the form
``pa.array(values, type=storage_type(dtype))`` accepts, or raising ``CoercionError`` with a one-line
message that names the column and the value. ``None`` never reaches a coercer: the caller maps it
to NULL. The vectorised conversions in ``_vector.py`` must agree with these functions on every value
they accept; when in doubt they decline and the caller comes here.

The rules (also the user documentation of what a column accepts):

- integers: JSON integers; floats with a zero fraction (``3.0``); strings holding either (``"42"``,
  ``"3.0"``, ``"1e2"``). Rejected: ``1.5``, booleans, values outside the type's range.
- floating point: numbers and numeric strings (``"1.5"``, ``"-2e3"``); ``NaN``/``Infinity`` JSON
  literals are kept; a finite value beyond ``REAL``'s range is rejected for ``REAL``.
- decimals: numbers and numeric strings, rounded half away from zero to the scale; rejected when the
  integer part has more digits than ``precision - scale``.
- strings: strings as they are; numbers and booleans as their JSON text; objects and arrays as
  compact JSON text.
- booleans: ``true``/``false`` and the strings ``"true"``/``"false"`` (any case).
- timestamps: ISO-8601 strings (``engine.formats.timestamps.parse_timestamp``); JSON numbers and
  strings holding an integer are epoch **milliseconds**; years 0001-9999 (UTC) only.
- dates: ``"YYYY-MM-DD"``; times: ``"HH:MM[:SS[.f]]"``; binary: a hex string (``"0aff"``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

import pyarrow as pa

from engine.formats.timestamps import parse_date, parse_time, parse_timestamp
from engine.formats.types import sql_type_name

Coercer = Callable[[Any], Any]

INT_TEXT = r"[+-]?[0-9]+"
NUMBER_TEXT = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
HEX_TEXT = r"(?:[0-9a-fA-F]{2})*"
_INT_RE = re.compile(INT_TEXT)
_NUMBER_RE = re.compile(NUMBER_TEXT)
_HEX_RE = re.compile(HEX_TEXT)
FLOAT32_MAX = 3.4028234663852886e38
MIN_TIMESTAMP_US = -62135596800000000  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP_US = 253402300799999999  # 9999-12-31T23:59:59.999999Z


class CoercionError(ValueError):
    """A value that does not fit its column; ``str()`` is the one-line message."""


def show(value: Any, limit: int = 60) -> str:
    """A value as JSON text for a message, shortened to ``limit`` characters.

    Args:
        value: any value ``json.loads`` can produce.
        limit: the longest text to return.

    Returns:
        The text, ending in ``…`` when shortened.
    """
    try:
        text = json.dumps(value, ensure_ascii=False)
        if not text.isascii():
            text.encode("utf-8")  # a lone surrogate cannot go into an Arrow string
    except UnicodeEncodeError:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def storage_type(dtype: pa.DataType) -> pa.DataType:
    """The Arrow type to build a column of coerced values with (cast to ``dtype`` afterwards).

    Args:
        dtype: the declared column type.

    Returns:
        ``timestamp[us]`` for any timestamp (coercers return microseconds), else ``dtype``.
    """
    if pa.types.is_timestamp(dtype):
        return pa.timestamp("us")
    if pa.types.is_time(dtype):
        return pa.time64("us")
    return dtype


def coercer(dtype: pa.DataType, column: str) -> Coercer:
    """The function that turns one non-null value into ``column``'s type.

    Args:
        dtype: the declared Arrow type of the column.
        column: the column name, for messages.

    Returns:
        A function ``value -> storage value`` raising ``CoercionError``.

    Raises:
        ValueError: if values of ``dtype`` cannot be decoded from text formats (nested types).
    """
    name = sql_type_name(dtype)
    article = "an" if name[0] in "AEIO" else "a"

    def not_a(value: Any) -> CoercionError:
        return CoercionError(f'column "{column}": {show(value)} is not {article} {name}')

    def out_of_range(value: Any) -> CoercionError:
        return CoercionError(f'column "{column}": {show(value)} is out of range for {name}')

    if pa.types.is_integer(dtype):
        return _int_coercer(dtype, not_a, out_of_range)
    if pa.types.is_floating(dtype):
        return _float_coercer(dtype, not_a, out_of_range)
    if pa.types.is_decimal(dtype):
        return _decimal_coercer(dtype, not_a, out_of_range)
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return _string_coercer(column)
    if pa.types.is_boolean(dtype):
        return _bool_coercer(not_a)
    if pa.types.is_timestamp(dtype):
        return _timestamp_coercer(not_a, out_of_range, *_timestamp_range(dtype))
    if pa.types.is_date(dtype):
        return _text_coercer(parse_date, not_a)
    if pa.types.is_time(dtype):
        return _text_coercer(parse_time, not_a)
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return _binary_coercer(not_a)
    if pa.types.is_null(dtype):
        return lambda value: None
    raise ValueError(f'column "{column}": values of type {name} cannot be read from JSON or CSV')


def _int_coercer(
    dtype: pa.DataType, not_a: Callable[[Any], CoercionError], out_of_range: Callable[[Any], CoercionError]
) -> Coercer:
    bits = dtype.bit_width
    lo, hi = (0, 2**bits - 1) if pa.types.is_unsigned_integer(dtype) else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)

    def coerce(value: Any) -> int:
        kind = type(value)
        number: int
        if kind is int:
            number = value
        elif kind is float:
            if not value.is_integer():
                raise not_a(value)
            number = int(value)
        elif kind is str:
            number = _int_from_text(value, not_a)
        else:
            raise not_a(value)
        if not lo <= number <= hi:
            raise out_of_range(value)
        return number

    return coerce


def _int_from_text(text: str, not_a: Callable[[Any], CoercionError]) -> int:
    if _INT_RE.fullmatch(text):
        if len(text) > 40:
            raise not_a(text)
        return int(text)
    if not _NUMBER_RE.fullmatch(text):
        raise not_a(text)
    number = Decimal(text)
    if number.adjusted() > 40 or number != number.to_integral_value():
        raise not_a(text)
    return int(number)


def _float_coercer(
    dtype: pa.DataType, not_a: Callable[[Any], CoercionError], out_of_range: Callable[[Any], CoercionError]
) -> Coercer:
    single = dtype.bit_width < 64

    def coerce(value: Any) -> float:
        kind = type(value)
        number: float
        if kind is float:
            number = value
        elif kind is int:
            try:
                number = float(value)
            except OverflowError:
                raise out_of_range(value) from None
        elif kind is str and _NUMBER_RE.fullmatch(value):
            number = float(value)
        else:
            raise not_a(value)
        if single and math.isfinite(number) and abs(number) > FLOAT32_MAX:
            raise out_of_range(value)
        return number

    return coerce


def _decimal_coercer(
    dtype: pa.DataType, not_a: Callable[[Any], CoercionError], out_of_range: Callable[[Any], CoercionError]
) -> Coercer:
    quantum = Decimal(1).scaleb(-dtype.scale)
    int_digits = dtype.precision - dtype.scale

    def coerce(value: Any) -> Decimal:
        kind = type(value)
        if kind is int:
            number = Decimal(value)
        elif kind is float:
            if not math.isfinite(value):
                raise not_a(value)
            number = Decimal(repr(value))
        elif kind is str and _NUMBER_RE.fullmatch(value):
            number = Decimal(value)
        else:
            raise not_a(value)
        if number.adjusted() >= int_digits:
            raise out_of_range(value)
        with localcontext() as ctx:
            ctx.prec = 80
            try:
                rounded = number.quantize(quantum, rounding=ROUND_HALF_UP)
            except InvalidOperation:
                raise out_of_range(value) from None
        if rounded and rounded.adjusted() >= int_digits:
            raise out_of_range(value)
        return rounded

    return coerce


def _string_coercer(column: str) -> Coercer:
    def coerce(value: Any) -> str:
        kind = type(value)
        if kind is str:
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise CoercionError(
                        f'column "{column}": {show(value)} is not valid Unicode text (lone surrogate)'
                    ) from None
            return str(value)
        if kind is bool:
            return "true" if value else "false"
        if kind is int:
            return str(value)
        if kind is float:
            return json.dumps(value)
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    return coerce


def _bool_coercer(not_a: Callable[[Any], CoercionError]) -> Coercer:
    def coerce(value: Any) -> bool:
        if type(value) is bool:
            return value
        if type(value) is str:
            lowered = value.lower()
            if lowered == "true":
                return True
            if lowered == "false":
                return False
        raise not_a(value)

    return coerce


def _timestamp_range(dtype: pa.DataType) -> tuple[int, int]:
    """The microseconds a timestamp column can hold: years 0001-9999, fewer in nanoseconds."""
    if dtype.unit == "ns":
        limit = (2**63 - 1) // 1000
        return max(MIN_TIMESTAMP_US, -limit), min(MAX_TIMESTAMP_US, limit)
    return MIN_TIMESTAMP_US, MAX_TIMESTAMP_US


def _timestamp_coercer(
    not_a: Callable[[Any], CoercionError],
    out_of_range: Callable[[Any], CoercionError],
    lowest: int = MIN_TIMESTAMP_US,
    highest: int = MAX_TIMESTAMP_US,
) -> Coercer:
    def coerce(value: Any) -> int:
        kind = type(value)
        if kind is str:
            if _INT_RE.fullmatch(value):
                micros = int(value) * 1000 if len(value) < 20 else MAX_TIMESTAMP_US + 1
            else:
                try:
                    micros = parse_timestamp(value)
                except ValueError:
                    raise not_a(value) from None
        elif kind is int:
            micros = value * 1000
        elif kind is float:
            if not math.isfinite(value):
                raise not_a(value)
            micros = round(value * 1000) if abs(value) < 1e16 else MAX_TIMESTAMP_US + 1
        else:
            raise not_a(value)
        if not lowest <= micros <= highest:
            raise out_of_range(value)
        return micros

    return coerce


def _text_coercer(parse: Callable[[str], int], not_a: Callable[[Any], CoercionError]) -> Coercer:
    def coerce(value: Any) -> int:
        if type(value) is not str:
            raise not_a(value)
        try:
            return parse(value)
        except ValueError:
            raise not_a(value) from None

    return coerce


def _binary_coercer(not_a: Callable[[Any], CoercionError]) -> Coercer:
    def coerce(value: Any) -> bytes:
        if type(value) is str and _HEX_RE.fullmatch(value):
            return bytes.fromhex(value)
        raise not_a(value)

    return coerce
