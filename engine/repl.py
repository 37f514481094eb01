"""``duckstream repl``: an interactive SQL shell over live streams.

A session keeps the text of the statements entered so far (``CREATE TABLE/STREAM``, ``CREATE
VIEW``, pumps) and plans it again, plus the new statement, on every statement: the planner stays
the only judge of what a program means. Programs are planned with ``PlanOptions(rowtime_sources=
True)`` (every ``--source`` stream has KDA's ``ROWTIME`` and ``APPROXIMATE_ARRIVAL_TIME``) and
``allow_no_outputs=True`` (declarations alone are a program).

- A *pump* (``INSERT INTO s SELECT ...`` or KDA's ``CREATE [OR REPLACE] PUMP p [STOPPED] AS
  INSERT INTO s SELECT STREAM ...``) runs in the background: a ``Runner`` in a thread over freshly
  opened sources, planned from the session's declarations and that one pump. What it writes goes
  to the *channel* of ``s`` (and to ``s``'s connector, if it has one).
- A *channel* is an in-application stream of the session: it keeps its last rows
  (``CHANNEL_ROWS_KEPT``) and hands every row to its readers. A query or pump that reads ``s`` is
  planned without the pumps that write ``s`` and reads the channel: first the rows it keeps, then
  live ones, until every pump writing ``s`` has ended. A pump's rows keep ``ROWTIME``, which
  becomes their arrival time in the channel, so downstream windows see the pump's times.
- ``error_stream`` is a channel too: the error rows of every pump and query, in KDA's columns
  (``engine.runtime.kda_errors``). ``SELECT * FROM error_stream`` or ``.errors`` show them.
- A bare ``SELECT`` runs as a *live query* in the foreground: a ``Runner`` in a background thread
  whose result rows land in an in-memory sink that the main thread shows (a rich ``Live`` table,
  a changelog, a chart, or JSON/CSV lines) with a status line, until the input ends or Ctrl-C
  stops that query (never the shell).

``--source URI`` without a name binds the stream ``SOURCE_SQL_STREAM_001`` (KDA's name for an
application's input); its schema is discovered from the source, as ``run`` does for a stream a
program reads without declaring it.

Interactive input (a terminal) goes through prompt_toolkit: multi-line statements ended by ``;``,
persistent history (``~/.duckstream_history`` or ``$DUCKSTREAM_HISTORY``), SQL highlighting and
context-aware completion (``engine.completion``). Otherwise (``-e``, ``-f``, piped stdin)
statements are read and run one after another without prompt_toolkit.

Every ``DuckstreamError`` prints one line, ``error: <where>: <message>``, and the shell goes on.
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from engine.errors import ConnectorError, DuckstreamError, SqlError
from engine.plan.logical import Program, StreamDef

DEFAULT_SOURCE = "SOURCE_SQL_STREAM_001"
ERROR_STREAM = "error_stream"
SAMPLE_ROWS = 200
CHANNEL_ROWS_KEPT = 10_000  # rows an in-application stream keeps for readers that come later
ERROR_ROWS_KEPT = 1_000  # rows error_stream keeps
REFRESH_S = 0.125
PROMPT = "duckstream> "
CONTINUATION = "        -> "
MODES = ("table", "changes", "json", "csv")
OP_SYMBOLS = {"insert": "+", "update": "U", "delete": "-"}
ROWTIME, ARRIVAL_TIME = "ROWTIME", "APPROXIMATE_ARRIVAL_TIME"

HELP = """\
Statements end with ';' and may span lines. Dot commands take no ';'.

  CREATE STREAM|TABLE name (...) [WITH (...)];  declare a stream (fed by --source NAME=URI, its connector or pumps)
  CREATE VIEW name AS SELECT ...;            a named intermediate stream
  CREATE [OR REPLACE] PUMP p AS INSERT INTO s SELECT STREAM ...;   a pump, running in the background
  INSERT INTO s SELECT ...;                  a pump too (named after s)
  SELECT ...;                                a live query: rows appear as windows close; Ctrl-C stops it
  SELECT * FROM error_stream;                the error rows of pumps and queries (KDA's columns)
  SHOW STREAMS;  SHOW PUMPS;  SHOW QUERIES;  DESCRIBE name;  SHOW CREATE name;  EXPLAIN SELECT ...;
  STOP [PUMP] name;  DROP STREAM|VIEW|TABLE|PUMP name;   (ask for confirmation; --yes skips it)

  .mode table|changes|json|csv   how a live query shows its rows (changes: one line per change, op first)
  .chart COLUMN [BY KEY]         the next query draws COLUMN against window_start, a line per KEY; .chart off
  .maxrows N             rows kept on screen in table and changes modes (default 20)
  .timer on|off          print how long each statement took
  .read FILE             run the statements of a file
  .errors [N]            the last N error rows (default 10), as JSON lines in KDA's columns
  .help                  this text
  .quit                  leave (also Ctrl-D)
"""

KEYWORDS = (
    "SELECT FROM WHERE GROUP BY HAVING ORDER LIMIT AS AND OR NOT IN IS NULL LIKE BETWEEN CASE WHEN THEN ELSE END "
    "DISTINCT UNION ALL JOIN LEFT RIGHT INNER OUTER ON USING WITH INSERT INTO CREATE OR REPLACE STREAM TABLE VIEW "
    "PUMP STOPPED WATERMARK FOR INTERVAL SECOND MINUTE HOUR DAY MILLISECOND TIMESTAMP VARCHAR INT INTEGER BIGINT "
    "DOUBLE REAL FLOAT DECIMAL BOOLEAN DATE TIME BYTES EMIT CHANGES FINAL TUMBLE HOP CUMULATE SESSION DESCRIPTOR "
    "PARTITION ROWTIME STEP window_start window_end window_time SHOW STREAMS QUERIES PUMPS DESCRIBE EXPLAIN STOP "
    "DROP CAST"
).split()
DOT_COMMANDS = (".mode", ".chart", ".maxrows", ".timer", ".read", ".errors", ".help", ".quit", ".exit")


# ---------------------------------------------------------------------------------------- input
def split_statements(text: str, first_line: int = 1) -> tuple[list[tuple[int, str]], str]:
    """Complete statements in ``text`` as (line of their first character, text), and the rest.

    A statement ends at a ``;`` outside quotes and comments; a line starting with ``.`` (outside
    a statement) is a dot command of its own. The rest is what is left without an ending.
    """
    out: list[tuple[int, str]] = []
    i, n, line = 0, len(text), first_line
    start, start_line = 0, first_line
    pending = False  # the current statement has something besides blanks and comments

    def begin(at: int) -> None:  # the statement's first character that is not a blank or a comment
        nonlocal start, start_line, pending
        if not pending:
            start, start_line, pending = at, line, True

    def emit(end: int) -> None:
        nonlocal start, pending
        if pending:
            out.append((start_line, text[start:end].strip()))
        start, pending = end, False

    while i < n:
        c = text[i]
        if not pending and c == "." and (i == 0 or text[i - 1] == "\n" or not text[start:i].strip()):
            end = text.find("\n", i)
            end = n if end < 0 else end
            begin(i)
            emit(end)
            i = end
            continue
        if c == "\n":
            line += 1
        elif c in "'\"":
            begin(i)
            j = i + 1
            while j < n:
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:  # a doubled quote
                        j += 2
                        continue
                    break
                j += 1
            line += text.count("\n", i, j)
            i = j + 1
            continue
        elif c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            line += text.count("\n", i, j)
            i = j
            continue
        elif c == ";":
            emit(i + 1)
            i += 1
            continue
        elif not c.isspace():
            begin(i)
        i += 1
    rest = text[start:] if pending else ""
    return out, rest


def is_complete(text: str) -> bool:
    """Whether Enter should run the buffer: blank, a dot command, or ended by ``;``."""
    stripped = text.strip()
    if not stripped or stripped.startswith(".") or stripped.lower() in ("quit", "exit", "help"):
        return True
    _, rest = split_statements(text)
    return not rest.strip()


# ---------------------------------------------------------------------------------------- output
@dataclass
class ChartSpec:
    """``.chart COLUMN [BY KEY]``: what the next live query draws."""

    column: str
    by: str | None = None


@dataclass
class Settings:
    mode: str = "table"  # table | changes | json | csv
    maxrows: int = 20
    timer: bool = False
    chart: ChartSpec | None = None  # for the next live query only


class _MemorySink:
    """A live query's result rows, handed to the display thread through a queue."""

    name = "repl"

    def __init__(self) -> None:
        self.batches: queue.Queue[pa.Table] = queue.Queue()

    def open(self, schema: pa.Schema, last_committed: object, state: object = None) -> None:
        pass

    def write(self, epoch: object, batch: pa.Table) -> None:
        self.batches.put(batch)

    def prepare(self, epoch: object) -> None:
        return None

    def commit(self, epoch: object) -> None:
        pass

    def abort(self, epoch: object) -> None:
        pass

    def close(self) -> None:
        pass


def _cells(batch: pa.Table) -> list[list[str]]:
    from connectors.stdio import display_column

    columns = [display_column(batch.column(i)) for i in range(batch.num_columns)]
    return [list(row) for row in zip(*columns)] if columns else []


def _json_lines(batch: pa.Table) -> str:
    from engine.formats.encode import to_json_lines

    return to_json_lines(batch).decode("utf-8")


def _csv_lines(batch: pa.Table, header: bool) -> str:
    from engine.formats.encode import to_csv

    return to_csv(batch, header=header).decode("utf-8")


# ---------------------------------------------------------------------------------------- channels
class _Channel:
    """An in-application stream: rows written by pumps, kept (the last ``keep_rows``) and handed
    to every reader. Thread-safe: pumps write from their threads.

    Rows are stored with two more columns, ``offset`` (the row's number in the channel) and
    ``arrival_time`` (the ``time_column`` if given, e.g. a KDA pump's ROWTIME, else the write's
    wall-clock time), as a typed source hands them out.
    """

    def __init__(self, name: str, schema: pa.Schema, rowtime: bool, keep_rows: int, time_column: str | None) -> None:
        self.name, self.schema, self.rowtime, self.keep_rows = name, schema, rowtime, keep_rows
        self.time_column = time_column if time_column in schema.names else None
        self._lock = threading.Lock()
        self._kept: deque[pa.Table] = deque()
        self._kept_rows = 0
        self._readers: list[queue.Queue[pa.Table]] = []
        self.writers = 0
        self.offset = 0

    @property
    def batch_schema(self) -> pa.Schema:
        from engine.types import TS_TYPE

        return self.schema.append(pa.field("offset", pa.int64())).append(pa.field("arrival_time", TS_TYPE))

    def write(self, table: pa.Table) -> None:
        from engine.formats.timestamps import now_us
        from engine.types import TS_TYPE

        if not table.num_rows:
            return
        table = table.select(self.schema.names).cast(self.schema)
        with self._lock:
            n = table.num_rows
            if self.time_column is not None:
                arrival = table[self.time_column].cast(TS_TYPE)
            else:
                arrival = pa.array([now_us()] * n, pa.int64()).cast(TS_TYPE)
            offsets = pa.array(range(self.offset, self.offset + n), pa.int64())
            self.offset += n
            stored = table.append_column("offset", offsets).append_column("arrival_time", arrival).combine_chunks()
            self._kept.append(stored)
            self._kept_rows += n
            while self._kept_rows - self._kept[0].num_rows >= self.keep_rows:
                self._kept_rows -= self._kept.popleft().num_rows
            for reader in self._readers:
                reader.put(stored)

    def subscribe(self) -> queue.Queue[pa.Table]:
        """A reader's queue: the rows kept so far, then every row written."""
        with self._lock:
            reader: queue.Queue[pa.Table] = queue.Queue()
            for table in self._kept:
                reader.put(table)
            self._readers.append(reader)
            return reader

    def unsubscribe(self, reader: queue.Queue[pa.Table]) -> None:
        with self._lock:
            if reader in self._readers:
                self._readers.remove(reader)

    def recent(self, n: int) -> pa.Table | None:
        """The last ``n`` rows kept (without ``offset`` and ``arrival_time``), or None."""
        with self._lock:
            if not self._kept:
                return None
            table = pa.concat_tables(list(self._kept))
        return table.slice(max(0, table.num_rows - n)).drop_columns(["offset", "arrival_time"])

    def add_writer(self) -> None:
        with self._lock:
            self.writers += 1

    def remove_writer(self) -> None:
        with self._lock:
            self.writers -= 1

    @property
    def live(self) -> bool:
        """Whether a pump still writes it (a reader's input has not ended)."""
        return self.writers > 0


class _ChannelSource:
    """A typed source reading a channel: the rows it keeps, then live ones; ends (``None``) once
    no pump writes the channel any more and everything has been read."""

    kind: Literal["raw", "typed"] = "typed"
    format = None
    bounded = False

    def __init__(self, channel: _Channel, name: str) -> None:
        self.channel, self.name = channel, name
        self._reader: queue.Queue[pa.Table] | None = None
        self._next = 0

    def open(self, resume: object) -> None:
        self._reader = self.channel.subscribe()

    def poll(self, max_rows: int, timeout_s: float) -> pa.RecordBatch | None:
        assert self._reader is not None, "poll before open"
        live = self.channel.live  # before reading: rows written before the last writer ended are queued
        tables: list[pa.Table] = []
        rows = 0
        while rows < max_rows:
            try:
                table = self._reader.get_nowait()
            except queue.Empty:
                break
            tables.append(table)
            rows += table.num_rows
        if not tables:
            return None if not live else pa.RecordBatch.from_pylist([], schema=self.channel.batch_schema)
        table = pa.concat_tables(tables).combine_chunks()
        self._next = int(table["offset"][-1].as_py()) + 1
        return table.to_batches()[0]  # one chunk after combine_chunks

    def schema(self) -> pa.Schema:
        return self.channel.schema

    def sample(self, max_rows: int) -> list[bytes]:
        return []

    def offsets(self) -> dict[str, str]:
        return {"rows": str(self._next)}

    def close(self) -> None:
        if self._reader is not None:
            self.channel.unsubscribe(self._reader)
            self._reader = None


class _PumpSink:
    """Where a pump's rows go: its target's channel, and the target's connector if it has one
    (without ROWTIME for a KDA program, as ``run`` writes it)."""

    def __init__(self, channel: _Channel, sink: Any = None, drop_rowtime: bool = False) -> None:
        self.channel, self.sink, self.drop_rowtime = channel, sink, drop_rowtime
        self.name = channel.name

    def _out(self, value: Any) -> Any:
        if not self.drop_rowtime:
            return value
        if isinstance(value, pa.Schema):
            return pa.schema([f for f in value if f.name != ROWTIME])
        return value.drop_columns([ROWTIME]) if ROWTIME in value.column_names else value

    def open(self, schema: pa.Schema, last_committed: object, state: object = None) -> None:
        if self.sink is not None:
            self.sink.open(self._out(schema), last_committed, state)

    def write(self, epoch: object, batch: pa.Table) -> None:
        self.channel.write(batch)
        if self.sink is not None:
            self.sink.write(epoch, self._out(batch))

    def prepare(self, epoch: object) -> Any:
        return self.sink.prepare(epoch) if self.sink is not None else None

    def commit(self, epoch: object) -> None:
        if self.sink is not None:
            self.sink.commit(epoch)

    def abort(self, epoch: object) -> None:
        if self.sink is not None:
            self.sink.abort(epoch)

    def flush(self) -> None:
        getattr(self.sink, "flush", lambda: None)()

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


@dataclass
class _Entry:
    """A statement the session keeps: a declared stream, a view or a pump."""

    kind: str  # "stream" | "view" | "pump"
    name: str  # the stream's, view's or pump's name
    text: str
    target: str = ""  # a pump: the key of the stream it writes


@dataclass
class _Job:
    """A background pump: it runs until its input ends or STOP stops it."""

    name: str
    entry: _Entry
    runner: Any = None
    thread: threading.Thread | None = None
    metrics: Any = None
    state: str = "RUNNING"  # RUNNING | FINISHED | STOPPED | FAILED
    error: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def _stream_of(stmt: Any) -> str:
    from sqlglot import exp

    target = stmt.this.this if isinstance(stmt.this, exp.Schema) else stmt.this
    return target.name if target is not None else ""


# ---------------------------------------------------------------------------------------- session
class Session:
    """What the shell knows: the statements so far, the sources bound, settings, pumps, channels."""

    def __init__(
        self,
        sources: dict[str, str],
        console: Console,
        err: Callable[[str], None],
        interactive: bool,
        yes: bool = False,
        debug: bool = False,
        rowtime_from: dict[str, str] | None = None,
    ) -> None:
        from engine.runtime.kda_errors import KDA_ERROR_SCHEMA

        self.sources = {k.lower(): v for k, v in sources.items()}  # stream key -> URI
        self.source_names = {k.lower(): k for k in sources}
        self.console, self.err, self.interactive, self.yes, self.debug = console, err, interactive, yes, debug
        self.rowtime_from = dict(rowtime_from or {})  # --rowtime-from: source key (or "*") -> field
        self.entries: list[_Entry] = []
        self.schemas: dict[str, pa.Schema] = {}  # discovered source schemas
        self.settings = Settings()
        self.jobs: dict[str, _Job] = {}  # upper-case pump name -> job
        self.channels: dict[str, _Channel] = {}  # stream key -> the channel pumps write
        self.errors = _Channel(ERROR_STREAM, KDA_ERROR_SCHEMA, False, ERROR_ROWS_KEPT, "ERROR_TIME")
        self.failed = False
        self.done = False
        self.confirm: Callable[[str], bool] = lambda question: self.yes
        self.version = 0  # grows whenever the statements change (caches key on it)
        self._cache: dict[tuple[int, str], Any] = {}

    # ---- program text and compilation
    def _prior(self, statement: str | None, writes: str | None, pumps: bool) -> str:
        """The session's statements a program starts with: all of them (``pumps``), or those that
        are no pump; then a stream that channels serve (written by pumps, except ``writes``) reads
        its channel, and a KDA stream's declaration goes unless the program is KDA SQL, so that it
        is planned as a source with ROWTIME either way."""
        entries = self.entries if pumps else [e for e in self.entries if e.kind != "pump"]
        text = "".join(e.text + ";\n" for e in entries)
        if pumps:
            return text
        served = {k for k, ch in self.channels.items() if ch.rowtime and k != writes}
        if served and not self._is_kda(text + (statement or "")):
            entries = [e for e in entries if not (e.kind == "stream" and e.name.lower() in served)]
            text = "".join(e.text + ";\n" for e in entries)
        return text

    @staticmethod
    def _is_kda(text: str) -> bool:
        from engine.sql import kda
        from engine.sql.parse import parse_program

        try:
            return kda.is_kda(parse_program(text, None))
        except SqlError:
            return False  # the planner will say what is wrong

    def _resolve(self, name: str) -> pa.Schema | None:
        key = name.lower()
        if key in self.channels:
            return pa.schema([f for f in self.channels[key].schema if f.name not in (ROWTIME, ARRIVAL_TIME)])
        if key == ERROR_STREAM:
            return self.errors.schema
        if key not in self.sources:
            return None
        if key not in self.schemas:
            from connectors import open_source
            from engine.formats.discover import discover_schema, with_metadata

            source = open_source(self.sources[key], self.source_names[key], where=f"--source {self.source_names[key]}")
            schema = source.schema()
            if schema is None:
                sample = source.sample(SAMPLE_ROWS)
                discovered = discover_schema(sample, source.format or "json", getattr(source, "csv_options", None))
                schema = with_metadata(discovered, getattr(source, "metadata_schema", None))
            source.close()
            self.schemas[key] = schema
        return self.schemas[key]

    def compile(
        self,
        statement: str | None,
        origin: str = "input",
        base_line: int = 1,
        writes: str | None = None,
        pumps: bool = False,
    ) -> Program:
        """The session's program plus ``statement``; errors in it name ``origin:line:col``.

        Without ``pumps``, the program has no pump: streams pumps write are read from their
        channels (a pump's own program passes the stream it ``writes``).
        """
        from engine.plan.planner import PlanOptions, compile_program

        prior = self._prior(statement, writes, pumps)
        offset = prior.count("\n")
        text = prior + (statement + ";\n" if statement else "")
        options = PlanOptions(allow_no_outputs=True, rowtime_sources=True)
        try:
            try:
                return compile_program(text, None, self._resolve, options)
            except SqlError as err:
                # DESCRIPTOR(EVENT_TIME) on a source: an event-time window on a column of the
                # records, as `run` plans it; such a program's sources go without ROWTIME.
                if "is not the time attribute" not in err.message or ROWTIME not in (err.hint or ""):
                    raise
                try:
                    return compile_program(text, None, self._resolve, replace(options, rowtime_sources=False))
                except SqlError:
                    raise err from None
        except SqlError as err:
            if err.line is not None and err.line > offset:
                raise type(err)(err.message, err.line - offset + base_line - 1, err.col, origin, err.hint) from None
            raise

    def _changed(self) -> None:
        self.version += 1
        self._cache.clear()

    def _probe(self, name: str) -> StreamDef:
        """The stream called ``name`` as the session sees it (declared, a view, a source, a channel)."""
        key = name.strip().strip('"').lower()
        if not key:
            raise DuckstreamError("name a stream", where="input")
        cached = self._cache.get((self.version, key))
        if isinstance(cached, StreamDef):
            return cached
        stream: StreamDef | None = None
        if any(e.name.lower() == key and e.kind != "pump" for e in self.entries):
            try:  # declared here: as the whole session plans it (pumps included, for KDA's ROWTIME)
                stream = self.compile(None, pumps=True).streams.get(key)
            except SqlError:
                stream = None
        if stream is None:
            quoted = '"' + name.strip().strip('"').replace('"', '""') + '"'
            try:
                program = self.compile(f"SELECT * FROM {quoted} WHERE false")
            except SqlError as err:
                if "unknown" in err.message.lower() or "no such" in err.message.lower():
                    raise DuckstreamError(f"no stream called {name.strip()}", where="input") from None
                raise
            stream = program.streams[key]
        self._cache[(self.version, key)] = stream
        return stream

    def known_names(self) -> list[str]:
        """Streams the session can read: declared ones, views, pump targets, sources, error_stream."""
        names: dict[str, str] = {}
        for entry in self.entries:
            if entry.kind != "pump":
                names.setdefault(entry.name.lower(), entry.name)
        for key, channel in self.channels.items():
            names.setdefault(key, channel.name)
        for key, name in self.source_names.items():
            names.setdefault(key, name)
        names.setdefault(ERROR_STREAM, ERROR_STREAM)
        return list(names.values())

    def stream_columns(self, name: str) -> list[str]:
        """The columns of a stream for completion ([] if it cannot be planned)."""
        try:
            return [f.name for f in self._probe(name).schema if not f.name.startswith("__")]
        except DuckstreamError:
            return []

    def catalog(self) -> Any:
        from engine.completion import Catalog

        return Catalog(
            streams=self.known_names,
            columns=self.stream_columns,
            functions=_functions,
            pumps=lambda: [job.name for job in self.jobs.values()],
            keywords=tuple(KEYWORDS),
            dot_commands=DOT_COMMANDS,
            modes=MODES,
        )

    # ---- running one statement
    def execute(self, text: str, origin: str = "input", base_line: int = 1) -> None:
        """Run one statement or dot command; a user's mistake prints one line and returns."""
        started = time.perf_counter()
        try:
            self._dispatch(text.strip(), origin, base_line)
        except DuckstreamError as err:
            self.failed = True
            self.err(f"error: {err}")
        except KeyboardInterrupt:
            self.err("interrupted")
        except Exception as err:  # a bug: say so on one line, keep the shell alive
            self.failed = True
            if self.debug:
                traceback.print_exc()
            self.err(f"error: internal: {type(err).__name__}: {err} (please report it; --debug shows a traceback)")
        if self.settings.timer:
            self.console.print(f"Run Time: {time.perf_counter() - started:.3f} s", highlight=False)

    def _dispatch(self, text: str, origin: str, base_line: int) -> None:
        if not text:
            return
        if text.startswith("."):
            return self._dot(text)
        body = text.rstrip(";").strip()
        words = body.split()
        head = [w.upper() for w in words[:3]]
        if head[:1] in (["QUIT"], ["EXIT"]):
            self.done = True
            return
        if head[:1] == ["HELP"]:
            self.console.print(HELP, markup=False, highlight=False)
            return
        if head[:2] in (["SHOW", "STREAMS"], ["SHOW", "TABLES"]):
            return self._show_streams()
        if head[:2] in (["SHOW", "QUERIES"], ["SHOW", "PUMPS"]):
            return self._show_pumps()
        if head[:2] == ["SHOW", "CREATE"]:
            rest = [w for w in words[2:] if w.upper() not in ("STREAM", "TABLE", "VIEW", "PUMP")]
            return self._show_create(" ".join(rest))
        if head[:1] in (["DESCRIBE"], ["DESC"]):
            rest = [w for w in words[1:] if w.upper() not in ("STREAM", "TABLE", "VIEW", "EXTENDED")]
            return self._describe(" ".join(rest))
        if head[:1] == ["EXPLAIN"]:
            return self._explain(body[len(words[0]) :].strip(), origin, base_line)
        if head[:1] == ["STOP"]:
            rest = [w for w in words[1:] if w.upper() not in ("PUMP", "QUERY")]
            return self._stop(" ".join(rest))
        if head[:1] == ["DROP"]:
            return self._drop(words[1:])
        return self._statement(body, origin, base_line)

    def _statement(self, body: str, origin: str, base_line: int) -> None:
        from sqlglot import exp

        from engine.sql.dialect import CreatePump, Emit
        from engine.sql.parse import parse_program

        try:
            parsed = [s for s in parse_program(body + ";", None) if not isinstance(s, exp.Semicolon)]
        except SqlError as err:
            raise type(err)(err.message, (err.line or 1) + base_line - 1, err.col, origin, err.hint) from None
        if not parsed:
            return
        stmt = parsed[0]
        if isinstance(stmt, (exp.Query, Emit)):
            return self._live(body, origin, base_line)
        if isinstance(stmt, (CreatePump, exp.Insert)):
            return self._pump(stmt, body, origin, base_line)
        if isinstance(stmt, exp.Create) and (stmt.args.get("kind") or "").upper() in ("TABLE", "STREAM", "VIEW"):
            kind = "view" if (stmt.args.get("kind") or "").upper() == "VIEW" else "stream"
            return self._define(_Entry(kind, _stream_of(stmt), body), bool(stmt.args.get("replace")), origin, base_line)
        self.compile(body, origin, base_line)  # anything else: the planner says what is wrong
        raise DuckstreamError("this statement defines nothing", where=f"{origin}:{base_line}:1")

    def _define(self, entry: _Entry, replace_it: bool, origin: str, base_line: int) -> None:
        key = entry.name.lower()
        old = [i for i, e in enumerate(self.entries) if e.kind != "pump" and e.name.lower() == key]
        if old and replace_it:
            writers = [j.name for j in self.jobs.values() if j.entry.target == key and j.alive]
            if writers:
                raise DuckstreamError(
                    f"pump {writers[0]} writes {entry.name}: stop it before replacing {entry.name}",
                    where=f"{origin}:{base_line}:1",
                    hint=f"STOP PUMP {writers[0]}",
                )
            saved = self.entries
            self.entries = [e for i, e in enumerate(saved) if i != old[0]]
            try:
                self.compile(entry.text, origin, base_line)
            finally:
                self.entries = saved
            self.entries = [entry if i == old[0] else e for i, e in enumerate(saved)]
            self._changed()
            self.console.print(f"{entry.name} replaced", markup=False, highlight=False)
            return
        self.compile(entry.text, origin, base_line)
        self.entries.append(entry)
        self._changed()
        self.console.print(f"{entry.name} defined", markup=False, highlight=False)

    # ---- pumps
    def _pump(self, stmt: Any, body: str, origin: str, base_line: int) -> None:
        from sqlglot import exp

        from engine.sql.dialect import CreatePump

        stopped = False
        if isinstance(stmt, CreatePump):
            ident = stmt.this.this if isinstance(stmt.this, exp.Table) else stmt.this
            quoted = isinstance(ident, exp.Identifier) and ident.quoted
            name = stmt.this.name if quoted else stmt.this.name.upper()
            into = _stream_of(stmt.expression)
            stopped = bool(stmt.args.get("stopped"))
            old = self.jobs.get(name.upper())
            if old is not None and not stmt.args.get("replace"):
                raise DuckstreamError(
                    f"pump {old.name} exists",
                    where=f"{origin}:{base_line}:1",
                    hint="CREATE OR REPLACE PUMP replaces it; DROP PUMP drops it",
                )
        else:
            into = _stream_of(stmt)
            name = into.upper()
            n = 2
            while name.upper() in self.jobs:
                name, n = f"{into.upper()}_{n}", n + 1
            old = None
        key = into.lower()
        if key == ERROR_STREAM:
            raise DuckstreamError(
                "error_stream is the session's error stream: pumps cannot write it", where=f"{origin}:{base_line}:1"
            )
        program = self.compile(body, origin, base_line, writes=key)
        output = next((o for o in program.outputs if o.name.lower() == key), None)
        if output is None:
            raise DuckstreamError(f"the pump writes nothing into {into}", where=f"{origin}:{base_line}:1")
        if old is not None:  # CREATE OR REPLACE PUMP: the old one stops and goes
            self._end_job(old)
            self.entries = [e for e in self.entries if e is not old.entry]
            del self.jobs[old.name.upper()]
        entry = _Entry("pump", name, body, key)
        stream = program.streams[output.stream]
        if key not in self.channels:
            schema = pa.schema([f for f in stream.schema if not f.name.startswith("__")])
            self.channels[key] = _Channel(stream.name, schema, stream.rowtime, CHANNEL_ROWS_KEPT, ROWTIME)
        self.entries.append(entry)
        self._changed()
        job = _Job(name, entry, state="STOPPED")
        self.jobs[name.upper()] = job
        if stopped:
            self.console.print(f"pump {name} defined, STOPPED", markup=False, highlight=False)
            return
        self._start(job, program, output.stream)
        self.console.print(
            f"pump {name} started: it writes {stream.name}; SHOW PUMPS lists it, STOP PUMP {name} stops it",
            markup=False,
            highlight=False,
        )

    def _start(self, job: _Job, program: Program, out_key: str) -> None:
        from connectors import open_sink

        stream = program.streams[out_key]
        channel = self.channels[job.entry.target]
        connector = None
        if stream.connector:
            connector = open_sink(None, stream.name, options=stream.options, where=stream.where)
        sink = _PumpSink(channel, connector, drop_rowtime=program.kda)
        runner = self._runner(program, {out_key: sink}, self._error_feed(program.pumps, job.name))
        runner.keep_rowtime = True  # the channel needs each row's ROWTIME (its time downstream)
        channel.add_writer()
        self.errors.add_writer()

        def work() -> None:
            try:
                runner.run()
                job.state = "STOPPED" if runner.stop_requested else "FINISHED"
            except BaseException as err:
                job.state, job.error = "FAILED", str(err)
            finally:
                channel.remove_writer()
                self.errors.remove_writer()

        job.runner, job.metrics, job.state, job.error = runner, runner.metrics, "RUNNING", None
        job.thread = threading.Thread(target=work, name=f"duckstream-pump-{job.name}", daemon=True)
        job.thread.start()

    def _end_job(self, job: _Job) -> None:
        if job.alive:
            job.runner.request_stop()
            assert job.thread is not None
            job.thread.join(timeout=10)

    # ---- binding and running
    def _bind(self, program: Program) -> dict[str, Any]:
        from connectors import open_source

        bound: dict[str, Any] = {}
        for key in program.sources:
            stream = program.streams[key]
            if key in self.channels:
                bound[key] = _ChannelSource(self.channels[key], stream.name)
            elif key == ERROR_STREAM:
                bound[key] = _ChannelSource(self.errors, stream.name)
            elif key in self.sources:
                bound[key] = open_source(self.sources[key], stream.name, where=f"--source {stream.name}")
            elif stream.connector:
                bound[key] = open_source(None, stream.name, options=stream.options, where=stream.where)
            else:
                raise ConnectorError(
                    f"no source for {stream.name}: start the shell with --source {stream.name}=URI, "
                    f"or write it with a pump",
                    where="input",
                )
        return bound

    def _runner(self, program: Program, sinks: dict[str, Any], on_error: Callable[[pa.Table], None]) -> Any:
        from engine.runtime.loop import Runner, RunOptions
        from engine.runtime.metrics import Metrics

        fields: dict[str, str] = {}
        for key in program.sources:  # --rowtime-from applies to --source streams, not to channels
            given = self.rowtime_from.get(key, self.rowtime_from.get("*"))
            if given and key in self.sources and key not in self.channels and program.streams[key].rowtime:
                fields[key] = given
        options = RunOptions(batch_interval_s=0.1, rowtime_from=fields)
        runner = Runner(program, self._bind(program), sinks, None, options, on_error=on_error)
        runner.metrics = Metrics()
        runner.on_warning = lambda message: self.err(f"warning: {message}")
        return runner

    def _error_feed(self, pumps: dict[str, str], pump: str | None, count: list[int] | None = None) -> Any:
        """A runner's ``on_error``: error rows into ``error_stream``, in KDA's columns."""
        from engine.runtime.kda_errors import kda_errors

        def feed(table: pa.Table) -> None:
            rows = kda_errors(table, pumps)
            if pump is not None:
                names = [p if p is not None else pump for p in rows["PUMP_NAME"].to_pylist()]
                rows = rows.set_column(rows.schema.get_field_index("PUMP_NAME"), "PUMP_NAME", pa.array(names))
            if count is not None:
                count[0] += rows.num_rows
            self.errors.write(rows)

        return feed

    def _live(self, body: str, origin: str, base_line: int) -> None:
        from engine.runtime.metrics import status_line

        program = self.compile(body, origin, base_line)
        output = next(o for o in reversed(program.outputs) if o.name.startswith("result"))
        schema = pa.schema([f for f in program.streams[output.stream].schema if not f.name.startswith("__")])
        if program.kda and ROWTIME in schema.names:  # as run writes it (see engine.runtime.loop.written)
            schema = pa.schema([f for f in schema if f.name != ROWTIME])
        chart, self.settings.chart = self.settings.chart, None  # a chart is for one query
        view: _LiveView | _ChartView = (
            _ChartView(schema, chart, self.console) if chart else _LiveView(schema, self.settings, self.console)
        )
        sink = _MemorySink()
        errors = [0]
        if ERROR_STREAM in program.sources:  # reading error_stream: its own error rows would feed it

            def feed(table: pa.Table) -> None:
                errors[0] += table.num_rows

        else:
            feed = self._error_feed(program.pumps, None, errors)
        runner = self._runner(program, {output.stream: sink}, feed)
        failure: list[BaseException] = []

        def work() -> None:
            try:
                runner.run()
            except BaseException as err:  # reported by the display thread
                failure.append(err)

        thread = threading.Thread(target=work, name="duckstream-repl-query", daemon=True)
        live = None
        if view.live and self.console.is_terminal:
            from rich.live import Live

            live = Live(view.render(""), console=self.console, auto_refresh=False, transient=False)
            live.start()
        stopped = False
        thread.start()
        try:
            while True:
                try:
                    alive = thread.is_alive()
                    view.drain(sink.batches)
                    if live is not None:
                        live.update(view.render(self._status(runner, stopped, alive)), refresh=True)
                    if not alive:
                        break
                    thread.join(REFRESH_S)
                except KeyboardInterrupt:
                    stopped = True
                    runner.request_stop()
        finally:
            if live is not None:
                live.stop()
        view.drain(sink.batches)
        view.finish()
        text = status_line(runner.metrics.snapshot())
        if live is None:
            self.err(f"{'stopped' if stopped else 'done'}: {text}{view.note()}")
        if failure:
            raise failure[0]
        if errors[0]:
            self.err(f"{errors[0]} error rows: .errors or SELECT * FROM error_stream shows them")

    def _status(self, runner: Any, stopped: bool, alive: bool) -> str:
        from engine.runtime.metrics import status_line

        state = "stopping" if stopped and alive else ("stopped" if stopped else ("running" if alive else "done"))
        hint = " (Ctrl-C stops)" if alive and not stopped else ""
        return f"{state}{hint} | {status_line(runner.metrics.snapshot())}"

    # ---- commands
    def _show_streams(self) -> None:
        table = Table("name", "kind", "columns", "event time", box=None, header_style="bold")
        kinds = {e.name.lower(): e.kind for e in self.entries if e.kind != "pump"}
        for name in self.known_names():
            key = name.lower()
            try:
                stream = self._probe(name)
            except DuckstreamError as err:
                table.add_row(escape(name), "?", escape(str(err)), "")
                continue
            pumps = [j.name for j in self.jobs.values() if j.entry.target == key]
            if key == ERROR_STREAM:
                kind = "error stream"
            elif pumps:
                kind = "stream (pump " + ", ".join(pumps) + ")"
            elif kinds.get(key) == "view":
                kind = "view"
            elif key in self.sources and key not in kinds:
                kind = "source (schema discovered)"
            else:
                kind = "source" if key in self.sources or stream.connector else "stream"
            columns = [f for f in stream.schema if not f.name.startswith("__")]
            table.add_row(escape(stream.name), kind, str(len(columns)), escape(stream.time_column or ""))
        self.console.print(table)

    def _describe(self, name: str) -> None:
        from engine.formats.types import sql_type_name

        stream = self._probe(name)
        table = Table("column", "type", "nullable", box=None, header_style="bold")
        for f in stream.schema:
            if f.name.startswith("__"):
                continue
            table.add_row(escape(f.name), sql_type_name(f.type), "yes" if f.nullable else "no")
        self.console.print(table)
        if stream.time_column:
            wm = f" - {stream.delay_us / 1e6:g} s" if stream.delay_us else ""
            self.console.print(f"event time: {stream.time_column} (watermark {stream.time_column}{wm})", markup=False)

    def _show_create(self, name: str) -> None:
        from engine.formats.types import sql_type_name

        key = name.strip().strip('"').lower()
        texts = [e.text for e in self.entries if e.name.lower() == key]
        if texts:
            self.console.print("\n".join(t + ";" for t in texts), markup=False, highlight=False)
            return
        stream = self._probe(name)
        cols = ",\n".join(
            f"  {f.name} {sql_type_name(f.type)}"
            for f in stream.schema
            if not f.name.startswith("__") and f.name not in (ROWTIME, ARRIVAL_TIME)
        )
        what = "the error rows of pumps and queries" if key == ERROR_STREAM else f"--source {stream.name}"
        self.console.print(
            f"-- schema discovered from {what}\nCREATE STREAM {stream.name} (\n{cols}\n);",
            markup=False,
            highlight=False,
        )

    def _explain(self, query: str, origin: str, base_line: int) -> None:
        from engine.plan.explain import describe, render

        if not query:
            raise DuckstreamError("EXPLAIN needs a query: EXPLAIN SELECT ...", where="input")
        program = self.compile(query, origin, base_line)
        if self.console.is_terminal:
            self.console.print(render(program))
        else:
            self.console.print(describe(program), markup=False, highlight=False)

    def _show_pumps(self) -> None:
        from engine.runtime.metrics import status_line

        if not self.jobs:
            self.console.print("no pumps (CREATE PUMP p AS INSERT INTO s SELECT STREAM ..., or INSERT INTO)")
            return
        table = Table("name", "state", "into", "status", "statement", box=None, header_style="bold")
        for job in self.jobs.values():
            if job.error:
                status = job.error
            elif job.metrics is not None:
                status = status_line(job.metrics.snapshot())
            else:
                status = "not started"
            into = self.channels[job.entry.target].name if job.entry.target in self.channels else job.entry.target
            statement = " ".join(job.entry.text.split())[:60]
            table.add_row(escape(job.name), job.state, escape(into), escape(status), escape(statement))
        self.console.print(table)

    def _job(self, name: str, where: str) -> _Job:
        job = self.jobs.get(name.strip().strip('"').upper())
        if job is None:
            raise DuckstreamError(f"no pump called {name.strip()}", where=where, hint="SHOW PUMPS lists them")
        return job

    def _stop(self, name: str) -> None:
        job = self._job(name, "STOP")
        if not job.alive:
            self.console.print(f"{job.name} is not running ({job.state})", markup=False)
            return
        if not self._confirm(f"stop pump {job.name}?"):
            return
        self._end_job(job)
        self.console.print(f"{job.name} stopped", markup=False)

    def _drop(self, words: list[str]) -> None:
        kinds = {w.upper() for w in words} & {"STREAM", "TABLE", "VIEW", "PUMP"}
        names = [w for w in words if w.upper() not in ("STREAM", "TABLE", "VIEW", "PUMP", "IF", "EXISTS")]
        if len(names) != 1:
            raise DuckstreamError("write DROP STREAM name or DROP PUMP name", where="DROP")
        name = names[0].strip('"')
        job = self.jobs.get(name.upper()) if kinds <= {"PUMP"} else None
        if job is None and kinds == {"PUMP"}:
            self._job(name, "DROP")  # says there is no such pump
        if job is not None:
            if not self._confirm(f"drop pump {job.name}?"):
                return
            self._end_job(job)
            del self.jobs[job.name.upper()]
            self.entries = [e for e in self.entries if e is not job.entry]
            if not any(e.kind == "pump" and e.target == job.entry.target for e in self.entries):
                self.channels.pop(job.entry.target, None)
            self._changed()
            self.console.print(f"{job.name} dropped", markup=False)
            return
        keep = [e for e in self.entries if e.kind == "pump" or e.name.lower() != name.lower()]
        if len(keep) == len(self.entries):
            raise DuckstreamError(f"no stream called {name} was created in this session", where="DROP")
        if not self._confirm(f"drop {name}?"):
            return
        saved, self.entries = self.entries, keep
        try:
            if any(e.kind != "pump" for e in keep):
                self.compile(None)
            for entry in keep:
                if entry.kind == "pump":
                    self.compile(entry.text, writes=entry.target)
        except SqlError as err:
            self.entries = saved
            raise DuckstreamError(f"cannot drop {name}: {err.message}", where="DROP") from None
        self._changed()
        self.console.print(f"{name} dropped", markup=False)

    def _confirm(self, question: str) -> bool:
        if self.yes:
            return True
        if not self.interactive:
            raise DuckstreamError(f"{question.rstrip('?')} needs confirmation: pass --yes in scripts", where="input")
        answer = self.confirm(question)
        if not answer:
            self.console.print("cancelled", markup=False)
        return answer

    def _dot(self, text: str) -> None:
        parts = text.split(None, 1)
        command, arg = parts[0].lower(), (parts[1].strip() if len(parts) > 1 else "")
        if command in (".quit", ".exit", ".q"):
            self.done = True
        elif command == ".help":
            self.console.print(HELP, markup=False, highlight=False)
        elif command == ".mode":
            if arg not in MODES:
                raise DuckstreamError(f"unknown mode {arg!r} ({', '.join(MODES)})", where=".mode")
            self.settings.mode = arg
        elif command == ".chart":
            self._chart(arg)
        elif command == ".maxrows":
            if not arg.isdigit() or int(arg) < 1:
                raise DuckstreamError(f"{arg!r} is not a positive number", where=".maxrows")
            self.settings.maxrows = int(arg)
        elif command == ".timer":
            if arg.lower() not in ("on", "off"):
                raise DuckstreamError("write .timer on or .timer off", where=".timer")
            self.settings.timer = arg.lower() == "on"
        elif command == ".read":
            self.read_file(Path(arg))
        elif command == ".errors":
            if arg and not arg.isdigit():
                raise DuckstreamError(f"{arg!r} is not a number of rows", where=".errors")
            self._errors(int(arg) if arg else 10)
        else:
            raise DuckstreamError(f"unknown command {command}", where="input", hint=".help lists them")

    def _chart(self, arg: str) -> None:
        if not arg:
            spec = self.settings.chart
            if spec is None:
                self.console.print("no chart: .chart COLUMN [BY KEY], then a SELECT", markup=False)
            else:
                by = f" BY {spec.by}" if spec.by else ""
                self.console.print(f"the next query draws {spec.column}{by}", markup=False)
            return
        if arg.lower() == "off":
            self.settings.chart = None
            self.console.print("chart off", markup=False)
            return
        m = re.fullmatch(r'("[^"]+"|[\w$]+)(?:\s+BY\s+("[^"]+"|[\w$]+))?', arg, re.IGNORECASE)
        if not m:
            col = len(".chart ") + 1
            raise DuckstreamError(f"cannot read {arg!r}: write .chart COLUMN [BY KEY]", where=f".chart:1:{col}")
        self.settings.chart = ChartSpec(m.group(1).strip('"'), m.group(2).strip('"') if m.group(2) else None)
        by = f" by {self.settings.chart.by}" if self.settings.chart.by else ""
        self.console.print(f"the next query draws {self.settings.chart.column}{by} (Ctrl-C stops it)", markup=False)

    def _errors(self, n: int) -> None:
        rows = self.errors.recent(n)
        if rows is None or not rows.num_rows:
            self.console.print("no error rows yet", markup=False)
            return
        self.console.file.write(_json_lines(rows))
        self.console.file.flush()

    def read_file(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise DuckstreamError(f"cannot read {path}: {err.strerror or err}", where=".read") from None
        self.run_script(text, str(path))

    def run_script(self, text: str, origin: str) -> None:
        statements, rest = split_statements(text)
        if rest.strip():
            statements.append((text[: len(text) - len(rest)].count("\n") + 1, rest.strip()))
        for line, statement in statements:
            if self.done:
                return
            self.execute(statement, origin, line)

    def close(self, wait: bool = False) -> None:
        """Stop the background pumps (after they finish their input, with ``wait``; Ctrl-C stops them)."""
        running = [job for job in self.jobs.values() if job.alive]
        if wait and running:
            self.err(f"waiting for {', '.join(j.name for j in running)} to finish (Ctrl-C stops)")
            try:
                for job in running:
                    while job.alive:
                        assert job.thread is not None
                        job.thread.join(REFRESH_S)
            except KeyboardInterrupt:
                pass
        for job in running:
            job.runner.request_stop()
        for job in running:
            self._end_job(job)
        for job in running:
            if job.error:
                self.failed = True
                self.err(f"error: {job.name}: {job.error}")


class _LiveView:
    """What a live query shows: the latest rows (table), the latest changes with their op
    (changes), or every row as it comes (json, csv)."""

    live = True

    def __init__(self, schema: pa.Schema, settings: Settings, console: Console) -> None:
        self.schema, self.settings, self.console = schema, settings, console
        self.mode = settings.mode
        self.live = self.mode in ("table", "changes")
        self.rows: deque[list[str]] = deque(maxlen=settings.maxrows)
        self.total = 0
        self.ops: Counter[str] = Counter()
        self.header_done = False
        self.terminal = console.is_terminal
        self.has_op = bool(schema.names) and schema.names[0] == "op" and pa.types.is_string(schema.field(0).type)

    def drain(self, batches: queue.Queue[pa.Table]) -> None:
        while True:
            try:
                batch = batches.get_nowait()
            except queue.Empty:
                return
            batch = batch.select([f.name for f in self.schema])
            self.total += batch.num_rows
            if self.mode == "table":
                self.rows.extend(_cells(batch))
            elif self.mode == "changes":
                if self.has_op:
                    ops = [OP_SYMBOLS.get(v or "", v or "?") for v in batch.column(0).to_pylist()]
                    batch = batch.drop_columns(["op"])
                else:
                    ops = ["+"] * batch.num_rows
                self.ops.update(ops)
                self.rows.extend([op, *cells] for op, cells in zip(ops, _cells(batch)))
            elif self.mode == "json":
                self._write(_json_lines(batch))
            else:
                self._write(_csv_lines(batch, header=not self.header_done))
                self.header_done = True

    def _write(self, text: str) -> None:
        self.console.file.write(text)
        self.console.file.flush()

    def table(self) -> Table:
        names = [f.name for f in self.schema]
        if self.mode == "changes":
            names = ["op", *(names[1:] if self.has_op else names)]
        table = Table(*[escape(n) for n in names], header_style="bold")
        for row in self.rows:
            table.add_row(*row)
        return table

    def note(self) -> str:
        if self.mode != "changes":
            return ""
        return " | changes " + " ".join(f"{op} {self.ops[op]:,}" for op in ("+", "U", "-") if self.ops[op])

    def render(self, status: str) -> RenderableType:
        what = "changes" if self.mode == "changes" else "rows"
        if self.total > len(self.rows):
            shown = f"last {len(self.rows)} of {self.total:,} {what}"
        else:
            shown = f"{self.total} {what}"
        return Group(self.table(), Text(f"{shown} | {status}{self.note()}", style="dim"))

    def finish(self) -> None:
        if self.live and not self.terminal:
            self.console.print(self.table())
            if self.total > len(self.rows):
                self.console.print(f"(last {len(self.rows)} of {self.total:,}; .maxrows N shows more)")
        elif self.mode == "csv" and not self.header_done:
            self._write(_csv_lines(pa.table({f.name: pa.array([], f.type) for f in self.schema}), header=True))


class _ChartView:
    """A live query drawn as a chart (``.chart COLUMN [BY KEY]``): COLUMN against ``window_start``
    (or, without one, the result's first TIMESTAMP column), one line per KEY value."""

    live = True

    def __init__(self, schema: pa.Schema, spec: ChartSpec, console: Console) -> None:
        from engine.chart import LineChart

        self.console = console

        def column(name: str, what: str) -> str:
            found = next((f.name for f in schema if f.name == name), None)
            found = found or next((f.name for f in schema if f.name.lower() == name.lower()), None)
            if found is None:
                shown = ", ".join(f.name for f in schema)
                raise DuckstreamError(f'the query has no column "{name}" ({what}; it has {shown})', where=".chart")
            return found

        self.y = column(spec.column, "to draw")
        kind = schema.field(self.y).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
            raise DuckstreamError(f'column "{self.y}" is not a number, it cannot be drawn', where=".chart")
        self.key = column(spec.by, "to split lines by") if spec.by else None
        times = [f.name for f in schema if pa.types.is_timestamp(f.type)]
        self.x = next((n for n in times if n.lower() == "window_start"), times[0] if times else None)
        if self.x is None:
            raise DuckstreamError(
                "the query has no window_start (or other TIMESTAMP) column to draw against", where=".chart"
            )
        self.has_op = bool(schema.names) and schema.names[0] == "op"
        title = f"{self.y} by {self.key}" if self.key else self.y
        height = max(5, min(14, console.size.height - 12))
        self.chart = LineChart(title, self.x, height=height)
        self.total = 0

    def drain(self, batches: queue.Queue[pa.Table]) -> None:
        while True:
            try:
                batch = batches.get_nowait()
            except queue.Empty:
                return
            self.total += batch.num_rows
            xs = batch[self.x].cast(pa.int64()).to_pylist()
            ys = batch[self.y].to_pylist()
            keys = batch[self.key].to_pylist() if self.key else [self.y] * batch.num_rows
            ops = batch["op"].to_pylist() if self.has_op else [None] * batch.num_rows
            for x, y, k, op in zip(xs, ys, keys, ops):
                if x is None:
                    continue
                if op == "delete" or y is None:
                    self.chart.remove(str(k), x)
                else:
                    self.chart.put(str(k), x, float(y))

    def note(self) -> str:
        drawn = len(self.chart.series)
        if self.chart.dropped:
            return f" | chart: the first {drawn} of {drawn + len(self.chart.dropped)} series"
        return f" | chart: {self.chart.points} points"

    def render(self, status: str) -> RenderableType:
        return Group(self.chart, Text(f"{self.total:,} rows | {status}{self.note()}", style="dim"))

    def finish(self) -> None:
        if not self.console.is_terminal:
            self.console.print(self.chart)


# ---------------------------------------------------------------------------------------- shell
_FUNCTIONS: list[set[str]] = []


def _functions() -> set[str]:
    if not _FUNCTIONS:
        import duckdb

        con = duckdb.connect()
        names = {r[0] for r in con.sql("SELECT DISTINCT function_name FROM duckdb_functions()").fetchall()}
        _FUNCTIONS.append({n for n in names if n.isidentifier() and not n.startswith("__")})
    return _FUNCTIONS[0]


def history_path() -> Path:
    """Where the shell keeps its history: ``$DUCKSTREAM_HISTORY`` or ``~/.duckstream_history``."""
    given = os.environ.get("DUCKSTREAM_HISTORY")
    return Path(given).expanduser() if given else Path.home() / ".duckstream_history"


def interactive_loop(session: Session) -> None:
    """The prompt_toolkit loop: read a statement (or several), run them, until .quit or Ctrl-D."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import Completer, Completion
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.lexers import PygmentsLexer
    from prompt_toolkit.shortcuts import confirm
    from pygments.lexers.sql import SqlLexer

    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        history: Any = FileHistory(str(path))
    except OSError:
        from prompt_toolkit.history import InMemoryHistory

        history = InMemoryHistory()
    prompt: PromptSession[str] = PromptSession(history=history)

    @Condition
    def more() -> bool:
        return not is_complete(prompt.default_buffer.text)

    from engine.completion import complete

    catalog = session.catalog()

    class SqlCompleter(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Any:
            word, candidates = complete(document.text_before_cursor, document.text_after_cursor, catalog)
            for candidate in candidates:
                yield Completion(candidate, start_position=-len(word))

    completer = SqlCompleter()
    session.confirm = lambda question: confirm(f"{question} ")
    session.console.print("duckstream repl: statements end with ';'. .help for help, .quit or Ctrl-D to leave.")
    if session.source_names:
        session.console.print("streams: " + ", ".join(session.source_names.values()), markup=False)
    while not session.done:
        try:
            text = prompt.prompt(
                PROMPT,
                multiline=more,
                lexer=PygmentsLexer(SqlLexer),
                completer=completer,
                complete_while_typing=False,
                prompt_continuation=lambda width, line_number, wrap_count: CONTINUATION[-width:].rjust(width),
            )
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        statements, rest = split_statements(text)
        if rest.strip():
            statements.append((text[: len(text) - len(rest)].count("\n") + 1, rest.strip()))
        for line, statement in statements:
            if session.done:
                break
            session.execute(statement, "input", line)


def main(
    sources: Iterable[str] = (),
    execute: str | None = None,
    file: Path | None = None,
    yes: bool = False,
    debug: bool = False,
    rowtime_from: Iterable[str] = (),
) -> int:
    """Run the shell; returns the exit code (2 if a statement failed in a script, else 0).

    Raises:
        ConnectorError: for a --source given twice, or a --rowtime-from naming no --source.
    """
    named: dict[str, str] = {}
    unnamed: list[str] = []
    for value in sources:
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$", value)
        if m:
            if m.group(1).lower() in {k.lower() for k in named}:
                raise ConnectorError(f"--source {m.group(1)} is given twice", where="--source")
            named[m.group(1)] = m.group(2)
        else:
            unnamed.append(value)
    for n, uri in enumerate(unnamed, start=1):
        named[f"SOURCE_SQL_STREAM_{n:03d}"] = uri
    from engine.runtime.rowtime import rowtime_fields

    sources = {k.lower(): k for k in named}
    fields = rowtime_fields(rowtime_from, sources, "there is no --source to take ROWTIME from")
    scripted = execute is not None or file is not None or not sys.stdin.isatty()
    console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    err_console = Console(stderr=True, highlight=False, soft_wrap=True)

    def err(line: str) -> None:
        if err_console.is_terminal:
            head, _, rest = line.partition(":")
            style = "bold red" if head == "error" else "yellow"
            err_console.print(f"[{style}]{escape(head)}:[/]{escape(rest)}")
        else:
            print(line, file=sys.stderr, flush=True)

    session = Session(named, console, err, interactive=not scripted, yes=yes, debug=debug, rowtime_from=fields)
    try:
        if file is not None:
            session.execute(f".read {file}")
        if execute is not None:
            session.run_script(execute, "-e")
        if not scripted:
            interactive_loop(session)
        elif execute is None and file is None:
            session.run_script(sys.stdin.read(), "stdin")
    finally:
        session.close(wait=scripted)
    return 2 if scripted and session.failed else 0


__all__ = ["Session", "history_path", "is_complete", "main", "split_statements"]
