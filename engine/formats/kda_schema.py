"""KDA input schemas: what a Kinesis Data Analytics application said its source records look like.

A KDA application's input configuration declares the in-application input stream with an
``InputSchema`` object (``RecordFormat``, ``RecordEncoding``, ``RecordColumns``). ``load_input_schema``
reads one from a JSON file, as users copy it out of their old application: the bare ``InputSchema``
object, an object holding it under ``"InputSchema"`` (an ``Inputs[]`` entry of CreateApplication,
an ``InputDescriptions[]`` entry of DescribeApplication), or the whole ``aws kinesisanalytics
describe-application`` output / CreateApplication request when it has exactly one input.

What a schema may say:

- ``RecordFormat.RecordFormatType``: ``JSON`` or ``CSV``.
- JSON: ``MappingParameters.JSONMappingParameters.RecordRowPath`` (``$`` or ``$.a.b``: where the
  record's row object is), and per column a ``Mapping``, a JSONPath of this subset (case-sensitive):
  ``$.a`` and ``$.a.b.c`` (nested fields; ``['odd key']`` for keys with dots or brackets),
  ``$.arr[0:]`` (the whole array, as JSON text) and ``$.arr[0:].field`` (explode: one row per
  element, the other columns repeated). Every exploding column must explode the same array.
- CSV: ``MappingParameters.CSVMappingParameters.RecordColumnDelimiter`` (default ``,``) and
  ``RecordRowDelimiter`` (default ``\\n``); columns are positional (the first column is the first
  field) and ``Mapping`` is ignored. The two-character escapes ``\\t``, ``\\n`` and ``\\r`` written
  literally in the JSON are read as the characters.
- ``RecordEncoding``: ``UTF-8`` (the only one KDA had).
- ``RecordColumns``: 1 to 1000 of ``{"Name", "SqlType", "Mapping"}``; ``SqlType`` is any type
  ``engine.formats.types.parse_type`` knows (``VARCHAR(4)``, ``REAL``, ``DECIMAL(5,2)``, ...);
  ``VARCHAR(n)``/``CHAR(n)`` values longer than ``n`` are cut to ``n`` characters when decoded,
  as KDA did.

``discover_input_schema`` builds such a schema from sample records, the way KDA's
``DiscoverInputSchema`` named and typed columns (see its docstring).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from engine.errors import ConnectorError
from engine.formats._coerce import INT_TEXT, NUMBER_TEXT
from engine.formats.discover import sample_objects, text_kind
from engine.formats.types import parse_type

MAX_COLUMNS = 1000
MAX_NAME_LENGTH = 100  # longer discovered names are cut (KDA's identifiers are at most 128 characters)
_SIZED_TEXT = re.compile(r"^\s*(?:VARCHAR|CHAR|CHARACTER(?:\s+VARYING)?)\s*\(\s*(\d+)\s*\)\s*$", re.IGNORECASE)
_ESCAPES = {"\\t": "\t", "\\n": "\n", "\\r": "\r", "\\r\\n": "\r\n"}
_SCHEMA_KEYS = {"RecordFormat", "RecordEncoding", "RecordColumns"}
_COLUMN_KEYS = {"Name", "SqlType", "Mapping"}
_INT_RE = re.compile(INT_TEXT)
_NUMBER_RE = re.compile(NUMBER_TEXT)
_INT32 = 2**31
_INT64 = 2**63
_BOM = "\ufeff"


@dataclass(frozen=True)
class RecordColumn:
    """One column of an input schema.

    ``path`` is the keys from the row object to the value (JSON), or ``()`` for CSV. ``whole_array``:
    the mapping ends in ``[0:]`` (the array as JSON text). ``element``: the column explodes the array
    at ``path`` and takes this key of each element (``$.arr[0:].field``). ``max_length``: the ``n`` of
    ``VARCHAR(n)``/``CHAR(n)``.
    """

    name: str
    sql_type: str
    dtype: pa.DataType
    mapping: str | None = None
    path: tuple[str, ...] = ()
    whole_array: bool = False
    element: str | None = None
    max_length: int | None = None

    @property
    def explodes(self) -> bool:
        """Whether each element of an array becomes a row of its own."""
        return self.element is not None


@dataclass(frozen=True)
class InputSchema:
    """A validated KDA ``InputSchema``: the format, how to find the rows, and the columns."""

    format: Literal["json", "csv"]
    columns: tuple[RecordColumn, ...]
    row_path: tuple[str, ...] = ()
    column_delimiter: str = ","
    row_delimiter: str = "\n"
    encoding: str = "UTF-8"
    source: str = "<input schema>"  # where it came from, for messages

    def arrow_schema(self) -> pa.Schema:
        """The in-application stream's columns (all nullable: KDA's input could not say NOT NULL)."""
        return pa.schema([pa.field(c.name, c.dtype) for c in self.columns])

    @property
    def exploded_array(self) -> tuple[str, ...] | None:
        """The path of the array whose elements become rows, if a column explodes one."""
        return next((c.path for c in self.columns if c.explodes), None)

    @property
    def multi_row(self) -> bool:
        """Whether one record can become several rows: an exploded array, or CSV (a record may hold
        several rows separated by the row delimiter)."""
        return self.format == "csv" or self.exploded_array is not None

    def to_json(self) -> dict[str, Any]:
        """The schema as KDA's API spells it (what ``load_input_schema`` reads back)."""
        if self.format == "json":
            row_path = "$" + "".join(_path_text(k) for k in self.row_path)
            mapping: dict[str, Any] = {"JSONMappingParameters": {"RecordRowPath": row_path}}
        else:
            mapping = {
                "CSVMappingParameters": {
                    "RecordColumnDelimiter": self.column_delimiter,
                    "RecordRowDelimiter": self.row_delimiter,
                }
            }
        columns = []
        for column in self.columns:
            entry = {"Name": column.name, "SqlType": column.sql_type}
            if self.format == "json" and column.mapping is not None:
                entry["Mapping"] = column.mapping
            columns.append(entry)
        return {
            "RecordFormat": {"RecordFormatType": self.format.upper(), "MappingParameters": mapping},
            "RecordEncoding": self.encoding,
            "RecordColumns": columns,
        }


# ---------------------------------------------------------------------- loading


def load_input_schema(path: str | Path) -> InputSchema:
    """Read and validate a KDA input schema file.

    Args:
        path: the JSON file; its name (as given) starts every error message.

    Returns:
        The schema.

    Raises:
        ConnectorError: one line naming the file and, where it applies, the column:
            ``input-schema.json: column PRICE: unknown SqlType 'REALL'``.
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConnectorError("no such file", where=where) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConnectorError(f"cannot read the file: {err}", where=where) from None
    try:
        document = json.loads(text.removeprefix(_BOM))
    except json.JSONDecodeError as err:
        raise ConnectorError(
            f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})", where=where
        ) from None
    return parse_input_schema(document, where)


def parse_input_schema(document: Any, where: str = "<input schema>") -> InputSchema:
    """Validate an input schema given as parsed JSON (any of the shapes ``load_input_schema`` takes).

    Args:
        document: the parsed JSON.
        where: the location for error messages (a file name).

    Returns:
        The schema.

    Raises:
        ConnectorError: naming ``where`` and the column at fault.
    """
    raw = _find_input_schema(document, where)
    unknown = sorted(set(raw) - _SCHEMA_KEYS)
    if unknown:
        raise ConnectorError(
            f"unknown key(s) in InputSchema: {', '.join(unknown)} (expected {', '.join(sorted(_SCHEMA_KEYS))})",
            where=where,
        )
    encoding = raw.get("RecordEncoding") or "UTF-8"
    if not isinstance(encoding, str) or encoding.upper().replace("_", "-") not in ("UTF-8", "UTF8"):
        raise ConnectorError(f"RecordEncoding {encoding!r} is not supported (only UTF-8)", where=where)
    fmt, row_path, column_delimiter, row_delimiter = _record_format(raw.get("RecordFormat"), where)
    columns_raw = raw.get("RecordColumns")
    if not isinstance(columns_raw, list) or not columns_raw:
        raise ConnectorError("RecordColumns must be a list of 1 to 1000 columns", where=where)
    if len(columns_raw) > MAX_COLUMNS:
        raise ConnectorError(f"RecordColumns has {len(columns_raw)} columns; KDA allows at most 1000", where=where)
    columns: list[RecordColumn] = []
    seen: dict[str, str] = {}
    exploded: tuple[tuple[str, ...], str] | None = None
    for index, entry in enumerate(columns_raw):
        column = _column(entry, index, fmt, where)
        key = column.name.lower()
        if key in seen:
            raise ConnectorError(f"column {column.name}: the name is used twice (as {seen[key]})", where=where)
        seen[key] = column.name
        if column.explodes:
            if exploded is not None and exploded[0] != column.path:
                raise ConnectorError(
                    f"column {column.name}: explodes another array than column {exploded[1]} "
                    f"(only one array per schema may be exploded)",
                    where=where,
                )
            exploded = exploded or (column.path, column.name)
        columns.append(column)
    return InputSchema(
        format=fmt,
        columns=tuple(columns),
        row_path=row_path,
        column_delimiter=column_delimiter,
        row_delimiter=row_delimiter,
        encoding="UTF-8",
        source=where,
    )


def _find_input_schema(document: Any, where: str) -> dict[str, Any]:
    """The InputSchema object inside any of the accepted wrappers."""
    if isinstance(document, list) and len(document) == 1:
        document = document[0]
    if not isinstance(document, dict):
        raise ConnectorError("expected a JSON object holding an InputSchema", where=where)
    if "RecordColumns" in document or "RecordFormat" in document:
        return document
    if "InputSchema" in document:
        inner = document["InputSchema"]
        if not isinstance(inner, dict):
            raise ConnectorError("InputSchema must be an object", where=where)
        return inner
    for outer, inner_key in (("ApplicationDetail", "InputDescriptions"), (None, "InputDescriptions"), (None, "Inputs")):
        holder = document.get(outer) if outer else document
        if isinstance(holder, dict) and isinstance(holder.get(inner_key), list):
            entries = [e for e in holder[inner_key] if isinstance(e, dict) and "InputSchema" in e]
            if len(entries) != 1:
                raise ConnectorError(
                    f"{inner_key} holds {len(entries)} inputs with an InputSchema; keep the one to use", where=where
                )
            return _find_input_schema(entries[0], where)
    raise ConnectorError(
        "no InputSchema found (expected RecordFormat and RecordColumns, an object with an InputSchema, "
        "or describe-application output)",
        where=where,
    )


def _record_format(raw: Any, where: str) -> tuple[Literal["json", "csv"], tuple[str, ...], str, str]:
    if not isinstance(raw, dict):
        raise ConnectorError("RecordFormat is missing or not an object", where=where)
    kind = raw.get("RecordFormatType")
    if not isinstance(kind, str) or kind.upper() not in ("JSON", "CSV"):
        raise ConnectorError(f"RecordFormatType must be JSON or CSV, not {kind!r}", where=where)
    params = raw.get("MappingParameters") or {}
    if not isinstance(params, dict):
        raise ConnectorError("MappingParameters must be an object", where=where)
    if kind.upper() == "JSON":
        json_params = params.get("JSONMappingParameters") or {}
        row_path_text = json_params.get("RecordRowPath", "$") if isinstance(json_params, dict) else None
        if not isinstance(row_path_text, str):
            raise ConnectorError("JSONMappingParameters.RecordRowPath must be a string such as '$'", where=where)
        try:
            steps = _parse_path(row_path_text)
        except ValueError as err:
            raise ConnectorError(f"RecordRowPath {row_path_text!r}: {err}", where=where) from None
        if any(step is None for step in steps):
            raise ConnectorError(
                f"RecordRowPath {row_path_text!r}: an array is not supported here ($ or $.field)", where=where
            )
        return "json", tuple(s for s in steps if s is not None), ",", "\n"
    csv_params = params.get("CSVMappingParameters") or {}
    if not isinstance(csv_params, dict):
        raise ConnectorError("CSVMappingParameters must be an object", where=where)
    column_delimiter = _delimiter(csv_params.get("RecordColumnDelimiter", ","), "RecordColumnDelimiter", where)
    row_delimiter = _delimiter(csv_params.get("RecordRowDelimiter", "\n"), "RecordRowDelimiter", where)
    if column_delimiter == row_delimiter or '"' in column_delimiter or '"' in row_delimiter:
        raise ConnectorError(
            f"CSV delimiters {column_delimiter!r} and {row_delimiter!r} must differ and hold no quote", where=where
        )
    return "csv", (), column_delimiter, row_delimiter


def _delimiter(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConnectorError(f"CSVMappingParameters.{key} must be a non-empty string, not {value!r}", where=where)
    return _ESCAPES.get(value, value)


def _column(entry: Any, index: int, fmt: str, where: str) -> RecordColumn:
    if not isinstance(entry, dict):
        raise ConnectorError(f"RecordColumns[{index}] is not an object", where=where)
    name = entry.get("Name")
    if not isinstance(name, str) or not name.strip():
        raise ConnectorError(f"RecordColumns[{index}] has no Name", where=where)
    unknown = sorted(set(entry) - _COLUMN_KEYS)
    if unknown:
        raise ConnectorError(
            f"column {name}: unknown key(s) {', '.join(unknown)} (expected Name, SqlType, Mapping)", where=where
        )
    sql_type = entry.get("SqlType")
    if not isinstance(sql_type, str) or not sql_type.strip():
        raise ConnectorError(f"column {name}: SqlType is missing", where=where)
    try:
        dtype = parse_type(sql_type)
    except ValueError:
        raise ConnectorError(f"column {name}: unknown SqlType {sql_type!r}", where=where) from None
    if pa.types.is_timestamp(dtype):
        dtype = pa.timestamp("us")
    max_length = None
    sized = _SIZED_TEXT.match(sql_type)
    if sized:
        max_length = int(sized.group(1))
        if not 0 < max_length < 65535:
            raise ConnectorError(f"column {name}: {sql_type!r}: the length must be 1 to 65534", where=where)
    if fmt == "csv":
        return RecordColumn(name, sql_type.strip(), dtype, max_length=max_length)
    mapping = entry.get("Mapping")
    if not isinstance(mapping, str) or not mapping.strip():
        raise ConnectorError(f"column {name}: Mapping is missing (a JSONPath such as '$.{name}')", where=where)
    try:
        path, whole_array, element = _mapping(mapping.strip())
    except ValueError as err:
        raise ConnectorError(f"column {name}: Mapping {mapping!r}: {err}", where=where) from None
    return RecordColumn(name, sql_type.strip(), dtype, mapping.strip(), path, whole_array, element, max_length)


_STEP = re.compile(r"""\.([^.\[\]'"]+)|\[\s*'([^']*)'\s*\]|\[\s*"([^"]*)"\s*\]|\[\s*0\s*:\s*\]""")


def _parse_path(text: str) -> list[str | None]:
    """JSONPath steps: a key, or None for ``[0:]`` (every element of an array)."""
    if not text.startswith("$"):
        raise ValueError("a JSONPath starts with $")
    steps: list[str | None] = []
    position = 1
    while position < len(text):
        m = _STEP.match(text, position)
        if m is None:
            rest = text[position:]
            hint = " (an array is written [0:])" if rest.startswith("[") else ""
            raise ValueError(f"cannot read {rest!r}{hint}")
        key = m.group(1) if m.group(1) is not None else m.group(2) if m.group(2) is not None else m.group(3)
        steps.append(key)
        position = m.end()
    return steps


def _mapping(text: str) -> tuple[tuple[str, ...], bool, str | None]:
    """(path, whole array, exploded element key) of a column's JSONPath."""
    steps = _parse_path(text)
    if None not in steps:
        return tuple(s for s in steps if s is not None), False, None
    cut = steps.index(None)
    path = tuple(s for s in steps[:cut] if s is not None)
    after = steps[cut + 1 :]
    if not path:
        raise ValueError("[0:] must follow the array's field ($.arr[0:])")
    if not after:
        return path, True, None
    if None in after:
        raise ValueError("only one array can be exploded ([0:] appears twice)")
    if len(after) > 1:
        raise ValueError("only one level below an exploded array is supported ($.arr[0:].field)")
    return path, False, after[0]


def _path_text(key: str) -> str:
    return f".{key}" if re.fullmatch(r"[^.\[\]'\"]+", key) else f"['{key}']"


# ---------------------------------------------------------------------- discovery

# Reserved words of KDA's SQL (from its SQLstream-derived list) that discovery kept away from
# column names by prefixing COL_. Not the whole list: the words a record field is likely to be.
RESERVED = frozenset(
    """
    ALL ALLOCATE ALTER AND ANY APPROXIMATE_ARRIVAL_TIME ARRAY AS ASC AT AVG BETWEEN BIGINT BINARY
    BOOLEAN BOTH BY CASE CAST CHAR CHARACTER CHECK CLOSE COLLATE COLUMN CONDITION CONNECT CONSTRAINT
    COUNT CREATE CROSS CUBE CURRENT CURRENT_DATE CURRENT_ROW CURRENT_TIME CURRENT_TIMESTAMP
    CURRENT_USER CURSOR CYCLE DATE DAY DEC DECIMAL DEFAULT DELETE DESC DESCRIBE DISTINCT DOUBLE DROP
    ELSE END ESCAPE EVERY EXCEPT EXISTS EXP_AVG EXTRACT FALSE FETCH FILTER FIRST_VALUE FLOAT FLOOR
    FOR FOREIGN FROM FULL FUNCTION GROUP HAVING HOUR IN INNER INSERT INT INTEGER INTERSECT INTERVAL
    INTO IS JOIN LAG LANGUAGE LARGE LAST_VALUE LEAD LEFT LIKE LIMIT LOCAL LOWER MATCH MAX METHOD MIN
    MINUTE MOD MONTH NATURAL NEW NO NONE NOT NTH_VALUE NULL NUMERIC OF OLD ON ONLY OR ORDER OUTER
    OVER PARTITION PARTITION_ID PARTITION_KEY POSITION POWER PRIMARY RANGE RANK REAL REFERENCES
    RESULT RETURN RIGHT ROLLUP ROW ROWS ROWTIME SECOND SELECT SEQUENCE_NUMBER SESSION_USER SET
    SHARD_ID SIMILAR SMALLINT SOME SQRT STREAM SUM SYMMETRIC SYSTEM SYSTEM_USER TABLE THEN TIME
    TIMESTAMP TINYINT TO TRAILING TRUE UNION UNIQUE UNKNOWN UPDATE UPPER USER USING VALUE VALUES
    VARCHAR VARYING WHEN WHERE WINDOW WITH WITHIN YEAR
    """.split()
)
_VALID_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_MAX_DEPTH = 2  # nested objects are flattened down to $.a.b; deeper objects stay JSON text


def discover_untruncated(sample: Iterable[bytes], where: str | None = None) -> InputSchema:
    """``discover_input_schema`` of JSON records without text lengths: how KDA programs run without
    an input schema get theirs. KDA's ``VARCHAR(n)`` guessed from a sample would cut longer values
    met later, silently; here text columns are plain ``VARCHAR``."""
    import dataclasses

    found = discover_input_schema(sample, "json", where=where)
    columns = tuple(
        dataclasses.replace(c, sql_type="VARCHAR", max_length=None) if c.max_length is not None else c
        for c in found.columns
    )
    return dataclasses.replace(found, columns=columns)


def discover_input_schema(
    payloads: Iterable[bytes],
    fmt: str,
    column_delimiter: str = ",",
    row_delimiter: str = "\n",
    where: str | None = None,
) -> InputSchema:
    """An input schema guessed from sample records, named and typed the way KDA's discovery did.

    Naming: a JSON field's column is its key path upper-cased and joined with ``_`` (``{"a": {"b":
    1}}`` gives ``A_B`` mapped from ``$.a.b``); nested objects are flattened two levels deep, a
    deeper object (and any array, mapped ``$.arr[0:]``) is one ``VARCHAR`` column of JSON text.
    CSV columns are ``COL_1``, ``COL_2``, ... (positional). A name that is a KDA reserved word
    (``RESERVED``: ``TIMESTAMP``, ``USER``, ``VALUE``, ``ROWTIME`` ...), starts with a digit or held
    characters other than letters, digits and ``_`` (those are dropped) gets the prefix ``COL_``; a
    name left empty is ``COL_0``, ``COL_1``, ...; names are cut to 100 characters and made unique
    with ``_2``, ``_3``.

    Types, from the values seen (nulls ignored): integers ``INTEGER`` (``BIGINT`` past 32 bits);
    any fraction ``DOUBLE`` (not KDA's ``REAL``, which would round every price); ``BOOLEAN``;
    ISO-8601 date-times ``TIMESTAMP``, dates ``DATE``; anything else ``VARCHAR(n)`` with ``n`` the
    next power of two at or above the longest value seen (the demo stream's ``VARCHAR(4)`` and
    ``VARCHAR(16)``; at least 1); a column seen only as null is ``VARCHAR(16)``. Longer values met
    later are cut, as in KDA: review a discovered schema before relying on it.

    Args:
        payloads: records from the start of the source.
        fmt: ``"json"`` or ``"csv"``.
        column_delimiter: CSV only.
        row_delimiter: CSV only; a record may hold several rows.
        where: a location for error messages (the source).

    Returns:
        The schema (``format`` as given, ``RecordRowPath`` ``$``).

    Raises:
        ConnectorError: for an unknown format or a sample without one readable record.
    """
    kinds: dict[tuple[str, ...], _Seen] = {}
    if fmt == "json":
        found = _json_sample(payloads, kinds)
    elif fmt == "csv":
        found = _csv_sample(payloads, kinds, column_delimiter, row_delimiter)
    else:
        raise ConnectorError(f"cannot discover a schema for format {fmt!r} (json or csv)", where=where)
    if not found:
        raise ConnectorError("there are no records to discover a schema from", where=where)
    names = _column_names([_raw_name(p, fmt) for p in kinds])
    columns = []
    for (path, seen), name in zip(kinds.items(), names, strict=True):
        sql_type = seen.sql_type()
        dtype = parse_type(sql_type)
        sized = _SIZED_TEXT.match(sql_type)
        max_length = int(sized.group(1)) if sized else None
        if fmt == "csv":
            columns.append(RecordColumn(name, sql_type, dtype, max_length=max_length))
            continue
        whole_array = seen.array
        mapping = "$" + "".join(_path_text(k) for k in path) + ("[0:]" if whole_array else "")
        columns.append(RecordColumn(name, sql_type, dtype, mapping, path, whole_array, None, max_length))
    return InputSchema(
        format="json" if fmt == "json" else "csv",
        columns=tuple(columns[:MAX_COLUMNS]),
        column_delimiter=column_delimiter,
        row_delimiter=row_delimiter,
        source=where or "<discovered>",
    )


class _Seen:
    """What discovery saw in one column: value kinds and the longest text."""

    def __init__(self) -> None:
        self.kinds: set[str] = set()
        self.longest = 0
        self.array = False

    def add(self, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            kind = "bool"
        elif isinstance(value, int):
            kind = "int" if -_INT32 <= value < _INT32 else "bigint" if -_INT64 <= value < _INT64 else "float"
        elif isinstance(value, float):
            kind = "float"
        elif isinstance(value, str):
            kind = text_kind(value)
        else:
            kind = "string"
        self.kinds.add(kind)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        self.longest = max(self.longest, len(text))

    def sql_type(self) -> str:
        kinds = self.kinds
        if not kinds:
            return "VARCHAR(16)"
        if kinds == {"int"}:
            return "INTEGER"
        if kinds <= {"int", "bigint"}:
            return "BIGINT"
        if kinds <= {"int", "bigint", "float"}:
            return "DOUBLE"
        if kinds == {"bool"}:
            return "BOOLEAN"
        if kinds == {"date"}:
            return "DATE"
        if kinds <= {"date", "timestamp"}:
            return "TIMESTAMP"
        size = 1
        while size < self.longest:
            size *= 2
        return f"VARCHAR({min(size, 65534)})"


def _json_sample(payloads: Iterable[bytes], kinds: dict[tuple[str, ...], _Seen]) -> bool:
    found = False
    for obj in sample_objects(payloads):
        found = True
        _walk(obj, (), kinds)
    return found


def _walk(obj: Mapping[str, Any], prefix: tuple[str, ...], kinds: dict[tuple[str, ...], _Seen]) -> None:
    for key, value in obj.items():
        path = (*prefix, key)
        if isinstance(value, dict) and len(path) < _MAX_DEPTH and path not in kinds:
            _walk(value, path, kinds)
            continue
        seen = kinds.get(path)
        if seen is None:
            if any(path[:i] in kinds for i in range(1, len(path))):
                continue  # a parent is already one column of JSON text
            seen = kinds[path] = _Seen()
        if isinstance(value, list):
            seen.array = True
        seen.add(value)


def _csv_sample(
    payloads: Iterable[bytes], kinds: dict[tuple[str, ...], _Seen], column_delimiter: str, row_delimiter: str
) -> bool:
    found = False
    for payload in payloads:
        try:
            text = payload.decode("utf-8").removeprefix(_BOM)
        except UnicodeDecodeError:
            continue
        for row in text.split(row_delimiter):
            row = row.removesuffix("\r") if row_delimiter == "\n" else row
            if not row:
                continue
            found = True
            for i, field in enumerate(split_csv_row(row, column_delimiter)):
                seen = kinds.setdefault((str(i + 1),), _Seen())
                if field:
                    seen.add(_csv_value(field))
    return found


def split_csv_row(row: str, delimiter: str) -> list[str]:
    """The fields of one CSV row: quotes are honoured with a one-character delimiter (RFC 4180), a
    longer delimiter splits the text as it is.

    Raises:
        csv.Error: for bad quoting.
    """
    if len(delimiter) == 1:
        return next(csv.reader((row,), delimiter=delimiter, strict=True), [""])
    return row.split(delimiter)


def _csv_value(field: str) -> Any:
    if _INT_RE.fullmatch(field):
        return int(field)
    if _NUMBER_RE.fullmatch(field):
        return float(field)
    if field.lower() in ("true", "false"):
        return field.lower() == "true"
    return field


def _raw_name(path: tuple[str, ...], fmt: str) -> str:
    return f"COL_{path[0]}" if fmt == "csv" else "_".join(path)


def _column_names(raw_names: Sequence[str]) -> list[str]:
    names: list[str] = []
    taken: set[str] = set()
    nameless = 0
    for raw in raw_names:
        upper = raw.upper()
        kept = re.sub(r"[^A-Z0-9_]", "", upper)
        if not kept:
            name = f"COL_{nameless}"
            nameless += 1
        elif kept != upper or kept in RESERVED or not _VALID_NAME.fullmatch(kept):
            name = "COL_" + kept[:MAX_NAME_LENGTH]
        else:
            name = kept[:MAX_NAME_LENGTH]
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name}_{n}"
        taken.add(unique)
        names.append(unique)
    return names
