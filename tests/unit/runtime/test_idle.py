"""A quiet source must not freeze results: after the idle timeout its watermark follows
processing time (an injected clock here; tests never sleep)."""

from __future__ import annotations

import json

import pyarrow as pa

from engine.plan.planner import compile_program
from engine.runtime.loop import Runner, RunOptions
from engine.testing import ListSink, ListSource

SQL = """
CREATE TABLE t (ts TIMESTAMP, k VARCHAR, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND);
SELECT k, window_start, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY k, window_start, window_end
"""


class QuietSource(ListSource):
    """Hands out its rows, then empty batches (an unbounded source with nothing new)."""

    bounded = False

    def __init__(self, rows: list[dict], quiet_polls: int) -> None:
        super().__init__("t", [[json.dumps(r).encode() for r in rows]])
        self.quiet_polls = quiet_polls

    def poll(self, max_rows: int, timeout_s: float) -> pa.RecordBatch | None:
        batch = super().poll(max_rows, timeout_s)
        if batch is not None:
            return batch
        if self.quiet_polls == 0:
            return None
        self.quiet_polls -= 1
        return pa.RecordBatch.from_pylist([], schema=_raw())


def _raw() -> pa.Schema:
    from engine.types import RAW_SCHEMA

    return RAW_SCHEMA


def _run(idle_timeout_us: int | None, quiet_polls: int) -> list[dict]:
    program = compile_program(SQL)
    now = [0.0]

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    rows = [{"ts": "2024-05-01T10:00:01Z", "k": "a"}, {"ts": "2024-05-01T10:00:04Z", "k": "a"}]
    sink = ListSink("result")
    options = RunOptions(idle_timeout_us=idle_timeout_us, flush=False, clock=clock, sleep=sleep, batch_interval_s=1.0)
    Runner(program, {"t": QuietSource(rows, quiet_polls)}, {"result": sink}, None, options).run()
    return sink.rows()


def test_idle_source_advances_watermark_by_processing_time() -> None:
    # After the rows the watermark is 10:00:04 - 5 s = 09:59:59; window [10:00:00, 10:00:10)
    # closes at 10:00:10, i.e. after 11 s of quiet (more than the 3 s idle timeout).
    assert _run(3_000_000, quiet_polls=5) == []
    assert [r["n"] for r in _run(3_000_000, quiet_polls=20)] == [2]


def test_without_idle_timeout_a_quiet_source_keeps_its_windows_open() -> None:
    assert _run(None, quiet_polls=50) == []
