r"""Local files: JSON lines, CSV and parquet, as a source and as a sink.

URI forms: ``PATH`` or ``file:PATH``, with options in a query (``data.csv?header=false``) or, from
SQL, ``WITH ('connector' = 'file', 'path' = 'data.csv', 'format' = 'csv')``.

The format comes from the ``format`` option (``json``/``jsonl``/``ndjson``, ``csv``, ``parquet``)
or else the file name: ``.jsonl``/``.json``/``.ndjson`` → json, ``.csv`` → csv, ``.tsv`` → csv
with a tab delimiter, ``.parquet``/``.pq`` → parquet. A further ``.gz`` is read (and written)
with gzip. CSV options: ``delimiter`` (one character, ``\\t`` for a tab) and ``header``
(``true``/``false``, default true).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, cast

import pyarrow as pa
import pyarrow.parquet as pq

from connectors._lines import LineBuffer, raw_batch
from connectors.options import Options, take_csv_options
from engine.errors import ConnectorError
from engine.formats.encode import to_csv, to_json_lines
from engine.formats.timestamps import now_us
from engine.types import Epoch, Offsets

_CHUNK_BYTES = 1 << 20
_PARQUET_BATCH_ROWS = 65_536
_FORMATS = {"json": "json", "jsonl": "json", "ndjson": "json", "csv": "csv", "parquet": "parquet"}
_EXTENSIONS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".csv": "csv", ".tsv": "csv"}
_EXTENSIONS.update({".parquet": "parquet", ".pq": "parquet"})


def _format_of(path: str, options: Options) -> tuple[str, bool]:
    """(format, gzip) from the ``format`` option or the file name."""
    name = path.lower()
    gzipped = name.endswith(".gz")
    if gzipped:
        name = name[:-3]
    given = options.take_optional("format")
    if given is not None:
        fmt = _FORMATS.get(given.strip().lower())
        if fmt is None:
            known = ", ".join(sorted(_FORMATS))
            raise ConnectorError(f"option 'format': {given!r} is not one of {known}", where=options.where)
        return fmt, gzipped
    fmt = _EXTENSIONS.get(os.path.splitext(name)[1])
    if fmt is None:
        raise ConnectorError(
            f"cannot tell the format of {path!r} from its name",
            where=options.where,
            hint="add ?format=json|csv|parquet",
        )
    return fmt, gzipped


def _csv_options(path: str, options: Options) -> dict[str, Any]:
    tsv = path.lower().removesuffix(".gz").endswith(".tsv")
    return take_csv_options(options, "\t" if tsv else ",")


def _path_of(target: str | None, options: Options) -> str:
    path = target if target else options.take("path")
    if not path:
        raise ConnectorError("the file path is empty", where=options.where)
    return path


def _missing(path: str, where: str) -> ConnectorError:
    return ConnectorError(f"file not found: {path}", where=where)


class FileSource:
    """Records of one local file, read from the start (or a resume offset) to its end.

    JSON and CSV files are *raw* sources: one record per line, the payload without its line
    terminator; ``offset`` counts every line from 0, blank and header lines included.
    Parquet files are *typed*: batches of the file's own columns, ``offset`` the row index.
    The offsets key is the path as given (``{"data.jsonl": "120"}``: the next line to read).
    """

    kind: Literal["raw", "typed"]
    bounded = True

    def __init__(self, name: str, path: str, options: Options) -> None:
        """Take this connector's options from ``options`` and check them; no I/O.

        Args:
            name: the stream name (keys metrics and error rows).
            path: the file.
            options: the options left after the URI; ``format``, ``delimiter`` and ``header``
                are taken, ``finish()`` is left to the caller.

        Raises:
            ConnectorError: for an unknown or missing format, or a bad CSV option.
        """
        self.name = name
        self.path = path
        self.where = options.where
        fmt, self.gzip = _format_of(path, options)
        self.kind = "typed" if fmt == "parquet" else "raw"
        self.format: str | None = None if fmt == "parquet" else fmt
        self.csv_options: dict[str, Any] | None = _csv_options(path, options) if fmt == "csv" else None
        self._file: IO[bytes] | None = None
        self._lines = LineBuffer()
        self._batches: Iterator[pa.RecordBatch] | None = None
        self._pending: pa.RecordBatch | None = None
        self._next = 0

    @classmethod
    def from_uri(cls, name: str, target: str | None, options: Options) -> FileSource:
        """The registry's factory: ``target`` is the path from the URI, else option ``path``."""
        return cls(name, _path_of(target, options), options)

    def _open_bytes(self) -> IO[bytes]:
        if not os.path.exists(self.path):
            raise _missing(self.path, self.where)
        if os.path.isdir(self.path):
            raise ConnectorError(f"{self.path} is a directory, not a file", where=self.where)
        try:
            return cast(IO[bytes], gzip.open(self.path, "rb")) if self.gzip else open(self.path, "rb")
        except OSError as err:
            raise ConnectorError(f"cannot open {self.path}: {err.strerror}", where=self.where) from None

    def open(self, resume: Offsets | None) -> None:
        """Open the file and skip the records before ``resume[path]`` (default: none).

        Raises:
            ConnectorError: ``file not found: PATH``, or an unreadable file or resume offset.
        """
        self.close()
        start = _resume_offset(resume, self.path, self.where)
        self._next = 0
        if self.kind == "typed":
            self._open_parquet(start)
            return
        self._file = self._open_bytes()
        self._lines = LineBuffer()
        while self._next < start:
            skipped = self._read_lines(start - self._next)
            if not skipped:
                break
            self._next += len(skipped)

    def _open_parquet(self, start: int) -> None:
        try:
            parquet = pq.ParquetFile(self._open_bytes())
        except pa.ArrowException as err:
            raise ConnectorError(f"{self.path} is not a parquet file: {err}", where=self.where) from None
        first_group, skipped = 0, 0
        for i in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(i).num_rows
            if skipped + rows > start:
                break
            skipped += rows
            first_group = i + 1
        groups = list(range(first_group, parquet.num_row_groups))
        self._batches = parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, row_groups=groups) if groups else iter(())
        self._next = skipped
        self._pending = None
        while self._next < start:
            batch = self._next_parquet_batch(start - self._next)
            if batch is None:
                break
            self._next += batch.num_rows

    def _read_lines(self, max_lines: int) -> list[bytes]:
        """Up to ``max_lines`` lines, reading more of the file as needed; [] at the end."""
        assert self._file is not None, "open() first"
        while len(self._lines) < max_lines and not self._lines.ended:
            chunk = self._file.read(_CHUNK_BYTES)
            if chunk:
                self._lines.feed(chunk)
            else:
                self._lines.end()
        return self._lines.take(max_lines)

    def _next_parquet_batch(self, max_rows: int) -> pa.RecordBatch | None:
        if self._pending is None:
            assert self._batches is not None, "open() first"
            self._pending = next(self._batches, None)
            if self._pending is None:
                return None
        batch = self._pending
        if batch.num_rows > max_rows:
            self._pending = batch.slice(max_rows)
            return batch.slice(0, max_rows)
        self._pending = None
        return batch

    def poll(self, max_rows: int, timeout_s: float) -> pa.RecordBatch | None:
        """The next ``max_rows`` records at most; None at the end of the file. Never waits."""
        if self.kind == "typed":
            batch = self._next_parquet_batch(max_rows)
            if batch is None:
                return None
            offsets = pa.array(range(self._next, self._next + batch.num_rows), pa.int64())
            self._next += batch.num_rows
            return batch.append_column("offset", offsets)
        lines = self._read_lines(max_rows)
        if not lines:
            return None
        batch = raw_batch(lines, self._next, now_us())
        self._next += len(lines)
        return batch

    def schema(self) -> pa.Schema | None:
        """For parquet, the file's schema (reads the footer); None for JSON and CSV.

        Raises:
            ConnectorError: if the file is missing or not parquet.
        """
        if self.kind != "typed":
            return None
        try:
            with self._open_bytes() as handle:
                return pq.read_schema(handle)
        except pa.ArrowException as err:
            raise ConnectorError(f"{self.path} is not a parquet file: {err}", where=self.where) from None

    def sample(self, max_rows: int) -> list[bytes]:
        """The first ``max_rows`` lines (header and blank lines included), read independently.

        Raises:
            ConnectorError: if the file is missing.
        """
        if self.kind == "typed":
            return []
        lines = LineBuffer()
        with self._open_bytes() as handle:
            while len(lines) < max_rows and not lines.ended:
                chunk = handle.read(min(_CHUNK_BYTES, 1 << 16))
                if chunk:
                    lines.feed(chunk)
                else:
                    lines.end()
        return lines.take(max_rows)

    def offsets(self) -> Offsets:
        """``{path: next record}``."""
        return {self.path: str(self._next)}

    def close(self) -> None:
        """Close the file (safe to call twice)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._batches = None
        self._pending = None


def _resume_offset(resume: Offsets | None, key: str, where: str) -> int:
    if not resume or key not in resume:
        return 0
    text = resume[key]
    if not text.isdigit():
        raise ConnectorError(f"resume offset {text!r} for {key} is not a record number", where=where)
    return int(text)


class FileSink:
    """Rows written to one local file as JSON lines, CSV or parquet (no gzip).

    ``open`` creates (or truncates) the file, creating parent directories. JSON and CSV rows are
    appended on ``write`` and made durable on ``commit`` (flush + fsync); ``abort`` cuts the file
    back to its length at the last commit. Parquet rows are held until ``commit`` and written as
    one row group; the file is complete (has its footer) only after ``close``. A CSV header, if
    wanted, is written by ``open``. Committing an epoch twice, or an older one, does nothing.
    ``close`` drops whatever was written after the last commit.
    """

    def __init__(self, name: str, path: str, options: Options) -> None:
        """Take this connector's options; no I/O.

        Args:
            name: the sink name.
            path: the file to write.
            options: ``format``, and for CSV ``delimiter`` and ``header``.

        Raises:
            ConnectorError: for an unknown or missing format, a bad CSV option, or a ``.gz`` name.
        """
        self.name = name
        self.path = path
        self.where = options.where
        self.format, gzipped = _format_of(path, options)
        if gzipped:
            raise ConnectorError(f"cannot write gzip files ({path})", where=self.where)
        self.csv_options = _csv_options(path, options) if self.format == "csv" else None
        self._file: IO[bytes] | None = None
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._staged: list[pa.Table] = []
        self._committed_bytes = 0
        self._last_committed: int | None = None

    @classmethod
    def from_uri(cls, name: str, target: str | None, options: Options) -> FileSink:
        """The registry's factory: ``target`` is the path from the URI, else option ``path``."""
        return cls(name, _path_of(target, options), options)

    def open(self, schema: pa.Schema, last_committed: Epoch | None) -> None:
        """Create or truncate the file; write the CSV header.

        Raises:
            ConnectorError: if the file cannot be created.
        """
        self.close()
        self._schema = schema
        self._last_committed = last_committed
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")
        except OSError as err:
            raise ConnectorError(f"cannot create {self.path}: {err.strerror}", where=self.where) from None
        if self.format == "parquet":
            self._writer = pq.ParquetWriter(self._file, schema, compression="zstd")
        elif self.csv_options is not None and self.csv_options["header"]:
            self._file.write(to_csv(schema.empty_table(), header=True, delimiter=self.csv_options["delimiter"]))
        self._committed_bytes = self._file.tell()

    def write(self, epoch: Epoch, batch: pa.Table) -> None:
        """Append (JSON, CSV) or stage (parquet) rows for ``epoch``.

        Raises:
            ConnectorError: if the sink is not open.
        """
        if self._file is None:
            raise ConnectorError("write before open", where=self.where)
        if batch.num_rows == 0:
            return
        if self._writer is not None:
            self._staged.append(batch)
        elif self.csv_options is not None:
            self._file.write(to_csv(batch, header=False, delimiter=self.csv_options["delimiter"]))
        else:
            self._file.write(to_json_lines(batch))

    def commit(self, epoch: Epoch) -> None:
        """Make everything written so far durable (flush + fsync).

        Raises:
            ConnectorError: if parquet rows do not fit the schema given to ``open``.
        """
        if self._file is None or (self._last_committed is not None and epoch <= self._last_committed):
            return
        if self._writer is not None and self._staged:
            assert self._schema is not None
            try:
                table = pa.concat_tables([t.select(self._schema.names).cast(self._schema) for t in self._staged])
                self._writer.write_table(table)
            except (pa.ArrowInvalid, KeyError, ValueError) as err:
                raise ConnectorError(f"cannot write rows to {self.path}: {err}", where=self.where) from None
            finally:
                self._staged = []
        self._file.flush()
        os.fsync(self._file.fileno())
        self._committed_bytes = self._file.tell()
        self._last_committed = epoch

    def abort(self, epoch: Epoch) -> None:
        """Drop what was written since the last commit."""
        self._staged = []
        if self._file is not None and self._writer is None:
            self._file.flush()
            self._file.truncate(self._committed_bytes)
            self._file.seek(self._committed_bytes)

    def close(self) -> None:
        """Drop uncommitted rows and close the file (the parquet footer is written here)."""
        if self._file is None:
            return
        self.abort(Epoch(0))
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._file.close()
        self._file = None
