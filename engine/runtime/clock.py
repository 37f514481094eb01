"""Event time and per-row watermarks for one source stream.

The watermark before row ``i`` is ``max(event time of rows 0..i-1) - delay`` (or a floor set by
idle advance, whichever is larger). It is computed for every row, in arrival order, so a row's
lateness never depends on where a micro-batch boundary fell.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from engine.types import MAX_TIME, MIN_TIME, WM_COL


class EventClock:
    """Stamps rows with ``__wm`` and tracks the stream's watermark.

    ``time_column`` None means the stream has no event time: every row's ``__wm`` is -inf and
    the watermark moves only at end of input (or by idle advance).
    """

    def __init__(self, time_column: str | None, delay_us: int) -> None:
        self.time_column, self.delay_us = time_column, delay_us
        self.max_seen = MIN_TIME
        self.floor = MIN_TIME  # set by idle advance and end of input

    @property
    def watermark(self) -> int:
        """The watermark after every row seen so far."""
        return max(self._minus_delay(self.max_seen), self.floor)

    def _minus_delay(self, value: int) -> int:
        if value == MIN_TIME:
            return MIN_TIME
        return max(MIN_TIME, min(MAX_TIME - 1, value - self.delay_us))

    def stamp(self, rows: pa.Table) -> pa.Table:
        """``rows`` with ``__wm`` appended; advances the watermark past them.

        The time column must hold no NULLs (the decoder routes those to the error stream).
        """
        n = rows.num_rows
        if n == 0 or self.time_column is None:
            return rows.append_column(WM_COL, pa.array(np.full(n, self.watermark, dtype=np.int64)))
        ts = rows[self.time_column].cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        running = np.maximum.accumulate(ts)
        before = np.empty(n, dtype=np.int64)
        before[0] = self.max_seen
        np.maximum(running[:-1], self.max_seen, out=before[1:])
        valid = before != MIN_TIME
        wm = np.full(n, MIN_TIME, dtype=np.int64)
        wm[valid] = before[valid] - self.delay_us
        if self.floor != MIN_TIME:
            np.maximum(wm, self.floor, out=wm)
        self.max_seen = max(self.max_seen, int(running[-1]))
        return rows.append_column(WM_COL, pa.array(wm))

    def advance_to(self, watermark: int) -> None:
        """Move the watermark forward by fiat (idle sources, end of input); never backwards."""
        self.floor = max(self.floor, watermark)

    def snapshot(self) -> dict[str, int]:
        """Position of the clock, for checkpoints."""
        return {"max_seen": self.max_seen, "floor": self.floor}

    def restore(self, snap: dict[str, int]) -> None:
        """Load what ``snapshot`` returned."""
        self.max_seen, self.floor = int(snap["max_seen"]), int(snap["floor"])
