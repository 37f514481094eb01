"""KDA's streaming ORDER BY: rows gathered per time bucket, sorted when the bucket closes.

``ORDER BY FLOOR(s.ROWTIME TO SECOND), ANOMALY_SCORE DESC`` cannot sort an unbounded stream, but
it can sort each second: rows wait until the watermark passes the end of their bucket of the
leading (time) key, then leave sorted by the rest of the ORDER BY (ties in arrival order).
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.plan.logical import SortSpec
from engine.runtime.duck import run
from engine.types import MIN_TIME

_END = "__bucket_end"


class SortOperator:
    """Holds rows until their bucket closes, then emits them in ``spec.order_sql``'s order."""

    def __init__(self, spec: SortSpec, con: duckdb.DuckDBPyConnection) -> None:
        self.spec, self.con, self.step_id = spec, con, spec.step_id
        self.watermark = MIN_TIME
        self.buffer: list[pa.Table] = []

    def process(self, rows: pa.Table, watermark: int) -> tuple[pa.Table | None, pa.Table | None]:
        if rows.num_rows:
            t = rows[self.spec.time_column].cast(pa.int64()).to_numpy(zero_copy_only=False)
            size = self.spec.size_us
            ends = (np.floor_divide(t, size) + 1) * size
            self.buffer.append(rows.append_column(_END, pa.array(ends, pa.int64())))
        out = None
        held = pa.concat_tables(self.buffer, promote_options="permissive") if self.buffer else None
        if held is not None and held.num_rows:
            closed = pc.less_equal(held[_END], watermark)
            ready = held.filter(closed)
            rest = held.filter(pc.invert(closed))
            self.buffer = [rest] if rest.num_rows else []
            if ready.num_rows:
                out = run(self.con, self.spec.order_sql, __batch=ready).drop_columns([_END])
        # rows still held can be as early as their bucket's start: the output may not pass that
        held_start = min((int(pc.min(b[_END]).as_py()) - self.spec.size_us for b in self.buffer), default=None)
        own = watermark if held_start is None else min(watermark, held_start)
        self.watermark = max(self.watermark, own)
        return out, None

    @property
    def state(self) -> list[pa.Table]:
        """Rows waiting for their bucket to close (for state size metrics)."""
        return self.buffer

    def snapshot(self) -> dict[str, Any]:
        held = pa.concat_tables(self.buffer, promote_options="permissive") if self.buffer else None
        return {"watermark": self.watermark, "buffer": held}

    def restore(self, snap: dict[str, Any]) -> None:
        self.watermark = int(snap["watermark"])
        self.buffer = [snap["buffer"]] if snap.get("buffer") is not None else []
