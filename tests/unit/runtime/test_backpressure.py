"""A slow sink slows the source: the runtime never reads more than one batch ahead of its sinks.

The loop is single-threaded (poll -> operators -> sink.write -> poll), so a sink that blocks
(S3 down, a full disk being retried) stops polling: rows wait in the source (a file, a Kinesis
shard), not in memory. This test pins that down with a sink that is slower than the source.
"""

from __future__ import annotations

import pyarrow as pa

from engine.plan.planner import compile_program
from engine.runtime.loop import Runner, RunOptions
from engine.testing import ListSink, ListSource

SQL = "CREATE TABLE s (v INT); SELECT v FROM s WHERE v >= 0"


class CountingSource(ListSource):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.handed_out = 0

    def poll(self, max_rows: int, timeout_s: float) -> pa.RecordBatch | None:
        batch = super().poll(max_rows, timeout_s)
        if batch is not None:
            self.handed_out += batch.num_rows
        return batch


class SlowSink(ListSink):
    """Each write takes 'time' on a fake clock and records how far the source had read."""

    def __init__(self, source: CountingSource, clock: list[float]) -> None:
        super().__init__("result")
        self.source, self.clock = source, clock
        self.written = 0
        self.ahead: list[int] = []

    def write(self, epoch: object, batch: pa.Table) -> None:
        self.clock[0] += 5.0  # a slow sink: 5 s per write
        self.written += batch.num_rows
        self.ahead.append(self.source.handed_out - self.written)
        super().write(epoch, batch)  # type: ignore[arg-type]


def test_the_source_is_never_read_more_than_a_batch_ahead_of_a_slow_sink() -> None:
    batches = [[f'{{"v": {i * 100 + j}}}'.encode() for j in range(100)] for i in range(50)]
    source = CountingSource("s", batches)
    clock = [0.0]
    program = compile_program(SQL)
    sink = SlowSink(source, clock)
    options = RunOptions(idle_timeout_us=None, clock=lambda: clock[0], sleep=lambda s: None, batch_rows=100)
    Runner(program, {"s": source}, {program.outputs[0].stream: sink}, ListSink("errors"), options).run()
    assert sink.written == 5000 and len(sink.rows()) == 5000  # nothing lost
    assert max(sink.ahead) == 0  # every row read had been handed to the sink before the next poll
