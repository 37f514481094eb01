"""Fault injection for the crash tests (off unless DUCKSTREAM_CRASH_AT is set)."""

from __future__ import annotations

import os
import signal


def crash_point(point: str) -> None:
    """Fault injection for the crash tests: ``DUCKSTREAM_CRASH_AT=point:n`` kills the process
    (SIGKILL, no cleanup) the n-th time the runtime reaches ``point``."""
    wanted = os.environ.get("DUCKSTREAM_CRASH_AT")
    if not wanted or not wanted.startswith(point + ":"):
        return
    _CRASH_COUNTS[point] = _CRASH_COUNTS.get(point, 0) + 1
    if _CRASH_COUNTS[point] == int(wanted.split(":", 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)


_CRASH_COUNTS: dict[str, int] = {}
