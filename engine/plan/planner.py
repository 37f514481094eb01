"""PLAN: statements -> a logical ``Program``. Every check of a program lives here.

A query becomes one operator (stateless, window aggregate or session aggregate) whose input is a
stream; a subquery in FROM, a CTE or a view becomes a stream of its own, so queries nest. The
planner lowers each operator to DuckDB SQL and dry-runs it on empty Arrow tables, which both
type-checks the program before any data flows and gives every stream its schema.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TypeVar

import duckdb
import pyarrow as pa
from sqlglot import exp

from engine.errors import PlanError, SqlError
from engine.formats.types import sql_type_name
from engine.plan import aggregates
from engine.plan.logical import (
    OperatorSpec,
    OutputDef,
    Program,
    ReferenceDef,
    SessionAggSpec,
    SortSpec,
    StatelessSpec,
    StreamDef,
    WindowAggSpec,
)
from engine.plan.stagger import plan_stagger
from engine.runtime.duck import connect, run
from engine.sql import kda
from engine.sql.dialect import Emit, Stagger, WindowTVF, position
from engine.sql.functions import lower_functions
from engine.sql.parse import parse_program
from engine.types import MAX_TIME, SEQ_COL, WINDOW_END, WINDOW_START, WINDOW_TIME, WM_COL

SchemaResolver = Callable[[str], "pa.Schema | None"]
_Q = TypeVar("_Q", bound=exp.Expr)
UNIT_US = {
    "MICROSECOND": 1,
    "MILLISECOND": 1_000,
    "SECOND": 1_000_000,
    "MINUTE": 60_000_000,
    "HOUR": 3_600_000_000,
    "DAY": 86_400_000_000,
    "WEEK": 7 * 86_400_000_000,
}
WINDOW_COLS = (WINDOW_START, WINDOW_END, WINDOW_TIME)
HIDDEN = f'"{SEQ_COL}", "{WM_COL}"'
WINDOW_TIME_LAG_US = 1_000  # window_time = window_end - 1 ms, as in Flink


@dataclass
class PlanOptions:
    """Program-wide settings that the command line can give (table options override them)."""

    allowed_lateness_us: int = 0
    # A program without any output is fine (the REPL plans a program's declarations before its queries).
    allow_no_outputs: bool = False
    # Sources get KDA's ROWTIME (and APPROXIMATE_ARRIVAL_TIME) even in a program that is not KDA
    # SQL, so DESCRIPTOR(ROWTIME) works on them (the REPL's SOURCE_SQL_STREAM_001).
    rowtime_sources: bool = False
    # Reference tables (``--reference NAME=URI``, or a --source that a program only joins):
    # name -> schema, None if the name is no reference table.
    reference: SchemaResolver | None = None


@dataclass
class _Scope:
    """What a query can see: CTE names mapped to stream keys."""

    ctes: dict[str, str] = field(default_factory=dict)


def compile_program(
    text: str,
    path: str | None = None,
    resolve_schema: SchemaResolver | None = None,
    options: PlanOptions | None = None,
) -> Program:
    """Parse and plan ``text``. Raises ``SqlError``/``PlanError`` naming ``path:line:col``."""
    try:
        return _Planner(text, path, resolve_schema, options or PlanOptions()).plan()
    except SqlError as err:
        raise err.located(path) if path and not err.path else err from None


def interval_us(node: exp.Expr | None, what: str = "interval") -> int:
    """Microseconds of an ``INTERVAL '5' SECOND``-style literal (negated with a leading ``-``)."""
    if node is None:
        raise PlanError(f"{what} is missing")
    if isinstance(node, exp.Neg):
        return -interval_us(node.this, what)
    if isinstance(node, exp.Paren):
        return interval_us(node.this, what)
    if not isinstance(node, exp.Interval):
        raise _err(node, f"{what} must be an INTERVAL literal such as INTERVAL '5' SECOND")
    value = node.this.name if isinstance(node.this, exp.Literal) else node.this.sql()
    unit = node.args.get("unit")
    unit_name = unit.name.upper() if unit is not None else ""
    if not unit_name:
        parts = value.split()
        if len(parts) != 2:
            raise _err(node, f"cannot read {node.sql()!r} as an interval")
        value, unit_name = parts[0], parts[1].upper()
    unit_name = unit_name.rstrip("S") if unit_name.rstrip("S") in UNIT_US else unit_name
    if unit_name not in UNIT_US:
        raise _err(node, f'unsupported interval unit "{unit_name}" (use MILLISECOND, SECOND, MINUTE, HOUR or DAY)')
    try:
        amount = float(value)
    except ValueError:
        raise _err(node, f'"{value}" is not a number in {node.sql()}') from None
    return round(amount * UNIT_US[unit_name])


_TEXT = [""]  # the program being planned, for keyword positions (set by _Planner)
_LEAD_KEYWORD: dict[type, str] = {
    exp.Interval: "INTERVAL",
    exp.Group: "GROUP",
    exp.Join: "JOIN",
    exp.Distinct: "DISTINCT",
    exp.Where: "WHERE",
    exp.Having: "HAVING",
}


def _offset_position(node: exp.Expr) -> tuple[int | None, int | None]:
    """(line, col) from the earliest character offset in ``node`` (sqlglot's own line numbers
    slip after a token that spans a line break); falls back to ``position``."""
    starts = [n.meta["start"] for n in node.walk() if isinstance(n, exp.Expr) and "start" in n.meta]
    text = _TEXT[0]
    if not starts or not text:
        return position(node)
    start = min(starts)
    return text.count("\n", 0, start) + 1, start - text.rfind("\n", 0, start)


def _err(node: exp.Expr | None, message: str, hint: str | None = None) -> PlanError:
    line, col = _offset_position(node) if node is not None else (None, None)
    if line is None and node is not None and node.parent is not None:
        line, col = position(node.parent)  # e.g. DISTINCT: nothing inside it has a position
    keyword = _LEAD_KEYWORD.get(type(node)) if node is not None else None
    if keyword and line is not None and col is not None:
        line, col = _keyword_before(_TEXT[0], line, col, keyword)
    return PlanError(message, line, col, hint=hint)


def _keyword_before(text: str, line: int, col: int, keyword: str) -> tuple[int, int]:
    """The position of the last ``keyword`` before (line, col): where a clause really starts.

    sqlglot keeps positions of identifiers and literals, not of the keywords that lead a clause.
    """
    lines = text.split("\n")
    offset = sum(len(x) + 1 for x in lines[: line - 1]) + col - 1
    found = None
    for m in re.finditer(rf"\b{keyword}\b", text[:offset], re.IGNORECASE):
        found = m.start()
    if found is None:
        return line, col
    before = text[:found]
    return before.count("\n") + 1, found - (before.rfind("\n") + 1) + 1


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql(node: exp.Expr) -> str:
    return node.sql(dialect="duckdb", identify=True)


@lru_cache(maxsize=1)
def _duckdb_functions() -> frozenset[str]:
    con = connect()  # with the kda_* macros, so they count as known functions
    rows = con.sql("SELECT DISTINCT lower(function_name) FROM duckdb_functions()")
    return frozenset(r[0] for r in rows.fetchall())


@lru_cache(maxsize=1)
def _duckdb_aggregates() -> frozenset[str]:
    con = connect()  # with the kda_* macros, so they count as known functions
    rows = con.sql("SELECT DISTINCT lower(function_name) FROM duckdb_functions() WHERE function_type = 'aggregate'")
    return frozenset(r[0] for r in rows.fetchall())


def is_aggregate(node: exp.Expr) -> bool:
    """True for an aggregate call (sqlglot's or one DuckDB knows), not for ``... OVER (...)``."""
    if isinstance(node, exp.AggFunc):
        return not isinstance(node.parent, exp.Window)
    if isinstance(node, exp.Anonymous):
        return node.name.lower() in _duckdb_aggregates() and not isinstance(node.parent, exp.Window)
    return False


def _aggregate_units(nodes: list[exp.Expr]) -> list[exp.Expr]:
    """Outermost aggregate calls (with their FILTER clause) in ``nodes``, in order."""
    units: list[exp.Expr] = []
    for root in nodes:
        for node in root.walk():
            ancestors = _ancestors(node, root)
            if any(isinstance(a, (exp.Subquery, exp.Select)) for a in ancestors):
                continue  # an aggregate of a scalar subquery belongs to that subquery
            if is_aggregate(node) and not any(is_aggregate(a) for a in ancestors):
                unit = node.parent if isinstance(node.parent, exp.Filter) else node
                units.append(unit)
    return units


def _ancestors(node: exp.Expr, root: exp.Expr) -> list[exp.Expr]:
    out = []
    cur = node.parent
    while cur is not None and cur is not root.parent:
        out.append(cur)
        if cur is root:
            break
        cur = cur.parent
    return out


class _Planner:
    def __init__(self, text: str, path: str | None, resolve: SchemaResolver | None, options: PlanOptions) -> None:
        self.text, self.path, self.resolve, self.options = text, path, resolve, options
        _TEXT[0] = text
        self.streams: dict[str, StreamDef] = {}
        self.operators: list[OperatorSpec] = []
        self.outputs: list[OutputDef] = []
        self.producers: dict[str, int] = {}
        self.read: set[str] = set()
        self.con = connect()
        self.results = 0
        self.step_names: set[str] = set()
        # per derived stream, one dict per producer: output column (lower) -> (input key, input column)
        self.lineage: dict[str, list[dict[str, tuple[str, str]]]] = {}
        self.changelog: set[str] = set()  # streams whose rows are changes (EMIT CHANGES, corrections)
        self.origin: dict[str, str] = {}  # derived stream key -> name of the source its rows come from
        self.retimed: set[str] = set()  # INSERT targets with their own WATERMARK: time starts again there
        self.references: dict[str, ReferenceDef] = {}
        self.kda = False  # a KDA SQL program (see engine.sql.kda)
        self.functions: dict[str, str] = {}  # CREATE FUNCTION: lower-case name -> DuckDB macro SQL
        self.pumps: dict[str, str] = {}  # step id prefix -> pump name

    # ------------------------------------------------------------------ statements
    def plan(self) -> Program:
        statements = parse_program(self.text, self.path)
        if not statements:
            raise PlanError("the program has no statements", 1, 1)
        self.kda = kda.is_kda(statements)
        if self.kda:
            statements = kda.prepare(statements).statements
            self.con = connect(integer_division=True)  # 5 / 2 = 2, as in KDA
        statements = [lower_functions(s, kda=self.kda) for s in statements]
        bare = [s for s in statements if isinstance(s, (exp.Query, Emit))]
        self.single_result = len(bare) == 1
        for stmt in statements:
            self._statement(stmt)
        if not self.outputs and not self.options.allow_no_outputs:
            raise PlanError("the program produces nothing: add a SELECT or an INSERT INTO", 1, 1)
        sources = [k for k in self.streams if k in self.read and k not in self.producers]
        if self.kda:  # a stream that other pumps read is written out only when a sink is named for it
            self.outputs = [replace(o, optional=o.stream in self.read) for o in self.outputs]
        return Program(
            self.text,
            self.path,
            self.streams,
            self.operators,
            sources,
            self.outputs,
            self.references,
            kda=self.kda,
            pumps=self.pumps,
            functions=list(self.functions.values()),
        )

    def _statement(self, stmt: exp.Expr) -> None:
        if isinstance(stmt, exp.Semicolon):  # an empty statement: a comment after the last ';'
            return None
        if isinstance(stmt, exp.Create):
            kind = (stmt.args.get("kind") or "").upper()
            if kind in ("TABLE", "STREAM"):
                return self._create_table(stmt)
            if kind == "VIEW":
                if not isinstance(stmt.expression, (exp.Query, Emit)):
                    raise _err(stmt, "CREATE VIEW needs AS SELECT ...")
                name = stmt.this.name
                self._query_into(stmt.expression, name, declare=True, where_node=stmt)
                return None
            if kind == "FUNCTION":
                return self._create_function(stmt)
            raise _err(stmt, f"CREATE {kind} is not supported (use CREATE TABLE, CREATE STREAM or CREATE VIEW)")
        if isinstance(stmt, exp.Insert):
            return self._insert(stmt)
        if isinstance(stmt, (exp.Query, Emit)):
            self.results += 1
            name = "result" if self.single_result else f"result_{self.results}"
            key = self._query_into(stmt, name, declare=True, where_node=stmt)
            self.outputs.append(OutputDef(key, name, self._where(stmt)))
            return None
        if isinstance(stmt, exp.Command):
            word = stmt.name.upper() if stmt.name else stmt.sql().split()[0].upper()
            raise _err(stmt, f'unknown statement "{word}"', hint="expected CREATE, INSERT INTO or SELECT")
        word = type(stmt).__name__.upper()
        raise _err(stmt, f"{word} statements are not supported", hint="a program holds CREATE, INSERT INTO and SELECT")

    def _create_function(self, stmt: exp.Create) -> None:
        """``CREATE [OR REPLACE] FUNCTION f(x TYPE, ...) RETURNS TYPE [CONTAINS SQL] RETURN expr``
        (SQLstream's SQL functions): a DuckDB macro on every connection of the program."""
        udf = stmt.this
        body = stmt.expression
        if not isinstance(udf, exp.UserDefinedFunction) or not isinstance(body, exp.Return):
            raise _err(stmt, "a function is CREATE FUNCTION f(x TYPE, ...) RETURNS TYPE RETURN <expression>")
        name = udf.this.name if isinstance(udf.this, exp.Table) else udf.name
        if name.lower() in self.functions and not stmt.args.get("replace"):
            raise _err(udf, f'function "{name}" is declared twice', hint="CREATE OR REPLACE FUNCTION replaces it")
        params = [p.name for p in udf.expressions if isinstance(p, exp.ColumnDef)]
        if len(params) != len(udf.expressions):
            raise _err(udf, "each parameter of a function is NAME TYPE")
        for column in body.find_all(exp.Column):
            if column.table or column.name.lower() not in {p.lower() for p in params}:
                raise _err(
                    column, f'"{column.sql()}" is not a parameter of {name}', hint="a function sees only its parameters"
                )
        returns = next(
            (
                p.this
                for p in (stmt.args.get("properties") or exp.Properties(expressions=[])).expressions
                if isinstance(p, exp.ReturnsProperty)
            ),
            None,
        )
        value = _sql(body.this)
        if returns is not None:
            value = f"CAST(({value}) AS {returns.sql(dialect='duckdb')})"
        sql = f"CREATE OR REPLACE MACRO {_q(name.lower())}({', '.join(_q(p) for p in params)}) AS {value}"
        try:
            self.con.execute(sql)
        except duckdb.Error as err:
            raise _err(stmt, _duck_message(err)) from None
        self.functions[name.lower()] = sql

    def _where(self, node: exp.Expr) -> str:
        line, col = position(node)
        return ":".join(str(p) for p in (self.path, line, col) if p is not None)

    def _create_table(self, stmt: exp.Create) -> None:
        from engine.formats.types import parse_type

        schema_node = stmt.this
        table = schema_node.this if isinstance(schema_node, exp.Schema) else schema_node
        name = table.name
        key = name.lower()
        if key in self.streams:
            raise _err(stmt, f'stream "{name}" is declared twice')
        fields: list[pa.Field] = []
        time_col, delay = None, 0
        defs = schema_node.expressions if isinstance(schema_node, exp.Schema) else []
        for item in defs:
            if isinstance(item, exp.ColumnDef):
                kind = item.args.get("kind")
                type_text = kind.sql(dialect="duckdb") if kind is not None else "VARCHAR"
                try:
                    dtype = parse_type(type_text)
                except ValueError as err:
                    raise _err(item, f'column "{item.name}": {err}') from None
                try:
                    item.name.encode("utf-8")
                except UnicodeEncodeError:
                    raise _err(item, "a column name must be valid text (it holds a lone surrogate)") from None
                for constraint in item.constraints:
                    if not isinstance(constraint.args.get("kind"), (exp.NotNullColumnConstraint,)):
                        raise _err(item, f"unsupported column constraint {constraint.sql()!r}", hint="only NOT NULL")
                if any(f.name.lower() == item.name.lower() for f in fields):
                    raise _err(item, f'column "{item.name}" is declared twice')
                nullable = not any(
                    isinstance(c.args.get("kind"), exp.NotNullColumnConstraint) for c in item.constraints
                )
                fields.append(pa.field(item.name, dtype, nullable))
            elif isinstance(item, exp.WatermarkColumnConstraint):
                time_col, delay = self._watermark(item, fields)
            elif isinstance(item, (exp.PrimaryKey, exp.Constraint)):
                continue
            else:
                raise _err(item, f"unsupported item in CREATE TABLE: {item.sql()[:40]!r}")
        options = self._with_options(stmt)
        kda_stream = self.kda and (stmt.args.get("kind") or "").upper() == "STREAM"
        if kda_stream:  # every KDA stream has ROWTIME, its event time, which never decreases
            if time_col is not None:
                raise _err(stmt, "a KDA stream has no WATERMARK: its time is ROWTIME")
            fields.append(pa.field(kda.ROWTIME, pa.timestamp("us"), nullable=False))
            time_col, delay = kda.ROWTIME, 0
        self.streams[key] = StreamDef(
            name=name,
            key=key,
            schema=pa.schema(fields),
            time_column=time_col,
            delay_us=delay,
            options=options,
            where=self._where(stmt),
            declared=True,
            rowtime=kda_stream,
        )

    def _watermark(self, item: exp.WatermarkColumnConstraint, fields: list[pa.Field]) -> tuple[str, int]:
        col = item.this.name
        match = [f for f in fields if f.name.lower() == col.lower()]
        if not match:
            raise _err(item.this, f"WATERMARK FOR {col}: no such column (declare it before the WATERMARK)")
        if not pa.types.is_timestamp(match[0].type):
            raise _err(item.this, f"WATERMARK FOR {col}: the column must be a TIMESTAMP")
        expr = item.expression
        if isinstance(expr, exp.Column) and expr.name.lower() == col.lower():
            return match[0].name, 0
        if isinstance(expr, (exp.Sub, exp.Add)) and isinstance(expr.this, exp.Column):
            if expr.this.name.lower() != col.lower():
                raise _err(expr.this, f"the watermark must be computed from {col}")
            amount = interval_us(expr.expression, "the watermark delay")
            return match[0].name, amount if isinstance(expr, exp.Sub) else -amount
        raise _err(
            expr,
            f"unsupported watermark {expr.sql()!r}",
            hint=f"write {col}, {col} - INTERVAL '5' SECOND or {col} + INTERVAL ...",
        )

    def _with_options(self, stmt: exp.Create) -> dict[str, str]:
        props = stmt.args.get("properties")
        options: dict[str, str] = {}
        if props is None:
            return options
        for prop in props.expressions:
            if type(prop) is not exp.Property:
                raise _err(prop, f"unsupported table property {prop.sql()!r}", hint="write WITH ('key' = 'value', ...)")
            key = prop.this.name if isinstance(prop.this, (exp.Literal, exp.Identifier, exp.Var)) else prop.this.sql()
            value = prop.args.get("value")
            text = (
                value.name
                if isinstance(value, (exp.Literal, exp.Identifier, exp.Var))
                else (value.sql() if value is not None else "")
            )
            options[key.lower()] = text
        return options

    def _insert(self, stmt: exp.Insert) -> None:
        if stmt.this is None or not isinstance(stmt.expression, (exp.Query, Emit)):
            raise _err(stmt, "INSERT needs INTO <stream> SELECT ...")
        target = stmt.this
        columns: list[str] | None = None
        if isinstance(target, exp.Schema):
            columns = [c.name for c in target.expressions]
            target = target.this
        name = target.name
        key = name.lower()
        declared = self.streams.get(key)
        query = stmt.expression
        if self.kda and (declared is None or not declared.declared):
            raise _err(
                target,
                f'stream "{name}" does not exist',
                hint="a pump writes into a stream declared with CREATE STREAM",
            )
        if self.kda:  # columns map by position: two items may have the same name
            query = _unique_names(query)
        tmp_name = f"{name}#{len(self.operators) + 1}"
        pump = stmt.meta.get("pump")
        if pump:
            self.pumps[tmp_name] = pump
        tmp_key = self._query_into(query, tmp_name, declare=True, where_node=stmt)
        produced = self.streams[tmp_key]
        visible = [f for f in produced.schema if not f.name.startswith("__")]
        has_op = bool(visible) and visible[0].name == "op" and self._is_changes(query)
        data = visible[1:] if has_op else visible
        rowtime = None
        if self.kda:  # ROWTIME is the row's time, not a value: it never maps to a column by position
            rowtime = next((f for f in data if f.name.upper() == kda.ROWTIME), None)
            data = [f for f in data if f.name.upper() != kda.ROWTIME]
            wanted = len([f for f in declared.schema if f.name != kda.ROWTIME]) if declared is not None else 0
            if columns is None and len(data) == wanted + 1 and any(f.name == kda.ARRIVAL_TIME for f in data):
                # SELECT STREAM * of the input stream into a stream with the record's columns:
                # APPROXIMATE_ARRIVAL_TIME is the input stream's own extra column, not one of them
                data = [f for f in data if f.name != kda.ARRIVAL_TIME]
        if declared is not None and declared.derived is False and key in self.read and key not in self.producers:
            raise _err(stmt, f'stream "{name}" is read as a source and cannot also be written')
        if declared is not None and len(declared.schema) > 0:
            every = [f for f in declared.schema if not (self.kda and f.name == kda.ROWTIME)]
            targets = every
            if columns is not None:
                lookup = {f.name.lower(): f for f in every}
                missing = [c for c in columns if c.lower() not in lookup]
                if missing:
                    raise _err(stmt, f'stream "{name}" has no column "{missing[0]}"')
                targets = [lookup[c.lower()] for c in columns]
            if len(targets) != len(data):
                raise _err(
                    stmt,
                    f"INSERT INTO {name} gives {len(data)} columns but "
                    + ("the column list names" if columns is not None else "the stream has")
                    + f" {len(targets)}",
                    hint="columns map by position",
                )
            source_of = {dst.name: src for src, dst in zip(data, targets)}
            items = ['"op"'] if has_op else []
            for dst in every:  # columns the list leaves out are NULL
                value = _q(source_of[dst.name].name) if dst.name in source_of else "NULL"
                cast = _not_null(f"CAST({value} AS {sql_type_name(dst.type)})", dst, name)
                items.append(f"{cast} AS {_q(dst.name)}")
            if self.kda:
                if rowtime is None:
                    raise _err(stmt, f"the query inserted into {name} has no ROWTIME", hint="select ROWTIME")
                items.append(f"CAST({_q(rowtime.name)} AS TIMESTAMP) AS {_q(kda.ROWTIME)}")
            sql = f"SELECT {', '.join(items)}, {HIDDEN} FROM __input"
            step = self._step_id(f"{name}/cast")
            if pump:
                self.pumps[step] = pump
            schema = self._dry(sql, {"__input": self._input_schema(produced)}, stmt)
            spec = StatelessSpec(step, tmp_key, key, sql=sql)
            if declared.time_column is not None:  # the table's own WATERMARK decides lateness downstream
                spec = replace(spec, retime_column=declared.time_column, retime_delay_us=declared.delay_us)
                self.retimed.add(key)
            self.lineage.setdefault(key, []).append(
                {dst.name.lower(): (tmp_key, src.name) for src, dst in zip(data, targets)}
            )
            self._add(spec, key)
            options, where = declared.options, declared.where
            self.streams[key] = replace(declared, schema=_visible_schema(schema), derived=True)
        else:
            if declared is None:
                self.streams[key] = StreamDef(
                    name, key, _visible_schema(produced.schema), where=self._where(stmt), declared=False, derived=True
                )
            elif key in self.producers:
                if _visible_schema(self.streams[key].schema) != _visible_schema(produced.schema):
                    raise _err(stmt, f"this INSERT INTO {name} has other columns than an earlier one")
            else:
                self.streams[key] = replace(declared, schema=_visible_schema(produced.schema), derived=True)
            sql = "SELECT * FROM __input"
            self.lineage.setdefault(key, []).append({f.name.lower(): (tmp_key, f.name) for f in produced.schema})
            self._add(StatelessSpec(self._step_id(f"{name}/insert"), tmp_key, key, sql=sql), key)
            where = self._where(stmt)
            options = declared.options if declared else {}
        if not any(o.stream == key for o in self.outputs):
            self.outputs.append(OutputDef(key, name, where))
        del options

    @staticmethod
    def _is_changes(query: exp.Expr) -> bool:
        if isinstance(query, Emit):
            return bool(query.args["kind"] == "CHANGES")
        return query.meta.get("emit") == "CHANGES"

    def _add(self, spec: OperatorSpec, out_key: str) -> None:
        self.origin.setdefault(out_key, self._origin(spec.input))
        if spec.input in self.changelog and isinstance(spec, StatelessSpec):
            self.changelog.add(out_key)
        self.operators.append(spec)
        self.producers[out_key] = self.producers.get(out_key, 0) + 1
        self.read.add(spec.input)

    def _origin(self, key: str) -> str:
        """The name of the source stream whose rows (and ``__seq`` positions) ``key`` carries."""
        return self.origin.get(key, self.streams[key].name)

    def _lineage_add(self, out_key: str, select: exp.Select, stream: StreamDef) -> None:
        """Record which output columns of a row-by-row query are input columns passed through."""
        mapping: dict[str, tuple[str, str]] = {}
        for item in select.expressions:
            body = item.this if isinstance(item, exp.Alias) else item
            if isinstance(body, exp.Star) or (isinstance(body, exp.Column) and isinstance(body.this, exp.Star)):
                mapping.update({f.name.lower(): (stream.key, f.name) for f in stream.schema})
            elif isinstance(body, exp.Column):
                src = next((f.name for f in stream.schema if f.name.lower() == body.name.lower()), None)
                if src is not None:
                    out = item.alias if isinstance(item, exp.Alias) else body.name
                    mapping[out.lower()] = (stream.key, src)
        self.lineage.setdefault(out_key, []).append(mapping)

    def _roots(self, key: str, col: str) -> list[tuple[str, str]]:
        """The (stream, column) pairs at the streams with their own time that ``key.col`` comes from."""
        if key not in self.lineage or key in self.retimed:
            return [(key, col)]
        out: list[tuple[str, str]] = []
        for mapping in self.lineage[key]:
            hit = mapping.get(col.lower())
            if hit is not None:
                out += self._roots(*hit)
        return out

    def _step_id(self, base: str) -> str:
        step, n = base, 1
        while step in self.step_names:
            n += 1
            step = f"{base}#{n}"
        self.step_names.add(step)
        return step

    # ------------------------------------------------------------------ queries
    def _query_into(
        self, query: exp.Expr, name: str, declare: bool, where_node: exp.Expr, scope: _Scope | None = None
    ) -> str:
        """Plan ``query`` so that its rows land in a new stream called ``name``; return its key."""
        key = name.lower()
        if key in self.streams and declare and not name.startswith("result"):
            if name.lower() in self.streams and self.streams[key].declared:
                raise _err(where_node, f'stream "{name}" already exists')
        emit = "final"
        if isinstance(query, Emit):
            emit = query.args["kind"].lower()
            query = query.this
        elif query.meta.get("emit"):
            emit = str(query.meta["emit"]).lower()
        scope = _Scope(dict(scope.ctes) if scope else {})
        with_ = query.args.get("with_") or query.args.get("with")
        if with_ is not None:
            for cte in with_.expressions:
                cte_key = self._query_into(cte.this, f"{name}/{cte.alias}", True, cte, scope)
                scope.ctes[cte.alias.lower()] = cte_key
            query = query.copy()
            query.set("with_", None)
            query.set("with", None)
        if isinstance(query, exp.Union):
            if query.args.get("distinct"):
                raise _err(query, "UNION (distinct) is not supported on streams; use UNION ALL")
            self._query_into(query.left, name, False, where_node, scope)
            branch = self._query_into(query.right, f"{name}/union#{len(self.operators) + 1}", True, where_node, scope)
            self._union_into(branch, key, query.right)
            return key
        if isinstance(query, exp.Subquery):
            return self._query_into(query.this, name, declare, where_node, scope)
        if not isinstance(query, exp.Select):
            raise _err(query, f"unsupported query: {query.sql()[:40]!r}")
        if "kda_sort" in query.meta:  # KDA's ORDER BY <ROWTIME bucket>, ...: sorted per bucket
            size, order = query.meta["kda_sort"]
            query = query.copy()
            query.meta.pop("kda_sort", None)
            inner = self._query_into(query, f"{name}/unsorted", True, where_node, scope)
            return self._sort(inner, name, size, order)
        spec, schema = self._select(query, name, emit, scope)
        seen: set[str] = set()
        for field_ in schema:
            if field_.name.lower() in seen:
                raise _err(query, f'the result has two columns named "{field_.name}"', hint="give one an alias")
            seen.add(field_.name.lower())
        existing = self.streams.get(key)
        if existing is not None and key in self.producers:
            if _visible_schema(existing.schema) != _visible_schema(schema):
                raise _err(
                    query, "the branches of UNION ALL have different columns", hint="give them the same names and types"
                )
        else:
            self.streams[key] = StreamDef(
                name, key, _visible_schema(schema), where=self._where(query), declared=False, derived=True
            )
        self._add(spec, key)
        return key

    def _rename(self, key: str, names: list[str], node: exp.Expr) -> str:
        """``key``'s columns under ``names``, by position (a derived table's column list); KDA's
        ROWTIME keeps its name and does not count."""
        stream = self.streams[key]
        fields = [f for f in stream.schema if not f.name.startswith("__")]
        kept = [f for f in fields if self.kda and f.name == kda.ROWTIME]
        fields = [f for f in fields if f not in kept]
        if len(names) != len(fields):
            raise _err(node, f"the column list names {len(names)} columns but the query gives {len(fields)}")
        items = [f"{_q(f.name)} AS {_q(n)}" for f, n in zip(fields, names)] + [_q(f.name) for f in kept]
        sql = f"SELECT {', '.join(items)}, {HIDDEN} FROM __input"
        schema = self._dry(sql, {"__input": self._input_schema(stream)}, node)
        out = f"{stream.name}/as"
        self.streams[out.lower()] = StreamDef(out, out.lower(), _visible_schema(schema), declared=False, derived=True)
        mapping = {n.lower(): (key, f.name) for f, n in zip(fields, names)}
        self.lineage.setdefault(out.lower(), []).append({**mapping, **{f.name.lower(): (key, f.name) for f in kept}})
        self._add(StatelessSpec(self._step_id(f"{out}/rename"), key, out.lower(), sql=sql), out.lower())
        return out.lower()

    def _union_into(self, branch: str, key: str, node: exp.Expr) -> None:
        """A later UNION ALL branch joins the first one's stream: columns by position, under the
        first branch's names and types (as SQL's UNION does)."""
        first = [f for f in self.streams[key].schema if not f.name.startswith("__")]
        mine = [f for f in self.streams[branch].schema if not f.name.startswith("__")]
        if len(first) != len(mine):
            raise _err(node, f"the branches of UNION ALL have {len(first)} and {len(mine)} columns")
        items = [
            f"{_q(src.name)} AS {_q(dst.name)}"
            if src.type == dst.type
            else f"CAST({_q(src.name)} AS {sql_type_name(dst.type)}) AS {_q(dst.name)}"
            for src, dst in zip(mine, first)
        ]
        sql = f"SELECT {', '.join(items)}, {HIDDEN} FROM __input"
        self._dry(sql, {"__input": self._input_schema(self.streams[branch])}, node)
        self.lineage.setdefault(key, []).append({d.name.lower(): (branch, s.name) for s, d in zip(mine, first)})
        self._add(StatelessSpec(self._step_id(f"{self.streams[key].name}/union"), branch, key, sql=sql), key)

    def _sort(self, inner: str, name: str, size_us: int, order: list[exp.Expr]) -> str:
        """A step that holds ``inner``'s rows until their ROWTIME bucket closes, then emits them
        sorted by ``order`` (the ORDER BY items after the bucket); returns the new stream's key."""
        stream = self.streams[inner]
        names = [f.name for f in stream.schema]
        items = []
        for item in order:
            item = item.copy()
            target = item.this
            if isinstance(target, exp.Literal) and target.is_int:
                index = int(target.name) - 1
                if not 0 <= index < len(names):
                    raise _err(target, f"ORDER BY {target.name}: there is no column {target.name}")
                item.set("this", exp.column(names[index], quoted=True))
            for col in item.find_all(exp.Column):
                if col.name.lower() not in {n.lower() for n in names}:
                    raise _err(col, f'ORDER BY "{col.name}": a streaming ORDER BY sorts by columns of the result')
                col.set("table", None)
            items.append(_sql(item))
        sql = f"SELECT * FROM __batch ORDER BY __bucket_end, {''.join(i + ', ' for i in items)}{_q(SEQ_COL)}"
        batch = self._input_schema(stream).append(pa.field("__bucket_end", pa.int64()))
        self._dry(sql, {"__batch": batch}, order[0] if order else exp.Null())
        key = name.lower()
        self.streams[key] = StreamDef(name, key, stream.schema, declared=False, derived=True)
        self.lineage.setdefault(key, []).append({f.name.lower(): (inner, f.name) for f in stream.schema})
        spec = SortSpec(self._step_id(f"{name}/order"), inner, key, kda.ROWTIME, size_us, sql)
        self._add(spec, key)
        return key

    def _source(self, table: exp.Table, scope: _Scope) -> StreamDef:
        name = table.name
        key = name.lower()
        if key in scope.ctes:
            return self.streams[scope.ctes[key]]
        if key not in self.streams:
            schema = self.resolve(name) if self.resolve else None
            if schema is None:
                known = [s.name for s in self.streams.values() if "/" not in s.name and "#" not in s.name]
                close = difflib.get_close_matches(name, known, n=1)
                hint = (
                    f'did you mean "{close[0]}"?'
                    if close
                    else "declare it with CREATE TABLE, or give --source NAME=URI"
                )
                raise _err(table, f'unknown stream "{name}"', hint=hint)
            self.streams[key] = self._source_def(name, schema)
        stream = self.streams[key]
        self.read.add(key)
        return stream

    def _source_def(self, name: str, schema: pa.Schema) -> StreamDef:
        """A stream read from outside whose columns come from its source (discovered or given)."""
        if not (self.kda or self.options.rowtime_sources):
            return StreamDef(name, name.lower(), schema, declared=False)
        # KDA's input stream: the record's columns, then ROWTIME (stamped at ingestion) and
        # APPROXIMATE_ARRIVAL_TIME (the source's, when it has one)
        names = {f.name.upper() for f in schema}
        if kda.ROWTIME in names:
            raise PlanError(
                f"the records of {name} have a field named ROWTIME, a system column in KDA",
                hint="give an input schema that maps it to another name (e.g. COL_ROWTIME)",
            )
        extra = [pa.field(kda.ROWTIME, pa.timestamp("us"), nullable=False)]
        if kda.ARRIVAL_TIME not in names:
            extra.append(pa.field(kda.ARRIVAL_TIME, pa.timestamp("us")))
        return StreamDef(
            name,
            name.lower(),
            pa.schema([*schema, *extra]),
            time_column=kda.ROWTIME,
            declared=False,
            rowtime=True,
        )

    def _select(self, select: exp.Select, name: str, emit: str, scope: _Scope) -> tuple[OperatorSpec, pa.Schema]:
        from_ = select.args.get("from_") or select.args.get("from")
        if from_ is None:
            raise _err(select, "a streaming query needs FROM <stream>")
        source = from_.this
        tvf: WindowTVF | None = None
        alias = source.alias_or_name if not isinstance(source, exp.Subquery) else (source.alias or "")
        if isinstance(source, exp.TableFromRows) and isinstance(source.this, WindowTVF):
            tvf = source.this
            table = tvf.this
            alias = source.alias or table.name
            stream = self._source(table, scope)
        elif isinstance(source, exp.TableFromRows):  # KDA's TABLE(F(CURSOR(...), ...))
            from engine.plan.table_functions import plan_table_function

            stream, alias = plan_table_function(self, source, name, scope)
        elif isinstance(source, exp.Subquery):
            sub_name = f"{name}/{source.alias or 'subquery'}"
            sub_key = self._query_into(source.this, sub_name, True, source, scope)
            table_alias = source.args.get("alias")
            if table_alias is not None and table_alias.columns:  # FROM (...) AS t(a, b, c)
                sub_key = self._rename(sub_key, [c.name for c in table_alias.columns], table_alias)
            stream = self.streams[sub_key]
            alias = source.alias or sub_name
        elif isinstance(source, exp.Table):
            stream = self._source(source, scope)
            alias = source.alias or source.name
        else:
            raise _err(source, f"unsupported FROM item {source.sql()[:40]!r}")
        if self.kda:
            select = self._integer_avg(select, stream, alias)
        if select.args.get("joins"):
            from engine.plan import joins  # windowed stream-to-stream joins

            if joins.is_stream_join(self, select, source):
                return joins.plan_stream_join(self, select, stream, alias, tvf, name, scope)
            return self._lookup_join(select, stream, alias, tvf, name)
        _refuse_order_limit(select, allow_order=bool(select.args.get("group") or tvf))
        if select.args.get("distinct") and not select.args.get("group"):
            raise _err(
                select.args["distinct"],
                "SELECT DISTINCT is not supported on a stream yet",
                hint="GROUP BY the columns inside a window",
            )
        from engine.plan.over import plan_over, uses_over  # sliding windows; over.py uses this module

        if uses_over(select):
            return plan_over(self, select, stream, alias, name, emit, tvf)
        cols = {f.name.lower(): f for f in stream.schema}
        window_cols = set(WINDOW_COLS) if tvf is not None or isinstance(select.args.get("group"), Stagger) else set()
        clash = sorted(window_cols & set(cols))
        if clash:
            raise _err(
                tvf,
                f"{stream.name} already has a column named {clash[0]}",
                hint="rename it (e.g. window_start AS bucket) before windowing again",
            )
        self._check_columns(select, cols, window_cols, alias, stream)
        select = _unqualify(select, {alias.lower(), stream.name.lower()})
        aggs = _aggregate_units(list(select.expressions) + [select.args.get("having") or exp.Null()])
        for unit in aggs:
            call = unit.this if isinstance(unit, exp.Filter) else unit
            if isinstance(call, exp.AggFunc) and "this" in call.arg_types and call.this is None:
                raise _err(unit, f"{call.sql_name()} needs an argument", hint="COUNT(*) counts rows")
        grouped = bool(select.args.get("group")) or bool(aggs)
        if (grouped or tvf is not None) and stream.key in self.changelog:
            raise _err(
                tvf.this if tvf is not None else source,
                f"{stream.name} is a changelog (EMIT CHANGES or allowed-lateness corrections): "
                "aggregating or windowing it again is not supported yet",
                hint="window the source stream directly, or emit FINAL rows without allowed lateness",
            )
        if isinstance(select.args.get("group"), Stagger):
            return plan_stagger(self, select, stream, alias, name, emit, aggs, tvf)
        step = self._step_id(f"{name}/{(tvf.args['kind'].lower() if tvf else ('aggregate' if grouped else 'select'))}")
        if tvf is None and not grouped:
            return self._stateless(select, stream, alias, step, name)
        if tvf is not None and not grouped:
            return self._annotate(select, stream, alias, tvf, step, name)
        if tvf is not None and tvf.args["kind"] == "SESSION":
            return self._session(select, stream, alias, tvf, step, name, emit, aggs)
        return self._window_agg(select, stream, alias, tvf, step, name, emit, aggs)

    def _integer_avg(self, select: exp.Select, stream: StreamDef, alias: str) -> exp.Select:
        """KDA: AVG of an integer expression is an integer (the mean, truncated)."""
        avgs = [a for a in select.find_all(exp.Avg) if not _inside_subquery(a, select)]
        if not avgs:
            return select
        select = select.copy()
        for node in [a for a in select.find_all(exp.Avg) if not _inside_subquery(a, select)]:
            try:
                probe = f"SELECT {_sql(node.this)} FROM __input AS {_q(alias)}"
                kind = self._dry(probe, {"__input": self._input_schema(stream)}, node).field(0).type
            except PlanError:
                continue  # not a plain expression over this input: the planner reports it later
            if not pa.types.is_integer(kind):
                continue
            target = node.parent if isinstance(node.parent, exp.Window) else node
            truncated = exp.Cast(this=exp.func("trunc", target.copy()), to=exp.DataType.build(sql_type_name(kind)))
            target.replace(truncated)
        return select

    def _check_columns(
        self, select: exp.Select, cols: dict[str, pa.Field], window_cols: set[str], alias: str, stream: StreamDef
    ) -> None:
        if not select.expressions:
            raise _err(select, "SELECT needs at least one column")
        for node in select.find_all(exp.Placeholder, exp.Parameter):
            raise _err(node, "parameters ($1, ?) are not supported in a program")
        for item in select.expressions:
            if isinstance(item, exp.Alias) and any(ord(ch) < 32 for ch in item.alias):
                raise _err(item, "a column name must not contain control characters")
        for call in select.find_all(exp.Anonymous):
            known = call.name.lower() in _duckdb_functions() or call.name.lower() in self.functions
            if _inside_subquery(call, select) or known:
                continue
            close = difflib.get_close_matches(call.name.lower(), sorted(_duckdb_functions()), n=1)
            hint = f"did you mean {close[0]}?" if close else None
            raise _err(call, f'unknown function "{call.name}"', hint=hint)
        aliases = {e.alias.lower() for e in select.expressions if isinstance(e, exp.Alias)}
        names = {alias.lower(), stream.name.lower()}
        for column in select.find_all(exp.Column):
            if _inside_subquery(column, select):
                continue
            if isinstance(column.this, exp.Star):
                continue
            col = column.name.lower()
            table = column.table
            if table and table.lower() not in names:
                raise _err(column, f'unknown table or alias "{table}"', hint=f'this query reads "{alias}"')
            if col in cols or col in window_cols:
                continue
            if col in aliases and not _inside(column, select.args.get("where")):
                continue
            if col in WINDOW_COLS:
                raise _err(
                    column,
                    f"{column.name} exists only over a window table function",
                    hint="FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
                )
            close = difflib.get_close_matches(col, list(cols) + list(window_cols), n=1)
            hint = (
                f'did you mean "{close[0]}"?'
                if close
                else f"{stream.name} has {', '.join(f.name for f in stream.schema) or 'no columns'}"
            )
            raise _err(column, f'unknown column "{column.name}"', hint=hint)

    def _dry(self, sql: str, inputs: dict[str, pa.Schema], node: exp.Expr) -> pa.Schema:  # noqa: D102
        """Run ``sql`` on empty tables of ``inputs`` to type-check it; returns the result schema."""
        tables = {n: s.empty_table() for n, s in inputs.items()}
        try:
            return run(self.con, sql, **tables).schema
        except duckdb.Error as err:
            message = str(err).split("\n")[0]
            message = message.split(": ", 1)[1] if ": " in message else message
            raise _err(node, message[:1].lower() + message[1:].rstrip(".")) from None

    @staticmethod
    def _input_schema(stream: StreamDef) -> pa.Schema:
        schema = stream.schema
        for name, typ in ((SEQ_COL, pa.int64()), (WM_COL, pa.int64())):
            if schema.get_field_index(name) < 0:
                schema = schema.append(pa.field(name, typ))
        return schema

    # ------------------------------------------------------------------ stateless
    def _stateless(
        self, select: exp.Select, stream: StreamDef, alias: str, step: str, name: str
    ) -> tuple[OperatorSpec, pa.Schema]:
        body = select.copy()
        body.set("from_", exp.From(this=exp.to_table("__input").as_(alias, quoted=True)))
        # a * brings the input's hidden columns itself
        sql = _sql(body) if _has_star(body) else _append_hidden(body)
        schema = self._dry(sql, {"__input": self._input_schema(stream)}, select)
        self._lineage_add(name.lower(), select, stream)
        return StatelessSpec(step, stream.key, name.lower(), sql=sql), schema

    # ------------------------------------------------------------------ lookup joins
    def _reference(self, table: exp.Table) -> ReferenceDef | None:
        key = table.name.lower()
        if key in self.references:
            return self.references[key]
        if key in self.streams or self.options.reference is None:
            return None
        schema = self.options.reference(table.name)
        if schema is None:
            return None
        self.references[key] = ReferenceDef(table.name, key, schema)
        return self.references[key]

    def _lookup_join(
        self, select: exp.Select, stream: StreamDef, alias: str, tvf: WindowTVF | None, name: str
    ) -> tuple[OperatorSpec, pa.Schema]:
        """A stream joined row by row with reference tables: each batch joins the whole tables."""
        joins = select.args["joins"]
        grouped = bool(select.args.get("group")) or bool(
            _aggregate_units(list(select.expressions) + [select.args.get("having") or exp.Null()])
        )
        if tvf is not None or grouped:
            raise _err(
                joins[0],
                "a join and a window or GROUP BY in one SELECT is not supported yet",
                hint="join in a view (or pump) first, then window the view",
            )
        for window in select.find_all(exp.Window):
            raise _err(window, "OVER (...) windows are not supported yet")
        _refuse_order_limit(select, allow_order=False)
        body = select.copy()
        body.set("from_", exp.From(this=exp.to_table("__input").as_(alias, quoted=True)))
        names = {alias.lower(), stream.name.lower()}
        inputs = {"__input": self._input_schema(stream)}
        columns: dict[str, set[str]] = {alias.lower(): {f.name.lower() for f in stream.schema}}
        used: list[str] = []
        for join, original in zip(body.args["joins"], joins):
            table = join.this
            side, kind = (join.side or "").upper(), (join.kind or "").upper()
            ref = self._reference(table) if isinstance(table, exp.Table) else None
            if ref is None:
                raise _err(
                    original.this,
                    "only reference tables can be joined to a stream for now",
                    hint="load it with --reference NAME=URI; stream-to-stream joins are not supported yet",
                )
            if side in ("RIGHT", "FULL") or kind in ("CROSS", "SEMI", "ANTI", "ASOF"):
                raise _err(
                    original, f"{(side or kind)} JOIN with a reference table is not supported; use JOIN or LEFT JOIN"
                )
            if join.args.get("on") is None and not join.args.get("using"):
                raise _err(original, "a join with a reference table needs ON or USING")
            ref_alias = table.alias or table.name
            join.set("this", exp.to_table(ref.table_name).as_(ref_alias, quoted=True))
            names.add(ref_alias.lower())
            columns[ref_alias.lower()] = {f.name.lower() for f in ref.schema}
            inputs[ref.table_name] = ref.schema
            used.append(ref.key)
        for column in body.find_all(exp.Column):
            if isinstance(column.this, exp.Star) or _inside_subquery(column, body):
                continue
            table_name = column.table.lower() if column.table else ""
            if table_name and table_name not in names:
                raise _err(column, f'unknown table or alias "{column.table}"')
            pool = columns.get(table_name, set()) if table_name else set().union(*columns.values())
            aliases = {e.alias.lower() for e in body.expressions if isinstance(e, exp.Alias)}
            if column.name.lower() not in pool and column.name.lower() not in aliases:
                raise _err(column, f'unknown column "{column.name}"')
        if not _has_star(body):  # a * brings the input's hidden columns itself (reference tables have none)
            hidden = [exp.column(c, table=alias, quoted=True) for c in (SEQ_COL, WM_COL)]
            body.set("expressions", [*body.expressions, *hidden])
        sql = _sql(body)
        schema = self._dry(sql, inputs, select)
        own = select.copy()
        own.set(
            "expressions",
            [
                e
                for e in own.expressions
                if not any(
                    c.table and c.table.lower() not in {alias.lower(), stream.name.lower()}
                    for c in e.find_all(exp.Column)
                )
            ],
        )
        self._lineage_add(name.lower(), own, stream)
        step = self._step_id(f"{name}/join")
        return StatelessSpec(step, stream.key, name.lower(), sql=sql, references=tuple(used)), schema

    def _time_column(self, tvf: WindowTVF, stream: StreamDef) -> str:
        col = tvf.args["timecol"].name
        field_ = next((f for f in stream.schema if f.name.lower() == col.lower()), None)
        if field_ is None:
            raise _err(
                tvf.args["timecol"],
                f'unknown column "{col}" in DESCRIPTOR',
                hint=f"{stream.name} has {', '.join(stream.schema.names)}",
            )
        if not pa.types.is_timestamp(field_.type):
            raise _err(
                tvf.args["timecol"], f"DESCRIPTOR({col}) must name a TIMESTAMP column, not {sql_type_name(field_.type)}"
            )
        for root_key, root_col in self._roots(stream.key, field_.name):
            root = self.streams[root_key]
            if root.time_column is None and not root.derived:
                # A stream without WATERMARK: the descriptor column becomes its time attribute, no delay.
                self.streams[root_key] = replace(root, time_column=root_col, delay_us=0)
            elif root.time_column is not None and root.time_column.lower() != root_col.lower():
                via = f" (through {stream.name})" if root_key != stream.key else ""
                raise _err(
                    tvf.args["timecol"],
                    f"DESCRIPTOR({col}) is not the time attribute of {root.name}{via}",
                    hint=f"its watermark is declared on {root.time_column}",
                )
        return field_.name

    def _window_params(self, tvf: WindowTVF) -> tuple[str, int, int, int]:
        kind = tvf.args["kind"]
        name = {"TUMBLE": "tumble", "HOP": "hop", "CUMULATE": "cumulate"}[kind]
        size_node = tvf.param("size")
        size = interval_us(size_node, f"the {kind} size")
        if size <= 0:
            raise _err(size_node, f"the {kind} size must be positive")
        slide = size
        if kind == "HOP":
            slide_node = tvf.param("slide")
            slide = interval_us(slide_node, "the HOP slide")
            if slide <= 0:
                raise _err(slide_node, "the HOP slide must be positive")
        if kind == "CUMULATE":
            step_node = tvf.param("step")
            slide = interval_us(step_node, "the CUMULATE step")
            if slide <= 0 or size % slide:
                raise _err(step_node, "the CUMULATE max size must be a whole multiple of its step")
        offset_node = tvf.param("offset")
        offset = interval_us(offset_node, f"the {kind} offset") if offset_node is not None else 0
        return name, size, slide, offset

    def _expand_sql(
        self, window: str, size: int, slide: int, offset: int, time_col: str, alias: str, where: exp.Expr | None
    ) -> str:
        t = f"epoch_us({_q(time_col)})"
        pm = lambda unit: f"((({t} - {offset}) % {unit}) + {unit}) % {unit}"  # noqa: E731
        present = f"{_q(time_col)} IS NOT NULL"
        if window == "tumble":
            start = f"{t} - {pm(size)}"
            inner = f"SELECT *, {start} AS __ws, {start} + {size} AS __we FROM __input WHERE {present}"
        elif window == "hop":
            n = -(-size // slide)
            inner = (
                f"SELECT * FROM (SELECT __input.*, {t} - {pm(slide)} - __j * {slide} AS __ws, "
                f"{t} - {pm(slide)} - __j * {slide} + {size} AS __we FROM __input, range({n}) AS __r(__j) "
                f"WHERE {_q(time_col)} IS NOT NULL) WHERE __we > epoch_us({_q(time_col)})"
            )
        elif window == "cumulate":
            n = size // slide
            inner = (
                f"SELECT * FROM (SELECT __input.*, {t} - {pm(size)} AS __ws, "
                f"{t} - {pm(size)} + (__j + 1) * {slide} AS __we FROM __input, range({n}) AS __r(__j) "
                f"WHERE {_q(time_col)} IS NOT NULL) WHERE __we > epoch_us({_q(time_col)})"
            )
        else:  # global: one window that closes only at the end of input
            inner = f"SELECT *, 0::BIGINT AS __ws, {MAX_TIME}::BIGINT AS __we FROM __input"
        cols = (
            f"make_timestamp(__ws) AS {WINDOW_START}, make_timestamp(__we) AS {WINDOW_END}, "
            f"make_timestamp(__we - {WINDOW_TIME_LAG_US}) AS {WINDOW_TIME}"
        )
        if window == "global":  # no window columns a query can name; NULL ones keep buffer mode uniform
            cols = ", ".join(f"NULL::TIMESTAMP AS {c}" for c in WINDOW_COLS)
        sql = f"SELECT *, {cols} FROM ({inner}) AS {_q(alias)}"
        if where is not None:
            sql += f" WHERE {_sql(where)}"
        return sql

    def _annotate(
        self, select: exp.Select, stream: StreamDef, alias: str, tvf: WindowTVF, step: str, name: str
    ) -> tuple[OperatorSpec, pa.Schema]:
        """A window TVF without aggregation: each row, once per window, with window columns."""
        if tvf.args["kind"] == "SESSION":
            raise _err(tvf, "SESSION needs GROUP BY window_start, window_end (sessions are only known when they close)")
        time_col = self._time_column(tvf, stream)
        window, size, slide, offset = self._window_params(tvf)
        expanded = self._expand_sql(window, size, slide, offset, time_col, alias, None)
        body = select.copy()
        body.set("from_", exp.From(this=exp.to_table("__x").as_(alias, quoted=True)))
        star = any(isinstance(e, exp.Star) for e in body.expressions)
        if star:
            body.set(
                "expressions",
                [exp.Star(except_=[exp.column("__ws"), exp.column("__we")])]
                + [e for e in body.expressions if not isinstance(e, exp.Star)],
            )
            outer = _sql(body)
        else:
            outer = _append_hidden(body)
        sql = f"WITH __x AS ({expanded}) {outer}"
        schema = self._dry(sql, {"__input": self._input_schema(stream)}, select)
        self._lineage_add(name.lower(), select, stream)
        return StatelessSpec(step, stream.key, name.lower(), sql=sql), schema

    # ------------------------------------------------------------------ aggregation
    def _group_keys(self, select: exp.Select, window_required: bool) -> list[exp.Expr]:
        group = select.args.get("group")
        items = list(group.expressions) if group is not None else []
        if group is not None and group.args.get("all"):
            items = [e.this if isinstance(e, exp.Alias) else e for e in select.expressions if not _aggregate_units([e])]
        by_alias = {e.alias.lower(): e.this for e in select.expressions if isinstance(e, exp.Alias)}
        keys: list[exp.Expr] = []
        for item in items:
            if isinstance(item, exp.Literal) and item.is_int:
                index = int(item.name) - 1
                if not 0 <= index < len(select.expressions):
                    raise _err(item, f"GROUP BY {item.name}: there is no select item {item.name}")
                target = select.expressions[index]
                item = target.this if isinstance(target, exp.Alias) else target
            elif (
                isinstance(item, exp.Column)
                and not item.table
                and item.name.lower() in by_alias
                and item.name.lower() not in WINDOW_COLS
            ):
                source_cols = self._current_cols
                if item.name.lower() not in source_cols:
                    item = by_alias[item.name.lower()]
            keys.append(item)
        names = [k.name.lower() for k in keys if isinstance(k, exp.Column)]
        if window_required and not (WINDOW_START in names and WINDOW_END in names):
            node = group if group is not None else select
            raise _err(
                node, "a windowed aggregation must GROUP BY window_start, window_end", hint="add them to GROUP BY"
            )
        return [k for k in keys if not (isinstance(k, exp.Column) and k.name.lower() in WINDOW_COLS)]

    def _window_agg(
        self,
        select: exp.Select,
        stream: StreamDef,
        alias: str,
        tvf: WindowTVF | None,
        step: str,
        name: str,
        emit: str,
        aggs: list[exp.Expr],
    ) -> tuple[OperatorSpec, pa.Schema]:
        self._current_cols = {f.name.lower() for f in stream.schema}
        if tvf is not None:
            time_col = self._time_column(tvf, stream)
            window, size, slide, offset = self._window_params(tvf)
        else:
            time_col, window, size, slide, offset = "", "global", MAX_TIME, MAX_TIME, 0
        keys = self._group_keys(select, window_required=tvf is not None)
        where_node = select.args.get("where")
        where = where_node.this if where_node is not None else None
        expand = self._expand_sql(window, size, slide, offset, time_col, alias, where)
        in_schema = self._input_schema(stream)
        x_schema = self._dry(f"WITH __x AS ({expand}) SELECT * FROM __x", {"__input": in_schema}, where or select)
        try:
            lowered = aggregates.lower(select, keys, aggs, alias, x_schema, self.con, _err)
        except duckdb.Error as err:
            raise _err(select, _duck_message(err)) from None
        pre_schema = self._dry(f"WITH __x AS ({expand}) {lowered.pre_sql}", {"__input": in_schema}, select)
        out_schema = self._dry(lowered.final_sql, {"__state": pre_schema}, select)
        if lowered.compact_sql:
            self._dry(lowered.compact_sql, {"__state": pre_schema}, select)
        uses_window_cols = where is not None and any(c.name.lower() in WINDOW_COLS for c in where.find_all(exp.Column))
        fast = window == "tumble" and not uses_window_cols and lowered.mode == "partial"
        fast_filter = fast_pre = None
        if fast:
            cond = f" WHERE {_sql(where)}" if where is not None else ""
            fast_filter = f"SELECT * FROM __x AS {_q(alias)}{cond}" if where is not None else None
            fast_pre = lowered.pre_sql.replace(
                f"FROM __x AS {_q(alias)} GROUP BY ALL", f"FROM __x AS {_q(alias)}{cond} GROUP BY ALL"
            )
            x_fast = in_schema.append(pa.field("__ws", pa.int64())).append(pa.field("__we", pa.int64()))
            try:
                self._dry(fast_pre, {"__x": x_fast}, select)
            except PlanError:  # the aggregates read window columns: take the general path
                fast, fast_filter, fast_pre = False, None, None
        lateness = self._lateness(stream)
        arrow = aggregates.arrow_plan(select, keys, aggs, in_schema) if fast else None
        spec = WindowAggSpec(
            step,
            stream.key,
            name.lower(),
            window=window,
            size_us=size,
            slide_us=slide,
            offset_us=offset,
            time_column=time_col,
            expand_sql=expand,
            fast_path=fast,
            fast_filter_sql=fast_filter,
            fast_pre_sql=fast_pre or "",
            pre_sql=lowered.pre_sql,
            final_sql=lowered.final_sql,
            compact_sql=lowered.compact_sql,
            mode=lowered.mode,
            arrow=arrow,
            emit=emit,
            allowed_lateness_us=lateness,
            n_keys=len(keys),
            source_stream=self._origin(stream.key),
        )
        if emit == "changes" or lateness:
            self.changelog.add(name.lower())
        return spec, _output_schema(out_schema, emit)

    def _lateness(self, stream: StreamDef) -> int:
        raw = stream.options.get("allowed-lateness")
        if raw is None:
            return self.options.allowed_lateness_us
        from connectors.options import parse_duration

        return parse_duration(raw, f"{stream.where}: 'allowed-lateness'")

    def _session(
        self,
        select: exp.Select,
        stream: StreamDef,
        alias: str,
        tvf: WindowTVF,
        step: str,
        name: str,
        emit: str,
        aggs: list[exp.Expr],
    ) -> tuple[OperatorSpec, pa.Schema]:
        self._current_cols = {f.name.lower() for f in stream.schema}
        time_col = self._time_column(tvf, stream)
        gap = interval_us(tvf.param("gap"), "the SESSION gap")
        if gap <= 0:
            raise _err(tvf.param("gap"), "the SESSION gap must be positive")
        keys = self._group_keys(select, window_required=True)
        partition = list(tvf.args.get("partition_by") or [])
        for p in partition:
            if not isinstance(p, exp.Column) or p.name.lower() not in self._current_cols:
                raise _err(p, f"SESSION partitions by a column of {stream.name}: {p.sql()!r} is not one")
        where_node = select.args.get("where")
        where = where_node.this if where_node is not None else None
        pk = ", ".join(f"{_sql(p)} AS __pk{i}" for i, p in enumerate(partition))
        keys_sql = f", {pk}" if pk else ""
        filter_sql = (
            f"SELECT *, epoch_us({_q(time_col)}) AS __t{keys_sql} FROM __input AS {_q(alias)} "
            f"WHERE {_q(time_col)} IS NOT NULL"
        )
        if where is not None:
            filter_sql += f" AND ({_sql(where)})"
        in_schema = self._input_schema(stream)
        f_schema = self._dry(filter_sql, {"__input": in_schema}, where or select)
        x_schema = f_schema.append(pa.field("__ws", pa.int64())).append(pa.field("__we", pa.int64()))
        x_schema = x_schema.append(pa.field(WINDOW_START, pa.timestamp("us"))).append(
            pa.field(WINDOW_END, pa.timestamp("us"))
        )
        x_schema = x_schema.append(pa.field(WINDOW_TIME, pa.timestamp("us"))).append(pa.field("__sess", pa.int64()))
        lowered = aggregates.lower(
            select, keys, aggs, alias, x_schema, self.con, _err, force_buffer=True, extra_group=("__sess",)
        )
        out_schema = self._dry(lowered.final_sql, {"__state": x_schema}, select)
        spec = SessionAggSpec(
            step,
            stream.key,
            name.lower(),
            gap_us=gap,
            time_column=time_col,
            partition_sql=[_sql(p) for p in partition],
            filter_sql=filter_sql,
            final_sql=lowered.final_sql,
            emit=emit,
            allowed_lateness_us=self._lateness(stream),
            n_keys=len(keys),
            source_stream=self._origin(stream.key),
        )
        if emit == "changes" or spec.allowed_lateness_us:
            self.changelog.add(name.lower())
        return spec, _output_schema(out_schema, emit)


def _unique_names(query: _Q) -> _Q:
    """A pump's query whose result columns have distinct names (they map by position, so two
    items may share a name, as KDA allows): later duplicates get a suffix."""
    if not isinstance(query, exp.Select):
        return query
    seen: set[str] = set()
    items = []
    for i, item in enumerate(query.expressions):
        name = item.alias_or_name.upper() if isinstance(item, (exp.Alias, exp.Column)) else ""
        if name and not (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
            if name in seen and name != kda.ROWTIME:
                body = item.this if isinstance(item, exp.Alias) else item
                item = exp.alias_(body.copy(), f"{name}__{i + 1}", quoted=True)
            seen.add(name)
        items.append(item)
    if len(items) == len(query.expressions) and all(a is b for a, b in zip(items, query.expressions)):
        return query
    query = query.copy()
    query.set("expressions", items)
    return query


def _not_null(value: str, column: pa.Field, stream: str) -> str:
    """``value``, or (for a NOT NULL column) a failure for a NULL, so the row goes to the error
    stream instead of breaking the column's promise."""
    if column.nullable:
        return value
    message = f"NULL in column {column.name} of {stream}, which is NOT NULL".replace("'", "''")
    return f"CASE WHEN ({value}) IS NULL THEN error('{message}') ELSE ({value}) END"


def _duck_message(err: Exception) -> str:
    message = str(err).split("\n")[0]
    message = message.split(": ", 1)[1] if ": " in message else message
    return message[:1].lower() + message[1:].rstrip(".")


def _unqualify(select: exp.Select, names: set[str]) -> exp.Select:
    """``t.v`` -> ``v`` for the query's one input (however it was aliased); subqueries keep theirs."""
    out = select.copy()
    for column in list(out.find_all(exp.Column)):
        if column.table and column.table.lower() in names and not _inside_subquery(column, out):
            column.set("table", None)
    return out


def _inside(node: exp.Expr, container: exp.Expr | None) -> bool:
    if container is None:
        return False
    cur: exp.Expr | None = node
    while cur is not None:
        if cur is container:
            return True
        cur = cur.parent
    return False


def _inside_subquery(node: exp.Expr, select: exp.Select) -> bool:
    cur = node.parent
    while cur is not None and cur is not select:
        if isinstance(cur, (exp.Subquery, exp.Select)):
            return True
        cur = cur.parent
    return False


def _has_star(select: exp.Select) -> bool:
    """Whether the select list has ``*`` or ``alias.*``."""
    return any(
        isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
        for e in select.expressions
    )


def _refuse_order_limit(select: exp.Select, allow_order: bool) -> None:
    """ORDER BY (unless ``allow_order``: within a window or group) and LIMIT are not for streams."""
    for bad, what in ((exp.Order, "ORDER BY"), (exp.Limit, "LIMIT")):
        node = select.args.get(bad.__name__.lower())
        if node is not None and not (bad is exp.Order and allow_order):
            raise _err(node, f"{what} is not supported on an unbounded stream")


def _append_hidden(body: exp.Select) -> str:
    body = body.copy()
    body.set("expressions", [*body.expressions, exp.column(SEQ_COL, quoted=True), exp.column(WM_COL, quoted=True)])
    return _sql(body)


def _visible_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in schema if not f.name.startswith("__")])


def _output_schema(schema: pa.Schema, emit: str) -> pa.Schema:
    fields = [f for f in schema if not f.name.startswith("__")]
    if emit == "changes":
        fields = [pa.field("op", pa.string()), *fields]
    return pa.schema(fields)
