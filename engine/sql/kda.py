"""The KDA front end: Kinesis Data Analytics SQL programs in the engine's own terms.

A program is KDA SQL when it has a ``CREATE PUMP`` or a ``SELECT STREAM``. For such a program,
before planning:

- unquoted identifiers fold to upper case and quoted ones keep their case (KDA's rule, so output
  columns are named as KDA named them);
- a pump becomes its ``INSERT`` (remembering the pump's name for error rows); a ``STOPPED`` pump
  does not run;
- ``SELECT STREAM`` loses its ``STREAM``;
- a ``GROUP BY`` with a ROWTIME bucket (``STEP(s.ROWTIME BY INTERVAL ...)``, ``FLOOR(s.ROWTIME TO
  unit)``, ``ROWTIME``) becomes a tumbling window table function on ``ROWTIME``: the bucket reads
  ``window_start`` and the output row's ROWTIME is ``window_end`` (the boundary at which the group
  completed); a streaming ``SELECT DISTINCT`` with a ROWTIME bucket becomes such a GROUP BY;
- every query's output carries ``ROWTIME``: the input row's for row-by-row queries and sliding
  windows, the window's end for tumbling and stagger windows, the later row's for joins (an
  unqualified ``ROWTIME`` in a SELECT list means the output row's time).

The planner then gives every stream a ``ROWTIME TIMESTAMP`` column that is its event time with no
delay (ROWTIME never decreases), so KDA's windows are the engine's event-time windows; sources get
it at ingestion (arrival time, or ``--rowtime-from FIELD``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from engine.errors import PlanError
from engine.sql.dialect import CreatePump, Stagger, Step, WindowTVF

ROWTIME = "ROWTIME"
ARRIVAL_TIME = "APPROXIMATE_ARRIVAL_TIME"
ERROR_STREAM = "error_stream"
_FLOOR_UNITS_US = {
    "MILLISECOND": 1_000,
    "SECOND": 1_000_000,
    "MINUTE": 60_000_000,
    "HOUR": 3_600_000_000,
    "DAY": 86_400_000_000,
}


@dataclass
class KdaProgram:
    """A KDA program's statements after the rewrite, and what the rewrite learned."""

    statements: list[exp.Expr]
    stopped_pumps: list[str] = field(default_factory=list)


def is_kda(statements: list[exp.Expr]) -> bool:
    """Whether a program is written in KDA SQL (pumps or SELECT STREAM)."""
    for stmt in statements:
        if isinstance(stmt, CreatePump):
            return True
        if any(_is_stream_select(s) for s in stmt.find_all(exp.Select)):
            return True
    return False


def discovered(schema: pa.Schema) -> pa.Schema:
    """A schema discovered from sample records, named as KDA's discovery names columns (upper case;
    the decoder matches record keys to column names ignoring case)."""
    return pa.schema([f.with_name(f.name.upper()) if not f.name.startswith("_") else f for f in schema])


def _is_stream_select(select: exp.Select) -> bool:
    return any(m.name.upper() == "STREAM" for m in select.args.get("operation_modifiers") or [])


def _error(node: exp.Expr, message: str, hint: str | None = None) -> PlanError:
    from engine.plan.planner import _err  # the planner's positions (keywords, offsets)

    return _err(node, message, hint)


def prepare(statements: list[exp.Expr]) -> KdaProgram:
    """Rewrite a KDA program's statements into the engine's dialect (see the module doc)."""
    out = KdaProgram([])
    pumps: dict[str, int] = {}  # pump name (upper case) -> its statement's index in out.statements
    for stmt in statements:
        stmt = fold_identifiers(stmt)
        if isinstance(stmt, CreatePump):
            name = stmt.this.name
            earlier = pumps.get(name.upper())
            if earlier is not None and not stmt.args.get("replace"):
                raise _error(stmt.this, f'pump "{name}" already exists', hint="CREATE OR REPLACE PUMP replaces it")
            if earlier is not None:  # CREATE OR REPLACE PUMP: the later definition wins
                out.statements[earlier] = exp.Semicolon()
            if stmt.args.get("stopped"):
                out.stopped_pumps.append(name)
                pumps.pop(name.upper(), None)
                continue
            insert = stmt.expression
            insert.meta["pump"] = name
            stmt = insert
            pumps[name.upper()] = len(out.statements)
        _check_names(stmt)
        for select in reversed(list(stmt.find_all(exp.Select))):  # inner queries first
            _rewrite_select(select)
        out.statements.append(stmt)
    return out


def fold_identifiers(node: exp.Expr) -> exp.Expr:
    """Unquoted identifiers in upper case, quoted ones as written (KDA's case rule)."""
    for ident in node.find_all(exp.Identifier):
        if not ident.quoted and isinstance(ident.this, str):
            ident.set("this", ident.this.upper())
    return node


def _check_names(stmt: exp.Expr) -> None:
    target = None
    if isinstance(stmt, exp.Create) and (stmt.args.get("kind") or "").upper() == "STREAM":
        target = stmt.this.this if isinstance(stmt.this, exp.Schema) else stmt.this
        schema = stmt.this if isinstance(stmt.this, exp.Schema) else None
        for col in schema.expressions if schema is not None else []:
            if isinstance(col, exp.ColumnDef) and col.name.upper() == ROWTIME:
                raise _error(col, "ROWTIME is a system column every stream has; do not declare it")
    if target is not None and target.name.lower() == ERROR_STREAM:
        raise _error(target, "error_stream is the system's error stream; a stream cannot take that name")
    for table in stmt.find_all(exp.Table):
        if table.name.lower() == ERROR_STREAM and not isinstance(stmt, exp.Create):
            raise _error(
                table,
                "error_stream cannot be read by the program (as in KDA)",
                hint="send it to a destination with --sink error_stream=URI",
            )


def is_rowtime(node: exp.Expr) -> bool:
    """A ``ROWTIME`` or ``s.ROWTIME`` column."""
    return isinstance(node, exp.Column) and node.name.upper() == ROWTIME and not isinstance(node.this, exp.Star)


def _strip_monotonic(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Anonymous) and node.name.upper() == "MONOTONIC" and len(node.expressions) == 1:
        node = node.expressions[0]
    return node


def rowtime_bucket(node: exp.Expr) -> int | None:
    """The bucket size (microseconds) of a ROWTIME bucket expression, None if ``node`` is none.

    ``STEP(ROWTIME BY INTERVAL ...)``, ``FLOOR(ROWTIME TO unit)`` and ``ROWTIME`` itself (one
    millisecond, ROWTIME's precision), each possibly inside ``MONOTONIC(...)``.
    """
    from engine.plan.planner import interval_us

    node = _strip_monotonic(node)
    if is_rowtime(node):
        return _FLOOR_UNITS_US["MILLISECOND"]
    if isinstance(node, Step) and is_rowtime(node.this):
        size = interval_us(node.expression, "the STEP width")
        if size <= 0:
            raise _error(node.expression, "the STEP width must be positive")
        return size
    epoch = _epoch_bucket(node)
    if epoch is not None:
        return epoch
    if isinstance(node, exp.Floor) and is_rowtime(node.this) and node.args.get("to") is not None:
        unit = node.args["to"].name.upper()
        if unit not in _FLOOR_UNITS_US:
            raise _error(
                node,
                f"FLOOR(ROWTIME TO {unit}) is not a fixed-size window",
                hint="use STEP(ROWTIME BY INTERVAL ...) or a unit from SECOND to DAY",
            )
        return _FLOOR_UNITS_US[unit]
    return None


def _epoch_bucket(node: exp.Expr) -> int | None:
    """The pre-STEP idiom ``FLOOR((ROWTIME - TIMESTAMP '1970-01-01 00:00:00') SECOND / n TO SECOND)``:
    n-second buckets since the epoch (any of SECOND, MINUTE, HOUR, DAY as the qualifier)."""
    from engine.sql.dialect import IntervalQualifier

    if not (isinstance(node, exp.Floor) and isinstance(node.this, exp.Div)):
        return None
    qualified, count = node.this.this, node.this.expression
    if not (isinstance(qualified, IntervalQualifier) and isinstance(count, exp.Literal) and not count.is_string):
        return None
    diff = qualified.this.this if isinstance(qualified.this, exp.Paren) else qualified.this
    unit = str(qualified.args.get("unit") or "").upper()
    if not (isinstance(diff, exp.Sub) and is_rowtime(diff.this) and unit in _FLOOR_UNITS_US):
        return None
    origin = diff.expression
    literal = origin.this if isinstance(origin, exp.Cast) else origin
    if not (isinstance(literal, exp.Literal) and literal.name.strip().startswith("1970-01-01")):
        raise _error(origin, "this bucket idiom must count from TIMESTAMP '1970-01-01 00:00:00'")
    try:
        size = round(float(count.name) * _FLOOR_UNITS_US[unit])
    except ValueError:
        return None
    if size <= 0:
        raise _error(count, "the bucket width must be positive")
    return size


def _mentions_rowtime(node: exp.Expr) -> bool:
    return any(is_rowtime(c) for c in node.find_all(exp.Column))


def _same(a: exp.Expr, b: exp.Expr) -> bool:
    """Whether two expressions are the same bucket, ignoring how ROWTIME is qualified."""

    def bare(node: exp.Expr) -> exp.Expr:
        node = _strip_monotonic(node).copy()
        for col in node.find_all(exp.Column):
            if is_rowtime(col):
                col.set("table", None)
        return node

    return bare(a) == bare(b)


def _has_aggregate(select: exp.Select) -> bool:
    from engine.plan.planner import _inside_subquery

    for item in [*select.expressions, select.args.get("having")]:
        if item is None:
            continue
        for node in item.find_all(exp.AggFunc):
            parent = node.parent
            while isinstance(parent, (exp.IgnoreNulls, exp.RespectNulls)):
                parent = parent.parent  # LAG(x) IGNORE NULLS OVER w
            if not isinstance(parent, exp.Window) and not _inside_subquery(node, select):
                return True
    return False


def _output_name(item: exp.Expr) -> str:
    return item.alias_or_name if isinstance(item, (exp.Alias, exp.Column)) else ""


def _rewrite_select(select: exp.Select) -> None:
    select.set("operation_modifiers", None)
    group = select.args.get("group")
    if isinstance(group, Stagger):
        _window_rowtime(select)
        return
    distinct = select.args.get("distinct")
    if distinct is not None and group is None:
        items = [e.this if isinstance(e, exp.Alias) else e for e in select.expressions]
        if not any(rowtime_bucket(i) is not None for i in items):
            raise _error(
                distinct,
                "a streaming SELECT DISTINCT needs a ROWTIME item such as FLOOR(ROWTIME TO MINUTE)",
                hint="duplicates are removed within each value of that item",
            )
        select.set("distinct", None)
        group = exp.Group(expressions=[i.copy() for i in items])
        select.set("group", group)
    from_ = select.args.get("from_")
    if from_ is not None and isinstance(from_.this, exp.TableFromRows) and isinstance(from_.this.this, WindowTVF):
        _window_rowtime(select)  # a Flink window table function: its window's end is the row's time
        return
    if isinstance(group, exp.Group) and group.expressions:
        _group_by_rowtime(select, group)
        return
    _streaming_order(select)
    if _has_aggregate(select):
        raise _error(
            select,
            "an aggregate over a stream needs GROUP BY with a ROWTIME bucket, or an OVER window",
            hint="e.g. GROUP BY STEP(s.ROWTIME BY INTERVAL '1' MINUTE)",
        )
    from engine.plan.planner import _has_star

    if not _has_star(select) and not any(_output_name(e).upper() == ROWTIME for e in select.expressions):
        select.append("expressions", exp.column(ROWTIME))


def _streaming_order(select: exp.Select) -> None:
    """``ORDER BY <ROWTIME bucket>, ...`` on a row-by-row query: sorted within each bucket (the
    planner adds the sorting step); the bucket and the rest of the keys go to ``meta``."""
    order = select.args.get("order")
    if order is None or not order.expressions:
        return
    first = order.expressions[0]
    size = rowtime_bucket(first.this) if isinstance(first, exp.Ordered) else None
    if size is None or first.args.get("desc"):
        raise _error(
            first,
            "a streaming ORDER BY must start with an ascending ROWTIME bucket",
            hint="e.g. ORDER BY FLOOR(s.ROWTIME TO SECOND), score DESC: rows are sorted within each second",
        )
    select.set("order", None)
    select.meta["kda_sort"] = (size, [o.copy() for o in order.expressions[1:]])


def _group_by_rowtime(select: exp.Select, group: exp.Group) -> None:
    buckets = [(k, size) for k in group.expressions if (size := rowtime_bucket(k)) is not None]
    if len(buckets) > 1:
        raise _error(buckets[1][0], "only one ROWTIME expression may appear in GROUP BY (as in KDA)")
    if not buckets:
        other = next((k for k in group.expressions if _mentions_rowtime(k)), None)
        if other is not None:
            raise _error(
                other,
                f"unsupported ROWTIME grouping {other.sql()!r}",
                hint="use STEP(ROWTIME BY INTERVAL ...) or FLOOR(ROWTIME TO unit)",
            )
        raise _error(
            group,
            "a streaming GROUP BY needs a ROWTIME bucket such as STEP(s.ROWTIME BY INTERVAL '1' MINUTE)",
            hint="KDA emits a group when ROWTIME leaves its bucket; group by event time in addition to it",
        )
    key, size = buckets[0]
    from_ = select.args.get("from_")
    if from_ is None or select.args.get("joins"):
        return  # the planner says what is wrong
    source = from_.this
    if isinstance(source, exp.Subquery):
        name = f"__kda_in_{id(select)}"
        alias = source.alias or name
        select.set(
            "with_",
            exp.With(expressions=[exp.CTE(this=source.this, alias=exp.TableAlias(this=exp.to_identifier(name)))]),
        )
        table: exp.Expr = exp.to_table(name)
    elif isinstance(source, exp.Table):
        alias = source.alias_or_name
        table = exp.Table(this=source.this.copy(), db=source.args.get("db"))
    else:
        return
    interval = exp.Interval(this=exp.Literal.string(str(size)), unit=exp.var("MICROSECOND"))
    tvf = WindowTVF(kind="TUMBLE", this=table, timecol=exp.column(ROWTIME), expressions=[interval])
    node = exp.TableFromRows(this=tvf, alias=exp.TableAlias(this=exp.to_identifier(alias)))
    for k in ("line", "col", "start", "end"):
        if k in source.meta:
            node.meta[k] = source.meta[k]
    from_.set("this", node)
    group.set(
        "expressions",
        [exp.column("window_start"), exp.column("window_end")] + [k for k in group.expressions if k is not key],
    )

    def bucket_to_start(node: exp.Expr) -> exp.Expr:
        return exp.column("window_start") if _same(node, key) else node

    select.set("expressions", [e.transform(bucket_to_start) for e in select.expressions])
    for part in ("having", "order"):
        clause = select.args.get(part)
        if clause is not None:
            select.set(part, clause.transform(bucket_to_start))
    _window_rowtime(select)


def _window_rowtime(select: exp.Select) -> None:
    """An aggregate's output row time is its window's end; an unqualified ROWTIME means that."""
    named = False
    for item in list(select.expressions):
        if is_rowtime(item) and not item.table:
            item.replace(exp.alias_(exp.column("window_end"), ROWTIME))
            named = True
            continue
        named = named or _output_name(item).upper() == ROWTIME
        for col in list(item.find_all(exp.Column)):
            if is_rowtime(col) and not col.table and not _inside_aggregate(col):
                col.replace(exp.column("window_end"))
    if not named:
        select.append("expressions", exp.alias_(exp.column("window_end"), ROWTIME))


def _inside_aggregate(node: exp.Expr) -> bool:
    cur = node.parent
    while cur is not None and not isinstance(cur, exp.Select):
        if isinstance(cur, exp.AggFunc):
            return True
        cur = cur.parent
    return False
