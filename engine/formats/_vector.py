"""Whole columns into declared types with Arrow kernels, all or nothing.

``convert(values, dtype)`` is the fast twin of ``_coerce.coercer``: it returns the converted column
only when every value would convert the per-value way *to the same result*, and ``None`` otherwise
(a value it cannot vouch for, a kernel error, a source type it does not handle). ``None`` is not a
verdict on the data: the caller then goes value by value, which decides and explains. This rule is
what lets a batch take either path and still give the same rows, whatever the batch split.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from engine.formats._coerce import FLOAT32_MAX, INT_TEXT, MAX_TIMESTAMP_US, MIN_TIMESTAMP_US, NUMBER_TEXT
from engine.formats.timestamps import DATE_PATTERN, TIMESTAMP_PATTERN

_TS_ANCHORED = f"^(?:{TIMESTAMP_PATTERN})$"
_DATE_ANCHORED = f"^(?:{DATE_PATTERN})$"
_INT_ANCHORED = f"^{INT_TEXT}$"
_NUMBER_ANCHORED = f"^{NUMBER_TEXT}$"
_PLAIN_NUMBER_ANCHORED = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$"  # NUMBER_TEXT without an exponent
_ZONE_SUFFIX = r"[Tt ][0-9:.,]+(?:[Zz]|[+-][0-9:]+)$"
_EXACT_DOUBLE = 2.0**53


def convert(values: pa.Array, dtype: pa.DataType) -> pa.Array | None:
    """``values`` as ``dtype`` by the rules of ``_coerce``, or None if any value needs a closer look.

    Args:
        values: a column as Arrow read it (JSON inference, CSV text, ...).
        dtype: the declared type.

    Returns:
        An array of type ``dtype`` (nulls kept), or None.
    """
    if values.null_count == len(values):
        return pa.nulls(len(values), dtype)
    try:
        return _convert(values, dtype)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
        return None


def _convert(values: pa.Array, dtype: pa.DataType) -> pa.Array | None:
    src = values.type
    if pa.types.is_large_string(src):
        values, src = values.cast(pa.string()), pa.string()
    if pa.types.is_integer(dtype):
        return _to_int(values, dtype)
    if pa.types.is_floating(dtype):
        return _to_float(values, dtype)
    if pa.types.is_decimal(dtype):
        if pa.types.is_integer(src):
            return values.cast(dtype)
        if pa.types.is_float64(src):
            # Past 2**53 a double may be a JSON integer too long for int64, rounded: not its value.
            if not _all(pc.is_finite(values)) or _any(pc.greater_equal(pc.abs(values), _EXACT_DOUBLE)):
                return None
            values, src = values.cast(pa.string()), pa.string()
        # Only plain digits: Arrow's cast does not notice an exponent overflowing the decimal
        # ("3.4e+38" into DECIMAL(38, 10) comes out as a wrong number instead of an error).
        if pa.types.is_string(src) and _all_match(values, _PLAIN_NUMBER_ANCHORED):
            return values.cast(dtype)
        return None
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        if pa.types.is_string(src) or pa.types.is_integer(src) or pa.types.is_boolean(src):
            return values.cast(dtype)
        return None
    if pa.types.is_boolean(dtype):
        if pa.types.is_boolean(src):
            return values
        if pa.types.is_string(src):
            lowered = pc.utf8_lower(values)
            if _all(pc.or_kleene(pc.is_null(lowered), pc.is_in(lowered, pa.array(["true", "false"])))):
                return pc.equal(lowered, "true")
        return None
    if pa.types.is_timestamp(dtype):
        if pa.types.is_string(src):
            parsed = parse_timestamps(values)
        elif pa.types.is_integer(src):
            parsed = pc.multiply_checked(values.cast(pa.int64()), 1000).cast(pa.timestamp("us"))
        else:
            return None
        if parsed is None:
            return None
        micros = parsed.cast(pa.int64())
        if _any(pc.less(micros, MIN_TIMESTAMP_US)) or _any(pc.greater(micros, MAX_TIMESTAMP_US)):
            return None
        return parsed.cast(dtype)
    if pa.types.is_date32(dtype) and pa.types.is_string(src):
        if not _all_match(values, _DATE_ANCHORED) or _any(pc.starts_with(values, "0000")):
            return None
        return values.cast(dtype)
    return None


def _to_int(values: pa.Array, dtype: pa.DataType) -> pa.Array | None:
    src = values.type
    if pa.types.is_string(src):
        if not _all_match(values, _INT_ANCHORED) or _any(pc.greater(pc.utf8_length(values), 19)):
            return None
        values, src = values.cast(pa.int64()), pa.int64()
    if pa.types.is_floating(src):
        if not _all(pc.and_(pc.is_finite(values), pc.equal(pc.floor(values), values))):
            return None
        if _any(pc.greater_equal(pc.abs(values), _EXACT_DOUBLE)):
            return None
        values = values.cast(pa.int64())
    elif not pa.types.is_integer(src):
        return None
    return values.cast(dtype)  # a safe cast: out of range raises, and the caller declines


def _to_float(values: pa.Array, dtype: pa.DataType) -> pa.Array | None:
    src = values.type
    if pa.types.is_string(src):
        if not _all_match(values, _NUMBER_ANCHORED):
            return None
        doubles = values.cast(pa.float64())
    elif pa.types.is_integer(src):
        doubles = values.cast(pa.float64())  # safe: raises past 2**53, where rounding would start
    elif pa.types.is_floating(src):
        doubles = values.cast(pa.float64())
    else:
        return None
    if dtype.bit_width < 64:
        finite = pc.is_finite(doubles)
        if _any(pc.and_(finite, pc.greater(pc.abs(doubles), FLOAT32_MAX))):
            return None
        return doubles.cast(dtype, safe=False)
    return doubles


def parse_timestamps(values: pa.Array) -> pa.Array | None:
    """``parse_timestamp`` for a whole string column, or None if any non-null value fails it.

    The pattern match guarantees our grammar; Arrow's ISO-8601 cast then computes the values. It
    reads every string of the grammar the same way ``parse_timestamp`` does, or refuses it (a
    lower-case ``t``/``z``, a comma fraction, more than 6 fraction digits, an impossible date), in
    which case we decline too.

    Args:
        values: strings (nulls allowed).

    Returns:
        ``timestamp[us]`` values, or None.
    """
    if not _all_match(values, _TS_ANCHORED) or _any(pc.starts_with(values, "0000")):
        return None
    for zone in ("UTC", None):
        try:
            return values.cast(pa.timestamp("us", zone)).cast(pa.timestamp("us"))
        except pa.ArrowInvalid:
            pass
    zoned = pc.match_substring_regex(values, _ZONE_SUFFIX)
    nothing = pa.scalar(None, values.type)
    with_zone = pc.if_else(zoned, values, nothing).cast(pa.timestamp("us", "UTC")).cast(pa.timestamp("us"))
    without = pc.if_else(zoned, nothing, values).cast(pa.timestamp("us"))
    return pc.if_else(zoned, with_zone, without)


def _all(mask: pa.Array) -> bool:
    return bool(pc.all(mask).as_py() is not False)


def _any(mask: pa.Array) -> bool:
    return bool(pc.any(mask).as_py())


def _all_match(values: pa.Array, pattern: str) -> bool:
    return _all(pc.match_substring_regex(values, pattern))
