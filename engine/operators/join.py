"""Windowed stream-to-stream joins (KDA's ``FROM a OVER (RANGE ...) AS o JOIN b AS s ON ...``).

Both inputs arrive on one stream (see ``StreamJoinSpec``). A row of one side matches the rows of
the other side that are in that side's window ending at the row's time: ``RANGE r`` holds the
rows at most ``r`` older, ``ROWS n`` the latest ``n + 1`` rows, and a side without a window only
rows of the very same time. Rows are taken in event-time order (ties: the FROM side first, then
``__seq``), so a pair is decided once the watermark has passed the later row's time::

    a (FROM side, RANGE 1 min) ...... 10:00:20 ------------------------ 10:01:20
    b (joined side, no window) ............ 10:00:50 (matches a: ROWTIME 10:00:50)
    watermark passes 10:01:20 ........................................... a's matches are final:
                                                                          unmatched, a LEFT JOIN
                                                                          emits it null-padded at 10:01:20

Every decision depends only on rows' times and their own ``__wm``, never on how the input was
cut into micro-batches: a row whose time is below its stream's watermark is late (error row,
reason ``late``) and takes no part; every other row arrives before the join's frontier (the
input watermark) reaches its time. Output rows come out in ascending ROWTIME: the later row's
time for a pair, the time the row left its window for an unmatched outer row. A row is dropped
from state once no later row can match it.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.operators.base import DATA_ERRORS, error_rows, fmt_us, json_default, now_utc
from engine.plan.logical import StreamJoinSpec
from engine.runtime.duck import run
from engine.types import ERROR_SCHEMA, MAX_TIME, MIN_TIME

SIDE_COLS = ("__left", "__right")
TABLES = ("__ja", "__jb")
OUTER = {"inner": (), "left": (0,), "right": (1,), "full": (0, 1)}
NONE_ID = -1


class StreamJoinOperator:
    """The live side of a ``StreamJoinSpec``: see the module docstring."""

    def __init__(self, spec: StreamJoinSpec, con: duckdb.DuckDBPyConnection) -> None:
        self.spec, self.con, self.step_id = spec, con, spec.step_id
        self.watermark = MIN_TIME  # output watermark: every later output row has ROWTIME >= it
        self.frontier = MIN_TIME  # rows with __t below it have been matched
        self.buffers = [_empty_buffer(spec.side_schemas[0]), _empty_buffer(spec.side_schemas[1])]
        self.next_id = [0, 0]  # per side: the next row id
        self.next_idx = [0, 0]  # per side: the next position in event-time order
        self.max_t = MIN_TIME  # the latest time of a row taken (ROWS windows at end of input)

    @property
    def buffer(self) -> list[pa.Table]:
        """Rows held (for ``Pipeline.state_size``)."""
        return self.buffers

    # ------------------------------------------------------------------ input
    def process(self, rows: pa.Table, watermark: int) -> tuple[pa.Table | None, pa.Table | None]:
        errors: list[pa.Table] = []
        if rows.num_rows:
            sides = rows["__side"].to_numpy(zero_copy_only=False)
            for side in (0, 1):
                mask = sides == side
                if mask.any():
                    self._absorb(side, rows.filter(pa.array(mask)), errors)
        frontier = max(self.frontier, watermark)
        out = None
        if frontier > self.frontier:
            out = self._advance(frontier, errors)
            self.frontier = frontier
        self.watermark = max(self.watermark, self.frontier)
        return out, (pa.concat_tables(errors) if errors else None)

    def _absorb(self, side: int, part: pa.Table, errors: list[pa.Table]) -> None:
        data = _unpack(part, SIDE_COLS[side], self.spec.side_schemas[side])
        t = part["__t"]
        source = self.spec.sources[side]
        if t.null_count:
            missing = pc.is_null(t)
            errors.append(
                error_rows(
                    data.filter(missing),
                    stream=source,
                    step_id=self.step_id,
                    reason="missing_time",
                    messages="the event time of a joined row is NULL",
                )
            )
            keep = pc.invert(missing)
            data, part = data.filter(keep), part.filter(keep)
        if not part.num_rows:
            return
        times = part["__t"].to_numpy(zero_copy_only=False).astype(np.int64)
        wms = part["__wm"].to_numpy(zero_copy_only=False).astype(np.int64)
        late = (times < wms) | (times < self.frontier)
        if late.any():
            bad = data.filter(pa.array(late))
            bad_wm = np.maximum(wms[late], self.frontier)
            messages = [
                f"the row's time {fmt_us(int(t_))} was behind the watermark {fmt_us(int(w))} when it arrived: "
                "rows of that time had already been joined"
                for t_, w in zip(times[late], bad_wm)
            ]
            errors.append(
                error_rows(
                    bad,
                    stream=source,
                    step_id=self.step_id,
                    reason="late",
                    messages=messages,
                    event_times=pa.array(times[late]).cast(pa.timestamp("us")),
                )
            )
            data, times = data.filter(pa.array(~late)), times[~late]
        n = data.num_rows
        if not n:
            return
        ids = np.arange(self.next_id[side], self.next_id[side] + n, dtype=np.int64)
        self.next_id[side] += n
        data = (
            data.append_column("__id", pa.array(ids))
            .append_column("__t", pa.array(times))
            .append_column("__idx", pa.array(np.full(n, NONE_ID, dtype=np.int64)))
            .append_column("__matched", pa.array(np.zeros(n, dtype=bool)))
        )
        self.buffers[side] = pa.concat_tables([self.buffers[side], data])
        self.max_t = max(self.max_t, int(times.max()))

    # ------------------------------------------------------------------ matching
    def _advance(self, frontier: int, errors: list[pa.Table]) -> pa.Table | None:
        due = [self._assign_positions(side, frontier) for side in (0, 1)]
        pairs = self._match(due, errors) if any(d.any() for d in due) else _no_pairs()
        matched = [set(pairs["__ia"].to_pylist()), set(pairs["__ib"].to_pylist())]
        for side in (0, 1):
            if matched[side]:
                buf = self.buffers[side]
                hit = pc.is_in(buf["__id"], pa.array(sorted(matched[side]), pa.int64()))
                self.buffers[side] = _set(buf, "__matched", pc.or_(buf["__matched"], hit))
        finals = [self._final(side, frontier) for side in (0, 1)]
        rows = [self._pair_rows(pairs)]
        for side in OUTER[self.spec.join_type]:
            final, exits = finals[side]
            unmatched = final & ~self.buffers[side]["__matched"].to_numpy(zero_copy_only=False)
            if unmatched.any():
                rows.append(self._outer_rows(side, unmatched, exits))
        jp = pa.concat_tables(rows)
        out = self._project(jp, errors) if jp.num_rows else None
        for side in (0, 1):
            final = finals[side][0]
            if final.any():
                self.buffers[side] = self.buffers[side].filter(pa.array(~final))
        return out

    def _assign_positions(self, side: int, frontier: int) -> np.ndarray:
        """Number the rows that became due (time below ``frontier``) in event-time order."""
        buf = self.buffers[side]
        idx = buf["__idx"].to_numpy(zero_copy_only=False).copy()
        t = buf["__t"].to_numpy(zero_copy_only=False)
        due = (idx == NONE_ID) & (t < frontier)
        if due.any():
            where = np.nonzero(due)[0]
            seq = buf["__seq"].to_numpy(zero_copy_only=False)[where]
            ids = buf["__id"].to_numpy(zero_copy_only=False)[where]
            order = np.lexsort((ids, seq, t[where]))
            idx[where[order]] = np.arange(self.next_idx[side], self.next_idx[side] + len(where), dtype=np.int64)
            self.next_idx[side] += len(where)
            self.buffers[side] = _set(buf, "__idx", pa.array(idx))
        return due

    def _latest_position(self, side: int, times: np.ndarray) -> np.ndarray:
        """For each time, the position of the side's latest numbered row at or before it."""
        buf = self.buffers[side]
        idx = buf["__idx"].to_numpy(zero_copy_only=False)
        numbered = idx != NONE_ID
        pos, t = idx[numbered], buf["__t"].to_numpy(zero_copy_only=False)[numbered]
        order = np.argsort(pos, kind="stable")
        pos, t = pos[order], t[order]
        if not len(pos):  # every numbered row was dropped: all are at or before any due time
            return np.full(len(times), self.next_idx[side] - 1, dtype=np.int64)
        at = np.searchsorted(t, times, side="right") - 1
        return np.where(at >= 0, pos[np.maximum(at, 0)], pos[0] - 1).astype(np.int64)

    def _side_table(self, side: int, due: np.ndarray) -> pa.Table:
        buf = self.buffers[side]
        table = buf.append_column("__due", pa.array(due))
        t = buf["__t"].to_numpy(zero_copy_only=False)
        for other in (0, 1):
            if self.spec.windows[other][0] == "rows":
                mx = self._latest_position(other, t)
                table = table.append_column(f"__mx{other}", pa.array(mx))
            else:
                table = table.append_column(f"__mx{other}", pa.nulls(buf.num_rows, pa.int64()))
        return table

    def _match(self, due: list[np.ndarray], errors: list[pa.Table]) -> pa.Table:
        """Pairs (``__ia``, ``__ib``) whose later row is one of the ``due`` rows.

        When the join condition fails on some pair (a division by zero), the pairs the windows
        allow are checked one group at a time, and each pair whose condition cannot be
        evaluated becomes an ``eval`` error row.
        """
        tables = {TABLES[s]: self._side_table(s, due[s]) for s in (0, 1)}
        try:
            return run(self.con, self.spec.match_sql, **tables)
        except DATA_ERRORS:
            pass
        candidates = run(self.con, self.spec.candidates_sql, **tables)
        for name, table in tables.items():
            self.con.register(name, table)
        try:
            found: list[pa.Table] = []
            self._check_part(candidates, found, errors)
        finally:
            for name in tables:
                self.con.unregister(name)
        return pa.concat_tables(found) if found else _no_pairs()

    def _check_part(self, candidates: pa.Table, found: list[pa.Table], errors: list[pa.Table]) -> None:
        try:
            checked = run(self.con, self.spec.condition_sql, __jc=candidates)
            found.append(checked.filter(pc.fill_null(checked["__ok"], False)).select(["__ia", "__ib"]))
            return
        except DATA_ERRORS as err:
            if candidates.num_rows == 1:
                ia, ib = candidates["__ia"][0].as_py(), candidates["__ib"][0].as_py()
                ids = np.array([ia], dtype=np.int64), np.array([ib], dtype=np.int64)
                rowtime = int(max(self._lookup(0, ids[0], "__t")[0], self._lookup(1, ids[1], "__t")[0]))
                jp = _jp_table([ia], [ib], [rowtime], [int(self._lookup(0, ids[0], "__seq")[0])], [0])
                errors.append(self._pair_error(jp, str(err).split("\n")[0], "the join condition"))
                return
        half = candidates.num_rows // 2
        self._check_part(candidates.slice(0, half), found, errors)
        self._check_part(candidates.slice(half), found, errors)

    def _final(self, side: int, frontier: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows no later row can match, the time each left its window)."""
        buf = self.buffers[side]
        idx = buf["__idx"].to_numpy(zero_copy_only=False)
        t = buf["__t"].to_numpy(zero_copy_only=False)
        kind, size = self.spec.windows[side]
        numbered = idx != NONE_ID
        if kind == "rows":
            exits = np.full(len(t), self.max_t, dtype=np.int64)
            by_pos = dict(zip(idx[numbered].tolist(), t[numbered].tolist()))
            for i in np.nonzero(numbered)[0]:
                exits[i] = by_pos.get(int(idx[i]) + size + 1, self.max_t)
            gone = numbered & (idx <= self.next_idx[side] - 1 - (size + 1))
        else:
            reach = max(size, 0) if kind == "range" else 0
            exits = np.minimum(t, MAX_TIME - reach) + reach
            gone = numbered & (exits < frontier)
        if frontier == MAX_TIME:
            gone = numbered
        return gone, exits

    # ------------------------------------------------------------------ output
    def _pair_rows(self, pairs: pa.Table) -> pa.Table:
        if not pairs.num_rows:
            return _jp_table([], [], [], [], [])
        ia = pairs["__ia"].to_numpy(zero_copy_only=False)
        ib = pairs["__ib"].to_numpy(zero_copy_only=False)
        ta, seq_a = self._lookup(0, ia, "__t"), self._lookup(0, ia, "__seq")
        tb = self._lookup(1, ib, "__t")
        rt = np.maximum(ta, tb)
        return _jp_table(ia.tolist(), ib.tolist(), rt.tolist(), seq_a.tolist(), [0] * len(ia))

    def _outer_rows(self, side: int, unmatched: np.ndarray, exits: np.ndarray) -> pa.Table:
        buf = self.buffers[side]
        ids = buf["__id"].to_numpy(zero_copy_only=False)[unmatched].tolist()
        seqs = buf["__seq"].to_numpy(zero_copy_only=False)[unmatched].tolist()
        rts = exits[unmatched].tolist()
        none = [None] * len(ids)
        if side == 0:
            return _jp_table(ids, none, rts, seqs, [1] * len(ids))
        return _jp_table(none, ids, rts, seqs, [2] * len(ids))

    def _lookup(self, side: int, ids: np.ndarray, column: str) -> np.ndarray:
        buf = self.buffers[side]
        where = pc.index_in(pa.array(ids, pa.int64()), value_set=buf["__id"])
        return buf[column].take(where).to_numpy(zero_copy_only=False).astype(np.int64)

    def _project(self, jp: pa.Table, errors: list[pa.Table]) -> pa.Table | None:
        rt = jp["__rt"].to_numpy(zero_copy_only=False)
        ia = jp["__ia"].fill_null(-1).to_numpy(zero_copy_only=False)
        ib = jp["__ib"].fill_null(-1).to_numpy(zero_copy_only=False)
        order = np.lexsort((ib, ia, jp["__kind"].to_numpy(zero_copy_only=False), rt))
        jp = jp.take(pa.array(order)).drop_columns(["__kind"])
        jp = jp.append_column("__o", pa.array(np.arange(jp.num_rows, dtype=np.int64)))
        jp = jp.append_column("__wm", jp["__rt"])
        for side in (0, 1):
            self.con.register(TABLES[side], self.buffers[side])
        try:
            outs: list[pa.Table] = []
            self._project_part(jp, outs, errors)
        finally:
            for side in (0, 1):
                self.con.unregister(TABLES[side])
        kept = [o for o in outs if o.num_rows]
        return pa.concat_tables(kept) if kept else None

    def _project_part(self, jp: pa.Table, outs: list[pa.Table], errors: list[pa.Table]) -> None:
        try:
            outs.append(run(self.con, self.spec.project_sql, __jp=jp))
            return
        except DATA_ERRORS as err:
            if jp.num_rows == 1:
                errors.append(self._pair_error(jp, str(err).split("\n")[0]))
                return
        half = jp.num_rows // 2
        self._project_part(jp.slice(0, half), outs, errors)
        self._project_part(jp.slice(half), outs, errors)

    # ------------------------------------------------------------------ errors
    def _pair_error(self, jp: pa.Table, message: str, what: str = "a joined row") -> pa.Table:
        record: dict[str, Any] = {}
        side_of_seq = 0
        for side, column in ((0, "__ia"), (1, "__ib")):
            rid = jp[column][0].as_py()
            if rid is None:
                continue
            buf = self.buffers[side]
            row = buf.filter(pc.equal(buf["__id"], rid)).select(self.spec.side_schemas[side].names)
            record[self.spec.aliases[side]] = row.to_pylist()[0] if row.num_rows else None
            if side == 0 or jp["__ia"][0].as_py() is None:
                side_of_seq = side
        stream = self.spec.sources[side_of_seq]
        seq = jp["__seq"][0].as_py()
        payload = json.dumps(record, default=json_default).encode()
        return pa.table(
            {
                "stream": [stream],
                "step_id": [self.step_id],
                "reason": ["eval"],
                "message": [f"{what} could not be computed: {message}"],
                "payload": pa.array([payload], pa.large_binary()),
                "source_offset": [f"{stream}:{seq}"],
                "event_time": pa.array([jp["__rt"][0].as_py()], pa.int64()).cast(pa.timestamp("us")),
                "detected_at": pa.array([now_utc()], pa.timestamp("us")),
            },
            schema=ERROR_SCHEMA,
        )

    # ------------------------------------------------------------------ state
    def snapshot(self) -> dict[str, Any]:
        return {
            "watermark": self.watermark,
            "frontier": self.frontier,
            "buffers": list(self.buffers),
            "next_id": list(self.next_id),
            "next_idx": list(self.next_idx),
            "max_t": self.max_t,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.watermark, self.frontier = int(state["watermark"]), int(state["frontier"])
        self.buffers = list(state["buffers"])
        self.next_id, self.next_idx = list(state["next_id"]), list(state["next_idx"])
        self.max_t = int(state["max_t"])


def _empty_buffer(schema: pa.Schema) -> pa.Table:
    extra = [("__seq", pa.int64()), ("__wm", pa.int64()), ("__id", pa.int64()), ("__t", pa.int64())]
    extra += [("__idx", pa.int64()), ("__matched", pa.bool_())]
    return pa.schema([*schema, *(pa.field(n, t) for n, t in extra)]).empty_table()


def _unpack(part: pa.Table, column: str, schema: pa.Schema) -> pa.Table:
    """One side's rows: the packed struct's fields as columns, plus ``__seq``/``__wm``."""
    packed = part[column].combine_chunks()
    if isinstance(packed, pa.ChunkedArray):  # an empty column stays chunked
        packed = pa.array([], packed.type) if packed.num_chunks == 0 else packed.chunk(0)
    fields = packed.flatten() if len(packed) else [pa.array([], f.type) for f in schema]
    table = pa.table(dict(zip(schema.names, fields)), schema=schema)
    return table.append_column("__seq", part["__seq"]).append_column("__wm", part["__wm"])


def _set(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _no_pairs() -> pa.Table:
    return pa.table({"__ia": pa.array([], pa.int64()), "__ib": pa.array([], pa.int64())})


def _jp_table(ia: list, ib: list, rt: list, seq: list, kind: list) -> pa.Table:
    return pa.table(
        {
            "__ia": pa.array(ia, pa.int64()),
            "__ib": pa.array(ib, pa.int64()),
            "__rt": pa.array(rt, pa.int64()),
            "__seq": pa.array(seq, pa.int64()),
            "__kind": pa.array(kind, pa.int64()),
        }
    )


__all__ = ["StreamJoinOperator", "StreamJoinSpec"]
