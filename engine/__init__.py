"""duckstream's engine: continuous SQL over streams, evaluated in DuckDB.

``engine.compile`` plans a program and returns a ``CompiledProgram``: a ``Program`` (the plan)
that records can also be pushed into from Python (``engine.api``; guide in ``docs/api.md``).

>>> import engine
>>> program = engine.compile("SELECT k FROM s WHERE v > 1")
Traceback (most recent call last):
...
engine.errors.PlanError: 1:15: unknown stream "s" (declare it with CREATE TABLE, or give --source NAME=URI)
"""

from __future__ import annotations

from engine.api import CompiledProgram, Record, Records, TableCallback, Timestamp, compile
from engine.errors import ConnectorError, DuckstreamError, PlanError, RecordError, SqlError
from engine.plan.logical import Program

__all__ = [
    "CompiledProgram",
    "ConnectorError",
    "DuckstreamError",
    "PlanError",
    "Program",
    "Record",
    "RecordError",
    "Records",
    "SqlError",
    "TableCallback",
    "Timestamp",
    "compile",
]
