"""Connector options, taken as they are read: whatever is left over is a mistake.

Options come from a URI query (``data.csv?header=false``) or a SQL ``WITH ('k' = 'v', ...)``
clause; every value is a string. A connector's constructor ``take``s the keys it knows and then
calls ``finish()``, so a typo like ``hedaer`` fails with its name instead of being ignored.
Keys are matched case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from engine.errors import ConnectorError

_DURATION_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zµ]*)\s*", re.IGNORECASE)
_UNIT_US = {
    "": 1_000_000,
    "us": 1,
    "µs": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "sec": 1_000_000,
    "secs": 1_000_000,
    "second": 1_000_000,
    "seconds": 1_000_000,
    "m": 60_000_000,
    "min": 60_000_000,
    "mins": 60_000_000,
    "minute": 60_000_000,
    "minutes": 60_000_000,
    "h": 3_600_000_000,
    "hour": 3_600_000_000,
    "hours": 3_600_000_000,
    "d": 86_400_000_000,
    "day": 86_400_000_000,
    "days": 86_400_000_000,
}
_DURATION_HINT = "write 250ms, 0.5s, 10s, 5m, 1h"
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_duration(text: str, where: str) -> int:
    """Microseconds in a duration such as ``250ms``, ``0.5s``, ``10s``, ``5m``, ``1h`` or ``2d``.

    A plain number is seconds. Units: ``us``, ``ms``, ``s``, ``m``, ``h``, ``d`` (and their long
    forms, any case). Fractions round to the nearest microsecond.

    Args:
        text: the duration as the user wrote it.
        where: what the value belongs to, for the message (``--batch-interval``, a file:line).

    Returns:
        The duration in microseconds (never negative).

    Raises:
        ConnectorError: ``<where>: "5x" is not a duration (write 250ms, 0.5s, 10s, 5m, 1h)``.
    """
    m = _DURATION_RE.fullmatch(text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNIT_US:
        raise ConnectorError(f'"{text}" is not a duration', where=where, hint=_DURATION_HINT)
    micros = (Decimal(m.group(1)) * _UNIT_US[unit]).to_integral_value(rounding=ROUND_HALF_UP)
    return int(micros)


def parse_bool(text: str, where: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``), any case.

    Args:
        text: the value as written.
        where: what the value belongs to, for the message.

    Returns:
        The boolean.

    Raises:
        ConnectorError: for anything else.
    """
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConnectorError(f"{text!r} is not true or false", where=where)


def take_csv_options(options: Options, default_delimiter: str = ",") -> dict[str, Any]:
    r"""Take the CSV options every CSV connector understands.

    ``delimiter`` is one character (``\t`` or ``tab`` for a tab); ``header`` is a boolean,
    default true.

    Args:
        options: the connector's options.
        default_delimiter: the delimiter when none is given.

    Returns:
        ``{"delimiter": str, "header": bool}``, the ``csv_options`` the decoder takes.

    Raises:
        ConnectorError: for a delimiter that is not one character (or is a quote or line break).
    """
    delimiter = options.take("delimiter", default_delimiter)
    if delimiter in ("\\t", "tab"):
        delimiter = "\t"
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise ConnectorError(f"option 'delimiter': {delimiter!r} is not one character", where=options.where)
    return {"delimiter": delimiter, "header": options.take_bool("header", True)}


class Options:
    """Options from a WITH clause or a URI query, consumed by ``take*`` and checked by ``finish``."""

    def __init__(self, raw: Mapping[str, str], where: str) -> None:
        """Hold the options; nothing is validated until taken.

        Args:
            raw: key to value, as written.
            where: a location prefix for messages, e.g. ``queries/alarms.sql:4:1`` or the URI.

        Raises:
            ConnectorError: if two keys differ only in case.
        """
        self.where = where
        self._left: dict[str, tuple[str, str]] = {}
        for key, value in raw.items():
            low = key.lower()
            if low in self._left:
                raise ConnectorError(f"option {key!r} is given twice", where=where)
            self._left[low] = (key, value)

    def __contains__(self, key: str) -> bool:
        """Whether ``key`` is present and not yet taken."""
        return key.lower() in self._left

    def take(self, key: str, default: str | None = None) -> str:
        """The value of ``key`` (removed from the options), or ``default``.

        Args:
            key: the option name.
            default: the value when absent; None makes the option required.

        Returns:
            The value as written.

        Raises:
            ConnectorError: if the option is required and absent.
        """
        found = self._left.pop(key.lower(), None)
        if found is not None:
            return found[1]
        if default is None:
            raise ConnectorError(f"missing required option {key!r}", where=self.where)
        return default

    def take_optional(self, key: str) -> str | None:
        """The value of ``key`` if present (removed from the options), else None.

        Args:
            key: the option name.

        Returns:
            The value or None.
        """
        found = self._left.pop(key.lower(), None)
        return None if found is None else found[1]

    def take_int(self, key: str, default: int | None = None, minimum: int | None = None) -> int:
        """An integer option.

        Args:
            key: the option name.
            default: the value when absent; None makes the option required.
            minimum: the smallest accepted value.

        Returns:
            The integer.

        Raises:
            ConnectorError: if absent and required, not an integer, or below ``minimum``.
        """
        text = self.take(key, None if default is None else str(default))
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            raise ConnectorError(f"option {key!r}: {text!r} is not an integer", where=self.where) from None
        if minimum is not None and value < minimum:
            raise ConnectorError(f"option {key!r}: {value} is less than {minimum}", where=self.where)
        return value

    def take_float(self, key: str, default: float, minimum_exclusive: float | None = None) -> float:
        """A number option.

        Args:
            key: the option name.
            default: the value when absent.
            minimum_exclusive: values must be greater than this.

        Returns:
            The number.

        Raises:
            ConnectorError: if not a finite number or not above ``minimum_exclusive``.
        """
        text = self.take(key, repr(default))
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if value != value or value in (float("inf"), float("-inf")):
            raise ConnectorError(f"option {key!r}: {text!r} is not a number", where=self.where)
        if minimum_exclusive is not None and value <= minimum_exclusive:
            raise ConnectorError(f"option {key!r}: must be more than {minimum_exclusive:g}", where=self.where)
        return value

    def take_bool(self, key: str, default: bool) -> bool:
        """A boolean option (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``).

        Args:
            key: the option name.
            default: the value when absent.

        Returns:
            The boolean.

        Raises:
            ConnectorError: for any other value.
        """
        text = self.take_optional(key)
        if text is None:
            return default
        return parse_bool(text, f"{self.where}: option {key!r}")

    def take_duration(self, key: str, default: str) -> int:
        """A duration option, in microseconds (see ``parse_duration``).

        Args:
            key: the option name.
            default: the duration when absent, written like a user would (``"10s"``).

        Returns:
            Microseconds.

        Raises:
            ConnectorError: if the value is not a duration.
        """
        return parse_duration(self.take(key, default), f"{self.where}: option {key!r}")

    def take_choice(self, key: str, choices: Iterable[str], default: str | None = None) -> str:
        """One of a fixed set of words (compared case-insensitively, returned lower-case).

        Args:
            key: the option name.
            choices: the accepted values.
            default: the value when absent; None makes the option required.

        Returns:
            The chosen word, lower-cased.

        Raises:
            ConnectorError: if absent and required, or not one of ``choices``.
        """
        allowed = sorted(choices)
        value = self.take(key, default).strip().lower()
        if value not in allowed:
            raise ConnectorError(f"option {key!r}: {value!r} is not one of {', '.join(allowed)}", where=self.where)
        return value

    def finish(self) -> None:
        """Reject whatever was not taken.

        Raises:
            ConnectorError: naming the unknown option(s).
        """
        if self._left:
            names = ", ".join(repr(orig) for orig, _ in sorted(self._left.values()))
            noun = "option" if len(self._left) == 1 else "options"
            raise ConnectorError(f"unknown {noun} {names}", where=self.where)
