"""--until-idle ends an unbounded run; columns a source supplies (Kinesis metadata) reach the stream."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from engine.plan.planner import compile_program
from engine.runtime.loop import Runner, RunOptions
from engine.testing import ListSink, ListSource
from engine.types import RAW_SCHEMA

META = pa.schema([("APPROXIMATE_ARRIVAL_TIME", pa.timestamp("us")), ("PARTITION_KEY", pa.string())])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Endless(ListSource):
    """A ListSource that never ends: after its batches it returns empty ones."""

    bounded = False

    def poll(self, max_rows: int, timeout_s: float) -> pa.RecordBatch | None:
        batch = super().poll(max_rows, timeout_s)
        return batch if batch is not None else _empty()


def _empty() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=RAW_SCHEMA)


class WithMetadata(Endless):
    """Raw batches carrying two metadata columns, as the Kinesis source's do."""

    metadata_schema = META

    def poll(self, max_rows: int, timeout_s: float) -> pa.RecordBatch | None:
        batch = super().poll(max_rows, timeout_s)
        assert batch is not None
        offsets = batch.column("offset").to_pylist()
        arrival = pa.array([dt.datetime(2024, 1, 1, 0, 0, o) for o in offsets], pa.timestamp("us"))
        keys = pa.array([f"pk{o}" for o in offsets], pa.string())
        return pa.RecordBatch.from_arrays([*batch.columns, arrival, keys], names=[*RAW_SCHEMA.names, *META.names])


SQL = """
CREATE TABLE s (v INT, APPROXIMATE_ARRIVAL_TIME TIMESTAMP, PARTITION_KEY VARCHAR,
  WATERMARK FOR APPROXIMATE_ARRIVAL_TIME AS APPROXIMATE_ARRIVAL_TIME);
SELECT window_start, COUNT(*) AS n, SUM(v) AS total, MAX(PARTITION_KEY) AS last_key
FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(APPROXIMATE_ARRIVAL_TIME), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end
"""


def _run(source: ListSource, until_idle_s: float | None, flush: bool = True) -> tuple[ListSink, ListSink, Clock]:
    program = compile_program(SQL)
    clock = Clock()
    sink, errors = ListSink("result"), ListSink("errors")
    options = RunOptions(idle_timeout_us=None, clock=clock, sleep=clock.sleep, until_idle_s=until_idle_s, flush=flush)
    Runner(program, {"s": source}, {program.outputs[0].stream: sink}, errors, options).run()
    return sink, errors, clock


def test_metadata_columns_come_from_the_source_and_drive_event_time() -> None:
    source = WithMetadata("s", [[b'{"v": 1}', b'{"v": 2}', b"not json", b'{"v": 4}']])
    sink, errors, _ = _run(source, until_idle_s=5)
    # Records at offsets 0,1,3 (second 0,1,3 of the first minute); offset 2 is a decode error.
    assert sink.rows() == [{"window_start": dt.datetime(2024, 1, 1), "n": 3, "total": 7, "last_key": "pk3"}]
    assert [r["reason"] for r in errors.rows()] == ["decode"]


def test_a_payload_field_does_not_override_a_metadata_column() -> None:
    source = WithMetadata("s", [[b'{"v": 1, "PARTITION_KEY": "from-payload"}']])
    sink, _, _ = _run(source, until_idle_s=1)
    assert sink.rows()[0]["last_key"] == "pk0"


def test_until_idle_ends_an_unbounded_run_after_the_quiet_time_and_flushes() -> None:
    source = WithMetadata("s", [[b'{"v": 1}'], [b'{"v": 2}']])
    sink, _, clock = _run(source, until_idle_s=30)
    assert sink.rows()[0]["n"] == 2
    assert 30 <= clock.now < 31  # the quiet time, counted from the last rows, not from the start


def test_until_idle_without_flush_keeps_windows_open() -> None:
    source = WithMetadata("s", [[b'{"v": 1}']])
    sink, _, _ = _run(source, until_idle_s=2, flush=False)
    assert sink.rows() == []
