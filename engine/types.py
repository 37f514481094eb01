"""Types shared by the engine and the connectors: one home for each.

Time inside the engine is an ``int`` of microseconds since the Unix epoch (UTC). Arrow
timestamps are ``timestamp[us]`` without a zone, read as UTC (like Flink's ``TIMESTAMP``).
"""

from __future__ import annotations

from typing import NewType

import pyarrow as pa

Epoch = NewType("Epoch", int)
Offsets = dict[str, str]  # partition id -> opaque position after the last row handed out

TS_TYPE = pa.timestamp("us")
MIN_TIME = -(2**63)  # "no watermark yet"
MAX_TIME = 2**63 - 1  # end of input: every window closes

# Hidden columns that travel with rows through the operators; sinks never write them.
SEQ_COL = "__seq"  # int64: the row's position in its source (0-based), stable across batch splits
WM_COL = "__wm"  # int64 us: the watermark just *before* this row arrived (per-row lateness)
HIDDEN_PREFIX = "__"

# A JSON stream's column for the fields no other column takes (a JSON object as text, NULL if
# none). Streams whose schema is discovered get it, so fields that appear later are kept; JSON
# output merges it back into each record.
EXTRA_COL = "_extra"

# Columns that window table functions add.
WINDOW_START, WINDOW_END, WINDOW_TIME = "window_start", "window_end", "window_time"

# Raw rows as a raw source hands them out (decoding is a formats/ job, not the source's).
RAW_SCHEMA = pa.schema(
    [
        ("payload", pa.large_binary()),  # one record's bytes, without the line terminator
        ("offset", pa.int64()),  # the record's position in its source, from 0, stable
        ("arrival_time", TS_TYPE),  # when the source received it (file: read time)
    ]
)

ERROR_SCHEMA = pa.schema(
    [
        ("stream", pa.string()),  # where the row was headed
        ("step_id", pa.string()),  # which stage turned it away, e.g. "decode:readings"
        ("reason", pa.string()),  # decode | type | missing_time | late | eval | sink_encode
        ("message", pa.string()),  # one line a person can act on
        ("payload", pa.large_binary()),  # the original bytes (or the row as JSON), untouched
        ("source_offset", pa.string()),  # "readings:118"
        ("event_time", TS_TYPE),  # null if it could not be read
        ("detected_at", TS_TYPE),
    ]
)

REASONS = {
    "decode": "the bytes are not a record of the format (bad JSON, bad UTF-8, wrong CSV arity)",
    "type": "a field's value does not fit the declared column type",
    "missing_time": "the event-time column is NULL or missing",
    "late": "the row's window had already closed when it arrived",
    "future": "the event time is further ahead of the wall clock than --max-ahead allows",
    "eval": "evaluating the query on this row failed (e.g. a cast that cannot succeed)",
    "too_large": "the record is larger than the size limit",
    "sink_encode": "a sink could not encode the row",
}


def empty_errors() -> pa.Table:
    """An error table with no rows."""
    return ERROR_SCHEMA.empty_table()


def visible(table: pa.Table) -> pa.Table:
    """Drop the hidden ``__`` columns (what sinks and users see)."""
    keep = [n for n in table.column_names if not n.startswith(HIDDEN_PREFIX)]
    return table.select(keep)


def in_input_order(errors: pa.Table) -> pa.Table:
    """Error rows ordered by where their records were in the input (decode errors and later
    stages' errors of one batch arrive separately)."""
    keys = []
    for offset in errors["source_offset"].to_pylist():
        name, _, pos = (offset or "").rpartition(":")
        keys.append((name, int(pos) if pos.isdigit() else -1))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return errors.take(pa.array(order, pa.int64()))
