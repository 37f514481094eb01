"""Sliding windows (``agg(x) OVER w``): one output row per input row, over the rows before it.

Rows are ordered by (event time, arrival); a row's window holds the rows of its partition at or
before it in that order that are inside the window (``RANGE``: time >= its time - size;
``ROWS n``: the last n rows and itself). The timeline of a row r at time t (W: the input
watermark after a tick; w: the watermark just before r arrived)::

    r arrives ........ t < w: late (a row after t in the order may have been emitted), error row
                       otherwise r waits (state: "pending")
    W reaches t ...... r is emitted, with the others that became due, in (time, arrival) order.
                       A row arriving later cannot come before r: its time would be < t <= W <=
                       its own w, which makes it late. With no watermark delay (KDA's ROWTIME)
                       W >= t in the very tick r arrives.
    W - range > t .... r leaves state once no later window can reach it (RANGE), or once each
                       ROWS window has n newer rows in r's partition.

So the output is the same however the input is split into micro-batches. Each tick with due
rows runs one DuckDB window query over the kept rows plus the due ones; EXP_AVG is computed in
numpy from the frames that query reports.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.operators.base import DATA_ERRORS, concat_optional, error_rows, fmt_us, run_rows, split_missing_time
from engine.plan.logical import OverSpec
from engine.runtime.duck import run
from engine.types import MAX_TIME, MIN_TIME, SEQ_COL, WM_COL

ARR = "__arr"
_PAIRS_PER_CHUNK = 1 << 20  # EXP_AVG: (row, window member) pairs evaluated at once


class OverOperator:
    """The live side of an ``OverSpec``: see the module docstring."""

    def __init__(self, spec: OverSpec, con: duckdb.DuckDBPyConnection) -> None:
        self.spec, self.con, self.step_id = spec, con, spec.step_id
        self.watermark = MIN_TIME
        self.kept: pa.Table | None = None  # emitted rows later windows may still reach (kept columns)
        self.pending: pa.Table | None = None  # accepted rows not emitted yet (every column)
        self.next_arr = 0
        ranges = [size for kind, size, _ in spec.windows if kind == "range"]
        self.max_range = max(ranges) if ranges else None

    @property
    def buffer(self) -> list[pa.Table]:
        """The rows held (for the state-size metric)."""
        return [t for t in (self.kept, self.pending) if t is not None]

    # ------------------------------------------------------------------ input
    def process(self, rows: pa.Table, watermark: int) -> tuple[pa.Table | None, pa.Table | None]:
        errors = self._accept(rows) if rows.num_rows else None
        wm = max(self.watermark, watermark)
        out, eval_errors = self._emit(wm)
        self._prune(wm)
        self.watermark = wm
        return out, concat_optional(errors, eval_errors)

    def _accept(self, rows: pa.Table) -> pa.Table | None:
        spec = self.spec
        rows, errors = split_missing_time(rows, spec.time_column, stream=spec.source_stream, step_id=self.step_id)
        n = rows.num_rows
        if n == 0:
            return errors
        rows = rows.append_column(ARR, pa.array(np.arange(self.next_arr, self.next_arr + n, dtype=np.int64)))
        self.next_arr += n
        x, bad = run_rows(self.con, spec.prep_sql, "__input", rows, stream=spec.source_stream, step_id=self.step_id)
        errors = concat_optional(errors, bad)
        if x is None or x.num_rows == 0:
            return errors
        t = _np(x["__t"])
        wm = _np(x[WM_COL])
        late = t < wm
        if late.any():
            late_rows = x.filter(pa.array(late))
            messages = [
                f"late: {fmt_us(int(a))} is behind the watermark {fmt_us(int(b))} "
                "(rows after it in time order were already emitted)"
                for a, b in zip(t[late], wm[late])
            ]
            errors = concat_optional(
                errors,
                error_rows(
                    late_rows,
                    stream=spec.source_stream,
                    step_id=self.step_id,
                    reason="late",
                    messages=messages,
                    event_times=late_rows[spec.time_column].combine_chunks(),
                ),
            )
            x = x.filter(pa.array(~late))
        if x.num_rows:
            self.pending = _concat(self.pending, x)
        return errors

    # ------------------------------------------------------------------ output
    def _emit(self, wm: int) -> tuple[pa.Table | None, pa.Table | None]:
        if self.pending is None:
            return None, None
        due = _np(self.pending["__t"]) <= wm
        if not due.any():
            return None, None
        ready = self.pending.filter(pa.array(due)).sort_by([("__t", "ascending"), (ARR, "ascending")])
        rest = self.pending.filter(pa.array(~due))
        self.pending = rest if rest.num_rows else None
        done, errors = self._windows(ready)
        outs: list[pa.Table] = []
        for rows, results in done:
            r = rows.select([c for c in rows.column_names if not c.startswith("__")] + [SEQ_COL, WM_COL])
            for name in self.spec.result_columns:
                r = r.append_column(name, results[name])
            out, bad = run_rows(
                self.con, self.spec.project_sql, "__r", r, stream=self.spec.source_stream, step_id=self.step_id
            )
            if out is not None and out.num_rows:
                outs.append(out)
            if bad is not None:
                errors.append(bad)
        out_table = pa.concat_tables(outs) if outs else None
        return out_table, (pa.concat_tables(errors) if errors else None)

    def _windows(self, ready: pa.Table) -> tuple[list[tuple[pa.Table, pa.Table]], list[pa.Table]]:
        """Window results for ``ready`` (sorted), which then join the kept rows.

        If DuckDB refuses the query on these rows (an overflow), they are split in halves, in
        order, until the rows whose windows cannot be computed are found: those become ``eval``
        error rows and stay out of later windows.
        """
        slim = ready.select(list(self.spec.kept_columns))
        h = _concat(self._history(), slim.append_column("__new", pa.array(np.ones(slim.num_rows, dtype=bool))))
        try:
            res = run(self.con, self.spec.window_sql, __h=h)
        except DATA_ERRORS as err:
            if ready.num_rows == 1:
                message = f"the window of this row could not be computed: {str(err).splitlines()[0]}"
                return [], [
                    error_rows(
                        ready,
                        stream=self.spec.source_stream,
                        step_id=self.step_id,
                        reason="eval",
                        messages=message,
                        event_times=ready[self.spec.time_column].combine_chunks(),
                    )
                ]
            half = ready.num_rows // 2
            first = self._windows(ready.slice(0, half))
            second = self._windows(ready.slice(half))
            return first[0] + second[0], first[1] + second[1]
        for name, j, arg, half_life in self.spec.exp_avgs:
            res = res.append_column(name, _exp_avg(res, j, arg, half_life))
        new = res.filter(res["__new"]).sort_by([("__t", "ascending"), (ARR, "ascending")])
        self.kept = _concat(self.kept, slim)
        return [(ready, new)], []

    def _history(self) -> pa.Table | None:
        if self.kept is None:
            return None
        return self.kept.append_column("__new", pa.array(np.zeros(self.kept.num_rows, dtype=bool)))

    def _prune(self, wm: int) -> None:
        """Drop kept rows that no later row's window can reach (later rows have time >= ``wm``)."""
        if self.kept is None:
            return
        if wm >= MAX_TIME:
            self.kept = None
            return
        keep = np.zeros(self.kept.num_rows, dtype=bool)
        if self.max_range is not None:
            reach = wm - self.max_range  # the earliest time a later row's RANGE window can hold
            keep |= _np(self.kept["__t"]) >= reach if reach > MIN_TIME else True
        if self.spec.keep_sql and not keep.all():
            needed = run(self.con, self.spec.keep_sql, __h=self.kept)[ARR]
            keep |= np.isin(_np(self.kept[ARR]), _np(needed))
        if not keep.all():
            kept = self.kept.filter(pa.array(keep))
            self.kept = kept if kept.num_rows else None

    # ------------------------------------------------------------------ checkpoints
    def snapshot(self) -> dict[str, Any]:
        return {
            "watermark": self.watermark,
            "next_arr": self.next_arr,
            "kept": self.kept,
            "pending": self.pending,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        self.watermark, self.next_arr = int(snap["watermark"]), int(snap["next_arr"])
        self.kept, self.pending = snap["kept"], snap["pending"]


def _np(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False)


def _concat(a: pa.Table | None, b: pa.Table | None) -> pa.Table:
    if a is None:
        assert b is not None
        return b
    if b is None:
        return a
    return pa.concat_tables([a, b], promote_options="permissive")


def _exp_avg(res: pa.Table, j: int, arg: str, half_life_us: int) -> pa.Array:
    """EXP_AVG over each new row's window: sum(x_i * w_i) / sum(w_i), w_i = 2 ** -((t - t_i) / half-life).

    ``res`` is the window query's result (kept and new rows): ``__g<j>`` numbers the partition,
    ``__rn<j>`` is the position in it and ``__k<j>`` how many rows before the current one are in
    its window. Rows whose value is NULL do not count; a window without values gives NULL. The
    weights are taken relative to the newest valued row of each window (weight 1), so nothing
    overflows or underflows to an empty sum; each window is summed on its own, so the result
    does not depend on which rows were in the same query.
    """
    n = res.num_rows
    g, rn, k, t = (_np(res[c]) for c in (f"__g{j}", f"__rn{j}", f"__k{j}", "__t"))
    x_col = pc.cast(res[arg], pa.float64())
    valid = _np(pc.is_valid(x_col))
    x = _np(pc.fill_null(x_col, 0.0)).astype(np.float64)
    order = np.lexsort((rn, g))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    ts, xs, vs = t[order].astype(np.float64), x[order], valid[order]
    new = np.flatnonzero(_np(res["__new"]))
    lens = k[new].astype(np.int64) + 1
    starts = position[new] - k[new].astype(np.int64)
    values = np.zeros(len(new))
    present = np.zeros(len(new), dtype=bool)
    i = 0
    while i < len(new):
        stop = i + max(1, int(np.searchsorted(np.cumsum(lens[i:]), _PAIRS_PER_CHUNK, side="right")))
        size = lens[i:stop]
        bounds = np.concatenate(([0], np.cumsum(size)))
        member = np.repeat(starts[i:stop] - bounds[:-1], size) + np.arange(bounds[-1])
        tm, xm, vm = ts[member], xs[member], vs[member]
        newest = np.maximum.reduceat(np.where(vm, tm, -np.inf), bounds[:-1])
        age = np.where(vm, tm - np.repeat(newest, size), 0.0)
        weight = np.where(vm, np.exp2(age / half_life_us), 0.0)
        den = np.add.reduceat(weight, bounds[:-1])
        num = np.add.reduceat(weight * xm, bounds[:-1])
        present[i:stop] = den > 0
        values[i:stop] = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        i = stop
    out = np.zeros(n)
    mask = np.ones(n, dtype=bool)
    out[new], mask[new] = values, ~present
    return pa.array(out, pa.float64(), mask=mask)


__all__ = ["OverOperator"]
