"""One place that opens DuckDB connections, with the settings every part of the engine relies on."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from engine.runtime import functions


def connect(threads: int = 1, integer_division: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection for running operator SQL.

    External access is off (no reading or writing files, no ``ATTACH``/``INSTALL``/``getenv``
    from a user's SQL): connectors do all I/O in Python. Arrow tables registered with
    ``register`` still work. Division by zero raises (SQL's rule) instead of giving infinity. Time zone is UTC.
    With ``integer_division`` (KDA programs), ``/`` of two integers is an integer (``5 / 2 = 2``), as in KDA.
    """
    # no spill directory: DuckDB lets even a locked-down connection read its temp directory
    con = duckdb.connect(config={"threads": threads, "temp_directory": ""})
    con.execute("SET enable_external_access = false")
    con.execute("SET ieee_floating_point_ops = false")  # x / 0 is an error (an eval error row), not inf
    if integer_division:
        con.execute("SET integer_division = true")
    con.execute("SET lock_configuration = true")
    functions.register(con)  # KDA's function library (kda_* macros and UDFs)
    return con


def run(con: duckdb.DuckDBPyConnection, sql: str, **tables: pa.Table) -> pa.Table:
    """Register ``tables`` under their keyword names, run ``sql``, return an Arrow table."""
    for name, table in tables.items():
        con.register(name, table)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        for name in tables:
            con.unregister(name)
