"""Helpers for format tests: raw batches as sources hand them out (import ``raw_batch``)."""

from __future__ import annotations

import pyarrow as pa

from engine.types import RAW_SCHEMA


def raw_batch(lines: list[bytes], start: int = 0) -> pa.RecordBatch:
    """Raw rows with offsets counting from ``start``."""
    n = len(lines)
    return pa.record_batch(
        [
            pa.array(lines, pa.large_binary()),
            pa.array(range(start, start + n), pa.int64()),
            pa.array([0] * n, pa.timestamp("us")),
        ],
        schema=RAW_SCHEMA,
    )
