r"""Local files: JSON lines, CSV and parquet, as a source and as a sink.

URI forms: ``PATH`` or ``file:PATH``, with options in a query (``data.csv?header=false``) or, from
SQL, ``WITH ('connector' = 'file', 'path' = 'data.csv', 'format' = 'csv')``.

The format comes from the ``format`` option (``json``/``jsonl``/``ndjson``, ``csv``, ``parquet``)
or else the file name: ``.jsonl``/``.json``/``.ndjson`` → json, ``.csv`` → csv, ``.tsv`` → csv
with a tab delimiter, ``.parquet``/``.pq`` → parquet. A further ``.gz`` is read with gzip (sinks
refuse it). CSV options: ``delimiter`` (one character, ``\\t`` for a tab) and ``header``
(``true``/``false``, default true). Sources also take ``follow`` (``true``/``false``, default
false): keep reading a JSON-lines or CSV file as it grows, like ``tail -f``.

As a sink the file is written exactly once per committed epoch (see ``FileSink``): JSON lines
and CSV go to the one file named, parquet to a *directory* of ``part-<epoch>.parquet`` files.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, cast

import pyarrow as pa
import pyarrow.parquet as pq

from connectors._lines import LineBuffer, raw_batch
from connectors.base import check_epoch_grows
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

    Follow mode (``follow=true``, JSON lines and CSV only, not gzip) reads a file that another
    process appends to: at the end of the file ``poll`` returns an empty batch instead of None
    (``bounded`` is False) and later polls pick up appended lines. Only *complete* lines are
    handed out: a last line without its ``\\n`` waits until the writer finishes it (so a writer
    must end every record with a newline; the bounded mode instead takes an unterminated last
    line as a record). Resuming works as in the bounded mode; if the file has fewer lines than
    the resume offset, the missing ones are skipped as they arrive. Traps: a file truncated while
    followed is an error; a file replaced by rename (log rotation) is not noticed, the old one is
    still read.
    """

    kind: Literal["raw", "typed"]
    bounded: bool

    def __init__(self, name: str, path: str, options: Options) -> None:
        """Take this connector's options from ``options`` and check them; no I/O.

        Args:
            name: the stream name (keys metrics and error rows).
            path: the file.
            options: the options left after the URI; ``format``, ``delimiter``, ``header`` and
                ``follow`` are taken, ``finish()`` is left to the caller.

        Raises:
            ConnectorError: for an unknown or missing format, a bad CSV option, or ``follow``
                on a parquet or gzip file.
        """
        self.name = name
        self.path = path
        self.where = options.where
        fmt, self.gzip = _format_of(path, options)
        self.kind = "typed" if fmt == "parquet" else "raw"
        self.format: str | None = None if fmt == "parquet" else fmt
        self.csv_options: dict[str, Any] | None = _csv_options(path, options) if fmt == "csv" else None
        self.follow = options.take_bool("follow", False)
        if self.follow and (fmt == "parquet" or self.gzip):
            what = "parquet" if fmt == "parquet" else "gzip"
            raise ConnectorError(
                f"option 'follow': cannot follow a {what} file ({path})",
                where=self.where,
                hint="follow works for JSON lines and CSV files",
            )
        self.bounded = not self.follow
        self._file: IO[bytes] | None = None
        self._lines = LineBuffer()
        self._batches: Iterator[pa.RecordBatch] | None = None
        self._pending: pa.RecordBatch | None = None
        self._next = 0
        self._skip_to = 0  # follow mode: resume offset not reached yet (lines still to come)

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
        self._skip_to = start
        self._skip()

    def _skip(self) -> None:
        """Read and drop lines up to the resume offset, as far as the file goes now."""
        while self._next < self._skip_to:
            skipped = self._read_lines(self._skip_to - self._next)
            if not skipped:
                break
            self._next += len(skipped)
        if not self.follow:
            self._skip_to = 0  # bounded: a file shorter than the offset simply ends there

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
        """Up to ``max_lines`` complete lines, reading more of the file as needed; [] at the end
        (in follow mode: at the end *for now*; an unterminated tail stays buffered)."""
        assert self._file is not None, "open() first"
        while len(self._lines) < max_lines and not self._lines.ended:
            chunk = self._file.read(_CHUNK_BYTES)
            if chunk:
                self._lines.feed(chunk)
            elif self.follow:
                self._check_not_truncated()
                break
            else:
                self._lines.end()
        return self._lines.take(max_lines)

    def _check_not_truncated(self) -> None:
        assert self._file is not None
        if os.fstat(self._file.fileno()).st_size < self._file.tell():
            raise ConnectorError(
                f"{self.path} was truncated while it was being followed",
                where=self.where,
                hint="append to a followed file; never truncate or rewrite it",
            )

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
        """The next ``max_rows`` records at most; None at the end of the file. Never waits.

        In follow mode the end of the file gives an empty batch (more may be appended), never None.

        Raises:
            ConnectorError: in follow mode, if the file was truncated.
        """
        if self.kind == "typed":
            batch = self._next_parquet_batch(max_rows)
            if batch is None:
                return None
            offsets = pa.array(range(self._next, self._next + batch.num_rows), pa.int64())
            self._next += batch.num_rows
            return batch.append_column("offset", offsets)
        if self._next < self._skip_to:
            self._skip()
            if self._next < self._skip_to:
                return raw_batch([], self._next, 0)
        lines = self._read_lines(max_rows)
        if not lines:
            return raw_batch([], self._next, 0) if self.follow else None
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

        In follow mode an unterminated last line is not included (it may still grow).

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
                elif self.follow:
                    break
                else:
                    lines.end()
        return lines.take(max_rows)

    def progress(self) -> tuple[int, int] | None:
        """(bytes read, file size) of an open JSON-lines or CSV file, for progress bars; None for
        parquet, gzip and followed files (no fixed size). Cheap: one ``fstat``. The bytes read run
        ahead of the records handed out by up to one read chunk."""
        if self._file is None or self.kind == "typed" or self.gzip or self.follow:
            return None
        size = os.fstat(self._file.fileno()).st_size
        return min(self._file.tell(), size), size

    def offsets(self) -> Offsets:
        """``{path: next record}`` (in follow mode never before the resume offset)."""
        return {self.path: str(max(self._next, self._skip_to))}

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


_STAGING = ".duckstream"
_STAGED_LINES_RE = re.compile(r"epoch-(\d{10})\.staged")
_STAGED_PART_RE = re.compile(r"part-(\d{10})\.parquet\.staged")
_PART_RE = re.compile(r"part-(\d{10})\.parquet")


class FileSink:
    """Rows written exactly once to local files: JSON lines or CSV (one file), or parquet (a directory).

    The exactly-once protocol of ``connectors.base.Sink``, per format:

    **JSON lines, CSV.** The output is the one file named. Rows of epoch ``n`` go to a staging
    file in a hidden sibling directory, ``out/.kpis.jsonl.duckstream/epoch-0000000007.staged``,
    never to the file itself. ``prepare(n)`` fsyncs it and returns ``{"length_before": L,
    "length_after": L + staged bytes}``, ``L`` being the file's committed length (a CSV header
    counts). ``commit(n)`` cuts the file back to ``length_before`` (dropping a half-done earlier
    attempt), appends the staged bytes, fsyncs, then deletes the staged file.
    **Parquet.** The path is a directory (created if missing) of ``part-<epoch:010d>.parquet``
    files, one per committed epoch with rows. Rows are staged in memory and in
    ``<dir>/.duckstream/part-<epoch>.parquet.staged``; ``prepare(n)`` finishes and fsyncs that
    file and returns ``{"part": "part-….parquet" or None, "rows": k}``; ``commit(n)`` renames it
    into place. ``pyarrow.parquet.read_table(dir)`` and DuckDB ``read_parquet('dir/*.parquet')``
    read the result: both skip the hidden ``.duckstream`` directory.

    ``open(schema, None)`` is a fresh start: it truncates the file (writing the CSV header), or
    deletes the directory's ``part-<10 digits>.parquet`` files (nothing else there), and clears
    the staging directory. ``open(schema, n, state)`` recovers from checkpoint ``n`` with what
    ``prepare(n)`` returned: if epoch ``n``'s staged file is still there its commit is redone,
    else the file is cut back to ``length_after`` (parquet: part files of later epochs are
    deleted); every staged file of another epoch is deleted. Readers then see exactly epochs
    ``<= n``. An output shorter than the state demands, or a committed part file gone, is a
    ``ConnectorError``: something else changed the output.

    Epochs: ``commit`` of an epoch already committed (or older) does nothing; an epoch without
    rows costs no I/O. ``commit(n)`` without ``prepare(n)`` prepares first (no checkpoint: fine).
    One epoch with rows is open at a time: rows for another epoch before it is committed or
    aborted, rows for an epoch already committed or prepared, are a ``ConnectorError`` (after a
    restart the epochs go on at ``last_committed + 1``). ``abort(n)`` drops epoch n's staged rows.
    ``close()`` releases handles and deletes rows that were never prepared (no checkpoint can
    name them); a prepared, uncommitted epoch's staged file stays for recovery. Nothing committed
    is ever deleted except by a fresh start or a recovery to an older checkpoint.

    Traps: while ``commit`` appends, and after a crash inside it until the restart repairs it, a
    JSON/CSV reader may see a partial last line (read complete lines only); recovery cuts away
    anything appended to the file by others after the committed length; two sinks must never
    share a path; a parquet directory with no committed rows has no files (readers find no
    schema, and DuckDB's glob finds no files); leave the ``.duckstream`` directories alone.
    """

    def __init__(self, name: str, path: str, options: Options) -> None:
        """Take this connector's options; no I/O.

        Args:
            name: the sink name.
            path: the file to write (parquet: the directory).
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
        self._schema: pa.Schema | None = None
        self._ready = False
        self._last_committed: int | None = None
        self._epoch: int | None = None  # the uncommitted epoch that has staged rows
        self._prepared_epoch: int | None = None  # the epoch prepare() last returned state for
        self._prepared_state: dict[str, Any] = {}
        self._handle: IO[bytes] | None = None  # the staged file being written
        self._staged_bytes = 0  # JSON/CSV: bytes in the staged file
        self._committed_length = 0  # JSON/CSV: the final file's committed length
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.Table] = []  # parquet rows not yet in the staged file
        self._buffered_rows = 0
        self._staged_rows = 0

    @classmethod
    def from_uri(cls, name: str, target: str | None, options: Options) -> FileSink:
        """The registry's factory: ``target`` is the path from the URI, else option ``path``."""
        return cls(name, _path_of(target, options), options)

    # -- names: pure functions of (path, epoch) --------------------------------------------

    @property
    def staging_dir(self) -> Path:
        """Where uncommitted rows live: ``.<name>.duckstream/`` beside a JSON/CSV file,
        ``.duckstream/`` inside a parquet directory."""
        target = Path(self.path)
        if self.format == "parquet":
            return target / _STAGING
        return target.parent / f".{target.name}{_STAGING}"

    def staged_path(self, epoch: int) -> Path:
        """The staging file of ``epoch``."""
        if self.format == "parquet":
            return self.staging_dir / f"part-{epoch:010d}.parquet.staged"
        return self.staging_dir / f"epoch-{epoch:010d}.staged"

    def part_path(self, epoch: int) -> Path:
        """Parquet: the part file of a committed ``epoch``."""
        return Path(self.path) / f"part-{epoch:010d}.parquet"

    # -- the protocol ----------------------------------------------------------------------

    def open(self, schema: pa.Schema, last_committed: Epoch | None, state: dict | None = None) -> None:
        """Start fresh (``last_committed`` None) or recover to checkpoint ``last_committed``.

        Args:
            schema: the rows' schema (CSV header, parquet schema).
            last_committed: the newest checkpoint's epoch, or None on a first start.
            state: what ``prepare(last_committed)`` returned (required with ``last_committed``).

        Raises:
            ConnectorError: if the output cannot be created, is the wrong kind (a directory
                for JSON/CSV, a file for parquet), the state is missing or malformed, or the
                output no longer matches the state (something else changed it).
        """
        self.close()
        self._schema = schema
        self._reset_epoch()
        self._prepared_epoch, self._prepared_state = None, {}
        try:
            if last_committed is None:
                self._start_fresh()
            else:
                self._recover(int(last_committed), state)
        except OSError as err:
            raise self._io_error("prepare", err) from None
        self._last_committed = None if last_committed is None else int(last_committed)
        self._ready = True

    def write(self, epoch: Epoch, batch: pa.Table) -> None:
        """Stage rows for ``epoch`` (invisible until ``commit``).

        Raises:
            ConnectorError: before ``open``; for an epoch already committed or prepared, or
                while another epoch with rows is neither committed nor aborted; for parquet
                rows that do not fit the schema.
        """
        self._check_ready("write")
        check_epoch_grows(epoch, self._last_committed, self.where)
        if self._epoch is not None and epoch != self._epoch:
            raise ConnectorError(
                f"rows for epoch {epoch} while epoch {self._epoch} is neither committed nor aborted",
                where=self.where,
            )
        if epoch == self._prepared_epoch:
            raise ConnectorError(f"rows for epoch {epoch} after it was prepared", where=self.where)
        if batch.num_rows == 0:
            return
        try:
            if self.format == "parquet":
                self._write_parquet(epoch, batch)
            else:
                self._write_lines(epoch, batch)
        except OSError as err:
            raise self._io_error("stage rows for", err) from None

    def prepare(self, epoch: Epoch) -> dict | None:
        """Make ``epoch``'s rows durable but invisible; return the state for checkpoint ``epoch``.

        Returns:
            JSON/CSV ``{"length_before": int, "length_after": int}``; parquet ``{"part": name
            or None, "rows": int}``. Preparing the same epoch again returns the same dict.

        Raises:
            ConnectorError: before ``open``; for an epoch already committed, or while an older
                epoch with rows is still open; if the staged file cannot be written.
        """
        self._check_ready("prepare")
        if self._last_committed is not None and epoch <= self._last_committed:
            raise ConnectorError(f"prepare of epoch {epoch}, which is already committed", where=self.where)
        if epoch == self._prepared_epoch:
            return dict(self._prepared_state)
        self._check_no_older_open(epoch)
        has_rows = self._epoch == epoch
        try:
            state = self._prepare_parts(epoch, has_rows) if self.format == "parquet" else self._prepare_lines(has_rows)
        except OSError as err:
            raise self._io_error("prepare rows for", err) from None
        self._prepared_epoch, self._prepared_state = int(epoch), state
        return dict(state)

    def commit(self, epoch: Epoch) -> None:
        """Make ``epoch`` visible. An epoch already committed (or older) is a no-op, and so is,
        without any I/O, an epoch without rows.

        Raises:
            ConnectorError: before ``open``; while an older epoch with rows is still open; if
                the output was changed by something else or cannot be written.
        """
        self._check_ready("commit")
        if self._last_committed is not None and epoch <= self._last_committed:
            return
        self._check_no_older_open(epoch)
        if self._epoch == epoch:
            if self._prepared_epoch != epoch:
                self.prepare(epoch)
            state = self._prepared_state
            try:
                if self.format == "parquet":
                    os.replace(self.staged_path(epoch), self.part_path(epoch))
                    _fsync_dir(Path(self.path))
                else:
                    self._append_staged(epoch, state["length_before"], state["length_after"])
                    self._committed_length = state["length_after"]
            except OSError as err:
                raise self._io_error("commit rows to", err) from None
            self._reset_epoch()
        if self._prepared_epoch is not None and self._prepared_epoch <= epoch:
            self._prepared_epoch, self._prepared_state = None, {}
        self._last_committed = int(epoch)

    def abort(self, epoch: Epoch) -> None:
        """Throw away the rows staged for ``epoch`` (prepared or not); nothing else changes."""
        if self._epoch == epoch:
            self._drop_staged()
        if self._prepared_epoch == epoch:
            self._prepared_epoch, self._prepared_state = None, {}

    def close(self) -> None:
        """Release the handles (safe to call twice).

        Committed output is never touched. Staged rows that were never prepared are deleted
        (no checkpoint can name them); a prepared but uncommitted epoch stays staged, because
        a checkpoint may name it and the next ``open`` recommits it. The staging directory is
        removed when empty.
        """
        if not self._ready:
            return
        if self._epoch is not None and self._prepared_epoch != self._epoch:
            self._drop_staged()
        self._release()
        self._reset_epoch()
        _remove_if_empty(self.staging_dir)
        self._ready = False

    # -- fresh start and recovery ----------------------------------------------------------

    def _start_fresh(self) -> None:
        target = Path(self.path)
        if self.format == "parquet":
            self._check_is_dir_or_missing(target)
            target.mkdir(parents=True, exist_ok=True)
            for name in os.listdir(target):
                if _PART_RE.fullmatch(name):
                    os.unlink(target / name)
            self._clear_staging()
            _fsync_dir(target)
            return
        if target.is_dir():
            raise ConnectorError(f"{self.path} is a directory, not a file", where=self.where)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._clear_staging()
        header = b""
        if self.csv_options is not None and self.csv_options["header"]:
            assert self._schema is not None
            header = to_csv(self._schema.empty_table(), header=True, delimiter=self.csv_options["delimiter"])
        with open(target, "wb") as out:
            out.write(header)
            out.flush()
            os.fsync(out.fileno())
        _fsync_dir(target.parent)
        self._committed_length = len(header)

    def _recover(self, epoch: int, state: dict | None) -> None:
        if state is None:
            raise ConnectorError(
                f"checkpoint {epoch} holds no state for sink {self.name!r} ({self.path})",
                where=self.where,
                hint="was the sink added after that checkpoint? start without the checkpoint to rewrite the output",
            )
        if self.format == "parquet":
            self._recover_parts(epoch, state)
        else:
            self._recover_lines(epoch, state)

    def _recover_lines(self, epoch: int, state: dict) -> None:
        before, after = self._lengths(epoch, state)
        target = Path(self.path)
        if target.is_dir():
            raise ConnectorError(f"{self.path} is a directory, not a file", where=self.where)
        if after > before and self.staged_path(epoch).exists():
            self._append_staged(epoch, before, after)  # the commit may not have finished: redo it
        else:
            size = target.stat().st_size if target.exists() else 0
            if size < after:
                raise self._changed(size, after, epoch)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
                _fsync_dir(target.parent)
            elif size > after:
                with open(target, "r+b") as out:
                    out.truncate(after)  # rows of epochs after the checkpoint
                    os.fsync(out.fileno())
        self._committed_length = after
        self._clear_staging()

    def _recover_parts(self, epoch: int, state: dict) -> None:
        part = state.get("part") if isinstance(state, dict) else None
        if not isinstance(state, dict) or part not in (None, self.part_path(epoch).name):
            raise ConnectorError(
                f"the checkpoint state for sink {self.name!r} is not a parquet sink's: {state!r}", where=self.where
            )
        target = Path(self.path)
        self._check_is_dir_or_missing(target)
        target.mkdir(parents=True, exist_ok=True)
        staged, final = self.staged_path(epoch), self.part_path(epoch)
        if part is not None and staged.exists():
            os.replace(staged, final)  # the commit may not have finished: redo it
        elif part is not None and not final.exists():
            raise ConnectorError(
                f"{final} (epoch {epoch}, committed) is missing: something else changed {self.path}",
                where=self.where,
                hint="restore it, or start without the checkpoint to rewrite the output",
            )
        for name in os.listdir(target):
            m = _PART_RE.fullmatch(name)
            if m and int(m.group(1)) > epoch:
                os.unlink(target / name)
        self._clear_staging()
        _fsync_dir(target)

    def _lengths(self, epoch: int, state: dict) -> tuple[int, int]:
        before = state.get("length_before") if isinstance(state, dict) else None
        after = state.get("length_after") if isinstance(state, dict) else None
        if not (type(before) is int and type(after) is int and 0 <= before <= after):
            raise ConnectorError(
                f"the checkpoint state for sink {self.name!r} (epoch {epoch}) is not a file sink's: {state!r}",
                where=self.where,
            )
        return before, after

    def _append_staged(self, epoch: int, before: int, after: int) -> None:
        """Cut the final file to ``before``, append epoch's staged bytes, fsync, delete them."""
        staged, target = self.staged_path(epoch), Path(self.path)
        size = staged.stat().st_size
        if before + size != after:
            raise ConnectorError(
                f"{staged} has {size} bytes but epoch {epoch} staged {after - before}", where=self.where
            )
        exists = target.exists()
        if not exists and before > 0:
            raise self._changed(0, before, epoch)
        with open(target, "r+b" if exists else "w+b") as out:
            current = os.fstat(out.fileno()).st_size
            if current < before:
                raise self._changed(current, before, epoch)
            if current != before:
                out.truncate(before)  # a half-done earlier attempt
            out.seek(before)
            with open(staged, "rb") as rows:
                shutil.copyfileobj(rows, out, _CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        if not exists:
            _fsync_dir(target.parent)
        staged.unlink()

    def _clear_staging(self) -> None:
        """Delete every staged file (of any epoch) and the staging directory if it is empty."""
        directory = self.staging_dir
        if not directory.is_dir():
            return
        pattern = _STAGED_PART_RE if self.format == "parquet" else _STAGED_LINES_RE
        for name in os.listdir(directory):
            if pattern.fullmatch(name):
                os.unlink(directory / name)
        _remove_if_empty(directory)

    # -- staging ---------------------------------------------------------------------------

    def _ensure_staging_dir(self) -> None:
        directory = self.staging_dir
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            _fsync_dir(directory.parent)

    def _write_lines(self, epoch: Epoch, batch: pa.Table) -> None:
        if self.csv_options is not None:
            data = to_csv(batch, header=False, delimiter=self.csv_options["delimiter"])
        else:
            data = to_json_lines(batch)
        if self._handle is None:
            self._ensure_staging_dir()
            self._handle = open(self.staged_path(epoch), "wb")
            self._epoch, self._staged_bytes = int(epoch), 0
        self._handle.write(data)
        self._staged_bytes += len(data)

    def _write_parquet(self, epoch: Epoch, batch: pa.Table) -> None:
        assert self._schema is not None
        try:
            table = batch.select(self._schema.names).cast(self._schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError, ValueError) as err:
            raise ConnectorError(f"cannot write rows to {self.path}: {err}", where=self.where) from None
        self._epoch = int(epoch)
        self._buffer.append(table)
        self._buffered_rows += table.num_rows
        if self._buffered_rows >= _PARQUET_BATCH_ROWS:
            self._flush_parquet()

    def _flush_parquet(self) -> None:
        """Buffered rows into the staged file, as one row group."""
        if not self._buffer:
            return
        assert self._epoch is not None and self._schema is not None
        if self._writer is None:
            self._ensure_staging_dir()
            self._handle = open(self.staged_path(self._epoch), "wb")
            self._writer = pq.ParquetWriter(self._handle, self._schema, compression="zstd")
        table = pa.concat_tables(self._buffer)
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._staged_rows += table.num_rows
        self._buffer, self._buffered_rows = [], 0

    def _prepare_lines(self, has_rows: bool) -> dict[str, Any]:
        length = self._committed_length
        if not has_rows:
            return {"length_before": length, "length_after": length}
        assert self._handle is not None
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        _fsync_dir(self.staging_dir)
        return {"length_before": length, "length_after": length + self._staged_bytes}

    def _prepare_parts(self, epoch: Epoch, has_rows: bool) -> dict[str, Any]:
        if not has_rows:
            return {"part": None, "rows": 0}
        self._flush_parquet()
        assert self._writer is not None and self._handle is not None
        self._writer.close()  # the footer; the handle stays open
        self._writer = None
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        _fsync_dir(self.staging_dir)
        return {"part": self.part_path(epoch).name, "rows": self._staged_rows}

    def _drop_staged(self) -> None:
        epoch = self._epoch
        self._release()
        if epoch is not None:
            self.staged_path(epoch).unlink(missing_ok=True)
        self._reset_epoch()

    def _release(self) -> None:
        writer, handle = self._writer, self._handle
        self._writer, self._handle = None, None
        try:
            if writer is not None:
                writer.close()
        except (OSError, pa.ArrowException):
            pass  # the staged file is dropped or recovered anyway
        finally:
            if handle is not None:
                handle.close()

    def _reset_epoch(self) -> None:
        self._epoch = None
        self._staged_bytes = self._staged_rows = self._buffered_rows = 0
        self._buffer = []

    # -- checks and messages ---------------------------------------------------------------

    def _check_ready(self, what: str) -> None:
        if not self._ready:
            raise ConnectorError(f"{what} before open", where=self.where)

    def _check_no_older_open(self, epoch: Epoch) -> None:
        if self._epoch is not None and self._epoch < epoch:
            raise ConnectorError(
                f"epoch {self._epoch} has staged rows but was neither committed nor aborted before epoch {epoch}",
                where=self.where,
            )

    def _check_is_dir_or_missing(self, target: Path) -> None:
        if target.exists() and not target.is_dir():
            raise ConnectorError(
                f"{self.path} is a file; a parquet sink writes a directory of part files",
                where=self.where,
                hint="remove the file or name a directory",
            )

    def _changed(self, size: int, wanted: int, epoch: int) -> ConnectorError:
        return ConnectorError(
            f"{self.path} has {size} bytes but committed epoch {epoch} left {wanted}: something else changed it",
            where=self.where,
            hint="restore the file, or start without the checkpoint to rewrite it",
        )

    def _io_error(self, doing: str, err: OSError) -> ConnectorError:
        return ConnectorError(f"cannot {doing} {self.path}: {err.strerror or err}", where=self.where)


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries (files created, renamed, deleted) durable; POSIX only."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass  # missing, or not empty (a prepared epoch waits for recovery)
