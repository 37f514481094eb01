"""Reading and writing timestamps as text: one grammar in, one spelling out.

In: ISO-8601 as people and tools write it (see ``parse_timestamp``). Out: ``2024-05-01T10:00:00Z``
with a fraction only when it is not zero, trimmed to 3 or 6 digits (``.250``, ``.000001``). Every
value is an ``int`` of microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import re
import time
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from engine.types import TS_TYPE

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_US_PER_DAY = 86_400_000_000

# One grammar for both readers: Python's ``re`` (per value) and RE2 (``pc.extract_regex``, whole
# columns). ASCII classes only, so both engines accept exactly the same strings.
TIMESTAMP_PATTERN = (
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
    r"(?:[Tt ](?P<h>[01][0-9]|2[0-3]):(?P<mi>[0-5][0-9])(?::(?P<s>[0-5][0-9])(?:[.,](?P<f>[0-9]{1,9}))?)?)?"
    r"(?:(?P<z>[Zz])|(?P<sign>[+-])(?P<oh>[01][0-9]|2[0-3])(?::?(?P<om>[0-5][0-9]))?)?"
)
DATE_PATTERN = r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
_TS_RE = re.compile(TIMESTAMP_PATTERN)
_DATE_RE = re.compile(DATE_PATTERN)
_TIME_RE = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?")


def now_us() -> int:
    """Microseconds since the epoch, now (UTC): the wall clock for arrival and detection times."""
    return time.time_ns() // 1000


def parse_timestamp(text: str) -> int:
    """Microseconds since the epoch (UTC) for an ISO-8601 timestamp.

    The grammar: ``YYYY-MM-DD``, optionally followed by ``T`` (or ``t`` or a space) and
    ``HH:MM[:SS[.fraction]]``, optionally followed by ``Z`` or an offset ``±HH[:MM]``/``±HHMM``.
    A value without a zone is UTC; an offset is converted to UTC; a date alone is midnight UTC;
    fraction digits past the sixth are dropped (truncated). No surrounding whitespace, no other
    separators; years are 0001-9999.

    Args:
        text: the string to read, e.g. ``"2024-05-01T10:00:00.250+02:00"``.

    Returns:
        Microseconds since 1970-01-01T00:00:00Z.

    Raises:
        ValueError: if the text does not follow the grammar or names an impossible date or time.
    """
    m = _TS_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}")
    y, mo, d, hh, mi, ss, frac, _z, sign, oh, om = m.groups()
    days = date(int(y), int(mo), int(d)).toordinal() - _EPOCH_ORDINAL
    seconds = 0 if hh is None else int(hh) * 3600 + int(mi) * 60 + int(ss or 0)  # ranges: the pattern
    if sign is not None:
        offset = int(oh) * 3600 + int(om or 0) * 60
        seconds -= offset if sign == "+" else -offset
    micros = int(frac[:6].ljust(6, "0")) if frac else 0
    return days * _US_PER_DAY + seconds * 1_000_000 + micros


def parse_date(text: str) -> int:
    """Days since 1970-01-01 for a ``YYYY-MM-DD`` string.

    Args:
        text: the date.

    Returns:
        The day number (date32's storage).

    Raises:
        ValueError: if the text is not ``YYYY-MM-DD`` or not a real date.
    """
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a YYYY-MM-DD date: {text!r}")
    return date(int(m[1]), int(m[2]), int(m[3])).toordinal() - _EPOCH_ORDINAL


def parse_time(text: str) -> int:
    """Microseconds since midnight for ``HH:MM[:SS[.fraction]]``.

    Args:
        text: the time of day.

    Returns:
        Microseconds since midnight (time64[us]'s storage).

    Raises:
        ValueError: if the text is not a valid time of day.
    """
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a HH:MM:SS time: {text!r}")
    h, minute, sec = int(m[1]), int(m[2]), int(m[3] or 0)
    if h > 23 or minute > 59 or sec > 59:
        raise ValueError(f"not a valid time of day: {text!r}")
    micros = int(m[4][:6].ljust(6, "0")) if m[4] else 0
    return (h * 3600 + minute * 60 + sec) * 1_000_000 + micros


def format_timestamp(micros: int) -> str:
    """The house spelling of a timestamp: ``2024-05-01T10:00:00Z`` or ``…:00.250Z``.

    Args:
        micros: microseconds since the epoch, UTC.

    Returns:
        ISO-8601 in UTC with ``Z``; the fraction appears only when non-zero, as 3 digits when the
        value is a whole millisecond and 6 otherwise.
    """
    days, rest = divmod(micros, _US_PER_DAY)
    seconds, frac = divmod(rest, 1_000_000)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    day = date.fromordinal(_EPOCH_ORDINAL + days).isoformat()
    return f"{day}T{h:02d}:{m:02d}:{s:02d}{_fraction(frac)}Z"


def format_time(micros: int) -> str:
    """``HH:MM:SS`` with the same fraction rule as ``format_timestamp``.

    Args:
        micros: microseconds since midnight.

    Returns:
        The time of day as text.
    """
    seconds, frac = divmod(micros, 1_000_000)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}{_fraction(frac)}"


def _fraction(frac: int) -> str:
    if frac == 0:
        return ""
    if frac % 1000 == 0:
        return f".{frac // 1000:03d}"
    return f".{frac:06d}"


def format_timestamps(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``format_timestamp`` for a whole Arrow timestamp array, vectorised; nulls stay null.

    Args:
        values: timestamps of any unit, with or without a zone (the instant is what counts).

    Returns:
        A string array of the same length.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], TS_TYPE)
    if values.type != TS_TYPE:
        values = pc.cast(values, TS_TYPE, safe=False)
    micros = values.cast(pa.int64())
    whole = pc.floor_temporal(values, unit="second").cast(pa.timestamp("s"))
    base = pc.utf8_replace_slice(whole.cast(pa.string()), 10, 11, "T")  # "2024-05-01 10:00:00"
    frac = pc.subtract(micros, pc.multiply(whole.cast(pa.int64()), 1_000_000))  # 0 .. 999_999
    if not pc.any(pc.not_equal(frac, 0)).as_py():
        return pc.binary_join_element_wise(base, "Z", "")
    millis = pc.divide(frac, 1000)
    # Zero-padding by formatting 1000 + ms and 1_000_000 + us and dropping the leading "1".
    ms_text = pc.utf8_replace_slice(pc.add(millis, 1000).cast(pa.string()), 0, 1, ".")
    us_text = pc.utf8_replace_slice(pc.add(frac, 1_000_000).cast(pa.string()), 0, 1, ".")
    is_ms = pc.equal(pc.multiply(millis, 1000), frac)
    frac_text = pc.if_else(pc.equal(frac, 0), "", pc.if_else(is_ms, ms_text, us_text))
    return pc.binary_join_element_wise(base, frac_text, "Z", "")
