"""The operator graph at run time: rows in at source streams, rows out at output streams.

One ``push`` is one tick: the rows of one source batch travel through every operator (in plan
order, which is topological) and the watermark moves with them. Operators with nothing new to
do are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from engine.operators.base import Operator
from engine.operators.join import StreamJoinOperator, StreamJoinSpec
from engine.operators.session import SessionAggOperator
from engine.operators.stagger import StaggerAggOperator
from engine.operators.stateless import StatelessOperator
from engine.operators.window import WindowAggOperator
from engine.plan.logical import Program, SessionAggSpec, SortSpec, StaggerAggSpec, StatelessSpec, WindowAggSpec
from engine.runtime.clock import EventClock
from engine.runtime.duck import connect
from engine.types import ERROR_SCHEMA, MIN_TIME, SEQ_COL


@dataclass
class TickResult:
    """What one tick produced: output rows per output stream key, and error rows."""

    outputs: dict[str, list[pa.Table]] = field(default_factory=dict)
    errors: list[pa.Table] = field(default_factory=list)


def make_operator(
    spec: object, con: duckdb.DuckDBPyConnection, source_stream: str, out_schema: pa.Schema | None = None
) -> Operator:
    """The live operator for a spec (the one table of operator kinds)."""
    if isinstance(spec, StreamJoinSpec):
        return StreamJoinOperator(spec, con)
    if isinstance(spec, WindowAggSpec):
        return WindowAggOperator(spec, con, out_schema)
    if isinstance(spec, SessionAggSpec):
        return SessionAggOperator(spec, con)
    if isinstance(spec, StaggerAggSpec):
        return StaggerAggOperator(spec, con)
    if isinstance(spec, SortSpec):
        from engine.operators.sort import SortOperator  # KDA's ORDER BY within a time bucket

        return SortOperator(spec, con)
    if isinstance(spec, StatelessSpec):
        return StatelessOperator(spec, con, source_stream)
    from engine.operators.over import OverOperator  # sliding windows: agg(x) OVER w
    from engine.plan.logical import OverSpec

    if isinstance(spec, OverSpec):
        return OverOperator(spec, con)
    from engine.operators.rcf import RcfOperator  # KDA's RANDOM_CUT_FOREST
    from engine.plan.logical import RcfSpec

    if isinstance(spec, RcfSpec):
        return RcfOperator(spec, con)
    raise TypeError(f"no operator for {type(spec).__name__}")


class Pipeline:
    """Runs a planned ``Program``'s operators; knows nothing of connectors."""

    def __init__(self, program: Program, con: duckdb.DuckDBPyConnection | None = None) -> None:
        self.program = program
        self.con = con or connect(integer_division=program.kda)
        for sql in program.functions:  # the program's CREATE FUNCTIONs
            self.con.execute(sql)
        self.clocks = {
            key: EventClock(program.streams[key].time_column, program.streams[key].delay_us) for key in program.sources
        }
        origin = {key: program.streams[key].name for key in program.sources}
        self.operators: list[Operator] = []
        for spec in program.operators:
            src = origin.get(spec.input, program.streams[spec.input].name)
            origin.setdefault(spec.output, src)
            self.operators.append(make_operator(spec, self.con, src, program.streams[spec.output].schema))
        self.producers: dict[str, list[int]] = {}
        for i, spec in enumerate(program.operators):
            self.producers.setdefault(spec.output, []).append(i)
        self.output_keys = {o.stream for o in program.outputs}
        self.last_input_wm = [MIN_TIME] * len(self.operators)

    def set_reference(self, key: str, table: pa.Table) -> None:
        """Use ``table`` as reference table ``key`` from the next batch on (start or reload)."""
        ref = self.program.references[key]
        if table.schema != ref.schema:
            table = table.select([f.name for f in ref.schema]).cast(ref.schema)
        self.con.register(ref.table_name, table)

    def stream_watermark(self, key: str) -> int:
        """A stream's watermark: its clock's for a source, else the slowest of its producers'."""
        if key in self.clocks:
            return self.clocks[key].watermark
        producers = self.producers.get(key, [])
        return min((self.operators[i].watermark for i in producers), default=MIN_TIME)

    def push(self, stream: str, rows: pa.Table | None) -> TickResult:
        """Send rows (already decoded, with ``__seq``) into source ``stream`` and run one tick."""
        pending: dict[str, list[pa.Table]] = {}
        if rows is not None and rows.num_rows:
            stamped = self.clocks[stream].stamp(rows)
            pending[stream] = [stamped]
        return self._tick(pending)

    def advance(self, stream: str, watermark: int) -> TickResult:
        """Move a source stream's watermark forward (idle source, end of input) and run a tick."""
        self.clocks[stream].advance_to(watermark)
        return self._tick({})

    def _tick(self, pending: dict[str, list[pa.Table]]) -> TickResult:
        result = TickResult()
        for key, tables in pending.items():
            if key in self.output_keys:
                result.outputs.setdefault(key, []).extend(tables)
        for i, (spec, op) in enumerate(zip(self.program.operators, self.operators)):
            inputs = pending.get(spec.input, [])
            wm = self.stream_watermark(spec.input)
            if not inputs and wm == self.last_input_wm[i]:
                continue
            self.last_input_wm[i] = wm
            rows = _concat(inputs) if inputs else _empty_like(self.program.streams[spec.input].schema)
            if len(inputs) > 1:
                rows = self._merge(spec.input, rows)
            out, errors = op.process(rows, wm)
            if errors is not None and errors.num_rows:
                result.errors.append(errors)
            if out is not None and out.num_rows:
                pending.setdefault(spec.output, []).append(out)
                if spec.output in self.output_keys:
                    result.outputs.setdefault(spec.output, []).append(out)
        return result

    def _merge(self, key: str, rows: pa.Table) -> pa.Table:
        """Rows that several producers wrote into one stream in this tick, in time order (then by
        position): KDA merges a stream's writers by ROWTIME, and operators that depend on arrival
        order (stagger windows, the random cut forest) then see the same order whatever the
        micro-batches were (one row per tick gives that order too)."""
        time_column = self.program.streams[key].time_column
        if time_column is None or time_column not in rows.column_names:
            return rows
        order = (
            [(time_column, "ascending"), (SEQ_COL, "ascending")]
            if SEQ_COL in rows.column_names
            else [(time_column, "ascending")]
        )
        return rows.sort_by(order)

    def state_size(self) -> tuple[int, int]:
        """(rows, bytes) held by every operator: partial aggregates, buffered rows, sessions."""
        rows = nbytes = 0
        for op in self.operators:
            for table in [*getattr(op, "state", []), *getattr(op, "buffer", [])]:
                rows += table.num_rows
                nbytes += table.nbytes
        return rows, nbytes

    def snapshot(self) -> dict:
        """Operator and clock state, for checkpoints."""
        return {
            "clocks": {k: c.snapshot() for k, c in self.clocks.items()},
            "operators": {spec.step_id: op.snapshot() for spec, op in zip(self.program.operators, self.operators)},
            "last_input_wm": list(self.last_input_wm),
        }

    def restore(self, snap: dict) -> None:
        """Load what ``snapshot`` returned into a fresh pipeline of the same program."""
        for k, c in snap["clocks"].items():
            self.clocks[k].restore(c)
        for spec, op in zip(self.program.operators, self.operators):
            op.restore(snap["operators"][spec.step_id])
        self.last_input_wm = list(snap["last_input_wm"])


def _concat(tables: list[pa.Table]) -> pa.Table:
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")


def _empty_like(schema: pa.Schema) -> pa.Table:
    fields = list(schema)
    for name in (SEQ_COL, "__wm"):
        if schema.get_field_index(name) < 0:
            fields.append(pa.field(name, pa.int64()))
    return pa.schema(fields).empty_table()


__all__ = ["ERROR_SCHEMA", "Pipeline", "TickResult"]
