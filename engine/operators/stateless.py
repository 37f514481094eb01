"""Filter and project, row by row: the SQL runs over each batch as it arrives."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from engine.operators.base import run_rows
from engine.plan.logical import StatelessSpec
from engine.types import MIN_TIME


class StatelessOperator:
    """Runs ``spec.sql`` over each batch registered as ``__input``; keeps no state.

    Its output watermark is its input watermark: a filter cannot make rows later or earlier.
    """

    def __init__(self, spec: StatelessSpec, con: duckdb.DuckDBPyConnection, source_stream: str = "") -> None:
        self.spec, self.con, self.step_id = spec, con, spec.step_id
        self.watermark = MIN_TIME
        self.source_stream = source_stream or spec.input

    def process(self, rows: pa.Table, watermark: int) -> tuple[pa.Table | None, pa.Table | None]:
        self.watermark = max(self.watermark, watermark)
        if rows.num_rows == 0:
            return None, None
        return run_rows(self.con, self.spec.sql, "__input", rows, stream=self.source_stream, step_id=self.step_id)

    def snapshot(self) -> dict:
        return {"watermark": self.watermark}

    def restore(self, state: dict) -> None:
        self.watermark = int(state["watermark"])
