"""Filter and project, row by row: the SQL runs over each batch as it arrives."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from engine.operators.base import concat_optional, error_rows, run_rows
from engine.plan.logical import StatelessSpec
from engine.runtime.clock import EventClock
from engine.types import MAX_TIME, MIN_TIME, WM_COL


class StatelessOperator:
    """Runs ``spec.sql`` over each batch registered as ``__input``; keeps no state.

    Its output watermark is its input watermark (a filter cannot make rows later or earlier),
    except for a re-timed INSERT target, whose own WATERMARK declaration stamps its rows afresh.
    """

    def __init__(self, spec: StatelessSpec, con: duckdb.DuckDBPyConnection, source_stream: str = "") -> None:
        self.spec, self.con, self.step_id = spec, con, spec.step_id
        self.watermark = MIN_TIME
        self.source_stream = source_stream or spec.input
        self.clock = EventClock(spec.retime_column, spec.retime_delay_us) if spec.retime_column else None

    def process(self, rows: pa.Table, watermark: int) -> tuple[pa.Table | None, pa.Table | None]:
        out, errors = None, None
        if rows.num_rows:
            out, errors = run_rows(
                self.con, self.spec.sql, "__input", rows, stream=self.source_stream, step_id=self.step_id
            )
        if self.clock is None:
            self.watermark = max(self.watermark, watermark)
            return out, errors
        if out is not None and out.num_rows:
            out, missing = self._restamp(out)
            errors = concat_optional(errors, missing)
        own = MAX_TIME if watermark == MAX_TIME else self.clock.watermark
        self.watermark = max(self.watermark, own)
        return out, errors

    def _restamp(self, out: pa.Table) -> tuple[pa.Table, pa.Table | None]:
        assert self.clock is not None and self.spec.retime_column is not None
        col = self.spec.retime_column
        out = out.drop_columns([WM_COL])
        missing = None
        if out[col].null_count:
            bad = out.filter(pc.is_null(out[col]))
            missing = error_rows(
                bad, stream=self.source_stream, step_id=self.step_id, reason="missing_time", messages=f"{col} is NULL"
            )
            out = out.filter(pc.is_valid(out[col]))
        return self.clock.stamp(out), missing

    def snapshot(self) -> dict[str, Any]:
        return {"watermark": self.watermark, "clock": self.clock.snapshot() if self.clock else None}

    def restore(self, state: dict[str, Any]) -> None:
        self.watermark = int(state["watermark"])
        if self.clock is not None and state.get("clock"):
            self.clock.restore(state["clock"])
