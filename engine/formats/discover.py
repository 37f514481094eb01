"""Guess a schema from a sample of raw records (like KDA's ``DiscoverInputSchema``).

Columns come in the order their keys (or CSV header names) are first seen. Each column gets the
narrowest type every non-null sample value fits, by these rules:

==============================================  ==============
values seen (nulls ignored)                      type
==============================================  ==============
only integers                                    BIGINT
integers and floats                              DOUBLE
only booleans                                    BOOLEAN
only ISO-8601 date-times (``2024-05-01T10:00Z``)  TIMESTAMP
only dates (``2024-05-01``)                      DATE
dates and date-times                             TIMESTAMP
anything else, objects, arrays, only nulls       VARCHAR
==============================================  ==============

CSV fields are text, so there an integer is a field that reads as one (``42``), a float ``4.2``,
a boolean ``true``/``false``; an empty field is NULL. Records that cannot be read (bad UTF-8, bad
JSON, a JSON value that is not an object) are left out of the guess; decoding will report them.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pyarrow as pa

from engine.errors import ConnectorError
from engine.formats._coerce import INT_TEXT, NUMBER_TEXT
from engine.formats.timestamps import parse_date, parse_timestamp
from engine.types import EXTRA_COL, TS_TYPE

_INT_RE = re.compile(INT_TEXT)
_NUMBER_RE = re.compile(NUMBER_TEXT)
_INT64 = 2**63
_BOM = "\ufeff"


def discover_schema(
    payloads: list[bytes],
    fmt: str,
    csv_options: Mapping[str, Any] | None = None,
    where: str | None = None,
) -> pa.Schema:
    """The schema that a sample of records suggests.

    Args:
        payloads: records from the start of the source (``Source.sample``), header line included
            for CSV with a header.
        fmt: ``"json"`` or ``"csv"``.
        csv_options: ``delimiter`` (default ``,``) and ``header`` (default true). Without a header
            the columns are named ``COL_1``, ``COL_2``, ...
        where: a location for error messages (the source URI).

    Returns:
        An Arrow schema of nullable fields; for JSON, with a last column ``_extra`` that keeps the
        fields the sample did not show (``engine.types.EXTRA_COL``).

    Raises:
        ConnectorError: if the sample holds no readable record, or for an unknown format.
    """
    if fmt == "json":
        kinds = _json_kinds(payloads)
    elif fmt == "csv":
        kinds = _csv_kinds(payloads, dict(csv_options or {}))
    else:
        raise ConnectorError(f"cannot discover a schema for format {fmt!r} (json or csv)", where=where)
    if kinds is None:
        raise ConnectorError("there are no records to discover a schema from", where=where)
    schema = pa.schema([pa.field(name, _type_for(seen)) for name, seen in kinds.items()])
    if fmt == "json" and EXTRA_COL not in schema.names:
        schema = schema.append(pa.field(EXTRA_COL, pa.string()))  # fields that appear later are kept there
    return schema


_METADATA_MARK = {b"duckstream": b"source-metadata"}


def with_metadata(schema: pa.Schema, metadata: pa.Schema | None) -> pa.Schema:
    """A discovered schema plus the columns its source supplies itself (Kinesis's
    ``APPROXIMATE_ARRIVAL_TIME``, ``PARTITION_KEY``, ...), unless a record field has that name;
    the added fields are marked (``is_source_metadata``), so a record field is never taken for one."""
    if metadata is None:
        return schema
    taken = {name.lower() for name in schema.names}
    extra = schema.get_field_index(EXTRA_COL)
    for field in metadata:
        if field.name.lower() not in taken:
            marked = field.with_metadata(_METADATA_MARK)
            schema = schema.insert(extra, marked) if extra >= 0 else schema.append(marked)
            extra = extra + 1 if extra >= 0 else extra
    return schema


def is_source_metadata(field: pa.Field) -> bool:
    """Whether ``with_metadata`` added this field (its value comes from the source, not the record)."""
    return bool(field.metadata) and field.metadata.get(b"duckstream") == b"source-metadata"


def sample_objects(payloads: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The records of a sample that are JSON objects (others are skipped: discovery guesses)."""
    for payload in payloads:
        try:
            obj = json.loads(payload.decode("utf-8").removeprefix(_BOM))
        except (UnicodeDecodeError, ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            yield obj


def _json_kinds(payloads: list[bytes]) -> dict[str, set[str]] | None:
    kinds: dict[str, set[str]] = {}
    found = False
    for obj in sample_objects(payloads):
        found = True
        for key, value in obj.items():
            seen = kinds.setdefault(key, set())
            if value is not None:
                seen.add(_json_kind(value))
    return kinds if found else None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if -_INT64 <= value < _INT64 else "float"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return text_kind(value)
    return "string"


def text_kind(text: str) -> str:
    """What a text value looks like: ``date``, ``timestamp`` or ``string``."""
    try:
        parse_date(text)
        return "date"
    except ValueError:
        pass
    try:
        parse_timestamp(text)
        return "timestamp"
    except ValueError:
        return "string"


def _csv_kinds(payloads: list[bytes], options: dict[str, Any]) -> dict[str, set[str]] | None:
    delimiter = options.get("delimiter", ",")
    header = options.get("header", True)
    if isinstance(header, str):
        header = header.lower() == "true"
    rows: list[list[str]] = []
    for payload in payloads:
        if not payload:
            continue
        try:
            text = payload.decode("utf-8").removeprefix(_BOM)
            rows.append(next(csv.reader((text,), delimiter=delimiter, strict=True), []))
        except (UnicodeDecodeError, csv.Error):
            continue
    if header:
        if not rows:
            return None
        names, rows = rows[0], rows[1:]
    else:
        if not rows:
            return None
        names = [f"COL_{i + 1}" for i in range(max(len(r) for r in rows))]
    kinds: dict[str, set[str]] = {name: set() for name in names}
    for row in rows:
        for name, field in zip(names, row, strict=False):
            if field:
                kinds[name].add(_csv_kind(field))
    return kinds


def _csv_kind(field: str) -> str:
    if _INT_RE.fullmatch(field):
        return "int" if -_INT64 <= int(field) < _INT64 else "float"
    if _NUMBER_RE.fullmatch(field):
        return "float"
    if field.lower() in ("true", "false"):
        return "bool"
    return text_kind(field)


def _type_for(seen: set[str]) -> pa.DataType:
    if not seen:
        return pa.string()
    if seen == {"int"}:
        return pa.int64()
    if seen <= {"int", "float"}:
        return pa.float64()
    if seen == {"bool"}:
        return pa.bool_()
    if seen == {"date"}:
        return pa.date32()
    if seen <= {"date", "timestamp"}:
        return TS_TYPE
    return pa.string()
