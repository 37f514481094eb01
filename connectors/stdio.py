"""Standard input as a source and standard output as a sink (URI ``-``).

``-`` reads JSON lines from stdin (``-?format=csv&header=false`` for CSV) and, as a sink, writes
a rich table when stdout is a terminal and JSON lines otherwise (``-?format=json|csv|table``).
"""

from __future__ import annotations

import math
import os
import select
import sys
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from connectors._lines import LineBuffer, raw_batch
from connectors.options import Options, take_csv_options
from engine.errors import ConnectorError
from engine.formats.encode import to_csv, to_json_lines
from engine.formats.timestamps import format_timestamps, now_us
from engine.types import Epoch, Offsets, visible

_READ_BYTES = 1 << 20
_OFFSETS_KEY = "stdin"


class StdinSource:
    """Lines of standard input as raw records (JSON by default, or CSV).

    Bounded: end of input ends the stream. ``poll`` waits at most ``timeout_s`` for input when
    stdin is a pipe, terminal or file (it uses ``select`` on the file descriptor); a stream
    without a file descriptor (tests pass a ``BytesIO``) is read line by line, which may block.

    Stdin cannot be replayed: ``open(resume)`` continues the offset numbering from
    ``resume["stdin"]`` but skips nothing. ``sample`` reads lines ahead and keeps them, so
    ``poll`` still hands them out afterwards.
    """

    kind: Literal["raw", "typed"] = "raw"
    bounded = True

    def __init__(self, name: str, options: Options, stream: IO[bytes] | None = None) -> None:
        """Take ``format`` (json or csv) and the CSV options; no I/O.

        Args:
            name: the stream name.
            options: ``format``, ``delimiter``, ``header``.
            stream: where to read instead of ``sys.stdin.buffer`` (tests).

        Raises:
            ConnectorError: for an unknown format or bad CSV option.
        """
        self.name = name
        self.where = options.where
        fmt = options.take_choice("format", ("json", "jsonl", "ndjson", "csv"), "json")
        self.format: str | None = "csv" if fmt == "csv" else "json"
        self.csv_options: dict[str, Any] | None = None
        if self.format == "csv":
            self.csv_options = take_csv_options(options)
        self._given = stream
        self._stream: IO[bytes] | None = None
        self._fd: int | None = None
        self._lines = LineBuffer()
        self._next = 0

    @classmethod
    def from_uri(cls, name: str, target: str | None, options: Options) -> StdinSource:
        """The registry's factory (``-`` has no target)."""
        return cls(name, options)

    def _ensure_stream(self) -> None:
        if self._stream is not None:
            return
        self._stream = self._given if self._given is not None else sys.stdin.buffer
        try:
            self._fd = self._stream.fileno()
            select.select([self._fd], [], [], 0)
        except (AttributeError, OSError, ValueError):
            self._fd = None

    def open(self, resume: Offsets | None) -> None:
        """Start numbering records at ``resume["stdin"]`` (0 by default)."""
        self._ensure_stream()
        text = (resume or {}).get(_OFFSETS_KEY, "0")
        if not text.isdigit():
            raise ConnectorError(f"resume offset {text!r} for stdin is not a record number", where=self.where)
        self._next = int(text)

    def _fill(self, wanted: int, timeout_s: float | None) -> None:
        """Read until ``wanted`` lines are buffered, the input ends, or (fd mode) nothing is ready."""
        assert self._stream is not None
        while len(self._lines) < wanted and not self._lines.ended:
            if self._fd is None:
                line = self._stream.readline()
                if line:
                    self._lines.feed(line)
                else:
                    self._lines.end()
                continue
            ready, _, _ = select.select([self._fd], [], [], timeout_s)
            if not ready:
                return
            chunk = os.read(self._fd, _READ_BYTES)
            if chunk:
                self._lines.feed(chunk)
                timeout_s = 0 if timeout_s is not None else None  # take what is there, then return
            else:
                self._lines.end()

    def poll(self, max_rows: int, timeout_s: float) -> pa.RecordBatch | None:
        """Lines ready now (waiting at most ``timeout_s`` for the first), None at end of input."""
        self._ensure_stream()
        self._fill(max_rows, max(timeout_s, 0.0))
        lines = self._lines.take(max_rows)
        if not lines:
            return None if self._lines.exhausted() else raw_batch([], self._next, now_us())
        batch = raw_batch(lines, self._next, now_us())
        self._next += len(lines)
        return batch

    def schema(self) -> pa.Schema | None:
        """Raw source: None."""
        return None

    def sample(self, max_rows: int) -> list[bytes]:
        """The first ``max_rows`` lines, read ahead (blocking) and kept for ``poll``."""
        self._ensure_stream()
        self._fill(max_rows + len(self._lines), None)
        return self._lines.peek(max_rows)

    def offsets(self) -> Offsets:
        """``{"stdin": next record number}``."""
        return {_OFFSETS_KEY: str(self._next)}

    def close(self) -> None:
        """Nothing to release (stdin stays open)."""


class StdoutSink:
    """Result rows on standard output.

    ``format=table`` prints each written batch as a rich table (timestamps as in JSON, floats
    with up to 6 decimals, numbers right-aligned, NULL dimmed, at most ``max-rows`` rows per
    batch); ``json`` writes JSON lines; ``csv`` writes CSV with one header at the top. Without
    ``format``, a terminal gets ``table`` and anything else ``json``. Output is flushed on
    every write, so readers see rows as soon as they exist.

    Delivery is *at-least-once* across crashes, not exactly-once: stdout cannot take rows back,
    so rows are printed at ``write`` time, before their epoch is prepared or committed. After a
    crash, the rows of the epochs after the last checkpoint are printed again by the replay
    (and ``abort`` cannot unprint them). ``prepare`` only flushes and returns None (nothing to
    recover); ``commit`` flushes; ``open`` on recovery does nothing special (a CSV header is
    printed again, as the restarted process has a new stdout).
    """

    def __init__(self, name: str, options: Options, stream: IO[str] | None = None) -> None:
        """Take ``format``, ``title``, ``max-rows`` (and CSV ``delimiter``/``header``); no I/O.

        Args:
            name: the sink name (the default table title).
            options: as above.
            stream: where to write instead of ``sys.stdout`` (tests).

        Raises:
            ConnectorError: for an unknown format or bad option.
        """
        self.name = name
        self.where = options.where
        self.mode = options.take_choice("format", ("auto", "json", "jsonl", "table", "csv"), "auto")
        if self.mode == "jsonl":
            self.mode = "json"
        self.title = options.take("title", name)
        self.max_rows = options.take_int("max-rows", 1000, minimum=1)
        csv_options: dict[str, Any] = (
            take_csv_options(options) if self.mode == "csv" else {"delimiter": ",", "header": True}
        )
        self.delimiter: str = csv_options["delimiter"]
        self.header: bool = csv_options["header"]
        self._given = stream
        self._out: IO[str] | None = None
        self._console: Any = None

    @classmethod
    def from_uri(cls, name: str, target: str | None, options: Options) -> StdoutSink:
        """The registry's factory (``-`` has no target)."""
        return cls(name, options)

    def open(self, schema: pa.Schema, last_committed: Epoch | None, state: dict | None = None) -> None:
        """Pick the output mode (a terminal gets tables); write a CSV header.

        ``last_committed`` and ``state`` are ignored: printed rows cannot be recovered.
        """
        self._out = self._given if self._given is not None else sys.stdout
        if self.mode == "auto":
            isatty = getattr(self._out, "isatty", None)
            self.mode = "table" if isatty is not None and isatty() else "json"
        if self.mode == "table":
            from rich.console import Console

            self._console = Console(file=self._out)
        elif self.mode == "csv" and self.header:
            self._write_bytes(to_csv(visible(schema.empty_table()), header=True, delimiter=self.delimiter))

    def _write_bytes(self, data: bytes) -> None:
        assert self._out is not None
        buffer = getattr(self._out, "buffer", None)
        if buffer is not None:
            self._out.flush()
            buffer.write(data)
            buffer.flush()
        else:
            self._out.write(data.decode())
            self._out.flush()

    def write(self, epoch: Epoch, batch: pa.Table) -> None:
        """Print the rows now."""
        if self._out is None:
            raise ConnectorError("write before open", where=self.where)
        if batch.num_rows == 0:
            return
        batch = visible(batch)
        if self.mode == "json":
            self._write_bytes(to_json_lines(batch))
        elif self.mode == "csv":
            self._write_bytes(to_csv(batch, header=False, delimiter=self.delimiter))
        else:
            self._console.print(self.render(batch))
            self._out.flush()

    def render(self, batch: pa.Table) -> Any:
        """The rich ``Table`` for a batch (at most ``max-rows`` rows, the rest counted)."""
        from rich.table import Table

        shown = batch.slice(0, self.max_rows)
        table = Table(title=self.title or None, title_justify="left")
        columns = []
        for field in shown.schema:
            numeric = (
                pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_decimal(field.type)
            )
            table.add_column(field.name, justify="right" if numeric else "left")
            columns.append(display_column(shown.column(field.name)))
        for row in zip(*columns, strict=True):
            table.add_row(*row)
        if batch.num_rows > shown.num_rows:
            table.caption = f"… and {batch.num_rows - shown.num_rows} more rows (use ?format=json for all)"
        return table

    def prepare(self, epoch: Epoch) -> dict | None:
        """Flush stdout; no state to keep (rows were printed at ``write``).

        Returns:
            None.
        """
        self.commit(epoch)
        return None

    def commit(self, epoch: Epoch) -> None:
        """Flush stdout."""
        if self._out is not None:
            self._out.flush()

    def abort(self, epoch: Epoch) -> None:
        """Nothing: printed rows cannot be taken back."""

    def close(self) -> None:
        """Flush stdout (it stays open)."""
        self.commit(Epoch(0))


_NULL = "[dim]NULL[/dim]"


def display_column(column: pa.ChunkedArray | pa.Array) -> list[str]:
    """Cell texts for one column (rich markup: NULL is dimmed, other text is escaped)."""
    from rich.markup import escape

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dtype = column.type
    if pa.types.is_timestamp(dtype):
        texts = format_timestamps(column).to_pylist()
    elif pa.types.is_floating(dtype):
        texts = [None if v is None else _float_cell(v) for v in column.to_pylist()]
    elif pa.types.is_boolean(dtype):
        texts = pc.if_else(column, "true", "false").to_pylist()
    elif pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        texts = [None if v is None else v.hex() for v in column.to_pylist()]
    else:
        texts = (
            column.cast(pa.string()).to_pylist()
            if _castable(dtype)
            else [None if v is None else str(v) for v in column.to_pylist()]
        )
    return [_NULL if t is None else escape(t) for t in texts]


def _castable(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(dtype)
        or pa.types.is_decimal(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_date(dtype)
    )


def _float_cell(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
