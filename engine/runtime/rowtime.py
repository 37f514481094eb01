"""KDA's ROWTIME, stamped on the rows of a source stream as they enter the program.

In Kinesis Data Analytics, ROWTIME is the time a row entered the first in-application stream: a
processing time, in milliseconds, that never decreases. Here it is the time the source received
the record (the raw batch's ``arrival_time``: the read time for files and Kinesis, the simulated
arrival for ``demo:ticker``), or, for replays that must give the same rows every run, a recorded
time field of the record (``--rowtime-from FIELD``). Either way it is cut to whole milliseconds
and never goes back: a row whose time is earlier than an earlier row's gets the earlier row's.

``APPROXIMATE_ARRIVAL_TIME`` (when the source supplies no value of its own) is the same time
before that clamp: the record's own arrival.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import ConnectorError
from engine.plan.logical import StreamDef
from engine.sql.kda import ARRIVAL_TIME, ROWTIME
from engine.types import MIN_TIME, SEQ_COL, TS_TYPE

_MS = 1_000


def rowtime_fields(values: Iterable[str], streams: Mapping[str, str], nothing_to_stamp: str) -> dict[str, str]:
    """``--rowtime-from [STREAM=]FIELD`` values as stream key (``*`` for every input) -> field.

    Args:
        values: the option's values.
        streams: the input streams that get a ROWTIME, key -> name.
        nothing_to_stamp: the message when there is none.

    Raises:
        ConnectorError: naming ``--rowtime-from``, for an unknown stream or an empty field name.
    """
    fields: dict[str, str] = {}
    for value in values:
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", value)
        key, name = (m.group(1).lower(), m.group(2).strip()) if m else ("*", value.strip())
        if not streams:
            raise ConnectorError(nothing_to_stamp, where="--rowtime-from")
        if key != "*" and key not in streams:
            given = m.group(1) if m else key
            names = ", ".join(streams.values())
            raise ConnectorError(f"{given!r} is not an input stream (they are {names})", where="--rowtime-from")
        if not name:
            raise ConnectorError("give the name of a record field", where="--rowtime-from")
        fields[key] = name
    return fields


class RowtimeStamper:
    """Computes ROWTIME (and APPROXIMATE_ARRIVAL_TIME) for the decoded rows of one source."""

    def __init__(
        self,
        stream: StreamDef,
        field: str | None,
        source: Any | None,
        payload: pa.Schema,
        fmt: str,
        supplied: set[str],
    ) -> None:
        """Work out where times come from; no I/O.

        Args:
            stream: the source stream (its schema holds ROWTIME).
            field: ``--rowtime-from``: the record field holding the time, or None for arrival time.
            source: the bound source (raw records, or typed batches like the demo's); None when
                rows come through the Python API.
            payload: the columns the decoder reads from each record.
            fmt: the record format (for reading ``field`` when no column maps it).
            supplied: columns the source supplies itself (Kinesis's APPROXIMATE_ARRIVAL_TIME).

        Raises:
            ConnectorError: if ``field`` cannot be found (typed sources) or is not a time.
        """
        self.stream = stream.name
        self.field = field
        self.fmt = fmt
        self.csv_options = getattr(source, "csv_options", None) if source is not None else None
        self.last = MIN_TIME
        self.columns = [c for c in (ROWTIME, ARRIVAL_TIME) if c in stream.schema.names and c not in supplied]
        self._payload_column: str | None = None
        self._reader: Any = None
        if field is None:
            return
        where = f"--rowtime-from {field}"
        match = next((f for f in payload if f.name.lower() == field.lower()), None)
        if match is not None:
            kind = match.type
            if not (pa.types.is_timestamp(kind) or pa.types.is_integer(kind) or pa.types.is_string(kind)):
                raise ConnectorError(f"column {match.name} of {stream.name} is not a time", where=where)
            self._payload_column = match.name
        elif source is not None and source.kind != "raw":
            names = source.schema().names if source.schema() is not None else []
            if not any(n.lower() == field.lower() for n in names):
                raise ConnectorError(f"{stream.name} has no field {field!r}", where=where)

    def restore(self, last: int) -> None:
        """Continue after a checkpoint whose rows reached ``last`` (the source clock's maximum)."""
        self.last = max(self.last, last)

    def stamp(
        self, rows: pa.Table, batch: pa.RecordBatch | pa.Table, where: pa.Array
    ) -> tuple[pa.Table, pa.Array, dict[str, pa.Array], pa.Table | None]:
        """Times for ``rows`` (decoded from ``batch``; ``where[i]`` is row i's index in the batch).

        Returns the rows that have a time, their indexes in the batch, the stamped columns by
        name, and error rows (``missing_time``) for rows whose ``--rowtime-from`` field is empty.
        """
        times = self._times(rows, batch, where)
        errors = None
        if times.null_count:
            from engine.operators.base import error_rows

            missing = pc.is_null(times)
            errors = error_rows(
                rows.filter(missing),
                stream=self.stream,
                step_id=f"rowtime:{self.stream}",
                reason="missing_time",
                messages=f"--rowtime-from {self.field}: no readable time there (missing, null or not a timestamp)",
            )
            keep = pc.invert(missing)
            rows, where, times = rows.filter(keep), where.filter(keep), times.filter(keep)
        arrival = times.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        rowtime = np.maximum.accumulate(np.maximum(np.floor_divide(arrival, _MS) * _MS, self.last))
        if len(rowtime):
            self.last = int(rowtime[-1])
        out = {ROWTIME: pa.array(rowtime, TS_TYPE), ARRIVAL_TIME: pa.array(arrival, TS_TYPE)}
        return rows, where, {c: out[c] for c in self.columns}, errors

    def _times(self, rows: pa.Table, batch: pa.RecordBatch | pa.Table, where: pa.Array) -> pa.Array:
        if self.field is None:
            names = batch.schema.names
            from engine.formats.timestamps import now_us

            now = pa.scalar(now_us(), pa.int64()).cast(TS_TYPE)
            if "arrival_time" in names:  # when the source got the record (unknown: now)
                return pc.fill_null(batch.column("arrival_time").take(where).cast(TS_TYPE), now)
            return pa.array(np.full(rows.num_rows, now_us(), dtype=np.int64), TS_TYPE)
        if self._payload_column is not None and self._payload_column in rows.column_names:
            return _as_time(rows[self._payload_column])
        names = batch.schema.names
        found = next((n for n in names if n.lower() == self.field.lower() and n != "payload"), None)
        if found is not None:  # typed rows (the demo, Arrow pushed through the API): a column of theirs
            return _as_time(batch.column(found).take(where))
        if "payload" not in names:
            return pa.nulls(rows.num_rows, TS_TYPE)
        if self._reader is None:
            from engine.formats.decode import Decoder

            schema = pa.schema([pa.field(self.field, TS_TYPE)])
            self._reader = Decoder(self.stream, schema, self.fmt, csv_options=self.csv_options)
        side, _ = self._reader.decode(batch)
        at = pc.index_in(rows[SEQ_COL], value_set=side[SEQ_COL])
        return side.column(0).take(at).cast(TS_TYPE)


def _as_time(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A time column as timestamps: integers are epoch milliseconds, text is ISO-8601."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_timestamp(values.type):
        return values.cast(TS_TYPE)
    if pa.types.is_integer(values.type):
        return pc.multiply(values.cast(pa.int64()), _MS).cast(TS_TYPE)
    from engine.formats.timestamps import parse_timestamp

    parsed = []
    for text in values.to_pylist():
        try:
            parsed.append(parse_timestamp(text) if text is not None else None)
        except ValueError:
            parsed.append(None)
    return pa.array(parsed, pa.int64()).cast(TS_TYPE)
