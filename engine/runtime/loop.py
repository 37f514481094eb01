"""RUNTIME: the micro-batch loop. poll -> decode -> time -> operators -> sinks.

One ``Runner`` drives one program: it polls every source in turn, decodes what came back,
pushes the rows through the pipeline, hands results and error rows to the sinks, and at the end
of a bounded input advances the watermark to +infinity so every window flushes (unless told not
to). Time that is not event time (idle detection, batch intervals) comes from an injectable
clock, so tests never sleep.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from connectors.base import Sink, Source
from engine.errors import ConnectorError, DuckstreamError, RecordError
from engine.plan.logical import Program, StreamDef
from engine.runtime.checkpoint import CheckpointStore
from engine.runtime.faults import crash_point as _crash_point
from engine.runtime.metrics import Metrics
from engine.runtime.pipeline import Pipeline, TickResult
from engine.runtime.rowtime import RowtimeStamper
from engine.types import ERROR_SCHEMA, MAX_TIME, SEQ_COL, Epoch, in_input_order, visible

ERRORS_KEY = "__errors__"  # the error sink's key among the sinks' checkpoint states


class ReferenceLoader(Protocol):
    """A reference table's data (``connectors.reference.ReferenceTable``)."""

    def table(self) -> pa.Table: ...
    def reload(self) -> pa.Table: ...


@dataclass
class RunOptions:
    """How a run behaves; the command line fills these from its options."""

    batch_rows: int = 10_000
    batch_interval_s: float = 0.2  # longest wait for rows when every source is quiet
    idle_timeout_us: int | None = 10_000_000  # None: a quiet source never advances by itself
    flush: bool = True  # end of a bounded input closes every window
    strict: bool = False  # stop at the first bad record
    max_record_bytes: int = 1 << 20
    commit_interval_s: float = 1.0  # how often sinks make their rows visible
    catchup_factor: int = 16  # while a source has a backlog, batches grow up to this many times batch_rows
    checkpoint_interval_s: float = 10.0  # with a checkpoint store: how often state is saved
    max_ahead_us: int | None = None  # rows whose event time is further ahead of now go to errors
    stop_after_batches: int | None = None  # tests: checkpoint after this many batches and stop there
    until_idle_s: float | None = None  # end the run once no source has had rows for this long
    rowtime_from: dict[str, str] = field(default_factory=dict)  # KDA: stream key (or "*") -> time field
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class RunStats:
    """Counts a run reports at exit."""

    rows_in: Counter = field(default_factory=Counter)
    rows_out: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # by reason
    batches: int = 0
    state_rows: int = 0  # rows held in operator state at the end (open windows x keys, buffers)
    lag_ms: dict = field(default_factory=dict)  # source stream -> how far behind its head (Kinesis)
    state_bytes: int = 0
    bytes_in: Counter = field(default_factory=Counter)  # source stream key -> payload bytes


class _Input:
    """A source bound to a source stream, with its decoder and idle bookkeeping."""

    def __init__(self, key: str, source: Source, program: Program, options: RunOptions) -> None:
        from engine.formats.decode import Decoder

        stream = program.streams[key]
        self.key, self.source = key, source
        self.schema = stream.schema
        fmt = source.format or "json"
        # Columns the source itself supplies (Kinesis: APPROXIMATE_ARRIVAL_TIME, PARTITION_KEY, ...)
        # are taken from the raw batch, not decoded from the payload.
        self.metadata = _metadata_columns(source, stream)
        self.rowtime: RowtimeStamper | None = None
        stamped: set[str] = set()
        if stream.rowtime:  # KDA: ROWTIME (and APPROXIMATE_ARRIVAL_TIME) come with the rows, not in them
            field_ = options.rowtime_from.get(key, options.rowtime_from.get("*"))
            plain = pa.schema([f for f in stream.schema if f.name not in self.metadata])
            self.rowtime = RowtimeStamper(stream, field_, source, plain, fmt, set(self.metadata))
            stamped = set(self.rowtime.columns)
        payload_schema = pa.schema([f for f in stream.schema if f.name not in self.metadata and f.name not in stamped])
        time_column = stream.time_column if stream.time_column not in {*self.metadata, *stamped} else None
        input_schema = getattr(source, "input_schema", None)  # --input-schema: a KDA InputSchema
        self.decoder: Decoder | KdaDecoder
        if input_schema is not None:
            from engine.formats.kda_decode import KdaDecoder

            # It also fills the source's own columns, from each row's record: the rows of an
            # exploded array do not carry their record's offset as __seq (engine.formats.kda_decode).
            taken = {*payload_schema.names, *self.metadata}
            self.decoder = KdaDecoder(
                stream.name,
                input_schema,
                time_column=time_column,
                max_record_bytes=options.max_record_bytes,
                schema=pa.schema([f for f in stream.schema if f.name in taken]),
                metadata=self.metadata,
            )
            self.metadata = {}
        else:
            self.decoder = Decoder(
                stream.name,
                payload_schema,
                fmt,
                time_column=time_column,
                max_record_bytes=options.max_record_bytes,
                csv_options=getattr(source, "csv_options", None),
                reserved=frozenset(name.lower() for name in self.metadata),
            )
        self.done = False
        self.idle_timeout_us = options.idle_timeout_us
        if "idle-timeout" in stream.options:  # the table's own setting wins over --idle-timeout
            from connectors.options import parse_duration

            self.idle_timeout_us = parse_duration(stream.options["idle-timeout"], f"{stream.where}: 'idle-timeout'")
        self.request = options.batch_rows  # rows asked for in the next poll (grows while catching up)
        self.last_rows_at: float | None = None
        self.wm_at_last_rows: int | None = None

    def decode(self, batch: pa.RecordBatch) -> tuple[pa.Table, pa.Table]:
        if self.source.kind != "raw":
            rows, errors = self.decoder.conform(batch)
        else:
            rows, errors = self.decoder.decode(batch)
        if not self.metadata and self.rowtime is None:
            return rows, errors
        # Decoded rows are a subset of the batch's records, found again by their offset.
        positions = getattr(self.decoder, "batch_positions", None)  # KDA input schemas: rows != records
        if positions is not None:
            where = positions(rows, batch)
        else:
            where = pc.index_in(rows[SEQ_COL], value_set=batch.column("offset"))
        stamped: dict[str, pa.Array] = {}
        if self.rowtime is not None:
            rows, where, stamped, missing = self.rowtime.stamp(rows, batch, where)
            if missing is not None:
                errors = pa.concat_tables([errors, missing]) if errors is not None else missing
        columns = []
        for field_ in self.schema:
            if field_.name in self.metadata:
                values = batch.column(self.metadata[field_.name]).take(where)
                columns.append(values.cast(field_.type))
            elif field_.name in stamped:
                columns.append(stamped[field_.name])
            else:
                columns.append(rows[field_.name])
        columns.append(rows[SEQ_COL])
        return pa.table(columns, schema=self.schema.append(pa.field(SEQ_COL, pa.int64()))), errors


class Runner:
    """Runs a planned program between bound sources and sinks."""

    def __init__(
        self,
        program: Program,
        sources: Mapping[str, Source],
        sinks: Mapping[str, Sink],
        error_sink: Sink | None = None,
        options: RunOptions | None = None,
        on_error: Callable[[pa.Table], None] | None = None,
        checkpoints: CheckpointStore | None = None,
        references: Mapping[str, ReferenceLoader] | None = None,
    ) -> None:
        self.program, self.options = program, options or RunOptions()
        self.pipeline = Pipeline(program)
        self.references = dict(references or {})
        missing = sorted(set(program.references) - set(self.references))
        if missing:
            raise ConnectorError(f"no data for reference table {program.references[missing[0]].name}")
        for key, loader in self.references.items():
            self.pipeline.set_reference(key, loader.table())
        self.reload_requested = False
        self.reload_failures: list[str] = []
        self.inputs = [_Input(key, sources[key], program, self.options) for key in program.sources]
        self.sinks, self.error_sink, self.on_error = sinks, error_sink, on_error
        self.optional = {o.stream for o in program.outputs if o.optional}
        self.keep_rowtime = False  # write KDA's ROWTIME to the sinks too (the REPL's pumps)
        self.stats = RunStats()
        self.epoch = Epoch(1)
        self.last_commit = self.options.clock()
        self.checkpoints = checkpoints
        self.last_checkpoint = self.last_commit
        self.stop_requested = False
        self.pending = False  # the epoch has had rows or errors delivered since its start
        self.on_warning: Callable[[str], None] | None = None
        self.last_rows_any = self.last_commit  # for --until-idle
        self.metrics: Metrics | None = None  # fed once per batch and at checkpoints when set

    def _all_sinks(self) -> dict[str, Sink]:
        sinks = dict(self.sinks)
        if self.error_sink is not None:
            sinks[ERRORS_KEY] = self.error_sink
        return sinks

    def run(self) -> RunStats:
        """Read every source to its end (or forever, for unbounded ones); return the counts.

        Stops early, after a final checkpoint and without flushing open windows, when
        ``request_stop`` is called (the CLI does on SIGINT/SIGTERM).
        """
        resume = self.checkpoints.load() if self.checkpoints is not None else None
        sink_states = resume[1].get("sinks", {}) if resume is not None else {}
        last = Epoch(resume[0]) if resume is not None else None
        for key, sink in self._all_sinks().items():
            schema = ERROR_SCHEMA if key == ERRORS_KEY else _sink_schema(self.program, key, self.keep_rowtime)
            sink.open(schema, last, sink_states.get(key))
        if resume is not None:
            self._restore(*resume)
        else:
            for item in self.inputs:
                item.source.open(None)
        self.last_rows_any = self.options.clock()  # --until-idle counts from here, not from setup
        try:
            while not all(i.done for i in self.inputs):
                if self.stop_requested:  # graceful: what sinks hold goes out with the last checkpoint
                    self._flush_sinks()
                    self.checkpoint()
                    return self.stats
                if (
                    self.options.stop_after_batches is not None
                    and self.stats.batches >= self.options.stop_after_batches
                ):
                    self.checkpoint()
                    return self.stats
                if self.reload_requested:
                    self._reload()
                got_rows = False
                for item in self.inputs:
                    if not item.done:
                        got_rows |= self._poll(item)
                if got_rows:
                    self.last_rows_any = self.options.clock()
                elif not all(i.done for i in self.inputs):
                    if self._idle_for_good():
                        continue
                    self._idle_advance()
                    self._maybe_commit()
                    if self.metrics is not None:
                        self._feed_metrics()
                    self.options.sleep(self.options.batch_interval_s)
            self._flush_sinks()  # the input ended: nothing may stay buffered
            self.checkpoint()
        finally:
            self.stats.state_rows, self.stats.state_bytes = self.pipeline.state_size()
            if self.metrics is not None:
                self._feed_metrics(state=False)
                self.metrics.set_state(self.stats.state_rows, self.stats.state_bytes)
            for item in self.inputs:
                item.source.close()
            for sink in self._all_sinks().values():
                sink.close()
        return self.stats

    def request_reload(self) -> None:
        """Read every reference table again before the next batch (the CLI does on SIGHUP)."""
        self.reload_requested = True

    def _reload(self) -> None:
        self.reload_requested = False
        for key, loader in self.references.items():
            try:
                self.pipeline.set_reference(key, loader.reload())
            except DuckstreamError as err:  # a bad new version: keep the old table, say why
                self.reload_failures.append(str(err))
                if self.on_warning is not None:
                    self.on_warning(str(err))

    def request_stop(self) -> None:
        """Finish the batch in flight, checkpoint, and return from ``run`` (graceful stop)."""
        self.stop_requested = True

    def checkpoint(self) -> None:
        """End the epoch: sinks prepare it, the checkpoint is saved, sinks commit it.

        Without a checkpoint store it only prepares and commits (rows become visible).
        A crash between the save and the commits is repaired on restart: sinks recommit.
        """
        epoch = self.epoch
        started = time.perf_counter()
        states = {key: sink.prepare(epoch) for key, sink in self._all_sinks().items()}
        if self.checkpoints is not None:
            _crash_point("before-checkpoint")
            state = {
                "epoch": int(epoch),
                "offsets": {i.key: i.source.offsets() for i in self.inputs},
                "headers": {i.key: i.decoder.header for i in self.inputs},
                "pipeline": self.pipeline.snapshot(),
                "sinks": states,
            }
            self.checkpoints.save(int(epoch), state)
            _crash_point("before-commit")
            self.last_checkpoint = self.options.clock()
            if self.metrics is not None:
                self.metrics.checkpointed(time.perf_counter() - started)
                self.metrics.set_state(*self.pipeline.state_size())
        for n, sink in enumerate(self._all_sinks().values()):
            if n:
                _crash_point("mid-commit")
            sink.commit(epoch)
        self.epoch = Epoch(epoch + 1)
        self.pending = False

    def _restore(self, epoch: int, state: dict) -> None:
        self.epoch = Epoch(epoch + 1)
        self.pipeline.restore(state["pipeline"])
        for item in self.inputs:
            item.source.open(state["offsets"].get(item.key))
            header = state["headers"].get(item.key)
            if header is not None:
                item.decoder._header = header  # the header record is behind the resume point
            if item.rowtime is not None:
                item.rowtime.restore(self.pipeline.clocks[item.key].max_seen)
            item.done = False  # polled again: an exhausted source says so at once, and flushing is idempotent

    def _poll(self, item: _Input) -> bool:
        batch = item.source.poll(item.request, self.options.batch_interval_s)
        lag = getattr(item.source, "lag_ms", None)
        if lag is not None:
            value = lag()
            if value is not None:
                self.stats.lag_ms[self.program.streams[item.key].name] = value
        if batch is None:
            item.done = True
            if self.options.flush:
                self._deliver(self.pipeline.advance(item.key, MAX_TIME), None)
            return False
        if batch.num_rows == 0:
            return False
        # The batch size follows the backlog: a full batch means more is waiting, so ask for more
        # next time (fixed costs per batch amortize); a short one means we are at the head.
        most = self.options.batch_rows * self.options.catchup_factor
        item.request = min(item.request * 2, most) if batch.num_rows >= item.request else self.options.batch_rows
        rows, errors = item.decode(batch)
        if self.options.max_ahead_us is not None:
            rows, future = _reject_future(rows, self.program.streams[item.key], self.options.max_ahead_us)
            if future is not None:
                errors = future if errors is None or errors.num_rows == 0 else pa.concat_tables([errors, future])
        self.stats.rows_in[item.key] += batch.num_rows
        self.stats.bytes_in[item.key] += _payload_bytes(batch)
        self.stats.batches += 1
        item.last_rows_at = self.options.clock()
        result = self.pipeline.push(item.key, rows)
        item.wm_at_last_rows = self.pipeline.clocks[item.key].watermark
        self._deliver(result, errors)
        if self.metrics is not None:
            self._feed_metrics()
        return True

    def _feed_metrics(self, state: bool = True) -> None:
        """Hand the counts to ``self.metrics`` (once per batch: a few small dicts)."""
        assert self.metrics is not None
        names = {key: stream.name for key, stream in self.program.streams.items()}
        outputs = {o.stream: o.name for o in self.program.outputs}
        self.metrics.update(
            records_in={names[k]: n for k, n in self.stats.rows_in.items()},
            bytes_in={names[k]: n for k, n in self.stats.bytes_in.items()},
            rows_out={outputs.get(k, names.get(k, k)): n for k, n in self.stats.rows_out.items()},
            errors=self.stats.errors,
            watermark_us={names[i.key]: self.pipeline.clocks[i.key].watermark for i in self.inputs},
            lag_ms=self.stats.lag_ms,
            progress={names[i.key]: _progress(i.source) for i in self.inputs},
            batches=self.stats.batches,
        )
        if state and self.metrics.state_due():
            self.metrics.set_state(*self.pipeline.state_size())

    def _flush_sinks(self) -> None:
        for sink in self._all_sinks().values():
            getattr(sink, "flush", lambda: None)()

    def _idle_for_good(self) -> bool:
        """``--until-idle``: after that long without rows from any source, treat every source as
        ended (windows flush unless ``flush`` is off); the loop then checkpoints and returns.
        A source that can tell (Kinesis: every shard answered and nothing is behind) must also
        say it is caught up, so a slow start is not mistaken for the end of the data."""
        limit = self.options.until_idle_s
        now = self.options.clock()
        if limit is None:
            return False
        for item in self.inputs:
            caught_up = getattr(item.source, "caught_up", None)
            if caught_up is not None and not item.done and not caught_up():
                self.last_rows_any = now
        if now - self.last_rows_any < limit:
            return False
        for item in self.inputs:
            if not item.done:
                item.done = True
                if self.options.flush:
                    self._deliver(self.pipeline.advance(item.key, MAX_TIME), None)
        return True

    def _idle_advance(self) -> None:
        """A quiet source's watermark moves on with processing time after the idle timeout."""
        now = self.options.clock()
        for item in self.inputs:
            timeout = item.idle_timeout_us
            if timeout is None or item.done or item.last_rows_at is None or item.wm_at_last_rows is None:
                continue
            quiet_us = int((now - item.last_rows_at) * 1_000_000)
            if quiet_us >= timeout:
                target = item.wm_at_last_rows + quiet_us
                if target > self.pipeline.clocks[item.key].watermark:
                    self._deliver(self.pipeline.advance(item.key, target), None)

    def _deliver(self, result: TickResult, decode_errors: pa.Table | None) -> None:
        errors = [e for e in [decode_errors, *result.errors] if e is not None and e.num_rows]
        if errors:
            table = in_input_order(pa.concat_tables(errors))
            for reason, n in Counter(table["reason"].to_pylist()).items():
                self.stats.errors[reason] += n
            if self.options.strict:
                first = table.slice(0, 1).to_pylist()[0]
                raise RecordError(
                    f"bad record at {first['source_offset']}: {first['reason']}: {first['message']}",
                    hint="drop --strict to route bad records to the error stream",
                )
            if self.error_sink is not None:
                self.error_sink.write(self.epoch, table)
            if self.on_error is not None:
                self.on_error(table)
        for key, tables in result.outputs.items():
            sink = self.sinks.get(key)
            if sink is None and key in self.optional:  # KDA: a stream only other pumps read
                continue
            for table in tables:
                out = written(self.program, table, self.keep_rowtime)
                self.stats.rows_out[key] += out.num_rows
                if sink is not None and out.num_rows:
                    sink.write(self.epoch, out)
        self.pending = True
        self._maybe_commit()

    def _maybe_commit(self) -> None:
        """End the epoch once its interval has passed and it holds something (also while idle,
        so rows written just before a quiet spell do not wait for the next batch)."""
        if not self.pending and not any(_due(sink) for sink in self._all_sinks().values()):
            return
        now = self.options.clock()
        if self.checkpoints is not None:
            if now - self.last_checkpoint >= self.options.checkpoint_interval_s:
                self.checkpoint()  # with checkpoints, rows become visible only at checkpoints
        elif now - self.last_commit >= self.options.commit_interval_s:
            self.last_commit = now
            self.checkpoint()


def _payload_bytes(batch: pa.RecordBatch) -> int:
    """Bytes a batch brought in: its payloads for a raw source, its Arrow size for a typed one."""
    index = batch.schema.get_field_index("payload")
    if index < 0:
        return int(batch.nbytes)
    return int(pc.sum(pc.binary_length(batch.column(index))).as_py() or 0)


def _progress(source: Source) -> tuple[int, int] | None:
    """(done, size) of a bounded source that knows its size (``progress()``), else None."""
    progress = getattr(source, "progress", None)
    return progress() if progress is not None and source.bounded else None


def _due(sink: Sink) -> bool:
    """Whether a sink holds rows its buffering hints say are due (S3): an epoch should end."""
    due = getattr(sink, "due", None)
    return bool(due()) if due is not None else False


def _metadata_columns(source: Source, stream: StreamDef) -> dict[str, str]:
    """Stream column -> raw batch column, for the columns a source supplies: in a declared stream,
    those named like them (ignoring case); in a discovered one, only those discovery added for the
    source (a record field of the same name stays the record's).

    Raises:
        ConnectorError: for a declared column whose type the source's value cannot have.
    """
    from engine.formats.discover import is_source_metadata
    from engine.formats.types import sql_type_name

    offered = getattr(source, "metadata_schema", None)
    if source.kind != "raw" or offered is None:
        return {}
    by_lower = {f.name.lower(): f for f in offered}
    found: dict[str, str] = {}
    for field_ in stream.schema:
        given = by_lower.get(field_.name.lower())
        if given is None or (not stream.declared and not is_source_metadata(field_)):
            continue
        same_kind = (pa.types.is_timestamp(given.type) and pa.types.is_timestamp(field_.type)) or (
            pa.types.is_string(given.type) and pa.types.is_string(field_.type)
        )
        if not same_kind:
            raise ConnectorError(
                f"column {field_.name} comes from the source as {sql_type_name(given.type)}, "
                f"not {sql_type_name(field_.type)}",
                where=stream.where or stream.name,
                hint=f"declare it {field_.name} {sql_type_name(given.type)}",
            )
        found[field_.name] = given.name
    return found


def _reject_future(rows: pa.Table, stream: StreamDef, max_ahead_us: int) -> tuple[pa.Table, pa.Table | None]:
    """Rows whose event time is more than ``max_ahead_us`` ahead of the wall clock are errors:
    one such row would otherwise move the watermark far ahead and make every later row late."""
    from engine.formats.timestamps import now_us
    from engine.operators.base import error_rows, fmt_us

    col = stream.time_column
    if not col or rows.num_rows == 0:
        return rows, None
    limit = now_us() + max_ahead_us
    ahead = pc.greater(rows[col].cast(pa.int64()), limit)
    if not pc.any(ahead).as_py():
        return rows, None
    bad = rows.filter(ahead)
    errors = error_rows(
        bad,
        stream=stream.name,
        step_id=f"time:{stream.name}",
        reason="future",
        messages=f"{col} is more than {max_ahead_us // 1_000_000} s ahead of the clock ({fmt_us(limit)})",
        event_times=bad[col].combine_chunks(),
    )
    return rows.filter(pc.invert(ahead)), errors


def _sink_schema(program: Program, key: str, keep_rowtime: bool = False) -> pa.Schema:
    return written(program, program.streams[key].schema.empty_table(), keep_rowtime).schema


def written(program: Program, table: pa.Table, keep_rowtime: bool = False) -> pa.Table:
    """The columns of a result that leave the program: not the hidden ones, nor (KDA) ROWTIME,
    which is the rows' time rather than a value (select it under another name to keep it), unless
    ``keep_rowtime`` (the REPL's in-application streams need it downstream)."""
    out = visible(table)
    if program.kda and not keep_rowtime and "ROWTIME" in out.column_names:
        out = out.drop_columns(["ROWTIME"])
    return out
