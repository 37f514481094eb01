"""Planning windowed stream-to-stream joins.

KDA's form puts a window on one side or both::

    FROM orders OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS o
    JOIN shipments [OVER w] AS s ON o.id = s.order_id
    [WINDOW w AS (ROWS 2 PRECEDING)]

Flink's interval join gives the same through a time condition instead of windows
(``o.ts BETWEEN s.ts - INTERVAL '1' MINUTE AND s.ts``), and so does KDA's comma join on equal
times (``FROM a, b WHERE a.ROWTIME = b.ROWTIME``). A join becomes three steps: each side is
packed into one internal stream (``__side``, ``__t``, ``__left``/``__right``; the pipeline gives
that stream the slower side's watermark), which the join operator reads. An unqualified
``ROWTIME`` in the SELECT list is the output row's time: the later row's for a pair, the time an
unmatched outer row left its window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pyarrow as pa
from sqlglot import exp

from engine.errors import PlanError
from engine.formats.types import sql_type_name
from engine.plan.logical import OperatorSpec, StatelessSpec, StreamDef, StreamJoinSpec
from engine.plan.planner import (
    _aggregate_units,
    _err,
    _inside_subquery,
    _q,
    _refuse_order_limit,
    _sql,
    interval_us,
)
from engine.sql.dialect import TableWindow, WindowTVF
from engine.types import SEQ_COL, WM_COL

if TYPE_CHECKING:
    from engine.plan.planner import _Planner, _Scope

ROWTIME = "rowtime"
BUFFER_EXTRA = (
    ("__seq", pa.int64()),
    ("__wm", pa.int64()),
    ("__id", pa.int64()),
    ("__t", pa.int64()),
    ("__idx", pa.int64()),
    ("__matched", pa.bool_()),
    ("__due", pa.bool_()),
    ("__mx0", pa.int64()),
    ("__mx1", pa.int64()),
)
PAIRS_SCHEMA = pa.schema(
    [(n, pa.int64()) for n in ("__ia", "__ib", "__rt", "__seq", "__o", "__wm")],
)


@dataclass
class _Side:
    stream: StreamDef
    alias: str
    node: exp.Expr  # the FROM item, for error positions
    window: tuple[str, int] | None = None
    time_col: str = ""

    @property
    def names(self) -> set[str]:
        return {self.alias.lower(), self.stream.name.lower()}

    @property
    def columns(self) -> dict[str, str]:
        return {f.name.lower(): f.name for f in self.stream.schema}


def is_stream_join(planner: _Planner, select: exp.Select, source: exp.Expr) -> bool:
    """Whether a SELECT with joins joins streams (rather than reference tables) or has a window."""
    if isinstance(source, exp.Table) and source.args.get("window") is not None:
        return True
    for join in select.args.get("joins") or []:
        table = join.this
        if not isinstance(table, exp.Table) or table.args.get("window") is not None:
            return True
        if planner._reference(table) is None:
            return True
    return False


def plan_stream_join(
    planner: _Planner,
    select: exp.Select,
    stream: StreamDef,
    alias: str,
    tvf: WindowTVF | None,
    name: str,
    scope: _Scope,
) -> tuple[OperatorSpec, pa.Schema]:
    """Plan ``select`` (a FROM with one JOIN of two streams); returns the join's spec and schema."""
    joins = select.args["joins"]
    from_ = select.args.get("from_") or select.args.get("from")
    assert from_ is not None
    source = from_.this
    _refuse(select, tvf, joins)
    join = joins[0]
    left = _Side(stream, alias, source)
    right = _resolve(planner, join.this, name, scope)
    if left.alias.lower() == right.alias.lower():
        raise _err(join.this, f'both sides of the join are called "{right.alias}"', hint="give them different aliases")
    join_type = _join_type(join)
    for side in (left, right):
        if side.stream.key in planner.changelog:
            raise _err(side.node, f"{side.stream.name} is a changelog (EMIT CHANGES): joining it is not supported")
    windows = select.args.get("windows") or []
    left.window = _window(source, windows)
    right.window = _window(join.this, windows)
    using = [u.name for u in join.args.get("using") or []]
    on = _condition(join, using, left, right)
    _check_columns(select, on, left, right, using)
    if left.window is not None or right.window is not None:
        for side in (left, right):
            side.time_col = _time_column(planner, side)
    else:
        where = select.args.get("where")
        cond = on if join_type != "inner" or where is None else exp.and_(on, where.this)
        try:  # no windows: a time condition between the sides' event times bounds the join
            for side in (left, right):
                side.time_col = _time_column(planner, side)
            bounds = _time_bounds(cond, left, right)
        except PlanError:
            bounds = None
        if bounds is None:
            raise _err(
                join,
                "a join of two streams needs a window on at least one side",
                hint="FROM a OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS x JOIN b ..., "
                "or a time condition such as x.ts BETWEEN y.ts - INTERVAL '1' MINUTE AND y.ts",
            )
        low, high = bounds
        left.window, right.window = ("range", max(-low, 0)), ("range", max(high, 0))
    windows_ = (left.window or ("none", 0), right.window or ("none", 0))

    key = f"{name}/join-input".lower()
    step_ids = [planner._step_id(f"{name}/join-{which}") for which in ("left", "right")]
    schemas = []
    for i, side in enumerate((left, right)):
        sql = _pack_sql(i, side, (left, right))
        schemas.append(planner._dry(sql, {"__input": planner._input_schema(side.stream)}, side.node))
        if i == 0:
            planner.streams[key] = StreamDef(
                f"{name}/join-input", key, schemas[0], where=planner._where(select), declared=False, derived=True
            )
        planner._add(StatelessSpec(step_ids[i], side.stream.key, key, sql=sql), key)

    side_schemas = tuple(_visible(s.stream.schema) for s in (left, right))
    buffers = {
        t: pa.schema([*schema, *(pa.field(n, ty) for n, ty in BUFFER_EXTRA)])
        for t, schema in zip(("__ja", "__jb"), side_schemas)
    }
    match_sql = _match_sql(on, left, right, windows_)
    planner._dry(match_sql, buffers, on)
    a, b = _q(left.alias), _q(right.alias)
    condition_sql = (
        f'SELECT "__jc"."__ia", "__jc"."__ib", ({_sql(on)}) AS "__ok" FROM __jc '
        f'JOIN __ja AS {a} ON {a}.__id = "__jc"."__ia" JOIN __jb AS {b} ON {b}.__id = "__jc"."__ib"'
    )
    pairs = pa.schema([("__ia", pa.int64()), ("__ib", pa.int64())])
    planner._dry(condition_sql, {"__jc": pairs, **buffers}, on)
    project_sql = _project_sql(select, left, right, using)
    schema = planner._dry(project_sql, {"__jp": PAIRS_SCHEMA, **buffers}, select)
    spec = StreamJoinSpec(
        planner._step_id(f"{name}/join"),
        key,
        name.lower(),
        join_type=join_type,
        windows=windows_,
        side_schemas=side_schemas,
        aliases=(left.alias, right.alias),
        sources=(planner._origin(left.stream.key), planner._origin(right.stream.key)),
        match_sql=match_sql,
        project_sql=project_sql,
        candidates_sql=_match_sql(exp.true(), left, right, windows_),
        condition_sql=condition_sql,
    )
    return spec, schema


# ---------------------------------------------------------------------- checks
def _refuse(select: exp.Select, tvf: WindowTVF | None, joins: list[exp.Join]) -> None:
    if len(joins) > 1:
        raise _err(joins[1], "a join of more than two streams is not supported yet", hint="join two of them in a view")
    grouped = bool(select.args.get("group")) or bool(
        _aggregate_units(list(select.expressions) + [select.args.get("having") or exp.Null()])
    )
    if tvf is not None or grouped:
        raise _err(
            joins[0],
            "a join and a window table function or GROUP BY in one SELECT is not supported yet",
            hint="join in a view (or pump) first, then aggregate the view",
        )
    if select.args.get("distinct"):
        raise _err(select.args["distinct"], "SELECT DISTINCT is not supported on a stream join")
    _refuse_order_limit(select, allow_order=False)
    for item in select.expressions:
        for window in item.find_all(exp.Window):
            raise _err(window, "OVER (...) aggregates are not supported in a join's SELECT list")


def _resolve(planner: _Planner, node: exp.Expr, name: str, scope: _Scope) -> _Side:
    if isinstance(node, exp.Subquery):
        sub_name = f"{name}/{node.alias or 'subquery'}"
        key = planner._query_into(node.this, sub_name, True, node, scope)
        return _Side(planner.streams[key], node.alias or sub_name, node)
    if not isinstance(node, exp.Table):
        raise _err(node, f"unsupported join item {node.sql()[:40]!r}")
    # A side of a windowed join is a stream when it can be one (declared, derived, or given a
    # source): only then ask whether the name is a reference table (which would take the source).
    known = node.name.lower() in planner.streams or node.name.lower() in scope.ctes
    if not known and node.args.get("window") is None and planner._reference(node) is not None:
        raise _err(
            node,
            f"{node.name} is a reference table: it cannot be joined to a windowed stream or share a join with one",
            hint="join the reference table in a view of its own",
        )
    stream = planner._source(node, scope)
    return _Side(stream, node.alias or node.name, node)


def _join_type(join: exp.Join) -> str:
    side, kind = (join.side or "").upper(), (join.kind or "").upper()
    if kind in ("SEMI", "ANTI", "ASOF") or join.args.get("method"):
        raise _err(join, f"{kind or join.args['method']} JOIN of two streams is not supported")
    if side in ("LEFT", "RIGHT", "FULL"):
        return side.lower()
    if kind == "OUTER":  # OUTER JOIN alone: both sides are outer
        return "full"
    return "inner"


def _window(node: exp.Expr, named: list[exp.Window]) -> tuple[str, int] | None:
    window = node.args.get("window") if isinstance(node, exp.Table) else None
    if window is None:
        return None
    assert isinstance(window, TableWindow)
    if window.this is not None:
        wanted = window.this.name.lower()
        found = next((w for w in named if w.this is not None and w.this.name.lower() == wanted), None)
        if found is None:
            raise _err(window.this, f'unknown window "{window.this.name}"', hint="define it with WINDOW name AS (...)")
        spec, partition = found.args.get("spec"), found.args.get("partition_by")
    else:
        spec, partition = window.args.get("spec"), window.args.get("partition_by")
    if partition:
        raise _err(partition[0], "PARTITION BY is not allowed in a join window (as in KDA)")
    if spec is None:
        raise _err(window, "a join window needs RANGE INTERVAL ... PRECEDING or ROWS n PRECEDING")
    kind = str(spec.args.get("kind") or "").upper()
    start, side = spec.args.get("start"), str(spec.args.get("start_side") or "").upper()
    end = spec.args.get("end")
    if end is not None and str(end).upper() != "CURRENT ROW":
        raise _err(spec, "a join window ends at the current row")
    if isinstance(start, str) and start.upper() == "CURRENT ROW":
        return ("range", 0) if kind == "RANGE" else ("rows", 0)
    if side != "PRECEDING" or start is None or isinstance(start, str):
        raise _err(spec, "a join window is RANGE INTERVAL ... PRECEDING or ROWS n PRECEDING (bounded, ending now)")
    if kind == "RANGE":
        size = interval_us(start, "the RANGE size")
        if size < 0:
            raise _err(start, "the RANGE size must not be negative")
        return ("range", size)
    if kind == "ROWS":
        if not (isinstance(start, exp.Literal) and start.is_int):
            raise _err(start, "ROWS needs a whole number of rows")
        return ("rows", int(start.name))
    raise _err(spec, f"{kind} windows are not supported in a join (use RANGE or ROWS)")


def _time_column(planner: _Planner, side: _Side) -> str:
    """A side's event-time column: its WATERMARK column, found through views by lineage."""
    stream = side.stream
    if stream.time_column:
        return stream.time_column
    stamps = [f for f in stream.schema if pa.types.is_timestamp(f.type)]
    for field_ in stamps:
        roots = planner._roots(stream.key, field_.name)
        times = [planner.streams[k].time_column for k, _ in roots]
        if roots and all(t is not None and t.lower() == c.lower() for t, (_, c) in zip(times, roots)):
            return field_.name
    rowtime = next((f for f in stamps if f.name.lower() == ROWTIME), None)
    if rowtime is not None:
        if not stream.derived:  # like a DESCRIPTOR: ROWTIME becomes the source's time, no delay
            planner.streams[stream.key] = replace(stream, time_column=rowtime.name, delay_us=0)
        return rowtime.name
    raise _err(
        side.node,
        f"{stream.name} has no event time to join on",
        hint="declare WATERMARK FOR <column> AS ... on its source, and select that column into views",
    )


def _condition(join: exp.Join, using: list[str], left: _Side, right: _Side) -> exp.Expr:
    on = join.args.get("on")
    kind = (join.kind or "").upper()
    if using:
        for col in using:
            for side in (left, right):
                if col.lower() not in side.columns:
                    raise _err(join, f'USING ({col}): {side.stream.name} has no column "{col}"')
        parts = [
            exp.EQ(
                this=exp.column(left.columns[c.lower()], table=left.alias),
                expression=exp.column(right.columns[c.lower()], table=right.alias),
            )
            for c in using
        ]
        cond: exp.Expr = parts[0]
        for part in parts[1:]:
            cond = exp.and_(cond, part)
        return cond
    if on is not None:
        return _qualify(on.copy(), left, right)
    comma = not (join.side or kind) and "pivots" not in join.args  # sqlglot parses JOIN (not ,) with pivots
    if kind == "CROSS" or comma:
        return exp.true()
    raise _err(join, "a join needs ON or USING", hint="CROSS JOIN pairs every row with every row in the windows")


def _qualify(node: exp.Expr, left: _Side, right: _Side) -> exp.Expr:
    """``stream.col`` -> ``alias.col`` (the SQL that runs sees the aliases only)."""
    for column in list(node.find_all(exp.Column)):
        if column.table:
            for side in (left, right):
                if column.table.lower() in side.names:
                    column.set("table", exp.to_identifier(side.alias))
                    break
    return node


def _check_columns(select: exp.Select, on: exp.Expr, left: _Side, right: _Side, using: list[str]) -> None:
    aliases = {e.alias.lower() for e in select.expressions if isinstance(e, exp.Alias)}
    where = select.args.get("where")
    using_l = {u.lower() for u in using}
    places = [*select.expressions, *([where] if where is not None else []), on]
    for place in places:
        for column in place.find_all(exp.Column):
            if isinstance(column.this, exp.Star) or _inside_subquery(column, select):
                continue
            col = column.name.lower()
            if column.table:
                side = next((s for s in (left, right) if column.table.lower() in s.names), None)
                if side is None:
                    raise _err(
                        column,
                        f'unknown table or alias "{column.table}"',
                        hint=f'this join reads "{left.alias}" and "{right.alias}"',
                    )
                if col not in side.columns:
                    raise _err(column, f'unknown column "{column.name}" in {side.alias}')
                continue
            if col == ROWTIME and place is not on:
                continue  # the output row's time
            if col in using_l:
                continue
            owners = [s for s in (left, right) if col in s.columns]
            if len(owners) == 2:
                raise _err(
                    column,
                    f'column "{column.name}" is in both sides of the join',
                    hint=f"write {left.alias}.{column.name} or {right.alias}.{column.name}",
                )
            if not owners and not (col in aliases and place is not where and place is not on):
                raise _err(column, f'unknown column "{column.name}"')


# ---------------------------------------------------------------------- time conditions
def _time_bounds(cond: exp.Expr, left: _Side, right: _Side) -> tuple[int, int] | None:
    """(low, high) with low <= left time - right time <= high, from the condition's conjuncts."""
    low: int | None = None
    high: int | None = None

    def term(node: exp.Expr) -> tuple[int, int] | None:
        node = node.unnest() if isinstance(node, exp.Paren) else node
        if isinstance(node, exp.Column):
            for i, side in enumerate((left, right)):
                qualified = node.table and node.table.lower() in side.names
                only_here = not node.table and node.name.lower() in side.columns
                only_here = only_here and node.name.lower() not in (left, right)[1 - i].columns
                if (qualified or only_here) and node.name.lower() == side.time_col.lower():
                    return i, 0
            return None
        if isinstance(node, (exp.Add, exp.Sub)) and isinstance(node.expression, exp.Interval):
            inner = term(node.this)
            if inner is None:
                return None
            amount = interval_us(node.expression)
            return inner[0], inner[1] + (amount if isinstance(node, exp.Add) else -amount)
        return None

    def bound(a: exp.Expr, op: str, b: exp.Expr) -> None:
        nonlocal low, high
        x, y = term(a), term(b)
        if x is None or y is None or x[0] == y[0]:
            return
        if x[0] == 1:  # write it as left ... right
            x, y = y, x
            op = {">=": "<=", ">": "<", "<=": ">=", "<": ">", "=": "="}[op]
        limit = y[1] - x[1]  # left + cx op right + cy  <=>  left - right op cy - cx
        if op in (">=", ">", "="):
            value = limit + (1 if op == ">" else 0)
            low = value if low is None else max(low, value)
        if op in ("<=", "<", "="):
            value = limit - (1 if op == "<" else 0)
            high = value if high is None else min(high, value)

    ops: dict[type[exp.Expr], str] = {exp.GTE: ">=", exp.GT: ">", exp.LTE: "<=", exp.LT: "<", exp.EQ: "="}
    for part in cond.flatten() if isinstance(cond, exp.And) else [cond]:
        if isinstance(part, exp.Between):
            bound(part.this, ">=", part.args["low"])
            bound(part.this, "<=", part.args["high"])
        elif type(part) in ops:
            bound(part.this, ops[type(part)], part.expression)
    if low is None or high is None:
        return None
    return low, high


# ---------------------------------------------------------------------- SQL
def _visible(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in schema if not f.name.startswith("__")])


def _pack_sql(index: int, side: _Side, sides: tuple[_Side, _Side]) -> str:
    """One side's rows into the join's input stream: the row packed in ``__left`` or ``__right``."""
    packed = []
    for i, other in enumerate(sides):
        fields = _visible(other.stream.schema)
        if i == index:
            body = ", ".join(f"'{f.name.replace(chr(39), chr(39) * 2)}': {_q(f.name)}" for f in fields)
            packed.append(f"{{{body}}}")
        else:
            types = ", ".join(f"{_q(f.name)} {sql_type_name(f.type)}" for f in fields)
            packed.append(f"NULL::STRUCT({types})")
    return (
        f"SELECT {index}::TINYINT AS __side, epoch_us({_q(side.time_col)}) AS __t, "
        f"{packed[0]} AS __left, {packed[1]} AS __right, {_q(SEQ_COL)}, {_q(WM_COL)} FROM __input"
    )


def _in_window(kind: str, size: int, early: str, late: str, at: int) -> str:
    """SQL: the row ``early`` of its side is in its side's window ending at row ``late``'s time.

    ``at`` names the window's side (0 or 1), whose ``__mx<at>`` the later row carries.
    """
    if kind == "range":
        return f"{early}.__t >= {late}.__t - {size}"
    if kind == "rows":
        return f"{early}.__idx >= {late}.__mx{at} - {size}"
    return f"{early}.__t = {late}.__t"


def _match_sql(on: exp.Expr, left: _Side, right: _Side, windows: tuple[tuple[str, int], tuple[str, int]]) -> str:
    a, b = _q(left.alias), _q(right.alias)
    (ka, ra), (kb, rb) = windows
    a_before_b = _in_window(ka, ra, a, b, 0)  # b came later: a in the left window at b's time
    tie = "TRUE" if kb != "rows" else _in_window(kb, rb, b, b, 1)  # equal times: b in its own window
    b_before_a = _in_window(kb, rb, b, a, 1)  # a came later: b in the right window at a's time
    return (
        f"SELECT {a}.__id AS __ia, {b}.__id AS __ib FROM __ja AS {a} JOIN __jb AS {b} "
        f"ON ({_sql(on)}) AND (({b}.__due AND {a}.__t <= {b}.__t AND ({a_before_b} OR ({a}.__t = {b}.__t AND {tie}))) "
        f"OR ({a}.__due AND {a}.__t > {b}.__t AND {b_before_a}))"
    )


def _project_sql(select: exp.Select, left: _Side, right: _Side, using: list[str]) -> str:
    rowtime = exp.func("make_timestamp", exp.column("__rt", table="__jp"))
    using_l = {u.lower(): u for u in using}
    kda = any(getattr(s.stream, "rowtime", False) for s in (left, right))

    def merged(col: str) -> exp.Expr:
        return exp.func(
            "coalesce",
            exp.column(left.columns[col], table=left.alias, quoted=True),
            exp.column(right.columns[col], table=right.alias, quoted=True),
        )

    def side_columns(side: _Side, skip: set[str]) -> list[exp.Expr]:
        return [
            exp.column(f.name, table=side.alias, quoted=True)
            for f in _visible(side.stream.schema)
            if f.name.lower() not in skip and not (kda and f.name.lower() == ROWTIME)
        ]

    def rewrite(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table and not isinstance(node.this, exp.Star):
            if node.name.lower() == ROWTIME:
                return rowtime.copy()
            if node.name.lower() in using_l:
                return merged(node.name.lower())
        return node

    items: list[exp.Expr] = []
    for item in select.expressions:
        if isinstance(item, exp.Star):
            items += [exp.alias_(merged(c), using_l[c], quoted=True) for c in using_l]
            items += side_columns(left, set(using_l)) + side_columns(right, set(using_l))
            if kda:
                items.append(exp.alias_(rowtime.copy(), "ROWTIME", quoted=True))
            continue
        if isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
            side = left if item.table.lower() in left.names else right
            items += side_columns(side, set())
            continue
        copy = _qualify(item.copy(), left, right)
        if isinstance(copy, exp.Column) and not copy.table:
            bare = copy.name.lower()
            if bare == ROWTIME or bare in using_l:
                copy = exp.alias_(copy, copy.name, quoted=True)
        if _is_sub(copy):
            items.append(copy)
            continue
        items.append(copy.transform(lambda n: rewrite(n) if not _in_sub(n) else n))
    body = ", ".join(_sql(i) for i in items)
    a, b = _q(left.alias), _q(right.alias)
    sql = (
        f'SELECT {body}, "__jp"."__seq" AS "{SEQ_COL}", "__jp"."__wm" AS "{WM_COL}" FROM __jp '
        f'LEFT JOIN __ja AS {a} ON "__jp"."__ia" = {a}.__id LEFT JOIN __jb AS {b} ON "__jp"."__ib" = {b}.__id'
    )
    where = select.args.get("where")
    if where is not None:
        cond = _qualify(where.this.copy(), left, right).transform(lambda n: rewrite(n) if not _in_sub(n) else n)
        sql += f" WHERE {_sql(cond)}"
    return sql + ' ORDER BY "__jp"."__o"'


def _is_sub(node: exp.Expr) -> bool:
    return isinstance(node, (exp.Subquery, exp.Select))


def _in_sub(node: exp.Expr) -> bool:
    cur = node.parent
    while cur is not None:
        if isinstance(cur, (exp.Subquery, exp.Select)):
            return True
        cur = cur.parent
    return False
