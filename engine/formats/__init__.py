"""DECODE/ENCODE: JSON lines, CSV and parquet rows to Arrow and back.

``Decoder`` turns a stream's raw records into typed rows plus error rows, ``discover_schema``
guesses a schema from a sample, ``to_json_lines``/``to_csv`` write rows, and ``parse_type``/
``sql_type_name`` translate between SQL type names and Arrow types.
"""

from engine.formats.decode import Decoder
from engine.formats.discover import discover_schema
from engine.formats.encode import row_to_json, to_csv, to_json_lines
from engine.formats.types import parse_type, sql_type_name

__all__ = ["Decoder", "discover_schema", "parse_type", "row_to_json", "sql_type_name", "to_csv", "to_json_lines"]
