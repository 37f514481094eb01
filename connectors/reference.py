"""Reference tables: a CSV, JSON-lines or Parquet file (local or ``s3://``) loaded whole, for joins.

KDA applications join their stream with a *reference data source*, an S3 object loaded into an
in-application table. Here ``--reference NAME=URI`` (or a ``--source NAME=URI`` for a name the
program only joins) does the same: the object is read once at start, its column types inferred
(CSV header names, JSON keys), and ``reload()`` reads it again on demand (``kill -HUP`` on the
command line). A reload keeps the types planned at start: a changed object that no longer fits
them is refused, and the old table stays in use.

URI options: ``format`` (csv | json | parquet; default from the extension, else csv),
``header`` and ``delimiter`` for CSV, ``endpoint``/``region`` for S3.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa

from connectors import parse_uri
from connectors.options import Options, take_csv_options
from engine.errors import ConnectorError

FORMATS = ("csv", "json", "parquet")


class ReferenceTable:
    """One reference table: where it lives and its current contents."""

    def __init__(self, name: str, uri: str, where: str) -> None:
        """Parse ``uri``; no I/O yet.

        Args:
            name: the table name the program joins.
            uri: a file path, ``file:...`` or ``s3://BUCKET/KEY``, with options after ``?``.
            where: the option it came from, for messages (``--reference rates``).

        Raises:
            ConnectorError: for an unknown scheme or option.
        """
        self.name, self.where = name, where
        scheme, target, query = parse_uri(uri, where)
        if scheme not in ("file", "s3") or not target:
            raise ConnectorError(f"a reference table is a file or an s3:// object, not {scheme!r}", where=where)
        options = Options(query, where)
        self.scheme = scheme
        self.target = target
        default = next((f for f in FORMATS if _strip_gz(target).lower().endswith("." + f)), None)
        if _strip_gz(target).lower().endswith((".jsonl", ".ndjson")):
            default = "json"
        self.format = options.take_choice("format", FORMATS, default or "csv")
        self.csv = take_csv_options(options) if self.format == "csv" else {}
        self.endpoint = options.take_optional("endpoint") if scheme == "s3" else None
        self.region = options.take_optional("region") if scheme == "s3" else None
        options.finish()
        self._table: pa.Table | None = None
        self.schema: pa.Schema | None = None  # fixed by the first load

    @property
    def label(self) -> str:
        return f"s3://{self.target}" if self.scheme == "s3" else self.target

    def table(self) -> pa.Table:
        """The table, loaded on first use.

        Raises:
            ConnectorError: if it cannot be read.
        """
        if self._table is None:
            self._table = self._read()
            self.schema = self._table.schema
        return self._table

    def reload(self) -> pa.Table:
        """Read the object again; on success it replaces the table.

        Returns:
            The new table, cast to the schema of the first load.

        Raises:
            ConnectorError: if it cannot be read or no longer fits that schema (the old table stays).
        """
        fresh = self._read()
        if self.schema is not None:
            fresh = _conform(fresh, self.schema, self.label, self.where)
        self._table = fresh
        self.schema = fresh.schema
        return fresh

    def _bytes(self) -> bytes:
        if self.scheme == "s3":
            return _s3_bytes(self.target, self.endpoint, self.region, self.where)
        try:
            return Path(self.target).read_bytes()
        except FileNotFoundError:
            raise ConnectorError(f"no such file: {self.target}", where=self.where) from None
        except OSError as err:
            raise ConnectorError(f"cannot read {self.target}: {err.strerror}", where=self.where) from None

    def _read(self) -> pa.Table:
        data = self._bytes()
        if self.label.lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
            import gzip

            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as err:
                raise ConnectorError(f"{self.label}: bad gzip data ({err})", where=self.where) from None
        try:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                return pq.read_table(io.BytesIO(data))
            if self.format == "json":
                import pyarrow.json as pj

                return pj.read_json(io.BytesIO(data))
            import pyarrow.csv as pc

            header = self.csv.get("header", True)
            read = pc.ReadOptions(autogenerate_column_names=not header)
            parse = pc.ParseOptions(delimiter=self.csv.get("delimiter", ","))
            return pc.read_csv(io.BytesIO(data), read_options=read, parse_options=parse)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            message = str(err).splitlines()[0]
            raise ConnectorError(f"{self.label} is not readable {self.format}: {message}", where=self.where) from None


def _strip_gz(path: str) -> str:
    path = path.split("?", 1)[0]
    return path[:-3] if path.lower().endswith(".gz") else path


def _conform(table: pa.Table, schema: pa.Schema, label: str, where: str) -> pa.Table:
    by_lower = {n.lower(): n for n in table.column_names}
    columns = []
    for field in schema:
        found = by_lower.get(field.name.lower())
        if found is None:
            raise ConnectorError(f"{label} no longer has column {field.name!r}; keeping the old table", where=where)
        try:
            columns.append(table[found].cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise ConnectorError(
                f"{label}: column {field.name!r} no longer fits {field.type} ({str(err).splitlines()[0]}); "
                "keeping the old table",
                where=where,
            ) from None
    return pa.table(columns, schema=schema)


def _s3_bytes(target: str, endpoint: str | None, region: str | None, where: str) -> bytes:
    from connectors.s3 import read_object

    return read_object(f"s3://{target}", where=where, endpoint=endpoint, region=region)
