"""duckstream's engine: continuous SQL over streams, evaluated in DuckDB.

>>> import engine
>>> program = engine.compile("SELECT k FROM s WHERE v > 1", resolve_schema=lambda name: None)
Traceback (most recent call last):
...
engine.errors.PlanError: 1:15: unknown stream 's' (declare it with CREATE TABLE, or give --source NAME=URI)
"""

from __future__ import annotations

from engine.errors import ConnectorError, DuckstreamError, PlanError, RecordError, SqlError
from engine.plan.logical import Program
from engine.plan.planner import PlanOptions, SchemaResolver, compile_program

__all__ = [
    "ConnectorError",
    "DuckstreamError",
    "PlanError",
    "Program",
    "RecordError",
    "SqlError",
    "compile",
]


def compile(
    sql: str,
    path: str | None = None,
    resolve_schema: SchemaResolver | None = None,
    allowed_lateness_us: int = 0,
) -> Program:
    """Parse, check and plan a program. Raises ``SqlError``/``PlanError`` with a location."""
    return compile_program(sql, path, resolve_schema, PlanOptions(allowed_lateness_us=allowed_lateness_us))
