"""``duckstream repl``: an interactive SQL shell over live streams.

A session keeps the program text of the statements entered so far (``CREATE TABLE/STREAM``,
``CREATE VIEW``, ``INSERT INTO``) and compiles it again, plus the new statement, on every
statement: the planner stays the only judge of what a program means. A bare ``SELECT`` runs as a
*live query*: a ``Runner`` over freshly opened sources in a background thread, whose result rows
land in an in-memory sink that the main thread shows (a rich ``Live`` table with a status line, or
JSON/CSV lines), until the input ends or Ctrl-C stops that query (never the shell). An ``INSERT
INTO`` a table with a connector starts a background *pump* (``SHOW QUERIES``, ``STOP``).

``--source URI`` without a name binds the stream ``SOURCE_SQL_STREAM_001`` (KDA's name for an
application's input); its schema is discovered from the source, as ``run`` does for a stream a
program reads without declaring it.

Interactive input (a terminal) goes through prompt_toolkit: multi-line statements ended by ``;``,
persistent history (``~/.duckstream_history`` or ``$DUCKSTREAM_HISTORY``), SQL highlighting and
completion of keywords, DuckDB functions, streams and columns. Otherwise (``-e``, ``-f``, piped
stdin) statements are read and run one after another without prompt_toolkit.

Every ``DuckstreamError`` prints one line, ``error: <where>: <message>``, and the shell goes on.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from engine.errors import ConnectorError, DuckstreamError, SqlError
from engine.plan.logical import Program, StreamDef

DEFAULT_SOURCE = "SOURCE_SQL_STREAM_001"
SAMPLE_ROWS = 200
ERROR_ROWS_KEPT = 100
REFRESH_S = 0.125
PROMPT = "duckstream> "
CONTINUATION = "        -> "
NOTHING = "the program produces nothing"  # the planner's message for a program without outputs

HELP = """\
Statements end with ';' and may span lines. Dot commands take no ';'.

  CREATE STREAM|TABLE name (...) [WITH (...)];  declare a stream (fed by --source NAME=URI or its connector)
  CREATE VIEW name AS SELECT ...;            a named intermediate stream
  INSERT INTO table SELECT ...;              a pump: runs in the background if the table has a connector
  SELECT ...;                                a live query: rows appear as windows close; Ctrl-C stops it
  SHOW STREAMS;  SHOW QUERIES;  SHOW PUMPS;  DESCRIBE name;  SHOW CREATE name;  EXPLAIN SELECT ...;
  STOP name;  DROP STREAM|VIEW|TABLE name;   (asks for confirmation; --yes skips it)

  .mode table|json|csv   how a live query shows its rows
  .maxrows N             rows kept on screen in table mode (default 20)
  .timer on|off          print how long each statement took
  .read FILE             run the statements of a file
  .errors [N]            the last error rows (bad records, late rows) of the last query
  .help                  this text
  .quit                  leave (also Ctrl-D)
"""

KEYWORDS = (
    "SELECT FROM WHERE GROUP BY HAVING ORDER LIMIT AS AND OR NOT IN IS NULL LIKE BETWEEN CASE WHEN THEN ELSE END "
    "DISTINCT UNION ALL JOIN LEFT RIGHT INNER OUTER ON USING WITH INSERT INTO CREATE OR REPLACE STREAM TABLE VIEW "
    "PUMP WATERMARK FOR INTERVAL SECOND MINUTE HOUR DAY MILLISECOND TIMESTAMP VARCHAR INT INTEGER BIGINT DOUBLE "
    "REAL FLOAT DECIMAL BOOLEAN DATE TIME BYTES EMIT CHANGES FINAL TUMBLE HOP CUMULATE SESSION DESCRIPTOR "
    "PARTITION window_start window_end window_time SHOW STREAMS QUERIES PUMPS DESCRIBE EXPLAIN STOP DROP CAST"
).split()
DOT_COMMANDS = (".mode", ".maxrows", ".timer", ".read", ".errors", ".help", ".quit", ".exit")


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
class Settings:
    mode: str = "table"  # table | json | csv
    maxrows: int = 20
    timer: bool = False


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
    from connectors.stdio import _display_column

    columns = [_display_column(batch.column(i)) for i in range(batch.num_columns)]
    return [list(row) for row in zip(*columns)] if columns else []


def _json_lines(batch: pa.Table) -> str:
    from engine.formats.encode import to_json_lines

    return to_json_lines(batch).decode("utf-8")


def _csv_lines(batch: pa.Table, header: bool) -> str:
    from engine.formats.encode import to_csv

    return to_csv(batch, header=header).decode("utf-8")


@dataclass
class _Job:
    """A background pump: an INSERT INTO a table with a connector, running until its input ends."""

    name: str
    statement: str
    runner: Any
    thread: threading.Thread
    metrics: Any
    state: str = "RUNNING"
    error: str | None = None
    started: float = field(default_factory=time.monotonic)


# ---------------------------------------------------------------------------------------- session
class Session:
    """What the shell knows: the program so far, the sources bound, settings, background pumps."""

    def __init__(
        self,
        sources: dict[str, str],
        console: Console,
        err: Callable[[str], None],
        interactive: bool,
        yes: bool = False,
        debug: bool = False,
    ) -> None:
        self.sources = {k.lower(): v for k, v in sources.items()}  # stream key -> URI
        self.source_names = {k.lower(): k for k in sources}
        self.console, self.err, self.interactive, self.yes, self.debug = console, err, interactive, yes, debug
        self.statements: list[tuple[str, str]] = []  # (defined name or "", statement text)
        self.schemas: dict[str, pa.Schema] = {}  # discovered source schemas
        self.settings = Settings()
        self.jobs: dict[str, _Job] = {}
        self.last_errors: deque[dict[str, Any]] = deque(maxlen=ERROR_ROWS_KEPT)
        self.failed = False
        self.done = False
        self.confirm: Callable[[str], bool] = lambda question: self.yes

    # ---- program text and compilation
    def _text(self) -> str:
        return "".join(text + ";\n" for _, text in self.statements)

    def _resolve(self, name: str) -> pa.Schema | None:
        key = name.lower()
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

    def compile(self, statement: str | None, origin: str = "input", base_line: int = 1) -> Program:
        """The session's program plus ``statement``; errors in it name ``origin:line:col``."""
        from engine.plan.planner import compile_program

        prior = self._text()
        offset = prior.count("\n")
        text = prior + (statement + ";\n" if statement else "")
        try:
            return compile_program(text, None, self._resolve)
        except SqlError as err:
            if err.line is not None and err.line > offset:
                raise type(err)(err.message, err.line - offset + base_line - 1, err.col, origin, err.hint) from None
            raise

    def _probe(self, name: str) -> StreamDef:
        """The stream called ``name`` as the session sees it (declared, a view, or a source)."""
        key = name.strip().strip('"').lower()
        if not key:
            raise DuckstreamError("name a stream", where="input")
        quoted = '"' + name.strip().strip('"').replace('"', '""') + '"'
        try:
            program = self.compile(f"SELECT * FROM {quoted} WHERE false")
        except SqlError as err:
            if "unknown" in err.message.lower() or "no such" in err.message.lower():
                raise DuckstreamError(f"no stream called {name.strip()}", where="input") from None
            raise
        return program.streams[key]

    def known_names(self) -> list[str]:
        """Streams the session can read: declared ones, views, INSERT targets and bound sources."""
        names: dict[str, str] = {}
        for name, _ in self.statements:
            if name:
                names.setdefault(name.lower(), name)
        for key, name in self.source_names.items():
            names.setdefault(key, name)
        return list(names.values())

    def columns(self) -> list[str]:
        cols: list[str] = []
        for key in self.sources:
            if key in self.schemas:
                cols += self.schemas[key].names
        return cols

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
            return self._show_queries()
        if head[:2] == ["SHOW", "CREATE"]:
            rest = [w for w in words[2:] if w.upper() not in ("STREAM", "TABLE", "VIEW")]
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

        from engine.sql.dialect import Emit
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
        name = ""
        if isinstance(stmt, exp.Create):
            target = stmt.this.this if isinstance(stmt.this, exp.Schema) else stmt.this
            name = target.name if target is not None else ""
        elif isinstance(stmt, exp.Insert):
            target = stmt.this.this if isinstance(stmt.this, exp.Schema) else stmt.this
            name = ""
            into = target.name if target is not None else ""
        try:
            program = self.compile(body, origin, base_line)
        except SqlError as err:
            if NOTHING not in err.message:
                raise
            program = None
        self.statements.append((name, body))
        if isinstance(stmt, exp.Insert) and program is not None:
            stream = program.streams.get(into.lower())
            if stream is not None and stream.connector:
                self._start_pump(program, into, body)
                return
            self.console.print(
                f"pump into {into} defined: it runs whenever a query reads {into}", markup=False, highlight=False
            )
            return
        if name:
            self.console.print(f"{name} defined", markup=False, highlight=False)

    # ---- binding and running
    def _bind(self, program: Program) -> dict[str, Any]:
        from connectors import open_source

        bound: dict[str, Any] = {}
        for key in program.sources:
            stream = program.streams[key]
            if key in self.sources:
                bound[key] = open_source(self.sources[key], stream.name, where=f"--source {stream.name}")
            elif stream.connector:
                bound[key] = open_source(None, stream.name, options=stream.options, where=stream.where)
            else:
                raise ConnectorError(
                    f"no source for {stream.name}: start the shell with --source {stream.name}=URI", where="input"
                )
        return bound

    def _runner(self, program: Program, sinks: dict[str, Any], on_error: Callable[[pa.Table], None]) -> Any:
        from engine.runtime.loop import Runner, RunOptions
        from engine.runtime.metrics import Metrics

        runner = Runner(program, self._bind(program), sinks, None, RunOptions(batch_interval_s=0.1), on_error=on_error)
        runner.metrics = Metrics()
        runner.on_warning = lambda message: self.err(f"warning: {message}")
        return runner

    def _keep_errors(self, table: pa.Table) -> None:
        for row in table.slice(max(0, table.num_rows - ERROR_ROWS_KEPT)).to_pylist():
            payload = row.get("payload")
            if isinstance(payload, bytes):
                row["payload"] = payload.decode("utf-8", "replace")
            self.last_errors.append(row)

    def _live(self, body: str, origin: str, base_line: int) -> None:
        from engine.runtime.metrics import status_line

        program = self.compile(body, origin, base_line)
        output = next(o for o in reversed(program.outputs) if o.name.startswith("result"))
        schema = pa.schema([f for f in program.streams[output.stream].schema if not f.name.startswith("__")])
        sink = _MemorySink()
        self.last_errors.clear()
        runner = self._runner(program, {output.stream: sink}, self._keep_errors)
        failure: list[BaseException] = []

        def work() -> None:
            try:
                runner.run()
            except BaseException as err:  # reported by the display thread
                failure.append(err)

        thread = threading.Thread(target=work, name="duckstream-repl-query", daemon=True)
        view = _LiveView(schema, self.settings, self.console)
        live_table = self.settings.mode == "table" and self.console.is_terminal
        stopped = False
        live = None
        if live_table:
            from rich.live import Live

            live = Live(view.render(""), console=self.console, auto_refresh=False, transient=False)
            live.start()
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
        note = "stopped" if stopped else "done"
        if live is None:
            self.err(f"{note}: {text}")
        if failure:
            err = failure[0]
            if isinstance(err, DuckstreamError):
                raise err
            raise err
        if self.last_errors:
            self.err(f"{len(self.last_errors)} error rows kept: .errors shows them")

    def _status(self, runner: Any, stopped: bool, alive: bool) -> str:
        from engine.runtime.metrics import status_line

        state = "stopping" if stopped and alive else ("stopped" if stopped else ("running" if alive else "done"))
        hint = " (Ctrl-C stops)" if alive and not stopped else ""
        return f"{state}{hint} | {status_line(runner.metrics.snapshot())}"

    def _start_pump(self, program: Program, into: str, body: str) -> None:
        from connectors import open_sink

        target = next(o for o in program.outputs if o.name.lower() == into.lower())
        stream = program.streams[target.stream]
        sink = open_sink(None, target.name, options=stream.options, where=stream.where)
        runner = self._runner(program, {target.stream: sink}, self._keep_errors)
        name = into.upper() if into.upper() not in self.jobs else f"{into.upper()}_{len(self.jobs) + 1}"
        job = _Job(name, body, runner, threading.Thread(), runner.metrics)

        def work() -> None:
            try:
                runner.run()
                job.state = "STOPPED" if runner.stop_requested else "FINISHED"
            except BaseException as err:
                job.state, job.error = "FAILED", str(err)

        job.thread = threading.Thread(target=work, name=f"duckstream-pump-{name}", daemon=True)
        self.jobs[name] = job
        job.thread.start()
        self.console.print(f"pump {name} started: SHOW QUERIES lists it, STOP {name} stops it", markup=False)

    # ---- commands
    def _show_streams(self) -> None:
        table = Table("name", "kind", "columns", "event time", box=None, header_style="bold")
        declared = {name.lower() for name, _ in self.statements if name}
        for name in self.known_names():
            try:
                stream = self._probe(name)
            except DuckstreamError as err:
                table.add_row(escape(name), "?", escape(str(err)), "")
                continue
            if name.lower() in self.sources and name.lower() not in declared:
                kind = "source (schema discovered)"
            elif stream.derived:
                created = any(t.upper().startswith("CREATE") for n, t in self.statements if n == name)
                kind = "view" if created else "stream"
            else:
                kind = "source" if name.lower() in self.sources or stream.connector else "table"
            table.add_row(escape(stream.name), kind, str(len(stream.schema)), escape(stream.time_column or ""))
        if not table.row_count:
            self.console.print("no streams yet: CREATE STREAM ..., or start with --source URI", markup=False)
            return
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
        texts = [text for n, text in self.statements if n.lower() == key]
        if texts:
            self.console.print("\n".join(t + ";" for t in texts), markup=False, highlight=False)
            return
        stream = self._probe(name)
        cols = ",\n".join(f"  {f.name} {sql_type_name(f.type)}" for f in stream.schema if not f.name.startswith("__"))
        self.console.print(
            f"-- schema discovered from --source {stream.name}\nCREATE STREAM {stream.name} (\n{cols}\n);",
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

    def _show_queries(self) -> None:
        from engine.runtime.metrics import status_line

        if not self.jobs:
            self.console.print("no background queries (an INSERT INTO a table with a connector starts one)")
            return
        table = Table("name", "state", "status", "statement", box=None, header_style="bold")
        for job in self.jobs.values():
            if job.state == "RUNNING" and not job.thread.is_alive():
                job.state = "FINISHED"
            status = job.error if job.error else status_line(job.metrics.snapshot())
            table.add_row(escape(job.name), job.state, escape(status), escape(" ".join(job.statement.split())[:60]))
        self.console.print(table)

    def _stop(self, name: str) -> None:
        job = self.jobs.get(name.strip().upper())
        if job is None:
            raise DuckstreamError(f"no background query called {name.strip()}", where="STOP", hint="SHOW QUERIES")
        if job.thread.is_alive():
            if not self._confirm(f"stop {job.name}?"):
                return
            job.runner.request_stop()
            job.thread.join(timeout=10)
        self.console.print(f"{job.name} stopped", markup=False)

    def _drop(self, words: list[str]) -> None:
        names = [w for w in words if w.upper() not in ("STREAM", "TABLE", "VIEW", "PUMP", "IF", "EXISTS")]
        if len(names) != 1:
            raise DuckstreamError("write DROP STREAM name", where="DROP")
        name = names[0].strip('"')
        job = self.jobs.get(name.upper())
        if job is not None:
            if not self._confirm(f"drop pump {job.name}?"):
                return
            job.runner.request_stop()
            job.thread.join(timeout=10)
            del self.jobs[job.name]
            self.statements = [(n, t) for n, t in self.statements if t != job.statement]
            self.console.print(f"{job.name} dropped", markup=False)
            return
        keep = [(n, t) for n, t in self.statements if n.lower() != name.lower()]
        if len(keep) == len(self.statements):
            raise DuckstreamError(f"no stream called {name} was created in this session", where="DROP")
        if not self._confirm(f"drop {name}?"):
            return
        saved, self.statements = self.statements, keep
        try:
            if keep:
                self.compile(None)
        except SqlError as err:
            if NOTHING not in err.message:
                self.statements = saved
                raise DuckstreamError(f"cannot drop {name}: {err.message}", where="DROP") from None
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
            if arg not in ("table", "json", "csv"):
                raise DuckstreamError(f"unknown mode {arg!r} (table, json or csv)", where=".mode")
            self.settings.mode = arg
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
            self._errors(int(arg) if arg.isdigit() else 10)
        else:
            raise DuckstreamError(f"unknown command {command}", where="input", hint=".help lists them")

    def _errors(self, n: int) -> None:
        rows = list(self.last_errors)[-n:]
        if not rows:
            self.console.print("no error rows in the last query", markup=False)
            return
        for row in rows:
            self.console.print(json.dumps(row, default=str), markup=False, highlight=False)

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
        running = [job for job in self.jobs.values() if job.thread.is_alive()]
        if wait and running:
            self.err(f"waiting for {', '.join(j.name for j in running)} to finish (Ctrl-C stops)")
            try:
                for job in running:
                    while job.thread.is_alive():
                        job.thread.join(REFRESH_S)
            except KeyboardInterrupt:
                pass
        for job in running:
            job.runner.request_stop()
        for job in running:
            job.thread.join(timeout=10)
        for job in running:
            if job.error:
                self.failed = True
                self.err(f"error: {job.name}: {job.error}")


class _LiveView:
    """What a live query shows: the latest rows (table mode) or every row as it comes (json, csv)."""

    def __init__(self, schema: pa.Schema, settings: Settings, console: Console) -> None:
        self.schema, self.settings, self.console = schema, settings, console
        self.rows: deque[list[str]] = deque(maxlen=settings.maxrows)
        self.total = 0
        self.header_done = False
        self.terminal = console.is_terminal

    def drain(self, batches: queue.Queue[pa.Table]) -> None:
        while True:
            try:
                batch = batches.get_nowait()
            except queue.Empty:
                return
            batch = batch.select([f.name for f in self.schema])
            self.total += batch.num_rows
            if self.settings.mode == "table":
                self.rows.extend(_cells(batch))
            elif self.settings.mode == "json":
                self._write(_json_lines(batch))
            else:
                self._write(_csv_lines(batch, header=not self.header_done))
                self.header_done = True

    def _write(self, text: str) -> None:
        self.console.file.write(text)
        self.console.file.flush()

    def table(self) -> Table:
        table = Table(*[escape(f.name) for f in self.schema], header_style="bold")
        for row in self.rows:
            table.add_row(*row)
        return table

    def render(self, status: str) -> RenderableType:
        shown = f"last {len(self.rows)} of {self.total:,} rows" if self.total > len(self.rows) else f"{self.total} rows"
        return Group(self.table(), Text(f"{shown} | {status}", style="dim"))

    def finish(self) -> None:
        if self.settings.mode == "table" and not self.terminal:
            self.console.print(self.table())
            if self.total > len(self.rows):
                self.console.print(f"(last {len(self.rows)} of {self.total:,} rows; .maxrows N shows more)")
        elif self.settings.mode == "csv" and not self.header_done:
            self._write(_csv_lines(pa.table({f.name: pa.array([], f.type) for f in self.schema}), header=True))


# ---------------------------------------------------------------------------------------- shell
def _words(session: Session) -> Callable[[], list[str]]:
    def words() -> list[str]:
        return sorted(set(KEYWORDS) | set(session.known_names()) | set(session.columns()) | _functions())

    return words


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
    from prompt_toolkit.completion import WordCompleter
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

    completer = WordCompleter(_words(session), ignore_case=True)
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
) -> int:
    """Run the shell; returns the exit code (2 if a statement failed in a script, else 0)."""
    import re

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

    session = Session(named, console, err, interactive=not scripted, yes=yes, debug=debug)
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
