"""Session windows: activity separated by gaps.

A row at time ``t`` opens ``[t, t + gap)``; sessions of the same partition key that touch or
overlap merge, so a session is ``[first, last + gap)``. The timeline of a session::

    rows with __wm < last + gap + lateness .. join (and may bridge and merge sessions)
    watermark reaches last + gap ............. EMIT FINAL: the session's row is emitted
    later rows near it ....................... start a new session (a closed one never grows);
                                               if even that one is closed already, they are late

Rows are assigned to sessions one at a time in arrival order (a closed session must not be
extended by a row that arrived after it closed, even in the same micro-batch). Rows of open
sessions are buffered; each session has an id, and merged ids are joined with union-find.
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
from engine.plan.logical import SessionAggSpec, StaggerAggSpec
from engine.types import MAX_TIME, MIN_TIME, WINDOW_END, WINDOW_START, WINDOW_TIME, WM_COL


class SessionAggOperator:
    """The live side of a ``SessionAggSpec``: see the module docstring.

    Also the base of ``StaggerAggOperator`` (``engine.operators.stagger``), which keeps the
    buffering, closing, emitting and checkpoints and changes only how a row picks its window
    (``_assign``). A window is stored as ``[id, first, last]`` and ends at ``last + span``.
    """

    def __init__(self, spec: SessionAggSpec | StaggerAggSpec, con: duckdb.DuckDBPyConnection) -> None:
        self.spec, self.con, self.step_id = spec, con, spec.step_id
        self.span = spec.gap_us if isinstance(spec, SessionAggSpec) else spec.range_us
        self.watermark = MIN_TIME
        self.input_wm = MIN_TIME
        self.sessions: dict[tuple, list[list[int]]] = {}  # key -> [[id, first, last], ...]
        self.parent: dict[int, int] = {}
        self.bounds: dict[int, tuple[int, int, tuple]] = {}  # root id -> (first, last, key)
        self.buffer: list[pa.Table] = []
        self.next_id = 0
        self.emitted: dict[tuple, tuple] = {}
        self.touched: set[int] = set()
        self.fired: set[int] = set()
        self.out_seq = 0
        self.diffing = spec.emit == "changes" or spec.allowed_lateness_us > 0
        self._schema: pa.Schema | None = None

    def _find(self, sid: int) -> int:
        root = sid
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while sid != root:
            nxt = self.parent.get(sid, sid)
            self.parent[sid] = root
            sid = nxt
        return root

    # ------------------------------------------------------------------ input
    def process(self, rows: pa.Table, watermark: int) -> tuple[pa.Table | None, pa.Table | None]:
        errors = None
        if rows.num_rows:
            errors = self._absorb(rows)
        self.input_wm = max(self.input_wm, watermark)
        self.final_errors: pa.Table | None = None
        out = self._emit(self.input_wm)
        return out, concat_optional(errors, self.final_errors)

    def _absorb(self, rows: pa.Table) -> pa.Table | None:
        spec = self.spec
        rows, missing = split_missing_time(rows, spec.time_column, stream=spec.source_stream, step_id=self.step_id)
        x, errs = run_rows(self.con, spec.filter_sql, "__input", rows, stream=spec.source_stream, step_id=self.step_id)
        errs = concat_optional(missing, errs)
        if x is None or x.num_rows == 0:
            return errs
        times = x["__t"].to_pylist()
        wms = x[WM_COL].to_pylist()
        key_cols = [x[f"__pk{i}"].to_pylist() for i in range(len(spec.partition_sql))]
        sids = np.empty(x.num_rows, dtype=np.int64)
        late = np.zeros(x.num_rows, dtype=bool)
        for i, (t, w) in enumerate(zip(times, wms)):
            sid = self._assign(tuple(col[i] for col in key_cols), t, w)
            sids[i] = sid
            late[i] = sid < 0
        if late.any():
            late_rows = x.filter(pa.array(late))
            msgs = [self._late_message(t, w) for t, w, is_late in zip(times, wms, late) if is_late]
            cols = [c for c in late_rows.column_names if not c.startswith("__t") and not c.startswith("__pk")]
            errs = concat_optional(
                errs,
                error_rows(
                    late_rows.select(cols),
                    stream=spec.source_stream,
                    step_id=self.step_id,
                    reason="late",
                    messages=msgs,
                    event_times=late_rows[spec.time_column].combine_chunks(),
                ),
            )
            x = x.filter(pa.array(~late))
            sids = sids[~late]
        if x.num_rows:
            self.buffer.append(x.append_column("__sid", pa.array(sids)))
        return errs

    def _assign(self, key: tuple, t: int, w: int) -> int:
        """The id of the session that a row of ``key`` at time ``t`` (watermark ``w`` before it)
        joins, opening or merging sessions as needed; -1 when the row is late."""
        gap, lateness = self.span, self.spec.allowed_lateness_us
        open_ = self.sessions.setdefault(key, [])
        cands = [s for s in open_ if s[2] + gap + lateness > w and s[1] - gap <= t <= s[2] + gap]
        if not cands:
            return -1 if t + gap + lateness <= w else self._open(key, t)
        root = cands[0]
        for other in cands[1:]:
            root[1], root[2] = min(root[1], other[1]), max(root[2], other[2])
            self.parent[other[0]] = root[0]
            self.bounds.pop(other[0], None)
            if other[0] in self.fired:
                self.fired.discard(other[0])
                self.fired.add(root[0])
            open_.remove(other)
        root[1], root[2] = min(root[1], t), max(root[2], t)
        self.bounds[root[0]] = (root[1], root[2], key)
        self.touched.add(root[0])
        return int(root[0])

    def _open(self, key: tuple, t: int) -> int:
        """Open a new window ``[t, t + span)`` for ``key``; return its id."""
        sid = self.next_id
        self.next_id += 1
        self.sessions.setdefault(key, []).append([sid, t, t])
        self.bounds[sid] = (t, t, key)
        self.touched.add(sid)
        return sid

    def _late_message(self, t: int, w: int) -> str:
        return f"late: no open session at {fmt_us(t)} (watermark {fmt_us(w)})"

    # ------------------------------------------------------------------ output
    def _emit(self, wm: int) -> pa.Table | None:
        gap, lateness = self.span, self.spec.allowed_lateness_us
        self.touched = {self._find(r) for r in self.touched}
        if self.spec.emit == "changes":  # every session that changed, open or not
            wanted = {r for r in self.touched if r in self.bounds}
        elif self.diffing:  # EMIT FINAL with lateness: closed sessions, first firing or changed since
            wanted = {
                r
                for r, (_, last, _) in self.bounds.items()
                if last + gap <= wm and (r not in self.fired or r in self.touched)
            }
        else:
            wanted = {r for r, (_, last, _) in self.bounds.items() if last + gap <= wm}
        out = self._compute(wanted) if wanted else None
        self.fired |= {r for r, (_, last, _) in self.bounds.items() if last + gap <= wm}
        self.touched -= wanted  # what changed in a session that is still open is emitted when it closes
        horizon = wm - lateness if wm != MAX_TIME else MAX_TIME
        evict = {r for r, (f, last, _) in self.bounds.items() if last + gap <= horizon}
        if evict:
            self._evict(evict)
        if out is not None and out.num_rows:
            out = with_hidden(out, self.watermark, self.out_seq)
            self.out_seq += out.num_rows
        self.watermark = max(self.watermark, wm)
        return out if out is not None and out.num_rows else None

    def _state_rows(self, roots: set[int]) -> pa.Table | None:
        if not self.buffer:
            return None
        buf = pa.concat_tables(self.buffer, promote_options="permissive")
        self.buffer = [buf]
        sids = buf["__sid"].to_numpy(zero_copy_only=False)
        uniq, inverse = np.unique(sids, return_inverse=True)
        root_of = np.array([self._find(int(s)) for s in uniq], dtype=np.int64)
        rows_root = root_of[inverse]
        mask = np.isin(rows_root, np.fromiter(roots, dtype=np.int64, count=len(roots)))
        if not mask.any():
            return None
        sel = buf.filter(pa.array(mask))
        r = rows_root[mask]
        first = np.array([self.bounds[int(x)][0] for x in r], dtype=np.int64)
        last = np.array([self.bounds[int(x)][1] for x in r], dtype=np.int64)
        ws, we = first, last + self.span
        sel = sel.append_column("__ws", pa.array(ws)).append_column("__we", pa.array(we))
        sel = sel.append_column(WINDOW_START, pa.array(ws).cast(pa.timestamp("us")))
        sel = sel.append_column(WINDOW_END, pa.array(we).cast(pa.timestamp("us")))
        sel = sel.append_column(WINDOW_TIME, pa.array(we - 1000).cast(pa.timestamp("us")))
        return sel.append_column("__sess", pa.array(r))

    def _compute(self, roots: set[int]) -> pa.Table | None:
        state = self._state_rows(roots)
        if state is None:
            return None
        current, self.final_errors = run_final(
            self.con, self.spec.final_sql, state, stream=self.spec.source_stream, step_id=self.step_id
        )
        names = [c for c in current.column_names if not c.startswith("__")]
        if not self.diffing:
            return current.select(names)
        sess_pos = [c for c in current.column_names if c.startswith("__")].index("__sess")
        rows, seen, names = diff_results(current, self.emitted)
        deletes: list[tuple[str, tuple]] = []
        changes = self.spec.emit == "changes"
        for ident in list(self.emitted):
            if ident not in seen and self._find(ident[sess_pos]) in roots:
                values = self.emitted.pop(ident)
                if changes:
                    deletes.append(("delete", values))
        rows = deletes + rows  # a grown session's old row is retracted before the new one arrives
        self._schema = current.select(names).schema
        if not rows:
            return None
        columns = list(zip(*[v for _, v in rows]))
        table = pa.table({n: pa.array(list(c), self._schema.field(n).type) for n, c in zip(names, columns)})
        if changes:
            table = table.add_column(0, "op", pa.array([op for op, _ in rows], pa.string()))
        return table

    def _evict(self, roots: set[int]) -> None:
        for root in roots:
            first, last, key = self.bounds.pop(root)
            self.sessions[key] = [s for s in self.sessions.get(key, []) if s[0] != root]
            if not self.sessions[key]:
                del self.sessions[key]
            self.fired.discard(root)
        if self.buffer:
            buf = pa.concat_tables(self.buffer, promote_options="permissive")
            sids = buf["__sid"].to_numpy(zero_copy_only=False)
            uniq, inverse = np.unique(sids, return_inverse=True)
            root_of = np.array([self._find(int(s)) for s in uniq], dtype=np.int64)
            keep = ~np.isin(root_of[inverse], np.fromiter(roots, dtype=np.int64, count=len(roots)))
            kept = buf.filter(pa.array(keep))
            self.buffer = [kept] if kept.num_rows else []
        for ident in [k for k in self.emitted if self._find(k[2]) in roots or k[2] in roots]:
            del self.emitted[ident]

    # ------------------------------------------------------------------ checkpoints
    def snapshot(self) -> dict[str, Any]:
        return {
            "watermark": self.watermark,
            "input_wm": self.input_wm,
            "sessions": {k: [list(s) for s in v] for k, v in self.sessions.items()},
            "parent": dict(self.parent),
            "bounds": dict(self.bounds),
            "buffer": pa.concat_tables(self.buffer, promote_options="permissive") if self.buffer else None,
            "next_id": self.next_id,
            "emitted": dict(self.emitted),
            "fired": set(self.fired),
            "out_seq": self.out_seq,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        self.watermark, self.input_wm = snap["watermark"], snap["input_wm"]
        self.sessions = {k: [list(s) for s in v] for k, v in snap["sessions"].items()}
        self.parent, self.bounds = dict(snap["parent"]), dict(snap["bounds"])
        self.buffer = [snap["buffer"]] if snap["buffer"] is not None else []
        self.next_id, self.emitted = snap["next_id"], dict(snap["emitted"])
        self.fired, self.out_seq = set(snap["fired"]), snap["out_seq"]


__all__ = ["SessionAggOperator", "pc"]
