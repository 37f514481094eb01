"""Tumbling, hopping, cumulating and global (unwindowed) grouped aggregation.

The timeline of one window ``[start, end)``::

    rows with __wm < end .......... counted (on time)
    watermark reaches end ......... EMIT FINAL: the window's rows are emitted once
    end <= __wm < end + lateness .. still counted; a corrected row is emitted (allowed lateness)
    __wm >= end + lateness ........ late: the row goes to the error stream for this window,
                                    and still counts in its other windows that are open (HOP)

Lateness is judged per row with the watermark *before* the row (``__wm``), so where micro-batches
split never changes a result. State is a list of Arrow tables of state rows (partial aggregates
per window and key, or buffered rows); it is filtered by ``__we`` when windows close.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.operators.base import (
    concat_optional,
    diff_results,
    error_rows,
    fmt_us,
    run_final,
    run_rows,
    split_missing_time,
    with_hidden,
)
from engine.plan.logical import WindowAggSpec
from engine.runtime.duck import run
from engine.types import MAX_TIME, MIN_TIME, WM_COL

COMPACT_EVERY = 16  # state tables kept before partial aggregates are merged
DUCKDB_FROM_ROWS = 200_000  # batches this large aggregate faster in DuckDB than in Arrow


class WindowAggOperator:
    """The live side of a ``WindowAggSpec``: see the module docstring."""

    def __init__(
        self, spec: WindowAggSpec, con: duckdb.DuckDBPyConnection, out_schema: pa.Schema | None = None
    ) -> None:
        self.spec, self.con, self.step_id = spec, con, spec.step_id
        self.out_schema = out_schema
        self.watermark = MIN_TIME  # output watermark (what was forwarded downstream)
        self.input_wm = MIN_TIME
        self.state: list[pa.Table] = []
        self.min_end = MAX_TIME  # smallest __we in state (EMIT FINAL without lateness)
        self.emitted: dict[tuple, tuple] = {}  # group identity -> last emitted values (diff modes)
        self.out_seq = 0
        self.diffing = spec.emit == "changes" or spec.allowed_lateness_us > 0
        self.final_errors: pa.Table | None = None
        self.pending_we: set[int] = set()  # windows that got rows since the last emission (diff modes)

    # ------------------------------------------------------------------ input
    def process(self, rows: pa.Table, watermark: int) -> tuple[pa.Table | None, pa.Table | None]:
        errors = None
        if rows.num_rows:
            state_rows, errors = self._absorb(rows)
            if state_rows is not None and state_rows.num_rows:
                self.state.append(state_rows)
                self.min_end = min(self.min_end, pc.min(state_rows["__we"]).as_py())
                if self.diffing:
                    self.pending_we.update(pc.unique(state_rows["__we"]).to_pylist())
                if len(self.state) > COMPACT_EVERY:
                    self._compact()
        self.input_wm = max(self.input_wm, watermark)
        self.final_errors = None
        out = self._emit(self.input_wm)
        return out, concat_optional(errors, self.final_errors)

    def _absorb(self, rows: pa.Table) -> tuple[pa.Table | None, pa.Table | None]:
        spec, lateness = self.spec, self.spec.allowed_lateness_us
        rows, errs = split_missing_time(rows, spec.time_column, stream=spec.source_stream, step_id=self.step_id)
        if rows.num_rows == 0:
            return None, errs
        if spec.fast_path:
            ts = rows[spec.time_column].cast(pa.int64()).to_numpy(zero_copy_only=False)
            ws = ts - np.mod(ts - spec.offset_us, spec.size_us)
            we = ws + spec.size_us
            x = rows.append_column("__ws", pa.array(ws)).append_column("__we", pa.array(we))
            late = we + lateness <= rows[WM_COL].to_numpy(zero_copy_only=False)
            if spec.arrow is not None:
                if late.any():
                    errs = concat_optional(errs, self._late_errors(x.filter(pa.array(late)), x.filter(pa.array(~late))))
                    x = x.filter(pa.array(~late))
                return (self._arrow_partial(x) if x.num_rows else None), errs
            if not late.any():
                pre, eval_errs = run_rows(
                    self.con, spec.fast_pre_sql, "__x", x, stream=spec.source_stream, step_id=self.step_id
                )
                return pre, concat_optional(errs, eval_errs)
            if spec.fast_filter_sql:
                x, eval_errs = run_rows(
                    self.con, spec.fast_filter_sql, "__x", x, stream=spec.source_stream, step_id=self.step_id
                )
                errs = concat_optional(errs, eval_errs)
                if x is None or x.num_rows == 0:
                    return None, errs
        else:
            x, eval_errs = run_rows(
                self.con, spec.expand_sql, "__input", rows, stream=spec.source_stream, step_id=self.step_id
            )
            errs = concat_optional(errs, eval_errs)
            if x is None or x.num_rows == 0:
                return None, errs
        we_arr = x["__we"].to_numpy(zero_copy_only=False)
        if spec.window == "global":  # its one window ends at +infinity: nothing is ever late
            late = np.zeros(x.num_rows, dtype=bool)
        else:
            late = we_arr + lateness <= x[WM_COL].to_numpy(zero_copy_only=False)
        if late.any():
            errs = concat_optional(errs, self._late_errors(x.filter(pa.array(late)), x.filter(pa.array(~late))))
            x = x.filter(pa.array(~late))
        if x.num_rows == 0:
            return None, errs
        pre, eval_errs = run_rows(self.con, spec.pre_sql, "__x", x, stream=spec.source_stream, step_id=self.step_id)
        return pre, concat_optional(errs, eval_errs)

    def _late_errors(self, late: pa.Table, kept: pa.Table) -> pa.Table:
        """One error row per late row (a HOP row late for several windows is still one row)."""
        spec = self.spec
        seqs = late["__seq"].to_numpy(zero_copy_only=False)
        _, first = np.unique(seqs, return_index=True)
        first.sort()
        ends = late["__we"].to_pylist()
        starts = late["__ws"].to_pylist()
        wms = late[WM_COL].to_pylist()
        kept_seqs = set(kept["__seq"].to_pylist()) if kept.num_rows else set()
        messages = []
        for i in first:
            window = f"[{fmt_us(starts[i])}, {fmt_us(ends[i])})"
            text = f"late: window {window} closed (watermark {fmt_us(wms[i])})"
            if seqs[i] in kept_seqs:
                text += "; still counted in its open windows"
            messages.append(text)
        rows = late.take(pa.array(first))
        cols = [c for c in rows.column_names if c not in ("__ws", "__we", "window_start", "window_end", "window_time")]
        rows = rows.select(cols)
        times = rows[spec.time_column] if spec.time_column in rows.column_names else None
        return error_rows(
            rows,
            stream=spec.source_stream,
            step_id=self.step_id,
            reason="late",
            messages=messages,
            event_times=times.combine_chunks() if times is not None else None,
        )

    def _arrow_partial(self, x: pa.Table) -> pa.Table:
        """Partial aggregates of ``x``: Arrow's hash aggregation for micro-batches, DuckDB's
        (faster per row, slower to start) for the large batches of a catch-up."""
        if x.num_rows >= DUCKDB_FROM_ROWS:
            empty = self._arrow_group(x.slice(0, 0))
            return run(self.con, self.spec.pre_sql, __x=x).cast(empty.schema)
        return self._arrow_group(x)

    def _arrow_group(self, x: pa.Table) -> pa.Table:
        plan = self.spec.arrow
        group = ["__ws", "__we", *plan.keys]
        aggs = [([], fn) if col is None else (col, fn) for _, fn, col in plan.partials]
        out = x.group_by(group, use_threads=x.num_rows >= 200_000).aggregate(aggs)
        names = [name for name, _, _ in plan.partials]
        columns = _keys_then_aggregates(out, group, len(aggs))
        return pa.table(columns, names=["__ws", "__we", *(f"__k{i}" for i in range(len(plan.keys))), *names])

    def _arrow_merge(self, state: pa.Table) -> pa.Table:
        plan = self.spec.arrow
        group = ["__ws", "__we", *(f"__k{i}" for i in range(len(plan.keys)))]
        out = state.group_by(group, use_threads=state.num_rows >= 200_000).aggregate([(p, fn) for p, fn in plan.merges])
        columns = _keys_then_aggregates(out, group, len(plan.merges))
        return pa.table(columns, names=[*group, *(p for p, _ in plan.merges)])

    def _arrow_final(self, state: pa.Table, shared: np.ndarray | None) -> pa.Table:
        """Results of closed windows from their state rows. Only windows whose rows came from
        more than one state table (``shared``; None: all of them) need merging first."""
        if shared is None:
            merged = self._arrow_merge(state)
        elif len(shared) == 0:
            merged = state
        else:
            mask = pc.is_in(state["__we"], value_set=pa.array(shared, pa.int64()))
            merged = pa.concat_tables([self._arrow_merge(state.filter(mask)), state.filter(pc.invert(mask))])
        merged = _in_group_order(merged)
        columns, names = [], []
        for name, op, cols in self.spec.arrow.final:
            if op == "key":
                col = merged[cols[0]]
            elif op in ("window_start", "window_end", "window_time"):
                base = merged["__ws"] if op == "window_start" else merged["__we"]
                if op == "window_time":
                    base = pc.subtract(base, 1000)
                col = base.cast(pa.timestamp("us"))
            elif op == "count":
                col = pc.coalesce(merged[cols[0]], 0)
            elif op == "avg":
                total, count = merged[cols[0]], merged[cols[1]]
                col = pc.divide(
                    total.cast(pa.float64()), pc.if_else(pc.equal(count, 0), None, count).cast(pa.float64())
                )
            else:  # sum, sum_int, min, max
                col = merged[cols[0]]
            columns.append(col)
            names.append(name)
        table = pa.table(columns, names=names)
        return table.cast(self.out_schema) if self.out_schema is not None else table

    def _compact(self) -> None:
        state = pa.concat_tables(self.state, promote_options="permissive")
        if self.spec.arrow is not None:
            state = self._arrow_merge(state)
        elif self.spec.compact_sql:
            state = run(self.con, self.spec.compact_sql, __state=state)
        self.state = [state]

    # ------------------------------------------------------------------ output
    def _emit(self, wm: int) -> pa.Table | None:
        if not self.state and not self.emitted:
            self.watermark = max(self.watermark, wm)
            return None
        out = self._emit_diff(wm) if self.diffing else self._emit_closed(wm)
        if out is not None and out.num_rows:
            out = with_hidden(out, self.watermark, self.out_seq)
            self.out_seq += out.num_rows
        self.watermark = max(self.watermark, wm)
        return out if out is not None and out.num_rows else None

    def _emit_closed(self, wm: int) -> pa.Table | None:
        """EMIT FINAL without lateness: every window with end <= wm, once, then forgotten."""
        if wm < self.min_end:
            return None
        shared = _shared_windows(self.state)
        closed_parts, rest = [], []
        for table in self.state:  # table by table: each keeps at most one row per group
            closing = pc.less_equal(table["__we"], wm)
            closed_parts.append(table.filter(closing))
            kept = table.filter(pc.invert(closing))
            if kept.num_rows:
                rest.append(kept)
        self.state = rest
        self.min_end = min((pc.min(t["__we"]).as_py() for t in rest), default=MAX_TIME)
        closed = pa.concat_tables(closed_parts, promote_options="permissive")
        if closed.num_rows == 0:
            return None
        if self.spec.arrow is not None and self.spec.arrow.final is not None:
            return self._arrow_final(closed, shared)
        result, errors = run_final(
            self.con, self.spec.final_sql, closed, stream=self.spec.source_stream, step_id=self.step_id
        )
        self.final_errors = errors
        if " ORDER BY " not in self.spec.final_sql:
            result = _in_group_order(result)
        return _drop_ids(result)

    def _emit_diff(self, wm: int) -> pa.Table | None:
        """EMIT CHANGES, or EMIT FINAL with allowed lateness: emit what changed since last time."""
        spec, lateness = self.spec, self.spec.allowed_lateness_us
        changes = spec.emit == "changes"
        state = pa.concat_tables(self.state, promote_options="permissive") if self.state else None
        if state is not None and state.num_rows:
            we = state["__we"]
            if changes:
                wanted = pa.array(sorted(self.pending_we), pa.int64())
            else:
                closed_now = {w for w in pc.unique(we).to_pylist() if w <= wm and w > self.input_wm_prev()}
                wanted = pa.array(sorted({w for w in self.pending_we if w <= wm} | closed_now), pa.int64())
            candidates = state.filter(pc.is_in(we, value_set=wanted)) if len(wanted) else state.slice(0, 0)
        else:
            candidates = None
        rows: list[tuple] = []
        names: list[str] = []
        if candidates is not None and candidates.num_rows:
            current, self.final_errors = run_final(
                self.con, spec.final_sql, candidates, stream=spec.source_stream, step_id=self.step_id
            )
            found, seen, names = diff_results(current, self.emitted)
            rows += found
            if changes:
                touched = set(wanted.to_pylist())
                for ident in [k for k in self.emitted if k[1] in touched and k not in seen]:
                    rows.append(("delete", self.emitted.pop(ident)))
            self._schema_names = names
            self._schema = current.select(names).schema
        self.pending_we = {w for w in self.pending_we if w > wm} if not changes else set()
        self._mark_input_wm(wm)
        # evict windows that can no longer change
        horizon = wm - lateness if wm != MAX_TIME else MAX_TIME
        if state is not None and state.num_rows:
            kept_tables = [t.filter(pc.greater(t["__we"], horizon)) for t in self.state]
            self.state = [t for t in kept_tables if t.num_rows]
        for ident in [k for k in self.emitted if k[1] <= horizon]:
            del self.emitted[ident]
        if not rows:
            return None
        schema = self._schema
        columns = list(zip(*[values for _, values in rows]))
        table = pa.table({n: pa.array(list(c), schema.field(n).type) for n, c in zip(schema.names, columns)})
        if changes:
            table = table.add_column(0, "op", pa.array([op for op, _ in rows], pa.string()))
        return table

    _prev_wm = MIN_TIME

    def input_wm_prev(self) -> int:
        """The input watermark at the previous emission (windows closing now end after it)."""
        return self._prev_wm

    def _mark_input_wm(self, wm: int) -> None:
        self._prev_wm = wm

    # ------------------------------------------------------------------ checkpoints
    def snapshot(self) -> dict[str, Any]:
        return {
            "watermark": self.watermark,
            "input_wm": self.input_wm,
            "prev_wm": self._prev_wm,
            "state": list(self.state),
            "emitted": dict(self.emitted),
            "out_seq": self.out_seq,
            "pending_we": sorted(self.pending_we),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        self.watermark, self.input_wm, self._prev_wm = snap["watermark"], snap["input_wm"], snap["prev_wm"]
        self.state = [t for t in snap["state"] if t.num_rows]
        self.min_end = min((pc.min(t["__we"]).as_py() for t in self.state), default=MAX_TIME)
        self.emitted = dict(snap["emitted"])
        self.out_seq = snap["out_seq"]
        self.pending_we = set(snap["pending_we"])


def _shared_windows(tables: list[pa.Table]) -> np.ndarray:
    """Window ends (``__we``) that occur in more than one of ``tables``.

    Each state table holds at most one row per (window, key): a table comes from one group-by.
    """
    if len(tables) < 2:
        return np.empty(0, dtype=np.int64)
    ends = np.concatenate([np.unique(t["__we"].to_numpy()) for t in tables])
    uniq, counts = np.unique(ends, return_counts=True)
    return uniq[counts > 1]


def _keys_then_aggregates(out: pa.Table, group: list[str], n_aggs: int) -> list[pa.ChunkedArray]:
    """Columns of a ``group_by().aggregate()`` result as keys, then aggregates, in the order asked.

    (pyarrow has put the keys first in some versions and last in others.)
    """
    if out.column_names[: len(group)] == group:
        return [out.column(i) for i in range(len(group) + n_aggs)]
    return [out.column(n_aggs + i) for i in range(len(group))] + [out.column(i) for i in range(n_aggs)]


def _in_group_order(table: pa.Table) -> pa.Table:
    """Rows by window, then by key: KPI rows read in order (emission order is otherwise hash order)."""
    ids = [c for c in table.column_names if c == "__ws" or c == "__we" or c.startswith("__k")]
    return table.sort_by([(c, "ascending") for c in ids]) if ids and table.num_rows > 1 else table


def _drop_ids(table: pa.Table) -> pa.Table:
    return table.select([c for c in table.column_names if not c.startswith("__")])
