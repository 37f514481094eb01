"""duckstream's command line: a thin layer over ``engine`` and ``connectors``.

    duckstream run PROGRAM.sql [--source [NAME=]URI]... [--sink [NAME=]URI]... [--errors URI] ...
    duckstream explain PROGRAM.sql
    duckstream check PROGRAM.sql
    duckstream test PATH

A user's mistake (in the program, an option, a URI) prints one line naming where it is and exits
with code 2; a bad record under ``--strict`` exits with 1. Anything else is a bug: a traceback
and a request to report it.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pyarrow as pa
import typer
from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from engine.errors import ConnectorError, DuckstreamError, SqlError
from engine.plan.logical import Program
from engine.plan.planner import PlanOptions, compile_program

app = typer.Typer(
    name="duckstream",
    help="Continuous SQL over streams: event-time windows (TUMBLE, HOP, CUMULATE, SESSION), evaluated in DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])
_NAMED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.+)$")
SAMPLE_ROWS = 200

SourceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--source",
        "-s",
        help="[NAME=]URI to read a stream from: a path, file:PATH, - (stdin), demo:ticker, kinesis://STREAM.",
    ),
]
SinkOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--sink",
        "-o",
        help="[NAME=]URI to write a result to: a path (.jsonl .csv .parquet), file:PATH, - (stdout), "
        "s3://BUCKET/PREFIX, kinesis://STREAM.",
    ),
]
ReferenceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--reference",
        "-r",
        help="NAME=URI of a table to join (CSV, JSON lines, Parquet; path or s3://), loaded whole; kill -HUP reloads.",
    ),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show a traceback for errors.")]
InputSchemaOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--input-schema",
        help="[NAME=]FILE: a KDA input schema (InputSchema JSON: RecordFormat, RecordColumns) giving source "
        "stream NAME (unnamed: the one source) its columns, JSONPath mappings and KDA's type conversions.",
    ),
]


class _Bindings:
    """``--source``/``--sink`` values split into named ones and at most one unnamed one."""

    def __init__(self, values: list[str] | None, option: str) -> None:
        self.named: dict[str, str] = {}
        self.unnamed: list[str] = []
        self.option = option
        for value in values or []:
            m = _NAMED.match(value)
            if m:
                if m.group(1).lower() in self.named:
                    raise ConnectorError(f"{option} {m.group(1)} is given twice", where=option)
                self.named[m.group(1).lower()] = m.group(2)
            else:
                self.unnamed.append(value)
        if len(self.unnamed) > 1:
            raise ConnectorError(f"{len(self.unnamed)} unnamed values; name them as NAME=URI", where=option)


def _fail(err: DuckstreamError, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    if not sys.stderr.isatty():
        print(f"error: {err}", file=sys.stderr)
        raise typer.Exit(err.exit_code)
    err_console.print(f"[bold red]error:[/] {rich_escape(str(err))}")
    caret = _caret(err)
    if caret:
        err_console.print(caret, markup=False)
    raise typer.Exit(err.exit_code)


def _caret(err: DuckstreamError) -> str | None:
    """The offending line of a program with a caret under the column (terminals only)."""
    if not isinstance(err, SqlError) or not err.path or not err.line or not err.col:
        return None
    try:
        line = Path(err.path).read_text(encoding="utf-8").splitlines()[err.line - 1]
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return f"  {line}\n  {' ' * (err.col - 1)}^"


def _guard(debug: bool, body: Callable[[], None]) -> None:
    try:
        body()
    except DuckstreamError as err:
        _fail(err, debug)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _read_program(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DuckstreamError(f"no such file: {path}", where="PROGRAM") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DuckstreamError(f"cannot read {path}: {err}", where="PROGRAM") from None


def _compile(
    path: Path,
    sources: _Bindings,
    lateness_us: int = 0,
    references: _Bindings | None = None,
    input_schemas: _Bindings | None = None,
) -> tuple[Program, dict[str, Any], dict[str, Any]]:
    """Compile a program, discovering the schema of undeclared streams from their sources.

    A stream given an ``--input-schema`` takes its columns from it instead, and its source carries
    it (``source.input_schema``) for the runtime to decode records by it.

    Returns the program, the sources opened for discovery and the reference tables it joins
    (``--reference NAME=URI``, or a ``--source NAME=URI`` whose name the program only joins).
    """
    from connectors import open_source
    from connectors.reference import ReferenceTable
    from engine.formats.discover import discover_schema, with_metadata
    from engine.formats.kda_schema import discover_untruncated
    from engine.sql import kda
    from engine.sql.parse import parse_program

    text = _read_program(path)
    is_kda = kda.is_kda(parse_program(text, str(path)))
    opened: dict[str, Any] = {}
    schemas = _load_input_schemas(input_schemas)
    _input_schemas_have_sources(schemas, sources)
    if sources.unnamed and not is_kda and _declares_unbound_table(text, str(path)):
        opened["<unnamed>"] = None  # the unnamed --source is for the declared table, not for discovery

    def resolve(name: str) -> pa.Schema | None:
        uri = sources.named.get(name.lower())
        if uri is None and sources.unnamed and not any(k in opened for k in ("<unnamed>",)):
            uri = sources.unnamed[0]
            opened["<unnamed>"] = name.lower()
        if uri is None:
            return None
        source = open_source(uri, name, where=f"--source {name}")
        opened[name.lower()] = source
        given = _input_schema_for(name, uri, sources, schemas)
        if given is not None:
            source.input_schema = given  # type: ignore[attr-defined]  # not part of the Source protocol
            return with_metadata(given.arrow_schema(), getattr(source, "metadata_schema", None))
        schema = source.schema()
        if schema is not None:
            return schema
        if is_kda and (source.format or "json") == "json":  # KDA's discovery: nested keys flattened, COL_ names
            found = discover_untruncated(source.sample(SAMPLE_ROWS), f"--source {name}")
            source.input_schema = found  # type: ignore[attr-defined]  # not part of the Source protocol
            return with_metadata(found.arrow_schema(), getattr(source, "metadata_schema", None))
        discovered = discover_schema(
            source.sample(SAMPLE_ROWS), source.format or "json", getattr(source, "csv_options", None)
        )
        if is_kda:  # KDA's discovery names columns in upper case
            discovered = kda.discovered(discovered)
        return with_metadata(discovered, getattr(source, "metadata_schema", None))

    refs = references or _Bindings(None, "--reference")
    if refs.unnamed:
        raise ConnectorError(f"{refs.unnamed[0]!r}: give a reference table as NAME=URI", where="--reference")
    tables: dict[str, Any] = {}

    def reference(name: str) -> pa.Schema | None:
        key = name.lower()
        if key in refs.named:
            where, uri = f"--reference {name}", refs.named[key]
        elif key in sources.named:  # joined, never read as a stream: KDA's reference data source
            where, uri = f"--source {name}", sources.named.pop(key)
        else:
            return None
        tables[key] = ReferenceTable(name, uri, where)
        return tables[key].table().schema

    options = PlanOptions(allowed_lateness_us=lateness_us, reference=reference)
    program = compile_program(text, str(path), resolve, options)
    _check_input_schemas(program, schemas)
    extra = sorted(set(refs.named) - set(program.references))
    if extra:
        raise ConnectorError(f"{extra[0]!r} is not a table this program joins", where="--reference")
    return program, opened, tables


def _load_input_schemas(values: _Bindings | None) -> dict[str, Any]:
    """``--input-schema [NAME=]FILE`` values: stream key (``""`` for the unnamed one) -> InputSchema."""
    from engine.formats.kda_schema import load_input_schema

    loaded: dict[str, Any] = {}
    if values is None:
        return loaded
    for key, file in [*values.named.items(), *(("", v) for v in values.unnamed)]:
        try:
            loaded[key] = load_input_schema(file)
        except ConnectorError as err:
            raise ConnectorError(str(err), where="--input-schema") from None
    return loaded


def _input_schemas_have_sources(schemas: dict[str, Any], sources: _Bindings) -> None:
    """A named --input-schema needs a --source of that name (or the unnamed one, which may feed it)."""
    for key in schemas:
        if key and key not in sources.named and not sources.unnamed:
            given = ", ".join(sources.named) or "none"
            raise ConnectorError(f"{key!r} has no --source of that name (sources: {given})", where="--input-schema")


def _input_schema_for(name: str, uri: str, sources: _Bindings, schemas: dict[str, Any]) -> Any:
    """The input schema for source stream ``name`` read from ``uri``, taken out of ``schemas``: the
    one named for it, else the unnamed one if this is the one source (the unnamed --source, or the
    only --source when none is unnamed)."""
    if name.lower() in schemas:
        return schemas.pop(name.lower())
    if "" not in schemas:
        return None
    only = sources.unnamed == [uri] or (not sources.unnamed and list(sources.named.values()) == [uri])
    return schemas.pop("") if only else None


def _check_input_schemas(program: Program, schemas: dict[str, Any]) -> None:
    """Every --input-schema must have gone to a source stream the program reads and does not declare."""
    if not schemas:
        return
    key = next(iter(schemas))
    if not key:
        raise ConnectorError(
            "an unnamed input schema needs exactly one --source; name the stream as NAME=FILE", where="--input-schema"
        )
    stream = program.streams.get(key)
    if stream is not None and stream.declared:
        raise ConnectorError(
            f"{stream.name} is declared in the program; an input schema is for a source stream it does not declare",
            where="--input-schema",
        )
    reads = _names(program, program.sources) or "none"
    raise ConnectorError(
        f"{key!r} is not a source stream of this program with a --source (it reads {reads})", where="--input-schema"
    )


def _declares_unbound_table(text: str, path: str) -> bool:
    """Whether the program declares a table without a connector (one --source must feed it)."""
    from sqlglot import exp

    from engine.sql.parse import parse_program

    for stmt in parse_program(text, path):
        if isinstance(stmt, exp.Create) and (stmt.args.get("kind") or "").upper() in ("TABLE", "STREAM"):
            props = stmt.args.get("properties")
            keys = {p.this.name.lower() for p in props.expressions if isinstance(p, exp.Property)} if props else set()
            if "connector" not in keys:
                return True
    return False


def _bind_sources(program: Program, sources: _Bindings, opened: dict[str, Any]) -> dict[str, Any]:
    from connectors import open_source

    bound: dict[str, Any] = {}
    unbound = []
    for key in program.sources:
        stream = program.streams[key]
        if key in opened:
            bound[key] = opened[key]
        elif key in sources.named:
            bound[key] = open_source(sources.named[key], stream.name, where=f"--source {stream.name}")
        elif stream.connector:
            bound[key] = open_source(None, stream.name, options=stream.options, where=stream.where)
        else:
            unbound.append(key)
    unnamed_free = sources.unnamed and (opened.get("<unnamed>") is None)
    if unbound and unnamed_free and len(unbound) == 1:
        key = unbound.pop()
        bound[key] = open_source(sources.unnamed[0], program.streams[key].name, where="--source")
    elif unnamed_free and not unbound:
        raise ConnectorError("every stream already has a source: name it as NAME=URI", where="--source")
    if unbound:
        names = ", ".join(program.streams[k].name for k in unbound)
        raise ConnectorError(f"no source for {names}: give --source NAME=URI", where="--source")
    extra = set(sources.named) - set(program.sources)
    if extra:
        raise ConnectorError(
            f"{sorted(extra)[0]!r} is not a stream this program reads (it reads {_names(program, program.sources)})",
            where="--source",
        )
    return bound


def _names(program: Program, items: list[Any]) -> str:
    """Stream keys or outputs, as the names users wrote, comma-separated."""
    return ", ".join(i.name if hasattr(i, "name") else program.streams[i].name for i in items)


def _bind_sinks(program: Program, sinks: _Bindings) -> dict[str, Any]:
    from connectors import open_sink

    bound: dict[str, Any] = {}
    free = []
    for output in program.outputs:
        stream = program.streams[output.stream]
        if output.name.lower() in sinks.named:
            bound[output.stream] = open_sink(
                sinks.named[output.name.lower()], output.name, where=f"--sink {output.name}"
            )
        elif stream.connector:
            bound[output.stream] = open_sink(None, output.name, options=stream.options, where=stream.where)
        else:
            free.append(output)
    if sinks.unnamed:
        free = [o for o in free if not o.optional] or free
        if len(free) != 1:
            names = ", ".join(o.name for o in free) or "none left"
            raise ConnectorError(f"the program has several results ({names}): name them as NAME=URI", where="--sink")
        bound[free[0].stream] = open_sink(sinks.unnamed[0], free[0].name, where="--sink")
        free = []
    for output in free:
        if not output.optional:  # KDA: a stream other pumps read is written only when named
            bound[output.stream] = open_sink("-", output.name, where="stdout")
    extra = set(sinks.named) - {o.name.lower() for o in program.outputs} - {ERROR_STREAM}
    if extra:
        raise ConnectorError(
            f"{sorted(extra)[0]!r} is not a result of this program (results: {_names(program, program.outputs)})",
            where="--sink",
        )
    return bound


ERROR_STREAM = "error_stream"


def _rowtime_fields(program: Program, values: list[str] | None) -> dict[str, str]:
    """``--rowtime-from [STREAM=]FIELD`` values as stream key (``*`` for every source) -> field."""
    from engine.runtime.rowtime import rowtime_fields

    stamped = {k: program.streams[k].name for k in program.sources if program.streams[k].rowtime}
    return rowtime_fields(
        values or [], stamped, "only KDA programs (with pumps or SELECT STREAM) have a ROWTIME to take"
    )


def _error_sink(program: Program, errors: str | None, sinks: _Bindings) -> Any:
    """Where error rows go: ``--errors URI`` (the engine's columns), ``--sink error_stream=URI``
    (KDA's columns), or stderr."""
    from connectors import open_sink
    from engine.runtime.kda_errors import KdaErrorSink

    kda_uri = sinks.named.get(ERROR_STREAM)
    if kda_uri is not None and errors is not None:
        raise ConnectorError("give either --errors or --sink error_stream=URI, not both", where="--errors")
    if kda_uri is not None:
        return KdaErrorSink(open_sink(kda_uri, ERROR_STREAM, where=f"--sink {ERROR_STREAM}"), program.pumps)
    return open_sink(errors, "errors", where="--errors") if errors else _StderrErrors()


def _duration(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    from connectors.options import parse_duration

    return parse_duration(text, option)


@app.command()
def run(
    program: Annotated[Path, typer.Argument(help="The .sql program to run.")],
    source: SourceOpt = None,
    sink: SinkOpt = None,
    reference: ReferenceOpt = None,
    errors: Annotated[str | None, typer.Option("--errors", help="URI for error rows (default: stderr).")] = None,
    batch_rows: Annotated[
        int, typer.Option("--batch-rows", min=1, help="Most rows read from a source per micro-batch.")
    ] = 10_000,
    batch_interval: Annotated[
        str, typer.Option("--batch-interval", help="Longest wait for rows when sources are quiet (250ms, 1s).")
    ] = "200ms",
    allowed_lateness: Annotated[
        str | None, typer.Option("--allowed-lateness", help="How long a closed window still accepts rows (default 0).")
    ] = None,
    idle_timeout: Annotated[
        str,
        typer.Option(
            "--idle-timeout", help="After this long without records, a source's watermark follows processing time."
        ),
    ] = "10s",
    no_flush: Annotated[
        bool, typer.Option("--no-flush", help="At the end of a bounded input, do not close the open windows.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first bad record instead of routing it to the error stream.")
    ] = False,
    max_ahead: Annotated[
        str | None,
        typer.Option("--max-ahead", help="Event times further ahead of the wall clock than this are errors."),
    ] = None,
    checkpoint_dir: Annotated[
        str | None,
        typer.Option(
            "--checkpoint-dir",
            help="Save offsets and state here (a directory or s3://BUCKET/PREFIX) and resume from the last checkpoint.",
        ),
    ] = None,
    checkpoint_interval: Annotated[
        str, typer.Option("--checkpoint-interval", help="How often to checkpoint (with --checkpoint-dir).")
    ] = "10s",
    max_record_size: Annotated[
        str, typer.Option("--max-record-size", help="Largest accepted record (bytes, or 512KiB, 1MiB).")
    ] = "1MiB",
    rowtime_from: Annotated[
        list[str] | None,
        typer.Option(
            "--rowtime-from",
            help="KDA programs: [STREAM=]FIELD, a recorded time field of each record that plays the part of "
            "its arrival time (ROWTIME), so replays of files give the same rows.",
        ),
    ] = None,
    until_idle: Annotated[
        str | None,
        typer.Option(
            "--until-idle",
            help="End the run (flush, commit, checkpoint) once every source has been idle this long (30s, 5m).",
        ),
    ] = None,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress",
            help="Show live metrics on stderr (records/s, rows out, errors, watermark, lag; "
            "a progress bar when every input is a file).",
        ),
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=0, max=65535, help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics."
        ),
    ] = None,
    input_schema: InputSchemaOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Run a program until its inputs end (or forever, for an unbounded source)."""

    def body() -> None:
        from engine.runtime.loop import Runner, RunOptions

        lateness = _duration(allowed_lateness, "--allowed-lateness") or 0
        interval_us = _duration(batch_interval, "--batch-interval") or 0
        idle_us = _duration(idle_timeout, "--idle-timeout")
        sources = _Bindings(source, "--source")
        sinks = _Bindings(sink, "--sink")
        prog, opened, tables = _compile(
            program, sources, lateness, _Bindings(reference, "--reference"), _Bindings(input_schema, "--input-schema")
        )
        bound_sources = _bind_sources(prog, sources, opened)
        bound_sinks = _bind_sinks(prog, sinks)
        error_sink = _error_sink(prog, errors, sinks)
        options = RunOptions(
            batch_rows=batch_rows,
            batch_interval_s=interval_us / 1e6,
            idle_timeout_us=idle_us,
            flush=not no_flush,
            strict=strict,
            max_record_bytes=_size(max_record_size),
            max_ahead_us=_duration(max_ahead, "--max-ahead"),
            rowtime_from=_rowtime_fields(prog, rowtime_from),
        )
        if until_idle is not None:
            options.until_idle_s = (_duration(until_idle, "--until-idle") or 0) / 1e6
        store = None
        if checkpoint_dir is not None:
            from engine.runtime.checkpoint import CheckpointStore, program_fingerprint

            options.checkpoint_interval_s = (_duration(checkpoint_interval, "--checkpoint-interval") or 0) / 1e6
            store = CheckpointStore(checkpoint_dir, program_fingerprint(prog.text), where="--checkpoint-dir")
        runner = Runner(prog, bound_sources, bound_sinks, error_sink, options, checkpoints=store, references=tables)
        runner.on_warning = lambda message: print(f"duckstream: {message}", file=sys.stderr)
        with _graceful_stop(runner), _observe(runner, progress, metrics_port):
            stats = runner.run()
        _summary(stats)

    _guard(debug, body)


@contextlib.contextmanager
def _graceful_stop(runner: Any) -> Iterator[None]:
    """SIGINT/SIGTERM: finish the batch in flight, checkpoint, exit 0. A second signal aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if seen:
            raise KeyboardInterrupt
        seen.append(signum)
        print("duckstream: stopping after the current batch (again to abort)", file=sys.stderr)
        runner.request_stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    if hasattr(signal, "SIGHUP"):  # reload reference tables, as a daemon rereads its configuration
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda signum, frame: runner.request_reload())
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


PROGRESS_EVERY_S = 0.25  # status refresh on a terminal
PLAIN_PROGRESS_EVERY_S = 5.0  # a status line when stderr is not a terminal


@contextlib.contextmanager
def _observe(runner: Any, progress: bool, port: int | None) -> Iterator[None]:
    """``--progress`` and ``--metrics-port``: feed a ``Metrics`` from the runner, show and serve it."""
    if not progress and port is None:
        yield
        return
    from engine.runtime.metrics import Metrics, serve_metrics

    metrics = Metrics()
    runner.metrics = metrics
    with contextlib.ExitStack() as stack:
        if port is not None:
            try:
                stack.enter_context(serve_metrics(metrics, port))
            except OSError as err:
                raise ConnectorError(
                    f"cannot serve metrics on 127.0.0.1:{port}: {err.strerror or err}", where="--metrics-port"
                ) from None
        if progress:
            stack.enter_context(_progress_display(metrics))
        yield


@contextlib.contextmanager
def _progress_display(metrics: Any) -> Iterator[None]:
    """A rich live status line with a progress bar (terminals), else a plain line every few seconds;
    both end with a last line when the run ends."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from engine.runtime.metrics import status_line

    stop = threading.Event()
    tty = sys.stderr.isatty()

    def plain() -> str:
        snap = metrics.snapshot()
        done = snap.fraction_done
        return f"duckstream: {'' if done is None else f'[{done:4.0%}] '}{status_line(snap)}"

    if not tty:

        def tick() -> None:
            while not stop.wait(PLAIN_PROGRESS_EVERY_S):
                print(plain(), file=sys.stderr, flush=True)

        thread = threading.Thread(target=tick, name="duckstream-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            print(plain(), file=sys.stderr, flush=True)
        return
    bar = Progress(
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.description}"),
        console=err_console,
        transient=False,
    )
    task = bar.add_task("starting", total=None)

    def refresh() -> None:
        snap = metrics.snapshot()
        done = snap.fraction_done
        bar.update(task, description=rich_escape(status_line(snap)), total=None if done is None else 1.0)
        if done is not None:
            bar.update(task, completed=done)

    def loop() -> None:
        while not stop.wait(PROGRESS_EVERY_S):
            refresh()

    thread = threading.Thread(target=loop, name="duckstream-progress", daemon=True)
    with bar:
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            refresh()


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*", text, re.IGNORECASE)
    if not m:
        raise ConnectorError(f"{text!r} is not a size (write 1048576, 512KiB or 1MiB)", where="--max-record-size")
    scale = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 10**6, "mib": 1 << 20, "gb": 10**9, "gib": 1 << 30}
    return int(m.group(1)) * scale[(m.group(2) or "").lower()]


class _StderrErrors:
    """Error rows as JSON lines on stderr (the default when --errors is not given)."""

    name = "stderr"

    def open(self, schema: pa.Schema, last_committed: object, state: object = None) -> None:
        pass

    def prepare(self, epoch: object) -> None:
        return None

    def write(self, epoch: object, batch: pa.Table) -> None:
        from engine.formats.encode import to_json_lines

        table = batch.set_column(
            batch.schema.get_field_index("payload"),
            "payload",
            pa.array(
                [p.decode("utf-8", "replace") if p is not None else None for p in batch["payload"].to_pylist()],
                pa.string(),
            ),
        )
        sys.stderr.write(to_json_lines(table).decode())
        sys.stderr.flush()

    def commit(self, epoch: object) -> None:
        pass

    def abort(self, epoch: object) -> None:
        pass

    def close(self) -> None:
        pass


def _summary(stats: Any) -> None:
    rows_in = sum(stats.rows_in.values())
    rows_out = sum(stats.rows_out.values())
    n_err = sum(stats.errors.values())
    text = f"duckstream: {rows_in:,} records in, {rows_out:,} rows out, {n_err:,} error rows"
    if n_err:
        text += " (" + ", ".join(f"{reason}: {n:,}" for reason, n in sorted(stats.errors.items())) + ")"
    if stats.state_rows:
        text += f"; state kept: {stats.state_rows:,} rows, {stats.state_bytes / 1024:,.0f} KiB"
    if stats.lag_ms:
        text += "; behind the stream head: " + ", ".join(f"{k} {v:,} ms" for k, v in sorted(stats.lag_ms.items()))
    print(text, file=sys.stderr)


@app.command()
def explain(
    program: Annotated[Path, typer.Argument(help="The .sql program to explain.")],
    source: SourceOpt = None,
    reference: ReferenceOpt = None,
    input_schema: InputSchemaOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Print the plan: streams, the operators between them, and the DuckDB SQL each one runs."""

    def body() -> None:
        from engine.plan.explain import describe, render

        prog, _, _ = _compile(
            program,
            _Bindings(source, "--source"),
            references=_Bindings(reference, "--reference"),
            input_schemas=_Bindings(input_schema, "--input-schema"),
        )
        if sys.stdout.isatty():
            Console(highlight=False).print(render(prog))
        else:
            print(describe(prog))

    _guard(debug, body)


@app.command()
def check(
    program: Annotated[Path, typer.Argument(help="The .sql program to check.")],
    source: SourceOpt = None,
    reference: ReferenceOpt = None,
    input_schema: InputSchemaOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Check a program without running it: syntax, streams, columns, types, windows."""

    def body() -> None:
        prog, _, _ = _compile(
            program,
            _Bindings(source, "--source"),
            references=_Bindings(reference, "--reference"),
            input_schemas=_Bindings(input_schema, "--input-schema"),
        )
        outputs = ", ".join(o.name for o in prog.outputs)
        print(f"{program}: ok ({len(prog.operators)} operators; reads {_names(prog, prog.sources)}; writes {outputs})")

    _guard(debug, body)


@app.command("test")
def test_cases(
    path: Annotated[Path, typer.Argument(help="A .case file, or a directory searched for .case files recursively.")],
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Run each case with its own batches only (no re-splits, no checkpoint/restore)."),
    ] = False,
    update: Annotated[
        bool, typer.Option("--update", help="Rewrite each case's expected output from what it produces (review it!).")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Test programs against .case files (input, expected output); exit 1 if one fails."""

    def body() -> None:
        from engine.testrunner import run_tests

        code = run_tests(path, quick=quick, update=update, complain=lambda line: print(line, file=sys.stderr))
        if code:
            raise typer.Exit(code)

    _guard(debug, body)


@app.command()
def repl(
    source: SourceOpt = None,
    execute: Annotated[
        str | None, typer.Option("--execute", "-e", help="Run these statements, print their results and exit.")
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Run the statements of this file and exit.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before STOP and DROP.")] = False,
    rowtime_from: Annotated[
        list[str] | None,
        typer.Option("--rowtime-from", help="[STREAM=]FIELD: a record's time field is its ROWTIME (replays of files)."),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """An interactive SQL shell: live queries over --source streams (unnamed: SOURCE_SQL_STREAM_001)."""
    code: list[int] = [0]

    def body() -> None:
        from engine.repl import main as repl_main

        code[0] = repl_main(source or [], execute, file, yes=yes, debug=debug, rowtime_from=rowtime_from or [])

    _guard(debug, body)
    if code[0]:
        raise typer.Exit(code[0])


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except SystemExit:
        raise
    except Exception:  # a bug, not a user mistake
        traceback.print_exc()
        print("duckstream: internal error; please report it with the traceback above", file=sys.stderr)
        sys.exit(1)


_ = Table  # rich tables are used by the stdout sink and explain

if __name__ == "__main__":
    main()
