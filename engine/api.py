"""The embedding API: compile once, push records, get rows.

``engine.compile(sql)`` returns a ``CompiledProgram``: the planned ``Program`` (everything
``compile`` returned before, so it still goes wherever a ``Program`` goes) plus a live session that
takes records pushed from Python and hands out result rows::

    >>> import engine
    >>> program = engine.compile('''
    ...     CREATE TABLE t (ts TIMESTAMP, k VARCHAR, v INT, WATERMARK FOR ts AS ts);
    ...     SELECT k, v FROM t WHERE v > 1''')
    >>> program.push("t", [{"ts": "2024-05-01T10:00:00Z", "k": "a", "v": 2}, {"ts": "2024-05-01T10:01:00Z", "v": 0}])
    >>> program.poll().to_pylist()
    [{'k': 'a', 'v': 2}]

The contract, including the traps:

- **Same rules as files.** Dicts, JSON lines (``bytes``/``str``), Arrow batches and pandas frames
  go through the stream's ``engine.formats.decode.Decoder``: a record that does not fit becomes an
  error row (``engine.types.ERROR_SCHEMA``), never an exception, unless ``strict=True``. Each
  record pushed to a stream gets the next position of that stream (0, 1, 2, ... across pushes),
  which error rows name as ``source_offset`` (``"t:17"``) and ``positions()`` reports.
- **Where rows go.** Rows of an output with a callback (``on_output``) go to the callback, in the
  pushing thread, before ``push`` returns; rows of every other output wait in a buffer until
  ``poll``/``results``/``aresults`` take them. Error rows likewise go to ``on_error`` callbacks, or
  wait for ``poll_errors``. Trap: rows nobody takes accumulate in memory.
- **Time.** Windows close as the stream's watermark passes them (``WATERMARK FOR``). A stream that
  goes quiet holds its windows open: ``advance_time`` moves its watermark by fiat, and ``flush``
  (end of input) closes every window. Rows pushed after ``flush`` are late.
- **Threads.** Every method may be called from any thread. Calls that change state (``push``,
  ``advance_time``, ``flush``, ``snapshot``, ``restore``, ``checkpoint``) run one at a time, so one
  producer thread can push while other threads consume with ``poll``/``results`` (which never wait
  for a push in progress). Each output should have one consumer: ``poll`` takes what is buffered.
- **asyncio.** ``apush``/``aadvance_time``/``aflush`` run the work in a worker thread
  (``asyncio.to_thread``), so the event loop keeps running; ``aresults`` waits without a thread.
- **State.** ``snapshot()`` gives the whole state as bytes (operators, clocks, stream positions,
  rows not yet taken); ``restore`` loads it into a program compiled from the same SQL. With
  ``checkpoint_dir``, ``checkpoint()`` saves the same state there and ``engine.compile`` resumes
  from it. Trap: state is pickled, so only restore snapshots you wrote.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import pickle
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import DuckstreamError, RecordError
from engine.formats.decode import Decoder
from engine.formats.encode import row_to_json
from engine.formats.timestamps import parse_timestamp
from engine.plan.logical import Program
from engine.plan.planner import PlanOptions, SchemaResolver, compile_program
from engine.runtime.checkpoint import CheckpointStore, program_fingerprint
from engine.runtime.pipeline import Pipeline, TickResult
from engine.runtime.rowtime import RowtimeStamper
from engine.sql.kda import ARRIVAL_TIME, ROWTIME
from engine.types import ERROR_SCHEMA, MAX_TIME, RAW_SCHEMA, SEQ_COL, in_input_order, visible

if TYPE_CHECKING:
    import pandas as pd

Record = Mapping[str, Any] | bytes | str
"""One record: a dict (column -> value), or one JSON (or CSV) line as bytes or text."""

Records = Union[Record, Sequence[Record], pa.RecordBatch, pa.Table, "pd.DataFrame"]
"""What ``push`` takes: one record, a list of records, text of several lines, Arrow or pandas data."""

Timestamp = int | dt.datetime | str
"""An event time: microseconds since the Unix epoch, a datetime (naive = UTC) or ISO-8601 text."""

TableCallback = Callable[[pa.Table], None]
"""Called with each batch of output (or error) rows, in the thread that produced them."""

_SNAPSHOT_VERSION = 1


class CompiledProgram(Program):
    """A planned program that records can be pushed into (see the module docstring).

    Do not construct it directly: ``engine.compile`` builds it. Its plan fields (``streams``,
    ``operators``, ``sources``, ``outputs``, ...) are those of ``engine.Program``; the live state
    (operators, buffers) is made on first use, so using it only as a plan costs nothing more.
    """

    _strict: bool
    _max_record_bytes: int
    _rowtime_from: dict[str, str]  # KDA: input stream key (or "*") -> the field that gives ROWTIME
    _reference_tables: dict[str, pa.Table]
    _store: CheckpointStore | None
    _epoch: int
    _lock: threading.RLock
    _cond: threading.Condition
    _session: _Session | None
    _buffers: dict[str, deque[pa.Table]]
    _errors: deque[pa.Table]
    _output_callbacks: dict[str, list[TableCallback]]
    _error_callbacks: list[TableCallback]
    _async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]
    _closed: bool
    counts: Counter[str]

    @classmethod
    def _from_plan(
        cls,
        plan: Program,
        *,
        strict: bool = False,
        max_record_bytes: int = 1 << 20,
        references: Mapping[str, pa.Table] | None = None,
        checkpoint_dir: str | Path | None = None,
        rowtime_from: Mapping[str, str] | None = None,
    ) -> CompiledProgram:
        self = cls(**{f.name: getattr(plan, f.name) for f in dataclasses.fields(Program)})
        self._strict, self._max_record_bytes = strict, max_record_bytes
        self._rowtime_from = dict(rowtime_from or {})
        self._reference_tables = {}
        for name, table in (references or {}).items():
            self._reference_tables[name.lower()] = table
        missing = sorted(set(self.references) - set(self._reference_tables))
        if missing:
            name = self.references[missing[0]].name
            raise DuckstreamError(f"no data for reference table {name!r} (give references=)")
        self._lock = threading.RLock()
        self._cond = threading.Condition()
        self._session = None
        self._buffers = {o.stream: deque() for o in self.outputs}
        self._errors = deque()
        self._output_callbacks = {}
        self._error_callbacks = []
        self._async_waiters = set()
        self._closed = False
        self.counts = Counter()
        self._epoch = 0
        self._store = None
        if checkpoint_dir is not None:
            self._store = CheckpointStore(checkpoint_dir, program_fingerprint(self.text), where="checkpoint_dir")
            loaded = self._store.load()
            if loaded is not None:
                self._epoch = loaded[0]
                self._load_state(loaded[1])
        return self

    def __repr__(self) -> str:
        sources = ", ".join(self.streams[k].name for k in self.sources)
        outputs = ", ".join(o.name for o in self.outputs)
        return f"<CompiledProgram sources=[{sources}] outputs=[{outputs}]>"

    # ------------------------------------------------------------------ input

    def push(self, stream: str, records: Records) -> None:
        """Take records into a source stream and run them through the program.

        Output rows that this produces go to the callbacks or buffers (see ``on_output``).

        Args:
            stream: a source stream's name (case-insensitive).
            records: a dict, a list of dicts, JSON lines (``bytes``/``str``: one record per line,
                or a list of lines), a ``pa.RecordBatch``/``pa.Table`` or a pandas ``DataFrame``
                (columns matched to the stream's by name, case-insensitively; missing ones NULL).

        Raises:
            DuckstreamError: for a stream that is not a source of the program, or after ``close``.
            RecordError: with ``strict=True``, at the first bad record; if the record was bad as
                data (decode, type, missing time) nothing of this push was taken in.
            TypeError: for records of an unsupported type.
        """
        key = self._source_key(stream)
        kind, data = _normalize(records)
        with self._lock:
            self._check_open()
            session = self._live()
            start = session.positions[key]
            if kind == "raw":
                assert isinstance(data, list)
                n = len(data)
                raw = pa.table(
                    [
                        pa.array(data, pa.large_binary()),
                        pa.array(range(start, start + n), pa.int64()),
                        pa.nulls(n, pa.timestamp("us")),
                    ],
                    schema=RAW_SCHEMA,
                )
                rows, errors = session.decoders[key].decode(raw)
                rows, errors = session.stamp(key, rows, raw, errors)
            else:
                assert isinstance(data, pa.Table)
                n = data.num_rows
                typed = data.append_column("offset", pa.array(range(start, start + n), pa.int64()))
                rows, errors = session.decoders[key].conform(typed)
                rows, errors = session.stamp(key, rows, typed, errors)
            if n == 0:
                return
            if self._strict and errors.num_rows:
                _raise_strict(errors)
            session.positions[key] = start + n
            self.counts["rows_in"] += n
            self._deliver(session.pipeline.push(key, rows), errors)

    async def apush(self, stream: str, records: Records) -> None:
        """``push`` in a worker thread, so an asyncio event loop keeps running meanwhile.

        Args and Raises: as ``push``.
        """
        await asyncio.to_thread(self.push, stream, records)

    def advance_time(self, stream: str, to: Timestamp) -> None:
        """Move a source stream's watermark to ``to`` (never backwards) and close what it passes.

        For a stream that has gone quiet: its open windows would otherwise wait for its next row.
        Rows that arrive later with an earlier event time are late (error rows).

        Args:
            stream: a source stream's name (case-insensitive).
            to: microseconds since the Unix epoch, a datetime (naive means UTC) or ISO-8601 text.

        Raises:
            DuckstreamError: for an unknown stream, a bad timestamp, or after ``close``.
        """
        key = self._source_key(stream)
        micros = _micros(to)
        with self._lock:
            self._check_open()
            session = self._live()
            self._deliver(session.pipeline.advance(key, micros), None)

    async def aadvance_time(self, stream: str, to: Timestamp) -> None:
        """``advance_time`` in a worker thread. Args and Raises: as ``advance_time``."""
        await asyncio.to_thread(self.advance_time, stream, to)

    def flush(self) -> None:
        """End of input: move every source's watermark to +infinity, so every window closes.

        Rows pushed afterwards are late. Does not ``close`` the program.

        Raises:
            DuckstreamError: after ``close``.
        """
        with self._lock:
            self._check_open()
            session = self._live()
            for key in self.sources:
                self._deliver(session.pipeline.advance(key, MAX_TIME), None)

    async def aflush(self) -> None:
        """``flush`` in a worker thread. Raises: as ``flush``."""
        await asyncio.to_thread(self.flush)

    def set_reference(self, name: str, table: pa.Table) -> None:
        """Replace a reference table's rows (the program joins the new ones from the next push on).

        Args:
            name: the reference table's name (case-insensitive).
            table: its rows, with at least the columns the program was compiled with.

        Raises:
            DuckstreamError: if the program joins no reference table of that name.
        """
        key = name.lower()
        if key not in self.references:
            known = ", ".join(repr(r.name) for r in self.references.values()) or "none"
            raise DuckstreamError(f"no reference table named {name!r} (reference tables: {known})")
        with self._lock:
            self._reference_tables[key] = table
            if self._session is not None:
                self._session.pipeline.set_reference(key, table)

    # ------------------------------------------------------------------ output

    def on_output(self, name: str | None, callback: TableCallback) -> None:
        """Send the rows of an output to ``callback`` instead of its buffer.

        The callback gets each batch of rows as a ``pa.Table`` (without hidden ``__`` columns),
        in the thread that pushed, before ``push`` returns; an exception it raises propagates to
        that caller. Rows already buffered stay there for ``poll``.

        Args:
            name: the output's name (``result`` for a lone SELECT, ``result_1``, ``result_2``...
                for several, the INSERT target's name otherwise); None if the program has one output.
            callback: called with each ``pa.Table`` of rows.

        Raises:
            DuckstreamError: for an unknown output name.
        """
        key = self._output_key(name)
        with self._lock:
            self._output_callbacks.setdefault(key, []).append(callback)

    def on_error(self, callback: TableCallback) -> None:
        """Send error rows (``engine.types.ERROR_SCHEMA``) to ``callback`` instead of buffering them.

        Args:
            callback: called with each ``pa.Table`` of error rows, ordered by input position.
        """
        with self._lock:
            self._error_callbacks.append(callback)

    def poll(self, name: str | None = None) -> pa.Table:
        """Take every buffered row of an output, without waiting.

        Args:
            name: the output's name; None if the program has one output.

        Returns:
            The rows in the order they were produced (an empty table with the output's columns
            if there are none).

        Raises:
            DuckstreamError: for an unknown output name.
        """
        key = self._output_key(name)
        with self._cond:
            tables = list(self._buffers[key])
            self._buffers[key].clear()
        return self._concat(key, tables)

    def poll_errors(self) -> pa.Table:
        """Take every buffered error row (``engine.types.ERROR_SCHEMA``), without waiting.

        Returns:
            The error rows, in the order they were found.
        """
        with self._cond:
            tables = list(self._errors)
            self._errors.clear()
        return pa.concat_tables(tables) if tables else ERROR_SCHEMA.empty_table()

    def poll_pandas(self, name: str | None = None) -> pd.DataFrame:
        """``poll`` as a pandas ``DataFrame`` (needs pandas: ``pip install 'duckstream[pandas]'``).

        Args:
            name: the output's name; None if the program has one output.

        Returns:
            The buffered rows as a DataFrame.

        Raises:
            DuckstreamError: if pandas is not installed, or for an unknown output name.
        """
        _require_pandas()
        return self.poll(name).to_pandas()

    def results(self, name: str | None = None, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Iterate over an output's rows as dicts, waiting for new ones as they are produced.

        Args:
            name: the output's name; None if the program has one output.
            timeout: stop once no row has come for this many seconds (None: wait until ``close``).

        Returns:
            An iterator that ends after ``close`` (once the buffer is empty) or after ``timeout``.

        Raises:
            DuckstreamError: for an unknown output name.
        """
        key = self._output_key(name)
        return self._results(key, timeout)

    def _results(self, key: str, timeout: float | None) -> Iterator[dict[str, Any]]:
        while True:
            with self._cond:
                if not self._buffers[key] and not self._closed:
                    self._cond.wait_for(lambda: bool(self._buffers[key]) or self._closed, timeout)
                if not self._buffers[key]:
                    return
                tables = list(self._buffers[key])
                self._buffers[key].clear()
            for table in tables:
                yield from table.to_pylist()

    async def aresults(self, name: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Iterate over an output's rows as dicts from asyncio, awaiting new ones without blocking.

        Args:
            name: the output's name; None if the program has one output.

        Returns:
            An async iterator that ends after ``close`` once the buffer is empty.

        Raises:
            DuckstreamError: for an unknown output name.
        """
        key = self._output_key(name)
        loop = asyncio.get_running_loop()
        waiter = (loop, asyncio.Event())
        with self._cond:
            self._async_waiters.add(waiter)
        try:
            while True:
                waiter[1].clear()
                with self._cond:
                    tables = list(self._buffers[key])
                    self._buffers[key].clear()
                    closed = self._closed
                if tables:
                    for table in tables:
                        for row in table.to_pylist():
                            yield row
                    continue
                if closed:
                    return
                await waiter[1].wait()
        finally:
            with self._cond:
                self._async_waiters.discard(waiter)

    def close(self) -> None:
        """End the session: ``results``/``aresults`` iterators end once drained; ``push`` refuses.

        Does not flush (call ``flush`` first to close open windows). Idempotent.
        """
        with self._cond:
            self._closed = True
            self._notify()

    def __enter__(self) -> CompiledProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ state

    def positions(self) -> dict[str, int]:
        """Records taken in so far per source stream: where to resume its input after a restore.

        Returns:
            Stream name -> number of records pushed (the position the next record gets).
        """
        with self._lock:
            taken = self._session.positions if self._session is not None else {}
            return {self.streams[k].name: taken.get(k, 0) for k in self.sources}

    def state_size(self) -> tuple[int, int]:
        """(rows, bytes) held by the operators: partial aggregates of open windows, buffered rows."""
        with self._lock:
            return self._session.pipeline.state_size() if self._session is not None else (0, 0)

    def snapshot(self) -> bytes:
        """The whole state as bytes: operators, clocks, stream positions and rows not yet taken.

        Returns:
            Bytes for ``restore`` on a program compiled from the same SQL.
        """
        with self._lock:
            state = self._state()
        return pickle.dumps(
            {"version": _SNAPSHOT_VERSION, "program": program_fingerprint(self.text), "state": state},
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def restore(self, snapshot: bytes) -> None:
        """Replace the state with one that ``snapshot`` returned. Trap: the bytes are unpickled.

        Args:
            snapshot: what ``snapshot()`` returned, from a program compiled from the same SQL.

        Raises:
            DuckstreamError: for bytes that are no snapshot, of another version or another program.
        """
        try:
            blob = pickle.loads(snapshot)  # noqa: S301 - documented: only restore your own snapshots
            version, fingerprint, state = blob["version"], blob["program"], blob["state"]
        except Exception as err:  # a damaged pickle can raise almost anything
            raise DuckstreamError(f"not a duckstream snapshot ({type(err).__name__})") from None
        if version != _SNAPSHOT_VERSION:
            raise DuckstreamError(f"snapshot format {version}, this duckstream reads {_SNAPSHOT_VERSION}")
        if fingerprint != program_fingerprint(self.text):
            raise DuckstreamError("the snapshot was taken by a different program")
        with self._lock:
            self._check_open()
            self._load_state(state)

    def checkpoint(self) -> int:
        """Save the state (as ``snapshot`` has it) under ``checkpoint_dir``; ``engine.compile``
        with the same directory and SQL resumes from the newest one.

        Returns:
            The checkpoint's number (1, 2, ...).

        Raises:
            DuckstreamError: if the program was compiled without ``checkpoint_dir``, or the
                checkpoint cannot be written.
        """
        if self._store is None:
            raise DuckstreamError("no checkpoint_dir was given to engine.compile")
        with self._lock:
            self._epoch += 1
            self._store.save(self._epoch, {"api": self._state()})
            return self._epoch

    # ------------------------------------------------------------------ internals

    def _live(self) -> _Session:
        if self._session is None:
            self._session = _Session(self, self._reference_tables, self._max_record_bytes)
        return self._session

    def _state(self) -> dict[str, Any]:
        session = self._live()
        with self._cond:
            buffers = {k: list(v) for k, v in self._buffers.items()}
            errors = list(self._errors)
        return {
            "pipeline": session.pipeline.snapshot(),
            "positions": dict(session.positions),
            "headers": {k: d.header for k, d in session.decoders.items()},
            "buffers": buffers,
            "errors": errors,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        state = state.get("api", state)  # checkpoints wrap it
        session = _Session(self, self._reference_tables, self._max_record_bytes)
        session.pipeline.restore(state["pipeline"])
        session.positions.update(state["positions"])
        for key, header in state["headers"].items():
            if header is not None:
                session.decoders[key]._header = header  # the header record was pushed before
        self._session = session
        with self._cond:
            for key, tables in state["buffers"].items():
                self._buffers[key] = deque(tables)
            self._errors = deque(state["errors"])
            self._notify()

    def _deliver(self, result: TickResult, decode_errors: pa.Table | None) -> None:
        """Hand a tick's error rows and output rows to callbacks or buffers."""
        parts = [e for e in [decode_errors, *result.errors] if e is not None and e.num_rows]
        if parts:
            errors = in_input_order(pa.concat_tables(parts))
            self.counts["errors"] += errors.num_rows
            if self._strict:
                _raise_strict(errors)
            if self._error_callbacks:
                for callback in list(self._error_callbacks):
                    callback(errors)
            else:
                with self._cond:
                    self._errors.append(errors)
                    self._notify()
        for key, tables in result.outputs.items():
            rows = visible(tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive"))
            if not rows.num_rows:
                continue
            self.counts["rows_out"] += rows.num_rows
            callbacks = self._output_callbacks.get(key)
            if callbacks:
                for callback in list(callbacks):
                    callback(rows)
            else:
                with self._cond:
                    self._buffers[key].append(rows)
                    self._notify()

    def _notify(self) -> None:
        """Wake waiting ``results``/``aresults`` consumers (call holding ``_cond``)."""
        self._cond.notify_all()
        for loop, event in list(self._async_waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: its iterator is gone
                self._async_waiters.discard((loop, event))

    def _concat(self, key: str, tables: list[pa.Table]) -> pa.Table:
        if not tables:
            return visible(self.streams[key].schema.empty_table())
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")

    def _check_open(self) -> None:
        if self._closed:
            raise DuckstreamError("the program is closed")

    def _source_key(self, stream: str) -> str:
        key = stream.lower()
        if key in self.sources:
            return key
        known = ", ".join(repr(self.streams[k].name) for k in self.sources) or "none"
        if key in self.streams:
            raise DuckstreamError(f"{stream!r} is not a source stream of the program (sources: {known})")
        raise DuckstreamError(f"unknown stream {stream!r} (sources: {known})")

    def _output_key(self, name: str | None) -> str:
        if name is None:
            if len(self.outputs) == 1:
                return self.outputs[0].stream
            known = ", ".join(repr(o.name) for o in self.outputs) or "none"
            raise DuckstreamError(f"the program has several outputs: name one ({known})")
        for output in self.outputs:
            if output.name.lower() == name.lower():
                return output.stream
        known = ", ".join(repr(o.name) for o in self.outputs) or "none"
        raise DuckstreamError(f"no output named {name!r} (outputs: {known})")


class _Session:
    """The live half of a ``CompiledProgram``: operators, decoders and stream positions."""

    def __init__(self, program: Program, references: Mapping[str, pa.Table], max_record_bytes: int) -> None:
        self.pipeline = Pipeline(program)
        for key, table in references.items():
            if key in program.references:
                self.pipeline.set_reference(key, table)
        self.decoders: dict[str, Decoder] = {}
        self.positions: dict[str, int] = {}
        self.rowtime: dict[str, RowtimeStamper] = {}  # KDA input streams: ROWTIME stamped on arrival
        fields: Mapping[str, str] = getattr(program, "_rowtime_from", {})
        for key in program.sources:
            stream = program.streams[key]
            fmt = "csv" if stream.options.get("format", "").lower() == "csv" else "json"
            csv_options: dict[str, Any] = {k: stream.options[k] for k in ("delimiter", "header") if k in stream.options}
            schema, time_column = stream.schema, stream.time_column
            if stream.rowtime:
                plain = pa.schema([f for f in schema if f.name not in (ROWTIME, ARRIVAL_TIME)])
                field = fields.get(key, fields.get("*"))
                self.rowtime[key] = RowtimeStamper(stream, field, None, plain, fmt, set())
                schema, time_column = plain, None
            self.decoders[key] = Decoder(
                stream.name,
                schema,
                fmt,
                time_column=time_column,
                max_record_bytes=max_record_bytes,
                csv_options=csv_options or None,
            )
            self.positions[key] = 0

    def stamp(self, key: str, rows: pa.Table, batch: pa.Table, errors: pa.Table) -> tuple[pa.Table, pa.Table]:
        """KDA: decoded rows with their ROWTIME (and APPROXIMATE_ARRIVAL_TIME), in the stream's
        column order; rows without a time (``rowtime_from`` field empty) become error rows."""
        stamper = self.rowtime.get(key)
        if stamper is None:
            return rows, errors
        where = pc.index_in(rows[SEQ_COL], value_set=batch.column("offset"))
        rows, where, stamped, missing = stamper.stamp(rows, batch, where)
        schema = self.pipeline.program.streams[key].schema
        columns = [stamped[f.name] if f.name in stamped else rows[f.name] for f in schema] + [rows[SEQ_COL]]
        table = pa.table(columns, schema=schema.append(pa.field(SEQ_COL, pa.int64())))
        if missing is not None:
            errors = pa.concat_tables([errors, missing])
        return table, errors


def compile(
    sql: str,
    path: str | None = None,
    resolve_schema: SchemaResolver | None = None,
    allowed_lateness_us: int = 0,
    *,
    schemas: Mapping[str, pa.Schema] | None = None,
    references: Mapping[str, pa.Table] | None = None,
    checkpoint_dir: str | Path | None = None,
    strict: bool = False,
    max_record_bytes: int = 1 << 20,
    rowtime_from: str | Mapping[str, str] | None = None,
) -> CompiledProgram:
    """Parse, check and plan a program, ready for records to be pushed into it.

    Args:
        sql: the program's text.
        path: the file it came from, for error locations.
        resolve_schema: name -> schema of a stream the SQL reads without declaring it (None: unknown).
        allowed_lateness_us: how long a closed window still accepts rows, in microseconds.
        schemas: schemas of undeclared streams by name (a simpler ``resolve_schema``).
        references: reference tables the program joins, by name (their rows; the schema is theirs).
        checkpoint_dir: a directory (or ``s3://BUCKET/PREFIX``) for ``checkpoint()``; if it holds a
            checkpoint of the same program, the program resumes from it.
        strict: raise ``RecordError`` at the first bad record instead of making error rows.
        max_record_bytes: longer JSON lines are ``too_large`` errors.
        rowtime_from: KDA programs: the record field whose time becomes ROWTIME (for every input
            stream, or ``{stream: field}``); without it, ROWTIME is the time of ``push``.

    Returns:
        A ``CompiledProgram`` (an ``engine.Program`` with a live session).

    Raises:
        SqlError: for a syntax error, located as ``path:line:col``.
        PlanError: for a program that cannot run (unknown stream or column, bad window, ...).
        DuckstreamError: for a checkpoint that cannot be used, or a reference table without data.
    """
    by_name = {k.lower(): v for k, v in (schemas or {}).items()}

    def resolve(name: str) -> pa.Schema | None:
        if name.lower() in by_name:
            return by_name[name.lower()]
        return resolve_schema(name) if resolve_schema is not None else None

    refs = {k.lower(): v for k, v in (references or {}).items()}

    def reference(name: str) -> pa.Schema | None:
        table = refs.get(name.lower())
        return table.schema if table is not None else None

    options = PlanOptions(allowed_lateness_us=allowed_lateness_us, reference=reference if refs else None)
    plan = compile_program(sql, path, resolve if (by_name or resolve_schema) else None, options)
    fields = {"*": rowtime_from} if isinstance(rowtime_from, str) else dict(rowtime_from or {})
    return CompiledProgram._from_plan(
        plan,
        strict=strict,
        max_record_bytes=max_record_bytes,
        references=refs,
        checkpoint_dir=checkpoint_dir,
        rowtime_from={k.lower() if k != "*" else k: v for k, v in fields.items()},
    )


# ---------------------------------------------------------------------- helpers


def _normalize(records: object) -> tuple[str, list[bytes] | pa.Table]:
    """``("raw", payloads)`` for JSON/CSV lines and dicts, ``("typed", table)`` for columnar data."""
    if isinstance(records, pa.RecordBatch):
        records = pa.Table.from_batches([records])
    if isinstance(records, pa.Table):
        if "offset" in records.column_names:  # the decoder's position column: go through JSON
            return "raw", [row_to_json(r).encode() for r in records.to_pylist()]
        return "typed", records
    if _is_dataframe(records):
        return _normalize(pa.Table.from_pandas(records, preserve_index=False))
    if isinstance(records, (bytes, bytearray, memoryview)):
        return "raw", _lines(bytes(records))
    if isinstance(records, str):
        return "raw", _lines(records.encode("utf-8"))
    if isinstance(records, Mapping):
        return "raw", [row_to_json(records).encode()]
    if isinstance(records, Sequence) or _is_iterable_of_records(records):
        payloads = []
        for record in records:  # type: ignore[attr-defined]
            if isinstance(record, Mapping):
                payloads.append(row_to_json(record).encode())
            elif isinstance(record, (bytes, bytearray)):
                payloads.append(bytes(record))
            elif isinstance(record, str):
                payloads.append(record.encode("utf-8"))
            else:
                raise TypeError(f"a record is a dict, bytes or str, not {type(record).__name__}")
        return "raw", payloads
    raise TypeError(
        "push() takes dicts, JSON lines, a pyarrow Table/RecordBatch or a pandas DataFrame, "
        f"not {type(records).__name__}"
    )


def _is_iterable_of_records(value: object) -> bool:
    return hasattr(value, "__iter__") and not isinstance(value, (str, bytes, Mapping))


def _lines(text: bytes) -> list[bytes]:
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the terminator of the last line starts no record
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _is_dataframe(value: object) -> bool:
    cls = type(value)
    return cls.__name__ == "DataFrame" and cls.__module__.split(".")[0] == "pandas"


def _require_pandas() -> None:
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise DuckstreamError("pandas is not installed (pip install 'duckstream[pandas]')") from None


def _micros(value: Timestamp) -> int:
    if isinstance(value, bool):
        raise TypeError("a time is an int (microseconds), a datetime or ISO-8601 text, not a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return (value - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except ValueError as err:
            raise DuckstreamError(str(err)) from None
    raise TypeError(f"a time is an int (microseconds), a datetime or ISO-8601 text, not {type(value).__name__}")


def _raise_strict(errors: pa.Table) -> None:
    first = errors.slice(0, 1).to_pylist()[0]
    raise RecordError(
        f"bad record at {first['source_offset']}: {first['reason']}: {first['message']}",
        hint="compile without strict=True to route bad records to the error rows",
    )


__all__ = ["CompiledProgram", "Record", "Records", "TableCallback", "Timestamp", "compile"]
