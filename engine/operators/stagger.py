"""Stagger windows (KDA's ``WINDOWED BY STAGGER``): one window per partition key, opened by its
first row.

The first row of a key, at time ``t0``, opens ``[t0, t0 + range)``. The window holds every row of
that key that arrives while it is open and whose time is before its end (a row earlier than
``t0`` that arrives after it joins it too: the window starts when it was opened, not at its
earliest row). A row of the key at or after the end opens the key's next window at its own time.
The timeline of one key (range 60 s, no watermark delay)::

    11:00:20  first row of the key ........ opens [11:00:20, 11:01:20)
    11:00:50  row of the key .............. joins it
    11:01:25  row of the key .............. past the end: opens [11:01:25, 11:02:25); its arrival
                                            moves the watermark to 11:01:25, so the first window
                                            closes and its row is emitted
    end of input .......................... the second window closes

With a watermark delay several windows of a key may be open at once (they never overlap: each
starts at or after the end of the previous one); a row joins the earliest open one it is before
the end of. A row that would open a window that is already closed (``t + range <=`` the
watermark before the row) is late. Windows are assigned one row at a time in arrival order, so
results do not depend on micro-batch boundaries.

Everything else (buffering the rows of open windows, closing them on the watermark, ``EMIT
CHANGES``, allowed lateness, checkpoints) is the session operator's: a stagger window is a
session whose end is fixed at ``first + range`` instead of growing with each row.
"""

from __future__ import annotations

import duckdb

from engine.operators.base import fmt_us
from engine.operators.session import SessionAggOperator
from engine.plan.logical import StaggerAggSpec


class StaggerAggOperator(SessionAggOperator):
    """The live side of a ``StaggerAggSpec``: see the module docstring."""

    def __init__(self, spec: StaggerAggSpec, con: duckdb.DuckDBPyConnection) -> None:
        super().__init__(spec, con)

    def _assign(self, key: tuple, t: int, w: int) -> int:
        """The window a row of ``key`` at ``t`` joins (``w``: the watermark before it); -1 if late.

        A window is ``[id, t0, t0]``: ``last`` stays at the opening time, so the window ends at
        ``t0 + range`` whatever joins it, and windows never merge.
        """
        span, lateness = self.span, self.spec.allowed_lateness_us
        for window in self.sessions.get(key, ()):  # in opening order, so the earliest first
            end = window[2] + span
            if end + lateness > w and t < end:
                self.touched.add(window[0])
                return int(window[0])
        if t + span + lateness <= w:
            return -1
        return self._open(key, t)

    def _late_message(self, t: int, w: int) -> str:
        end, wm = fmt_us(t + self.span), fmt_us(w)
        return f"late: the stagger window this row would open at {fmt_us(t)} ends at {end}, behind the watermark {wm}"


__all__ = ["StaggerAggOperator"]
