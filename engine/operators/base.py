"""What every operator shares: the protocol, error rows, and safe per-row evaluation.

An operator has one input stream and one output stream. ``process(rows, watermark)`` takes the
rows that arrived on its input in this tick (possibly none) and the input's watermark after them,
and returns the rows it emits plus error rows. ``watermark`` is the operator's output watermark
after the call. Rows carry two hidden columns: ``__seq`` (arrival position) and ``__wm`` (the
watermark just before the row arrived, which decides lateness row by row).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.runtime.duck import run
from engine.types import ERROR_SCHEMA, MIN_TIME, SEQ_COL, WM_COL, visible


class Operator(Protocol):
    """The small surface every operator kind has."""

    step_id: str
    watermark: int

    def process(self, rows: pa.Table, watermark: int) -> tuple[pa.Table | None, pa.Table | None]:
        """Take this tick's input rows and the input watermark; return (output rows, error rows)."""

    def snapshot(self) -> dict:
        """Everything needed to resume: open windows, partial aggregates, buffered rows."""

    def restore(self, state: dict) -> None:
        """Load what ``snapshot`` returned (on a fresh operator built from the same spec)."""


def now_utc() -> dt.datetime:
    """The current time as a naive UTC datetime (the engine's timestamp convention)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def rows_as_json(table: pa.Table) -> list[bytes]:
    """Each row of ``table`` (visible columns) as one JSON document, for error payloads."""
    from engine.formats.encode import to_json_lines

    if table.num_rows == 0:
        return []
    text = to_json_lines(visible(table))
    return [line for line in text.split(b"\n") if line]


def error_rows(
    table: pa.Table,
    *,
    stream: str,
    step_id: str,
    reason: str,
    messages: list[str] | str,
    event_times: pa.Array | None = None,
) -> pa.Table:
    """Error rows (``ERROR_SCHEMA``) for the rows of ``table``, one each."""
    n = table.num_rows
    if n == 0:
        return ERROR_SCHEMA.empty_table()
    seqs = table[SEQ_COL].to_pylist() if SEQ_COL in table.column_names else [None] * n
    if isinstance(messages, str):
        messages = [messages] * n
    when = now_utc()
    return pa.table(
        {
            "stream": pa.array([stream] * n, pa.string()),
            "step_id": pa.array([step_id] * n, pa.string()),
            "reason": pa.array([reason] * n, pa.string()),
            "message": pa.array(messages, pa.string()),
            "payload": pa.array(rows_as_json(table), pa.large_binary()),
            "source_offset": pa.array([f"{stream}:{s}" if s is not None else None for s in seqs], pa.string()),
            "event_time": event_times.cast(pa.timestamp("us"))
            if event_times is not None
            else pa.nulls(n, pa.timestamp("us")),
            "detected_at": pa.array([when] * n, pa.timestamp("us")),
        },
        schema=ERROR_SCHEMA,
    )


DATA_ERRORS = (
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
    duckdb.InvalidTypeException,
)


def run_rows(
    con: duckdb.DuckDBPyConnection, sql: str, name: str, table: pa.Table, *, stream: str, step_id: str
) -> tuple[pa.Table | None, pa.Table | None]:
    """Run a row-by-row ``sql`` over ``table``; rows that make it fail become ``eval`` error rows.

    The whole batch runs at once; only when DuckDB refuses it (a cast that cannot succeed, a
    division by zero) is the batch split in halves until the failing rows are isolated.
    """
    try:
        return run(con, sql, **{name: table}), None
    except DATA_ERRORS as err:
        if table.num_rows == 1:
            message = str(err).split("\n")[0]
            return None, error_rows(table, stream=stream, step_id=step_id, reason="eval", messages=message)
    half = table.num_rows // 2
    outs, errs = [], []
    for part in (table.slice(0, half), table.slice(half)):
        out, err_rows = run_rows(con, sql, name, part, stream=stream, step_id=step_id)
        if out is not None and out.num_rows:
            outs.append(out)
        if err_rows is not None:
            errs.append(err_rows)
    out_table = pa.concat_tables(outs) if outs else None
    return out_table, (pa.concat_tables(errs) if errs else None)


def run_final(
    con: duckdb.DuckDBPyConnection, sql: str, state: pa.Table, *, stream: str, step_id: str
) -> tuple[pa.Table, pa.Table | None]:
    """Run a window's final SQL over ``state``; groups whose result cannot be computed (a division
    by zero, a failing cast in the SELECT list) become ``eval`` error rows, the others come out.

    The whole state runs at once; only on failure are groups numbered and bisected.
    """
    try:
        return run(con, sql, __state=state), None
    except DATA_ERRORS:
        pass
    ids = [c for c in state.column_names if c in ("__ws", "__we", "__sess") or c.startswith("__k")]
    order = ", ".join(f'"{c}"' for c in ids) or "1"
    numbered = run(con, f"SELECT *, dense_rank() OVER (ORDER BY {order}) AS __g FROM __state", __state=state)
    outs: list[pa.Table] = []
    errs: list[pa.Table] = []

    def attempt(lo: int, hi: int) -> None:
        part = numbered.filter(pc.and_(pc.greater_equal(numbered["__g"], lo), pc.less_equal(numbered["__g"], hi)))
        try:
            outs.append(run(con, sql, __state=part))
            return
        except DATA_ERRORS as err:
            if lo == hi:
                errs.append(_group_error(part, ids, str(err).split("\n")[0], stream, step_id))
                return
        mid = (lo + hi) // 2
        attempt(lo, mid)
        attempt(mid + 1, hi)

    attempt(1, int(pc.max(numbered["__g"]).as_py() or 1))
    ok = [t for t in outs if t.num_rows]
    result = pa.concat_tables(ok) if ok else run(con, sql, __state=state.slice(0, 0))
    return result, (pa.concat_tables(errs) if errs else None)


def _group_error(part: pa.Table, ids: list[str], message: str, stream: str, step_id: str) -> pa.Table:
    first = part.slice(0, 1).select(ids).to_pylist()[0]
    identity = {
        "window_start": fmt_us(first["__ws"]) if "__ws" in first else None,
        "window_end": fmt_us(first["__we"]) if "__we" in first else None,
        "key": [v for k, v in first.items() if k.startswith("__k")],
    }
    payload = json.dumps(identity, default=json_default).encode()
    return pa.table(
        {
            "stream": [stream],
            "step_id": [step_id],
            "reason": ["eval"],
            "message": [f"the result of this window and key could not be computed: {message}"],
            "payload": pa.array([payload], pa.large_binary()),
            "source_offset": pa.array([None], pa.string()),
            "event_time": pa.nulls(1, pa.timestamp("us")),
            "detected_at": pa.array([now_utc()], pa.timestamp("us")),
        },
        schema=ERROR_SCHEMA,
    )


def diff_results(
    current: pa.Table, emitted: dict[tuple, tuple]
) -> tuple[list[tuple[str, tuple]], set[tuple], list[str]]:
    """Compare freshly computed results with what was emitted before, updating ``emitted``.

    Rows are identified by their hidden ``__`` columns (window bounds, keys, session). Returns
    the (op, values) of rows that are new ("insert") or changed ("update"), the identities seen,
    and the visible column names. Unchanged rows are not repeated.
    """
    names = [c for c in current.column_names if not c.startswith("__")]
    id_cols = [current[c].to_pylist() for c in current.column_names if c.startswith("__")]
    value_cols = [current[c].to_pylist() for c in names]
    rows: list[tuple[str, tuple]] = []
    seen: set[tuple] = set()
    for i in range(current.num_rows):
        ident = tuple(col[i] for col in id_cols)
        values = tuple(col[i] for col in value_cols)
        seen.add(ident)
        before = emitted.get(ident)
        if before == values:
            continue
        emitted[ident] = values
        rows.append(("update" if before is not None else "insert", values))
    return rows, seen, names


def concat_optional(a: pa.Table | None, b: pa.Table | None) -> pa.Table | None:
    """``a`` and ``b`` concatenated, where either may be None (no rows)."""
    if a is None:
        return b
    if b is None:
        return a
    return pa.concat_tables([a, b])


def split_missing_time(rows: pa.Table, column: str, *, stream: str, step_id: str) -> tuple[pa.Table, pa.Table | None]:
    """(rows with an event time, ``missing_time`` error rows for the others)."""
    if not column or column not in rows.column_names or rows[column].null_count == 0:
        return rows, None
    missing = rows.filter(pc.is_null(rows[column]))
    errors = error_rows(missing, stream=stream, step_id=step_id, reason="missing_time", messages=f"{column} is NULL")
    return rows.filter(pc.is_valid(rows[column])), errors


def with_hidden(table: pa.Table, wm: int, first_seq: int) -> pa.Table:
    """``table`` plus ``__seq`` (counting from ``first_seq``) and ``__wm`` (all ``wm``)."""
    n = table.num_rows
    table = visible(table)
    table = table.append_column(SEQ_COL, pa.array(np.arange(first_seq, first_seq + n, dtype=np.int64)))
    return table.append_column(WM_COL, pa.array(np.full(n, wm, dtype=np.int64)))


def fmt_us(us: int) -> str:
    """An engine time (microseconds) as ISO-8601 UTC text, for messages."""
    if us <= MIN_TIME:
        return "-inf"
    if us >= 2**63 - 1:
        return "+inf"
    from engine.formats.timestamps import format_timestamp

    return format_timestamp(us)


def json_default(value: object) -> object:
    """JSON fallback used by operator snapshots."""
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


__all__ = ["Operator", "error_rows", "fmt_us", "json", "now_utc", "run_rows", "with_hidden"]
