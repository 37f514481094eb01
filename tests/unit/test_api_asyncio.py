"""The embedding API from asyncio: ``apush`` leaves the event loop free while a large push runs,
and ``aresults`` hands out rows as they are produced, ending at ``close``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import engine
from engine.testing import run_sql

SQL = """
CREATE TABLE t (ts TIMESTAMP, k VARCHAR, v INT, WATERMARK FOR ts AS ts);
SELECT k, window_start, COUNT(*) AS n, SUM(v) AS total
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY k, window_start, window_end
"""


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "ts": f"2024-05-01T10:{(i // 1000) // 60 % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}Z",
            "k": "ab"[i % 2],
            "v": i % 7,
        }
        for i in range(start, start + n)
    ]


async def _ticks_while(work: Any) -> tuple[int, float]:
    """How often a 1 ms ticker ran while ``work`` was awaited, and how long the work took."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # let the ticker start
    ticks = 0
    began = time.perf_counter()
    await work
    elapsed = time.perf_counter() - began
    done = True
    await task
    return ticks, elapsed


def test_apush_keeps_the_event_loop_ticking() -> None:
    big = _rows(60_000)

    async def main() -> tuple[int, float, int]:
        program = engine.compile(SQL)
        ticks, elapsed = await _ticks_while(program.apush("t", big))

        async def blocking() -> None:  # the control: a plain push blocks the loop
            engine.compile(SQL).push("t", big)

        blocked_ticks, _ = await _ticks_while(blocking())
        return ticks, elapsed, blocked_ticks

    ticks, elapsed, blocked_ticks = asyncio.run(main())
    assert elapsed > 0.05  # the push is long enough to notice
    assert blocked_ticks <= 1
    assert ticks >= 10, (ticks, elapsed)


def test_aresults_with_an_async_producer() -> None:
    rows = _rows(5_000)
    batches = [rows[i : i + 250] for i in range(0, len(rows), 250)]
    expected = run_sql(SQL, inputs={"t": batches})

    async def main() -> list[dict[str, Any]]:
        program = engine.compile(SQL)
        got: list[dict[str, Any]] = []

        async def consume() -> None:
            async for row in program.aresults():
                got.append(row)

        consumer = asyncio.create_task(consume())
        for batch in batches:
            await program.apush("t", batch)
            await asyncio.sleep(0)
        await program.aadvance_time("t", "2024-05-01T10:00:04Z")
        await program.aflush()
        program.close()
        await asyncio.wait_for(consumer, 10)
        return got

    assert asyncio.run(main()) == expected
