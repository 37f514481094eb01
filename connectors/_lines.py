r"""Line framing shared by the line-oriented sources (files, stdin).

A record is one line: the bytes up to ``\\n``, without the ``\\n`` and without a ``\\r`` just
before it. A last line without a terminator is still a record; a terminator at the very end does
not start an empty one (``b"a\\nb\\n"`` is two records, ``b"a\\n\\n"`` is ``a`` and an empty one).
"""

from __future__ import annotations

import pyarrow as pa

from engine.types import RAW_SCHEMA


class LineBuffer:
    """Bytes in (any chunking), complete lines out, in order."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._next = 0  # index of the first line not yet taken
        self._tail = b""  # bytes after the last newline
        self.ended = False

    def __len__(self) -> int:
        return len(self._lines) - self._next

    def feed(self, chunk: bytes) -> None:
        """Add bytes read from the source.

        Args:
            chunk: the next bytes, cut anywhere.
        """
        if not chunk:
            return
        data = self._tail + chunk if self._tail else chunk
        parts = data.split(b"\n")
        self._tail = parts.pop()
        if b"\r" in data:
            parts = [p[:-1] if p.endswith(b"\r") else p for p in parts]
        if self._next:
            del self._lines[: self._next]
            self._next = 0
        self._lines += parts

    def end(self) -> None:
        """The source has no more bytes: a non-empty unterminated tail becomes the last line."""
        if self._tail:
            tail = self._tail
            self._lines.append(tail[:-1] if tail.endswith(b"\r") else tail)
            self._tail = b""
        self.ended = True

    def take(self, max_lines: int) -> list[bytes]:
        """Up to ``max_lines`` complete lines, oldest first.

        Args:
            max_lines: the most lines to return.

        Returns:
            The lines (possibly none).
        """
        stop = min(len(self._lines), self._next + max_lines)
        lines = self._lines[self._next : stop]
        self._next = stop
        return lines

    def peek(self, max_lines: int) -> list[bytes]:
        """Up to ``max_lines`` complete lines, oldest first, left in place for ``take``.

        Args:
            max_lines: the most lines to return.

        Returns:
            The lines (possibly none).
        """
        return self._lines[self._next : self._next + max_lines]

    def exhausted(self) -> bool:
        """True once the source ended and every line was taken."""
        return self.ended and not len(self)


def raw_batch(lines: list[bytes], first_offset: int, arrival_us: int) -> pa.RecordBatch:
    """Raw rows (``engine.types.RAW_SCHEMA``) for consecutive lines.

    Args:
        lines: the payloads.
        first_offset: the offset of the first line.
        arrival_us: when they were read, microseconds since the epoch.

    Returns:
        A record batch with one row per line.
    """
    n = len(lines)
    return pa.record_batch(
        [
            pa.array(lines, pa.large_binary()),
            pa.array(range(first_offset, first_offset + n), pa.int64()),
            pa.array([arrival_us] * n, pa.timestamp("us")),
        ],
        schema=RAW_SCHEMA,
    )
