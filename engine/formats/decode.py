"""Raw records into typed rows plus error rows (JSON lines, CSV), and typed rows into a schema.

A ``Decoder`` is built once per input stream and called once per polled batch. It never raises for
bad data: every record either becomes a row or exactly one error row (``engine.types.ERROR_SCHEMA``)
with one of these reasons:

``decode``
    not a record of the format: invalid UTF-8, invalid JSON, a JSON value that is not an object,
    a whitespace-only line, a CSV line with bad quoting or the wrong number of fields.
``type``
    a value that does not fit its column (the rules are in ``engine.formats._coerce``), or NULL in a
    column whose Arrow field is not nullable.
``missing_time``
    the event-time column is NULL or missing.
``too_large``
    the payload is longer than ``max_record_bytes`` (the error row keeps its first 1024 bytes).

A record that is **entirely empty** (zero bytes, e.g. a blank line in a file) is skipped: it yields
neither a row nor an error row. A line holding only whitespace is a ``decode`` error.

How a batch is decoded: the whole batch first goes through Arrow's readers and vectorised
conversions (``_vector.convert``), which accept a batch only when they can vouch for every value.
When they cannot, the batch is cut in halves and each half tried again, down to small pieces that
are decoded record by record in Python (``_coerce``), which decides and explains each bad record.
Both ways give the same rows for the same records, so results do not depend on the batch split.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from engine.errors import ConnectorError
from engine.formats._coerce import Coercer, CoercionError, coercer, show, storage_type
from engine.formats._vector import convert
from engine.formats.encode import lines_buffer, row_to_json
from engine.formats.timestamps import now_us
from engine.types import ERROR_SCHEMA, EXTRA_COL, SEQ_COL, TS_TYPE

_SMALL_CHUNK = 64  # at or below this many records, go record by record
_ERROR_PAYLOAD_LIMIT = 1024  # bytes of a too-large payload kept in its error row
_PLAN_CACHE_LIMIT = 4096
_BOM = "\ufeff"
_JSON_BLOCK_BYTES = 1 << 18  # Arrow parses blocks in parallel; a line never spans two blocks
# Each payload must start with "{" and end with "}" for the whole-batch reader: then no record can
# continue into the next one, and "one row per payload" is checked by counting rows.
_ONE_OBJECT = r"(?s)^[ \t\r\n]*\{.*\}[ \t\r\n]*$"
# Per format, the bytes pattern of records sent record by record without trying the batch reader
# (JSON: records that do *not* match; CSV: records that do).
_SUSPECT = {"json": _ONE_OBJECT, "csv": '["\r\n\x00]'}
# More than one failing record in this many: the next batch goes record by record (measured: below
# that, trying the batch reader and splitting on failure is faster; above it, slower).
_DIRTY_RATIO = 2000
_CSV_OPTION_KEYS = {"delimiter", "header"}


class Decoder:
    """Turns one stream's raw records (or typed rows) into rows of its declared schema.

    Output rows have exactly the schema's columns, in order and with the schema's names (JSON keys
    and CSV header names are matched case-insensitively, an exact match preferred), plus ``__seq``
    (int64), the record's source offset. Rows keep the input order.

    State: in CSV-with-header mode, the header, read from the record at offset 0 when a batch
    contains it. A decoder that starts past offset 0 (after a restore) must be given the header
    with ``set_header`` (e.g. from ``source.sample(1)``) before ``decode``.
    """

    def __init__(
        self,
        stream: str,
        schema: pa.Schema,
        fmt: str | None,
        time_column: str | None = None,
        max_record_bytes: int = 1 << 20,
        csv_options: Mapping[str, Any] | None = None,
        clock: Callable[[], int] = now_us,
        reserved: frozenset[str] = frozenset(),
    ) -> None:
        """Validate the configuration; no I/O.

        Args:
            stream: the stream name, used in error rows (``source_offset``, ``step_id``).
            schema: the declared columns.
            fmt: ``"json"`` or ``"csv"`` for ``decode``; ``None`` (or ``"parquet"``) for a decoder
                used only with ``conform``.
            time_column: the event-time column; rows where it is NULL go to errors as
                ``missing_time``.
            max_record_bytes: payloads longer than this are ``too_large`` errors.
            csv_options: ``delimiter`` (one character, default ``,``) and ``header`` (bool or
                ``"true"``/``"false"``, default true).
            clock: returns microseconds since the epoch, for ``detected_at``.
            reserved: record keys (lower case) that never go to ``_extra`` (columns the source
                supplies itself, like Kinesis's ``PARTITION_KEY``).

        Raises:
            ConnectorError: for an unknown format or option, a time column not in the schema, or a
                column type that cannot be read from text.
        """
        if fmt == "parquet":
            fmt = None
        if fmt not in ("json", "csv", None):
            raise ConnectorError(f"unknown record format {fmt!r} (expected json or csv)", where=stream)
        self.stream = stream
        self.schema = schema
        self.format = fmt
        self.time_column = time_column
        self.max_record_bytes = max_record_bytes
        self._clock = clock
        self._names: list[str] = list(schema.names)
        self._lower = [n.lower() for n in self._names]
        self._types: list[pa.DataType] = list(schema.types)
        self.out_schema = schema.append(pa.field(SEQ_COL, pa.int64()))
        self._step_id = f"decode:{stream}"
        try:
            self._coercers: list[Coercer] = [coercer(t, n) for n, t in zip(self._names, self._types, strict=True)]
        except ValueError as err:
            raise ConnectorError(str(err), where=stream) from None
        self._time_index: int | None = None
        if time_column is not None:
            if time_column not in self._names:
                raise ConnectorError(f"time column {time_column!r} is not a column of the stream", where=stream)
            self._time_index = self._names.index(time_column)
        self._not_null = [i for i, f in enumerate(schema) if not f.nullable]
        self._plans: dict[tuple[str, ...], list[str | None]] = {}
        # JSON: the column that collects the fields no other column takes (see engine.types.EXTRA_COL)
        self._extra_index: int | None = None
        if fmt == "json" and EXTRA_COL in self._names and _is_textual(self._types[self._names.index(EXTRA_COL)]):
            self._extra_index = self._names.index(EXTRA_COL)
        self._extras: dict[tuple[str, ...], list[str]] = {}  # keys tuple -> keys that go to _extra
        self._reserved = reserved
        self._delimiter, self._has_header = _csv_settings(csv_options, stream)
        self._header: list[str] | None = None
        self._field_index: list[int | None] = list(range(len(self._names)))
        self._expected_fields = len(self._names)
        # Batches of at most this many records skip the whole-batch reader. Tests set it very high
        # to get the record-by-record reference result for a whole batch.
        self.record_by_record_upto = _SMALL_CHUNK
        self._dirty = False

    # ------------------------------------------------------------------ CSV header

    @property
    def header(self) -> list[str] | None:
        """The CSV header seen so far (None before it, and in JSON or header-less CSV mode)."""
        return self._header

    def set_header(self, line: bytes) -> None:
        """Read the CSV header from the first line of the source.

        Needed only when decoding starts past offset 0 (the header record is not in any batch).

        Args:
            line: the source's record at offset 0.

        Raises:
            ConnectorError: if the line is not valid UTF-8 or not valid CSV.
        """
        try:
            text = line.decode("utf-8")
            fields = next(csv.reader((text.removeprefix(_BOM),), delimiter=self._delimiter, strict=True), [])
        except (UnicodeDecodeError, csv.Error) as err:
            raise ConnectorError(f"the CSV header line cannot be read: {err}", where=self.stream) from None
        self._header = fields
        lowered = [f.lower() for f in fields]
        index: list[int | None] = []
        for name, low in zip(self._names, self._lower, strict=True):
            if name in fields:
                index.append(fields.index(name))
            elif low in lowered:
                index.append(lowered.index(low))
            else:
                index.append(None)
        self._field_index = index
        self._expected_fields = len(fields)

    # ------------------------------------------------------------------ decode

    def decode(self, raw: pa.RecordBatch | pa.Table) -> tuple[pa.Table, pa.Table]:
        """Decode a batch of raw records.

        Args:
            raw: rows of ``engine.types.RAW_SCHEMA`` (``payload``, ``offset``, ``arrival_time``).

        Returns:
            ``(rows, errors)``: rows of ``out_schema`` (the declared columns plus ``__seq``) in
            input order, and error rows of ``ERROR_SCHEMA``.

        Raises:
            ConnectorError: if this decoder has no record format, or in CSV-with-header mode when
                the header was never seen (see ``set_header``).
        """
        if self.format is None:
            raise ConnectorError("this stream's source is typed: use conform(), not decode()", where=self.stream)
        errors = _Errors(self.stream, self._step_id, self._clock())
        payloads = _column(raw, "payload")
        offsets = _column(raw, "offset").cast(pa.int64())
        if len(payloads) and pa.types.is_binary(payloads.type):
            payloads = payloads.cast(pa.large_binary())
        lengths = pc.fill_null(pc.binary_length(payloads), 0)
        keep = pc.greater(lengths, 0)
        if self.format == "csv" and self._has_header:
            keep = self._take_header(payloads, offsets, keep)
        too_large = pc.and_(keep, pc.greater(lengths, self.max_record_bytes))
        if pc.any(too_large).as_py():
            for payload, offset, size in zip(
                payloads.filter(too_large).to_pylist(),
                offsets.filter(too_large).to_pylist(),
                lengths.filter(too_large).to_pylist(),
                strict=True,
            ):
                message = f"record is {size} bytes, more than the limit of {self.max_record_bytes} bytes"
                errors.add("too_large", message, payload[:_ERROR_PAYLOAD_LIMIT], offset)
            keep = pc.and_(keep, pc.invert(too_large))
        positions = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
        if len(positions) < len(payloads):
            payloads, offsets = payloads.filter(keep), offsets.filter(keep)
        # Records the whole-batch reader would refuse anyway go record by record straight away.
        suspect = pc.match_substring_regex(payloads, _SUSPECT[self.format])
        if self.format == "json":
            suspect = pc.invert(suspect)
        suspect_np = suspect.to_numpy(zero_copy_only=False)
        parts: list[tuple[np.ndarray, pa.Table]] = []
        if suspect_np.any():
            parts.append(self._slow(payloads.filter(suspect), offsets.filter(suspect), positions[suspect_np], errors))
            clean = pc.invert(suspect)
            payloads, offsets, positions = payloads.filter(clean), offsets.filter(clean), positions[~suspect_np]
        before = errors.refused
        if self._dirty:
            parts.append(self._slow(payloads, offsets, positions, errors))
        else:
            parts += self._decode_range(payloads, offsets, positions, errors)
        # A stream where many records fail skips the whole-batch reader for its next batch: trying
        # and splitting would cost more than going record by record.
        self._dirty = (errors.refused - before) * _DIRTY_RATIO > len(payloads)
        return _in_order(parts, self.out_schema), errors.table()

    def _take_header(self, payloads: pa.Array, offsets: pa.Array, keep: pa.Array) -> pa.Array:
        is_header = pc.equal(offsets, 0)
        if pc.any(is_header).as_py():
            self.set_header(payloads.filter(is_header)[0].as_py())
            return pc.and_(keep, pc.invert(is_header))
        if self._header is None and pc.any(keep).as_py():
            raise ConnectorError(
                "the CSV header (line 0) was not seen: call Decoder.set_header(source.sample(1)[0]) after a resume",
                where=self.stream,
            )
        return keep

    def _decode_range(
        self, payloads: pa.Array, offsets: pa.Array, positions: np.ndarray, errors: _Errors
    ) -> list[tuple[np.ndarray, pa.Table]]:
        n = len(payloads)
        if n == 0:
            return []
        if n <= self.record_by_record_upto:
            return [self._slow(payloads, offsets, positions, errors)]
        columns = self._fast_json(payloads) if self.format == "json" else self._fast_csv(payloads)
        if columns is not None:
            return [self._finish(columns, offsets, positions, _raw_payloads(payloads), errors)]
        if n <= 4 * self.record_by_record_upto:
            return [self._slow(payloads, offsets, positions, errors)]
        mid = n // 2
        return self._decode_range(payloads.slice(0, mid), offsets.slice(0, mid), positions[:mid], errors) + (
            self._decode_range(payloads.slice(mid), offsets.slice(mid), positions[mid:], errors)
        )

    # ------------------------------------------------------------------ fast paths (whole batch)

    def _fast_json(self, payloads: pa.Array) -> list[pa.Array] | None:
        text = _valid_text(payloads)  # every payload matches _ONE_OBJECT: decode() sorted the rest out
        if text is None or pc.any(pc.starts_with(text, _BOM)).as_py():
            return None
        buffer = lines_buffer(text)
        explicit = self._explicit_fields(payloads[0].as_py())
        try:
            table = pa_json.read_json(
                pa.BufferReader(buffer),
                read_options=pa_json.ReadOptions(block_size=_JSON_BLOCK_BYTES),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=pa.schema(explicit), unexpected_field_behavior="infer"
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        if table.num_rows != len(payloads):
            return None  # several JSON values on one line
        present = table.column_names
        if self._extra_index is not None:
            known = (set(self._lower) - {EXTRA_COL}) | self._reserved
            if any(c.lower() not in known for c in present):
                return None  # fields for _extra: the record-by-record path builds each row's object
        columns: list[pa.Array] = []
        for index, (low, dtype) in enumerate(zip(self._lower, self._types, strict=True)):
            if index == self._extra_index:
                columns.append(pa.nulls(len(payloads), dtype))
                continue
            matches = [c for c in present if c.lower() == low]
            if len(matches) > 1:
                return None  # keys differing only in case: the record-by-record path picks per row
            if not matches:
                columns.append(pa.nulls(len(payloads), dtype))
                continue
            converted = convert(table.column(matches[0]).combine_chunks(), dtype)
            if converted is None:
                return None
            columns.append(converted)
        return columns

    def _explicit_fields(self, first: bytes) -> list[pa.Field]:
        """The types Arrow must read the columns' keys as, keys spelled as in the first record.

        Text stays text (Arrow would turn date-like strings into timestamps);
        numbers are typed by the first record's value (a different one later makes Arrow fail,
        and the batch is split).
        """
        try:
            sample = json.loads(first)
        except (ValueError, RecursionError):
            sample = {}
        if not isinstance(sample, dict):
            sample = {}
        plan = self._plan(tuple(sample))
        fields: dict[str, pa.DataType] = {}
        for index, (key, name, dtype) in enumerate(zip(plan, self._names, self._types, strict=True)):
            if index == self._extra_index:
                continue
            key = name if key is None else key
            kind = type(sample.get(key))
            if _is_textual(dtype) or (pa.types.is_timestamp(dtype) and kind is not int):
                fields.setdefault(key, pa.string())
            elif pa.types.is_timestamp(dtype) or (pa.types.is_integer(dtype) and kind is int):
                fields.setdefault(key, pa.int64())
            elif pa.types.is_floating(dtype) and kind in (int, float):
                fields.setdefault(key, pa.float64())
            elif pa.types.is_boolean(dtype) and kind is bool:
                fields.setdefault(key, pa.bool_())
        return [pa.field(k, t) for k, t in fields.items()]

    def _fast_csv(self, payloads: pa.Array) -> list[pa.Array] | None:
        text = _valid_text(payloads)  # no payload holds a quote or line break: decode() sorted those out
        if text is None or pc.any(pc.starts_with(text, _BOM)).as_py():
            return None
        fields = pc.split_pattern(text, self._delimiter)
        if not pc.all(pc.equal(pc.list_value_length(fields), self._expected_fields)).as_py():
            return None
        columns: list[pa.Array] = []
        for index, dtype in zip(self._field_index, self._types, strict=True):
            if index is None:
                columns.append(pa.nulls(len(payloads), dtype))
                continue
            values = pc.list_element(fields, index)
            values = pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)
            converted = convert(values, dtype)
            if converted is None:
                return None
            columns.append(converted)
        return columns

    # ------------------------------------------------------------------ slow path (record by record)

    def _slow(
        self, payloads: pa.Array, offsets: pa.Array, positions: np.ndarray, errors: _Errors
    ) -> tuple[np.ndarray, pa.Table]:
        raw = payloads.to_pylist()
        offs = offsets.to_pylist()
        rows: list[list[Any]] = []
        good: list[int] = []
        parse = self._parse_json if self.format == "json" else self._parse_csv
        for i, (payload, offset) in enumerate(zip(raw, offs, strict=True)):
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError as err:
                errors.add("decode", f"invalid UTF-8 at byte {err.start}", payload, offset)
                errors.refused += 1
                continue
            if offset == 0:
                text = text.removeprefix(_BOM)
            try:
                row = parse(text)
            except _BadRecord as err:
                errors.add("decode", str(err), payload, offset)
                errors.refused += 1
                continue
            except _BadValue as err:
                errors.add("type", str(err), payload, offset, err.event_time)
                errors.refused += 1
                continue
            rows.append(row)
            good.append(i)
        columns = _build_columns(rows, self._types)
        kept = [raw[i] for i in good]
        good_offsets = offsets.take(pa.array(good, pa.int64()))
        return self._finish(columns, good_offsets, positions[good], lambda idx: [kept[i] for i in idx], errors)

    def _parse_json(self, text: str) -> list[Any]:
        obj = json_object(text, _BadRecord)
        plan = self._plans.get(tuple(obj))
        if plan is None:
            plan = self._plan(tuple(obj))
        row: list[Any] = []
        for key, coerce in zip(plan, self._coercers, strict=True):
            value = None if key is None else obj[key]
            if value is not None:
                try:
                    value = coerce(value)
                except CoercionError as err:
                    raise _BadValue(str(err), self._event_time(obj, plan)) from None
            row.append(value)
        if self._extra_index is not None:
            extra = {k: obj[k] for k in self._extras[tuple(obj)]}
            row[self._extra_index] = json.dumps(extra, ensure_ascii=False, separators=(",", ":")) if extra else None
        return row

    def _plan(self, keys: tuple[str, ...]) -> list[str | None]:
        """For each column, the key that feeds it.

        The exact name, else the first key equal to it ignoring case, else None.
        """
        lowered: dict[str, str] = {}
        for key in keys:
            lowered.setdefault(key.lower(), key)
        key_set = set(keys)
        plan = [
            name if name in key_set else lowered.get(low) for name, low in zip(self._names, self._lower, strict=True)
        ]
        if len(self._plans) >= _PLAN_CACHE_LIMIT:
            self._plans.clear()
            self._extras.clear()
        if self._extra_index is not None:
            plan[self._extra_index] = None  # a record's own "_extra" key is just another extra field
            used = set(plan)
            self._extras[keys] = [k for k in keys if k not in used and k.lower() not in self._reserved]
        self._plans[keys] = plan
        return plan

    def _event_time(self, obj: dict[str, Any], plan: list[str | None]) -> int | None:
        if self._time_index is None or plan[self._time_index] is None:
            return None
        value = obj[plan[self._time_index]]  # type: ignore[index]
        if value is None or not pa.types.is_timestamp(self._types[self._time_index]):
            return None
        try:
            return int(self._coercers[self._time_index](value))
        except CoercionError:
            return None

    def _parse_csv(self, text: str) -> list[Any]:
        try:
            fields = next(csv.reader((text,), delimiter=self._delimiter, strict=True), [])
        except csv.Error as err:
            raise _BadRecord(f"invalid CSV: {err}") from None
        if len(fields) != self._expected_fields:
            raise _BadRecord(f"expected {self._expected_fields} fields, got {len(fields)}")
        row: list[Any] = []
        for index, coerce in zip(self._field_index, self._coercers, strict=True):
            value = None if index is None else fields[index]
            if value:
                try:
                    row.append(coerce(value))
                except CoercionError as err:
                    raise _BadValue(str(err), self._csv_event_time(fields)) from None
            else:
                row.append(None)
        return row

    def _csv_event_time(self, fields: list[str]) -> int | None:
        if self._time_index is None or not pa.types.is_timestamp(self._types[self._time_index]):
            return None
        index = self._field_index[self._time_index]
        if index is None or not fields[index]:
            return None
        try:
            return int(self._coercers[self._time_index](fields[index]))
        except CoercionError:
            return None

    # ------------------------------------------------------------------ shared tail

    def _finish(
        self,
        columns: Sequence[pa.Array],
        offsets: pa.Array,
        positions: np.ndarray,
        payloads_at: Callable[[list[int]], list[bytes]],
        errors: _Errors,
    ) -> tuple[np.ndarray, pa.Table]:
        """Assemble rows and move NULL time / NOT NULL violations to errors.

        ``positions`` travel with the rows (the records' places in the batch) and are filtered
        the same way.
        """
        table = pa.Table.from_arrays([*columns, offsets], schema=self.out_schema)
        checks: list[tuple[int, str, str]] = []
        if self._time_index is not None:
            checks.append((self._time_index, "missing_time", f'time column "{self.time_column}" is NULL or missing'))
        checks += [(i, "type", f'column "{self._names[i]}" is NULL but declared NOT NULL') for i in self._not_null]
        bad: pa.Array | None = None
        for index, _reason, _message in checks:
            if columns[index].null_count:
                nulls = pc.is_null(columns[index])
                bad = nulls if bad is None else pc.or_(bad, nulls)
        if bad is None:
            return positions, table
        bad_np = bad.to_numpy(zero_copy_only=False)
        failing = np.flatnonzero(bad_np).tolist()
        payloads = payloads_at(failing)
        offs = offsets.to_pylist()
        time_values = columns[self._time_index] if self._time_index is not None else None
        for position, payload in zip(failing, payloads, strict=True):
            for index, reason, message in checks:
                if not columns[index][position].is_valid:
                    event_time = None
                    if time_values is not None and reason != "missing_time":
                        event_time = _as_micros(time_values[position])
                    errors.add(reason, message, payload, offs[position], event_time)
                    break
        return positions[~bad_np], table.filter(pc.invert(bad))

    # ------------------------------------------------------------------ typed sources

    def conform(self, batch: pa.RecordBatch | pa.Table) -> tuple[pa.Table, pa.Table]:
        """Cast typed rows (parquet, the demo) to the declared schema.

        Columns are matched by name, case-insensitively (exact preferred); a missing column is
        NULL; extra columns are dropped. A whole-column cast is tried first. String columns and
        numbers into timestamps follow the JSON rules (``"42"`` into INT, epoch milliseconds);
        anything else follows Arrow's safe casts (no overflow, no lost fraction; timestamp units
        may be truncated). A row with a value that does not cast becomes a ``type`` error whose
        payload is the row as JSON.

        Args:
            batch: data columns plus ``offset`` (int64).

        Returns:
            ``(rows, errors)`` as ``decode`` returns them.
        """
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        errors = _Errors(self.stream, self._step_id, self._clock())
        offsets = _column(table, "offset").cast(pa.int64())
        data = table.drop_columns(["offset"])
        present = data.column_names
        lowered = [c.lower() for c in present]
        columns: list[pa.Array] = []
        problems: dict[int, str] = {}
        for name, low, dtype, coerce in zip(self._names, self._lower, self._types, self._coercers, strict=True):
            if name in present:
                source = name
            elif low in lowered:
                source = present[lowered.index(low)]
            else:
                columns.append(pa.nulls(len(table), dtype))
                continue
            values = _column(data, source)
            if values.type == dtype:
                columns.append(values)
                continue
            converted, bad = _cast_column(values, dtype, name, coerce)
            columns.append(converted)
            for position, message in bad.items():
                problems.setdefault(position, message)

        def payloads_at(positions: list[int]) -> list[bytes]:
            picked = data.take(pa.array(positions, pa.int64())).to_pylist()
            return [row_to_json(row).encode() for row in picked]

        if problems:
            positions = sorted(problems)
            time_values = columns[self._time_index] if self._time_index is not None else None
            offs = offsets.to_pylist()
            for position, payload in zip(positions, payloads_at(positions), strict=True):
                event_time = _as_micros(time_values[position]) if time_values is not None else None
                errors.add("type", problems[position], payload, offs[position], event_time)
            keep = np.ones(len(table), dtype=bool)
            keep[positions] = False
            mask = pa.array(keep)
            kept_rows = pa.array(np.flatnonzero(keep))
            columns = [c.filter(mask) for c in columns]
            offsets = offsets.filter(mask)
            data = data.take(kept_rows)
        _, rows = self._finish(columns, offsets, np.arange(len(offsets)), payloads_at, errors)
        return rows, errors.table()


# ---------------------------------------------------------------------- helpers


class _BadRecord(Exception):
    """The bytes are not a record of the format (reason ``decode``)."""


class _BadValue(Exception):
    """A value does not fit its column (reason ``type``); carries the row's event time if known."""

    def __init__(self, message: str, event_time: int | None) -> None:
        super().__init__(message)
        self.event_time = event_time


class _Errors:
    """Error rows for one call, built column-wise; ``table()`` orders them by source offset."""

    def __init__(self, stream: str, step_id: str, detected_at: int) -> None:
        self.stream, self.step_id, self.detected_at = stream, step_id, detected_at
        self.refused = 0  # records the record-by-record path refused (what makes batches split)
        self.numbers: list[int] = []
        self.reasons: list[str] = []
        self.messages: list[str] = []
        self.payloads: list[bytes] = []
        self.offsets: list[str] = []
        self.event_times: list[int | None] = []

    def add(self, reason: str, message: str, payload: bytes, offset: int, event_time: int | None = None) -> None:
        self.numbers.append(offset)
        self.reasons.append(reason)
        self.messages.append(message if message.isascii() else message.encode("utf-8", "backslashreplace").decode())
        self.payloads.append(payload)
        self.offsets.append(f"{self.stream}:{offset}")
        self.event_times.append(event_time)

    def table(self) -> pa.Table:
        n = len(self.reasons)
        if n == 0:
            return ERROR_SCHEMA.empty_table()
        table = pa.Table.from_arrays(
            [
                pa.array([self.stream] * n, pa.string()),
                pa.array([self.step_id] * n, pa.string()),
                pa.array(self.reasons, pa.string()),
                pa.array(self.messages, pa.string()),
                pa.array(self.payloads, pa.large_binary()),
                pa.array(self.offsets, pa.string()),
                pa.array(self.event_times, TS_TYPE),
                pa.array([self.detected_at] * n, TS_TYPE),
            ],
            schema=ERROR_SCHEMA,
        )
        order = np.argsort(np.array(self.numbers, dtype=np.int64), kind="stable")
        return table.take(pa.array(order))


def json_object(text: str, bad: type[Exception]) -> dict[str, Any]:
    """One record's JSON object; raises ``bad`` with a one-line reason for anything else."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as err:
        if not text.strip():
            raise bad("blank record (only whitespace)") from None
        if isinstance(err, json.JSONDecodeError):
            raise bad(f"invalid JSON: {err.msg} (column {err.colno})") from None
        raise bad(f"invalid JSON: {err}") from None
    if type(obj) is not dict:
        raise bad(f"a JSON {_json_kind(obj)} is not an object")
    return obj


def _csv_settings(options: Mapping[str, Any] | None, stream: str) -> tuple[str, bool]:
    options = dict(options or {})
    unknown = sorted(set(options) - _CSV_OPTION_KEYS)
    if unknown:
        raise ConnectorError(f"unknown CSV option(s): {', '.join(unknown)}", where=stream)
    delimiter = options.get("delimiter", ",")
    if delimiter == "\\t":
        delimiter = "\t"
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise ConnectorError(f"CSV delimiter must be one character, not {delimiter!r}", where=stream)
    header = options.get("header", True)
    if isinstance(header, str):
        if header.lower() not in ("true", "false"):
            raise ConnectorError(f"CSV header must be true or false, not {header!r}", where=stream)
        header = header.lower() == "true"
    return delimiter, bool(header)


def _column(data: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    column = data.column(name)
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _is_textual(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_date(dtype)
        or pa.types.is_time(dtype)
        or pa.types.is_binary(dtype)
        or pa.types.is_large_binary(dtype)
    )


def _valid_text(payloads: pa.Array) -> pa.Array | None:
    """The payloads as UTF-8 strings, or None if any is not valid UTF-8."""
    try:
        return payloads.cast(pa.large_string())
    except pa.ArrowInvalid:
        return None


def _in_order(parts: list[tuple[np.ndarray, pa.Table]], schema: pa.Schema) -> pa.Table:
    """The parts' rows in the order of their positions in the batch."""
    parts = [(p, t) for p, t in parts if t.num_rows]
    if not parts:
        return schema.empty_table()
    if len(parts) == 1:
        return parts[0][1]
    table = pa.concat_tables([t for _, t in parts])
    positions = np.concatenate([p for p, _ in parts])
    order = np.argsort(positions, kind="stable")
    if (order[1:] > order[:-1]).all():
        return table
    return table.take(pa.array(order))


def _raw_payloads(payloads: pa.Array) -> Callable[[list[int]], list[bytes]]:
    return lambda positions: payloads.take(pa.array(positions, pa.int64())).to_pylist()


def _build_columns(rows: list[list[Any]], types: list[pa.DataType]) -> list[pa.Array]:
    if not rows:
        return [pa.array([], t) for t in types]
    columns = []
    for values, dtype in zip(zip(*rows, strict=True), types, strict=True):
        storage = storage_type(dtype)
        array = pa.array(values, storage)
        # microseconds into a coarser unit (TIMESTAMP_MS, TIME in seconds) drop the rest, as the
        # fraction digits past the sixth are dropped; the coercer checked the finer units' range
        columns.append(array if storage == dtype else pc.cast(array, options=_truncating(dtype)))
    return columns


def _truncating(dtype: pa.DataType) -> pc.CastOptions:
    return pc.CastOptions(dtype, allow_time_truncate=True)


def _cast_column(values: pa.Array, dtype: pa.DataType, name: str, coerce: Coercer) -> tuple[pa.Array, dict[int, str]]:
    """``values`` as ``dtype``, with failing positions set to NULL and explained."""
    src = values.type
    semantic = (
        pa.types.is_string(src)
        or pa.types.is_large_string(src)
        or (pa.types.is_timestamp(dtype) and (pa.types.is_integer(src) or pa.types.is_floating(src)))
    )
    if semantic:
        converted = convert(values, dtype)
        if converted is not None:
            return converted, {}
        out: list[Any] = []
        bad: dict[int, str] = {}
        for position, value in enumerate(values.to_pylist()):
            if value is None:
                out.append(None)
                continue
            try:
                out.append(coerce(value))
            except CoercionError as err:
                bad[position] = str(err)
                out.append(None)
        array = pa.array(out, storage_type(dtype))
        return (array if array.type == dtype else array.cast(dtype)), bad
    return _arrow_cast(values, dtype, name)


def _arrow_cast(values: pa.Array, dtype: pa.DataType, name: str) -> tuple[pa.Array, dict[int, str]]:
    """A safe Arrow cast; on failure, halves are retried to find the values that do not cast."""
    options = pc.CastOptions(dtype, allow_time_truncate=pa.types.is_timestamp(dtype))
    try:
        return pc.cast(values, options=options), {}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        if len(values) == 1:
            from engine.formats.types import sql_type_name

            value = values[0].as_py()
            message = (
                f'column "{name}": {show(value) if _jsonable(value) else repr(value)} is not a {sql_type_name(dtype)}'
            )
            if isinstance(err, pa.ArrowNotImplementedError):
                message += f" (no cast from {values.type})"
            return pa.nulls(1, dtype), {0: message}
    mid = len(values) // 2
    left, bad_left = _arrow_cast(values.slice(0, mid), dtype, name)
    right, bad_right = _arrow_cast(values.slice(mid), dtype, name)
    bad = dict(bad_left)
    bad.update({position + mid: message for position, message in bad_right.items()})
    return pa.concat_arrays([left, right]), bad


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))


def _as_micros(value: pa.Scalar) -> int | None:
    if not value.is_valid or not pa.types.is_timestamp(value.type):
        return None
    return int(value.cast(pa.timestamp("us")).cast(pa.int64()).as_py())


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
