"""Raw records into rows of a KDA input schema (``engine.formats.kda_schema.InputSchema``).

``KdaDecoder`` has the interface of ``engine.formats.decode.Decoder`` (``decode(raw) -> (rows,
errors)``, ``out_schema``, ``conform``, ``header``) and the same contract for bad data: every record
becomes rows or exactly one error row, with reason ``decode`` (not a record: bad UTF-8, bad JSON, not
an object, ``RecordRowPath`` not found, bad CSV quoting), ``type`` (a value that does not fit its
column by KDA's rules, ``engine.formats._kda_coerce``; one bad value rejects the whole record, all
its rows), ``too_large`` or, per row, ``missing_time``.

What it does that ``Decoder`` does not: JSONPath mappings (``$.a.b``, case-sensitive), the
``RecordRowPath``, whole arrays as JSON text (``$.arr[0:]``), exploded arrays (``$.arr[0:].f``: one
row per element, the other columns repeated; an empty, null or missing array gives one row whose
exploded columns are NULL), positional CSV with any column and row delimiters (a record may hold
several rows; empty rows are skipped; a row with fewer fields than columns has NULLs at the end,
extra fields are ignored; an empty field is NULL), and KDA's coercions (``true`` into a number is 1,
``VARCHAR(4)`` cuts longer text, ...). A path through a value that is not an object (``$.a.b`` when
``a`` is a number) finds nothing: NULL.

Row identity (``__seq``). The engine takes ``__seq`` as a row's identity (late-row errors, FIRST_VALUE
order) and prints it in error rows' ``source_offset``, so it must be unique, in arrival order and the
same whatever the batch split. When a record yields one row (``InputSchema.multi_row`` false: JSON
without an exploded array) ``__seq`` is the record's source offset, as with ``Decoder``. When it may
yield several (an exploded array, or CSV), ``__seq`` is ``offset * SEQ_STRIDE + i`` for the i-th row of
the record (from 0), and the decoder's own error rows use ``offset * SEQ_STRIDE`` too, so every
``source_offset`` of such a stream reads the same way: ``orders:118000002`` is row 2 of record 118.
Both depend only on the record and its offset, never on the batch. A record cannot yield more than
``SEQ_STRIDE - 1`` rows (it is a ``decode`` error). Because ``__seq`` is not the offset there, the
columns a source supplies itself (Kinesis's ``APPROXIMATE_ARRIVAL_TIME``, ...) are filled here, from
the record each row came from (``metadata``), not by looking ``__seq`` up among the offsets;
``record_offsets`` turns ``__seq`` values back into record offsets for code that needs them.

How a batch is decoded: like ``Decoder``, the whole batch first goes through Arrow's JSON reader
(nested fields as structs, the exploded array as a list of structs) or Arrow string kernels (CSV)
and the vectorised conversions of ``_vector``, which take a batch only if they can vouch for every
value; otherwise the batch is halved down to small pieces decoded record by record in Python, the
reference. Both give the same rows. A schema with a ``$.arr[0:]`` column, a ``$`` mapping or a path
that is both a value and an object is always decoded record by record.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from engine.errors import ConnectorError
from engine.formats._coerce import Coercer, CoercionError
from engine.formats._kda_coerce import kda_coercer
from engine.formats._vector import convert
from engine.formats.decode import (
    _BOM,
    _JSON_BLOCK_BYTES,
    _ONE_OBJECT,
    Decoder,
    _build_columns,
    _column,
    _Errors,
    _valid_text,
    json_object,
)
from engine.formats.encode import lines_buffer
from engine.formats.kda_schema import InputSchema, RecordColumn, split_csv_row
from engine.formats.timestamps import now_us
from engine.types import SEQ_COL

SEQ_STRIDE = 1_000_000  # rows of one record are numbered offset * SEQ_STRIDE + i (multi-row schemas)
_SMALL_CHUNK = 64
_ERROR_PAYLOAD_LIMIT = 1024
_DIRTY_RATIO = 2000


def record_offsets(seqs: pa.Array | np.ndarray, input_schema: InputSchema) -> np.ndarray:
    """The source offsets of the records that rows with these ``__seq`` values came from.

    Args:
        seqs: ``__seq`` values from a ``KdaDecoder`` of ``input_schema``.
        input_schema: the schema (whether it numbers rows ``offset * SEQ_STRIDE + i``).

    Returns:
        int64 offsets, one per value.
    """
    values = seqs.to_numpy(zero_copy_only=False) if isinstance(seqs, pa.Array) else np.asarray(seqs)
    values = values.astype(np.int64)
    return values // SEQ_STRIDE if input_schema.multi_row else values


class _BadRecord(Exception):
    """Not a record of the schema's format (reason ``decode``)."""


class _BadValue(Exception):
    """A value that does not fit its column (reason ``type``), with the row's event time if known."""

    def __init__(self, message: str, event_time: int | None) -> None:
        super().__init__(message)
        self.event_time = event_time


@dataclass
class _Part:
    """Decoded rows of some records: each row's record position in the raw batch, its row number
    within the record, and the schema columns."""

    positions: np.ndarray
    elements: np.ndarray
    columns: list[pa.Array]


class _ListOf:
    """In the Arrow JSON read schema: a list of objects with these fields (the exploded array)."""

    def __init__(self) -> None:
        self.fields: dict[str, pa.DataType] = {}


_Tree = dict[str, Any]  # key -> pa.DataType (leaf) | _Tree (object) | _ListOf (exploded array)


class KdaDecoder:
    """Turns one stream's raw records into rows of its KDA input schema (see the module docstring).

    Stateless between batches (CSV here has no header), so a restore needs nothing but offsets.
    """

    _header: list[str] | None = None  # what a restore gives ``Decoder``; KDA's CSV has no header line

    def __init__(
        self,
        stream: str,
        input_schema: InputSchema,
        time_column: str | None = None,
        max_record_bytes: int = 1 << 20,
        clock: Callable[[], int] = now_us,
        schema: pa.Schema | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Validate the configuration; no I/O.

        Args:
            stream: the stream name, for error rows.
            input_schema: the columns, mappings and format.
            time_column: the event-time column; rows where it is NULL become ``missing_time`` errors.
            max_record_bytes: payloads longer than this are ``too_large`` errors.
            clock: microseconds since the epoch, for ``detected_at``.
            schema: the stream's columns in order (default: the input schema's); every column must
                be an input schema column or a ``metadata`` one.
            metadata: stream column -> raw batch column, for the columns the source supplies.

        Raises:
            ConnectorError: for a column the schema cannot decode, or a ``schema``/``time_column``
                that does not match the input schema.
        """
        self.stream, self.input_schema, self.format = stream, input_schema, input_schema.format
        self.time_column, self.max_record_bytes = time_column, max_record_bytes
        self._clock = clock
        self._step_id = f"decode:{stream}"
        self._columns = list(input_schema.columns)
        self._types = [c.dtype for c in self._columns]
        try:
            self._coercers: list[Coercer] = [kda_coercer(c) for c in self._columns]
        except ValueError as err:
            raise ConnectorError(str(err), where=stream) from None
        self._metadata = dict(metadata or {})
        base = input_schema.arrow_schema()
        self.schema = schema if schema is not None else base
        own = {c.name: i for i, c in enumerate(self._columns)}
        self._layout: list[int | str] = []  # per stream column: input column index or raw column name
        for field_ in self.schema:
            if field_.name in self._metadata:
                self._layout.append(self._metadata[field_.name])
            elif field_.name in own:
                self._layout.append(own[field_.name])
            else:
                raise ConnectorError(f"column {field_.name} is not in the input schema", where=stream)
        if time_column is not None and time_column not in self.schema.names:
            raise ConnectorError(f"time column {time_column!r} is not a column of the stream", where=stream)
        self.out_schema = self.schema.append(pa.field(SEQ_COL, pa.int64()))
        self._multi_row = input_schema.multi_row
        self._exploded = input_schema.exploded_array
        self._time_index = own.get(time_column) if time_column is not None else None
        self._tree, self._fast_ok = _read_tree(input_schema)
        self.record_by_record_upto = _SMALL_CHUNK
        self._dirty = False
        self._conformer: Decoder | None = None

    @property
    def header(self) -> list[str] | None:
        """Always None: KDA's CSV is positional, without a header line."""
        return None

    def batch_positions(self, rows: pa.Table, raw: pa.RecordBatch | pa.Table) -> pa.Array:
        """For each decoded row, the index in ``raw`` of the record it came from (what
        ``pc.index_in(rows["__seq"], value_set=raw["offset"])`` gives for ``Decoder``'s rows)."""
        offsets = record_offsets(rows.column(SEQ_COL).combine_chunks(), self.input_schema)
        return pc.index_in(pa.array(offsets, pa.int64()), value_set=_column(raw, "offset").cast(pa.int64()))

    # ------------------------------------------------------------------ decode

    def decode(self, raw: pa.RecordBatch | pa.Table) -> tuple[pa.Table, pa.Table]:
        """Decode a batch of raw records.

        Args:
            raw: rows of ``engine.types.RAW_SCHEMA`` (plus any source metadata columns).

        Returns:
            ``(rows, errors)``: rows of ``out_schema`` in input order (the rows of one record
            together, in element order) and error rows of ``ERROR_SCHEMA``.
        """
        errors = _Errors(self.stream, self._step_id, self._clock())
        payloads = _column(raw, "payload")
        all_offsets = _column(raw, "offset").cast(pa.int64()).to_numpy(zero_copy_only=False)
        if len(payloads) and pa.types.is_binary(payloads.type):
            payloads = payloads.cast(pa.large_binary())
        lengths = pc.fill_null(pc.binary_length(payloads), 0)
        keep = pc.greater(lengths, 0)
        too_large = pc.and_(keep, pc.greater(lengths, self.max_record_bytes))
        if pc.any(too_large).as_py():
            for position in np.flatnonzero(too_large.to_numpy(zero_copy_only=False)):
                payload = payloads[int(position)].as_py()
                message = f"record is {len(payload)} bytes, more than the limit of {self.max_record_bytes} bytes"
                errors.add("too_large", message, payload[:_ERROR_PAYLOAD_LIMIT], self._seq0(all_offsets[position]))
            keep = pc.and_(keep, pc.invert(too_large))
        positions = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
        if len(positions) < len(payloads):
            payloads = payloads.filter(keep)
        parts: list[_Part] = []
        suspect = self._suspect(payloads)
        if suspect is not None:
            parts.append(self._slow(payloads.filter(pa.array(suspect)), positions[suspect], all_offsets, errors))
            clean = ~suspect
            payloads, positions = payloads.filter(pa.array(clean)), positions[clean]
        before = errors.refused
        if self._dirty or not self._fast_ok:
            parts.append(self._slow(payloads, positions, all_offsets, errors))
        else:
            parts += self._decode_range(payloads, positions, all_offsets, errors)
        self._dirty = (errors.refused - before) * _DIRTY_RATIO > len(payloads)
        return self._assemble(parts, raw, all_offsets, errors), errors.table()

    def _seq0(self, offset: int) -> int:
        return int(offset) * SEQ_STRIDE if self._multi_row else int(offset)

    def _suspect(self, payloads: pa.Array) -> np.ndarray | None:
        """Records the whole-batch path would refuse anyway (they go record by record at once)."""
        if not len(payloads):
            return None
        if self.format == "json":
            mask = pc.invert(pc.match_substring_regex(payloads, _ONE_OBJECT))
        else:
            pattern = '["\x00]' if "\r" in self.input_schema.row_delimiter else '["\r\x00]'
            mask = pc.match_substring_regex(payloads, pattern)
        found = mask.to_numpy(zero_copy_only=False)
        return found if found.any() else None

    def _decode_range(
        self, payloads: pa.Array, positions: np.ndarray, all_offsets: np.ndarray, errors: _Errors
    ) -> list[_Part]:
        n = len(payloads)
        if n == 0:
            return []
        if n <= self.record_by_record_upto:
            return [self._slow(payloads, positions, all_offsets, errors)]
        fast = self._fast_json(payloads) if self.format == "json" else self._fast_csv(payloads)
        if fast is not None:
            records, elements, columns = fast
            return [_Part(positions[records], elements, columns)]
        if n <= 4 * self.record_by_record_upto:
            return [self._slow(payloads, positions, all_offsets, errors)]
        mid = n // 2
        return self._decode_range(payloads.slice(0, mid), positions[:mid], all_offsets, errors) + self._decode_range(
            payloads.slice(mid), positions[mid:], all_offsets, errors
        )

    # ------------------------------------------------------------------ fast paths (whole batch)

    def _fast_json(self, payloads: pa.Array) -> tuple[np.ndarray, np.ndarray, list[pa.Array]] | None:
        text = _valid_text(payloads)
        if text is None or pc.any(pc.starts_with(text, _BOM)).as_py():
            return None
        try:
            first = json.loads(payloads[0].as_py())
        except (ValueError, RecursionError):
            return None
        read_schema = pa.schema([pa.field(k, t) for k, t in _arrow_types(self._tree, first).items()])
        try:
            table = pa_json.read_json(
                pa.BufferReader(lines_buffer(text)),
                read_options=pa_json.ReadOptions(block_size=_JSON_BLOCK_BYTES),
                parse_options=pa_json.ParseOptions(explicit_schema=read_schema, unexpected_field_behavior="ignore"),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        n = len(payloads)
        if table.num_rows != n:
            return None  # a record spread over lines: record by record
        row_path = self.input_schema.row_path
        if row_path:
            root = _descend(_column(table, row_path[0]), row_path[1:])
            if root.null_count:
                return None  # RecordRowPath missing in some record: the per-record path explains it

            def leaf(path: tuple[str, ...]) -> pa.Array:
                return _descend(root, path)

        else:

            def leaf(path: tuple[str, ...]) -> pa.Array:
                return _descend(_column(table, path[0]), path[1:])

        records = np.arange(n)
        elements = np.zeros(n, dtype=np.int64)
        take: pa.Array | None = None
        items: pa.Array | None = None
        repeat: pa.Array | None = None
        if self._exploded is not None:
            lists = leaf(self._exploded)
            lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            counts = np.maximum(lengths, 1)
            if counts.max(initial=1) >= SEQ_STRIDE:
                return None
            records = np.repeat(records, counts)
            starts = np.cumsum(counts) - counts
            elements = np.arange(len(records), dtype=np.int64) - np.repeat(starts, counts)
            list_offsets = lists.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
            take = pa.array(list_offsets[records] + elements, pa.int64(), mask=lengths[records] == 0)
            items = lists.values
            repeat = pa.array(records, pa.int64())
        columns: list[pa.Array] = []
        for column in self._columns:
            if column.explodes and items is not None and take is not None:
                values = _to_target(_descend(items, (column.element or "",)).take(take), column)
            else:
                values = _to_target(leaf(column.path), column)
                if values is not None and repeat is not None:
                    values = values.take(repeat)
            if values is None:
                return None
            columns.append(values)
        return records, elements, columns

    def _fast_csv(self, payloads: pa.Array) -> tuple[np.ndarray, np.ndarray, list[pa.Array]] | None:
        text = _valid_text(payloads)
        if text is None or pc.any(pc.starts_with(text, _BOM)).as_py():
            return None
        schema = self.input_schema
        pieces = pc.split_pattern(text, schema.row_delimiter)
        parents = pc.list_parent_indices(pieces)
        rows = pc.list_flatten(pieces)
        nonempty = pc.greater(pc.binary_length(rows), 0)
        rows, parents = rows.filter(nonempty), parents.filter(nonempty)
        records = parents.to_numpy(zero_copy_only=False).astype(np.int64)
        elements = np.arange(len(records), dtype=np.int64) - np.searchsorted(records, records, side="left")
        if len(elements) and elements.max() >= SEQ_STRIDE:
            return None
        fields = pc.split_pattern(rows, schema.column_delimiter)
        if len(rows) and pc.min(pc.list_value_length(fields)).as_py() < len(self._columns):
            return None
        columns: list[pa.Array] = []
        for index, column in enumerate(self._columns):
            values = pc.list_element(fields, index) if len(rows) else pa.array([], pa.string())
            values = pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)
            converted = _to_target(values, column)
            if converted is None:
                return None
            columns.append(converted)
        return records, elements, columns

    # ------------------------------------------------------------------ slow path (record by record)

    def _slow(self, payloads: pa.Array, positions: np.ndarray, all_offsets: np.ndarray, errors: _Errors) -> _Part:
        rows: list[list[Any]] = []
        row_positions: list[int] = []
        row_elements: list[int] = []
        parse = self._parse_json if self.format == "json" else self._parse_csv
        for payload, position in zip(payloads.to_pylist(), positions.tolist(), strict=True):
            offset = int(all_offsets[position])
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError as err:
                errors.add("decode", f"invalid UTF-8 at byte {err.start}", payload, self._seq0(offset))
                errors.refused += 1
                continue
            if offset == 0:
                text = text.removeprefix(_BOM)
            try:
                record_rows = parse(text)
                if len(record_rows) >= SEQ_STRIDE:
                    raise _BadRecord(f"the record holds {len(record_rows)} rows; at most {SEQ_STRIDE - 1} per record")
            except _BadRecord as err:
                errors.add("decode", str(err), payload, self._seq0(offset))
                errors.refused += 1
                continue
            except _BadValue as err:
                errors.add("type", str(err), payload, self._seq0(offset), err.event_time)
                errors.refused += 1
                continue
            rows += record_rows
            row_positions += [position] * len(record_rows)
            row_elements += range(len(record_rows))
        columns = _build_columns(rows, self._types)
        return _Part(np.array(row_positions, dtype=np.int64), np.array(row_elements, dtype=np.int64), columns)

    def _parse_json(self, text: str) -> list[list[Any]]:
        obj: Any = json_object(text, _BadRecord)
        row_path = self.input_schema.row_path
        for depth, key in enumerate(row_path):
            obj = obj.get(key) if type(obj) is dict else None
            if type(obj) is not dict:
                path = "$" + "".join(f".{k}" for k in row_path[: depth + 1])
                raise _BadRecord(f"RecordRowPath: {path} is not an object in this record")
        items: list[Any] = [None]
        if self._exploded is not None:
            array = _find(obj, self._exploded)
            if type(array) is list and array:
                items = array
        rows = []
        for item in items:
            values = []
            for column in self._columns:
                if column.explodes:
                    value = item.get(column.element) if type(item) is dict else None
                else:
                    value = _find(obj, column.path)
                    if column.whole_array and type(value) is not list:
                        value = None
                values.append(value)
            rows.append(self._coerce(values))
        return rows

    def _parse_csv(self, text: str) -> list[list[Any]]:
        schema = self.input_schema
        rows = []
        for row in text.split(schema.row_delimiter):
            if schema.row_delimiter == "\n":
                row = row.removesuffix("\r")
            if not row:
                continue
            try:
                fields = split_csv_row(row, schema.column_delimiter)
            except csv.Error as err:
                raise _BadRecord(f"invalid CSV: {err}") from None
            values = [fields[i] if i < len(fields) and fields[i] else None for i in range(len(self._columns))]
            rows.append(self._coerce(values))
        return rows

    def _coerce(self, values: list[Any]) -> list[Any]:
        out: list[Any] = []
        for value, coerce in zip(values, self._coercers, strict=True):
            if value is None:
                out.append(None)
                continue
            try:
                out.append(coerce(value))
            except CoercionError as err:
                raise _BadValue(str(err), self._event_time(values)) from None
        return out

    def _event_time(self, values: list[Any]) -> int | None:
        index = self._time_index
        if index is None or values[index] is None or not pa.types.is_timestamp(self._types[index]):
            return None
        try:
            return int(self._coercers[index](values[index]))
        except CoercionError:
            return None

    # ------------------------------------------------------------------ shared tail

    def _assemble(
        self, parts: list[_Part], raw: pa.RecordBatch | pa.Table, offsets: np.ndarray, errors: _Errors
    ) -> pa.Table:
        parts = [p for p in parts if len(p.positions)]
        if not parts:
            return self.out_schema.empty_table()
        positions = np.concatenate([p.positions for p in parts])
        elements = np.concatenate([p.elements for p in parts])
        columns = [pa.concat_arrays([p.columns[i] for p in parts]) for i in range(len(self._columns))]
        order: pa.Array | None = None
        if len(parts) > 1 or (len(positions) > 1 and (np.diff(positions) < 0).any()):
            order = pa.array(np.lexsort((elements, positions)))
            positions, elements = positions[order], elements[order]
            columns = [c.take(order) for c in columns]
        record_offsets = offsets[positions].astype(np.int64)
        seqs = record_offsets * SEQ_STRIDE + elements if self._multi_row else record_offsets
        where = pa.array(positions, pa.int64())
        out: list[pa.Array] = []
        for field_, source in zip(self.schema, self._layout, strict=True):
            if isinstance(source, int):
                out.append(columns[source])
            else:
                out.append(_column(raw, source).take(where).cast(field_.type))
        table = pa.Table.from_arrays([*out, pa.array(seqs, pa.int64())], schema=self.out_schema)
        if self.time_column is None:
            return table
        times = table.column(self.time_column)
        if not times.null_count:
            return table
        missing = pc.is_null(times)
        bad = np.flatnonzero(missing.to_numpy(zero_copy_only=False))
        payloads = _column(raw, "payload").take(pa.array(positions[bad], pa.int64())).to_pylist()
        message = f'time column "{self.time_column}" is NULL or missing'
        for index, payload in zip(bad.tolist(), payloads, strict=True):
            errors.add("missing_time", message, payload, int(seqs[index]))
        return table.filter(pc.invert(missing))

    # ------------------------------------------------------------------ typed sources

    def conform(self, batch: pa.RecordBatch | pa.Table) -> tuple[pa.Table, pa.Table]:
        """Cast typed rows (parquet, the demo stream) to the schema's columns.

        Columns are matched by name (``Decoder.conform``'s rules; mappings do not apply to typed
        rows), then ``VARCHAR(n)`` values are cut to ``n`` characters.
        """
        if self._conformer is None:
            self._conformer = Decoder(self.stream, self.schema, None, time_column=self.time_column, clock=self._clock)
        rows, errors = self._conformer.conform(batch)
        for column in self._columns:
            if column.max_length is not None and pa.types.is_string(column.dtype):
                at = rows.schema.get_field_index(column.name)
                cut = pc.utf8_slice_codeunits(rows.column(at), 0, column.max_length)
                rows = rows.set_column(at, rows.schema.field(at), cut)
        return rows, errors


# ---------------------------------------------------------------------- helpers


def _read_tree(schema: InputSchema) -> tuple[_Tree, bool]:
    """The nested fields the Arrow JSON reader must parse, and whether the fast path can be used
    at all (not with whole-array or ``$`` columns, or a path that is both a value and an object)."""
    if schema.format != "json":
        return {}, True
    tree: _Tree = {}
    node = tree
    for key in schema.row_path:
        node = node.setdefault(key, {})
    root = node
    for column in schema.columns:
        if column.whole_array or not column.path:
            return {}, False
        node = root
        for key in column.path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                return {}, False
            node = child
        last = column.path[-1]
        existing = node.get(last)
        if column.explodes:
            if existing is None:
                existing = node[last] = _ListOf()
            if not isinstance(existing, _ListOf):
                return {}, False
            existing.fields.setdefault(column.element or "", column.dtype)
        elif existing is None:
            node[last] = column.dtype
        elif not isinstance(existing, pa.DataType):
            return {}, False
    return tree, True


def _arrow_types(tree: _Tree, sample: Any) -> dict[str, pa.DataType]:
    """The Arrow types to read ``tree``'s keys as, numbers typed by the first record's values."""
    out: dict[str, pa.DataType] = {}
    for key, node in tree.items():
        value = sample.get(key) if type(sample) is dict else None
        if isinstance(node, dict):
            out[key] = pa.struct([pa.field(k, t) for k, t in _arrow_types(node, value).items()])
        elif isinstance(node, _ListOf):
            first = value[0] if type(value) is list and value else None
            fields = [
                pa.field(k, _read_type(t, first.get(k) if type(first) is dict else None))
                for k, t in node.fields.items()
            ]
            out[key] = pa.list_(pa.struct(fields))
        else:
            out[key] = _read_type(node, value)
    return out


def _read_type(dtype: pa.DataType, sample: Any) -> pa.DataType:
    """How Arrow should read a value for a ``dtype`` column, given an example value: a value of
    another JSON kind later makes Arrow fail, and the batch goes the slower way."""
    kind = type(sample)
    if kind is bool:
        return pa.bool_() if not (pa.types.is_temporal(dtype) or pa.types.is_binary(dtype)) else pa.string()
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return pa.int64() if kind is int else pa.string()
    if pa.types.is_integer(dtype) or pa.types.is_decimal(dtype):
        if kind is str:
            return pa.string()
        if kind is float or (kind is not int and pa.types.is_decimal(dtype)):
            return pa.float64()
        return pa.int64()
    if pa.types.is_floating(dtype):
        return pa.string() if kind is str else pa.float64()
    if pa.types.is_boolean(dtype):
        if kind is int or kind is float:
            return pa.float64()
        return pa.string() if kind is str else pa.bool_()
    return pa.string()


def _descend(array: pa.Array | pa.ChunkedArray, path: tuple[str, ...]) -> pa.Array:
    """The child at ``path`` of a struct array, NULL wherever a parent is NULL."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    for key in path:
        array = pc.struct_field(array, [array.type.get_field_index(key)])
    return array


def _to_target(values: pa.Array, column: RecordColumn) -> pa.Array | None:
    """``values`` (as Arrow read them) as the column's type by KDA's rules, or None when some value
    needs the per-value path; agrees with ``_kda_coerce.kda_coercer`` on everything it accepts."""
    dtype, src = column.dtype, values.type
    if values.null_count == len(values):
        return pa.nulls(len(values), dtype)
    if pa.types.is_boolean(dtype) and (pa.types.is_integer(src) or pa.types.is_floating(src)):
        return pc.not_equal(values, pa.scalar(0, src))
    if pa.types.is_boolean(src) and (
        pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)
    ):
        values = values.cast(pa.int8())
    if (pa.types.is_temporal(dtype) or pa.types.is_binary(dtype)) and not pa.types.is_string(src):
        return None  # numbers and booleans are errors there: let the per-value path say so
    converted = convert(values, dtype)
    if converted is not None and column.max_length is not None and pa.types.is_string(dtype):
        converted = pc.utf8_slice_codeunits(converted, 0, column.max_length)
    return converted


def _find(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if type(obj) is not dict:
            return None
        obj = obj.get(key)
    return obj
