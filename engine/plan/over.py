"""PLAN for sliding windows: ``agg(x) OVER w`` (KDA's windowed aggregation, Flink's OVER aggregation).

A SELECT with ``... OVER (...)`` items becomes one ``OverSpec``: one output row per input row
that passes WHERE, computed over a window that ends at that row. Accepted window forms (inline,
or named in ``WINDOW w AS (...)``), each with an optional ``PARTITION BY`` of any expressions:

- ``RANGE INTERVAL '1' MINUTE PRECEDING`` (KDA; sqlglot reads it as ``RANGE BETWEEN ... AND
  CURRENT ROW``), ``RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW`` with ``ORDER BY
  ts`` (Flink), ``RANGE INTERVAL '59:59.999' MINUTE TO SECOND(3) PRECEDING``;
- ``ROWS n PRECEDING``, ``ROWS BETWEEN n PRECEDING AND CURRENT ROW``;
- ``ROWS CURRENT ROW`` (the row alone), ``RANGE CURRENT ROW`` (the rows with its time that
  arrived before it, and itself).

Windows are ordered by the stream's event time (its WATERMARK column, traced through views; an
``ORDER BY`` must name it), ties by arrival. A ``RANGE`` window holds the rows at or before the
current one in that order whose time is >= its time minus the size (the endpoint is inside).

Lowering: each window ``j`` becomes ``ROWS BETWEEN __k<j> PRECEDING AND CURRENT ROW`` ordered by
(``__t``, ``__arr``), where ``__k<j>`` counts the rows before the current one that are inside its
window (for ``RANGE``: its position minus the rows older than time - size), so rows that arrive
later with the same time never enter an earlier row's window. Window function arguments and
partition keys are computed per row first (``prep_sql``), so a row whose argument cannot be
computed is an ``eval`` error row and the window query itself never fails on data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pyarrow as pa
from sqlglot import exp

from engine.plan.logical import OverSpec, StreamDef
from engine.plan.planner import (
    UNIT_US,
    _append_hidden,
    _duckdb_aggregates,
    _err,
    _has_star,
    _inside,
    _inside_subquery,
    _q,
    _sql,
    _unqualify,
    interval_us,
)
from engine.types import SEQ_COL, WM_COL

if TYPE_CHECKING:
    from engine.plan.planner import _Planner

ORDER = 'ORDER BY "__t", "__arr"'
RANKING = {"row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lead"}
_SPAN_UNITS = ("DAY", "HOUR", "MINUTE", "SECOND")


@dataclass
class _Window:
    """One distinct window of the SELECT (several calls may share it)."""

    kind: str  # rows | range
    size: int  # rows, or microseconds
    partition: list[exp.Expr]
    cols: tuple[str, ...] = ()
    needs_ids: bool = False  # EXP_AVG reads its frames: partition id and position columns

    def over(self, frame: bool = True) -> str:
        """The OVER (...) clause: the window's frame, or just its partition and order."""
        part = f"PARTITION BY {', '.join(_q(c) for c in self.cols)} " if self.cols else ""
        if not frame:
            return f"({part}{ORDER})"
        j = self.index
        return f'({part}{ORDER} ROWS BETWEEN "__k{j}" PRECEDING AND CURRENT ROW)'

    index: int = 0


@dataclass
class _Call:
    """One ``f(...) OVER w`` of the select list, lowered."""

    node: exp.Expr
    window: int
    kind: str  # agg | first | last | nth | lag | exp_avg
    text: str = ""  # the aggregate call with its arguments replaced (agg)
    arg: str = ""  # argument column or SQL (first, last, nth, lag, exp_avg)
    ignore_nulls: bool = False
    n: int = 1  # nth / lag offset
    from_last: bool = False
    default: str = "NULL"
    half_life_us: int = 0
    sum_arg: str | None = None  # SUM's argument column: cast to BIGINT when it is an integer


@dataclass
class _Lowering:
    """Per-row SQL items (``__p``/``__a`` columns) collected while reading the calls."""

    items: list[str] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)  # argument SQL -> column name
    nodes: dict[str, exp.Expr] = field(default_factory=dict)  # column name -> expression (for errors)

    def column(self, node: exp.Expr, force: bool = False) -> str:
        """The SQL that reads ``node`` in the window query: a per-row column when it reads columns."""
        text = _sql(node)
        if not force and node.find(exp.Column) is None:
            return text
        if text not in self.args:
            name = f"__a{len(self.args)}"
            self.args[text] = name
            self.items.append(f"{text} AS {_q(name)}")
            self.nodes[name] = node
        return _q(self.args[text])


def uses_over(select: exp.Select) -> bool:
    """Whether ``select`` itself has an ``OVER`` or a ``WINDOW`` clause (not a subquery in it, nor
    its FROM, where ``s OVER (...)`` is a join's window)."""
    from_ = select.args.get("from_") or select.args.get("from")
    return any(not _inside_subquery(w, select) and not _inside(w, from_) for w in select.find_all(exp.Window))


def plan_over(
    planner: _Planner,
    select: exp.Select,
    stream: StreamDef,
    alias: str,
    name: str,
    emit: str,
    tvf: exp.Expr | None,
) -> tuple[OverSpec, pa.Schema]:
    """Plan a SELECT that has ``OVER`` windows (the planner's ``_select`` calls this)."""
    _refuse_mixtures(planner, select, stream, emit, tvf)
    cols = {f.name.lower(): f for f in stream.schema}
    planner._check_columns(_checkable(select), cols, set(), alias, stream)
    select = _unqualify(select, {alias.lower(), stream.name.lower()})
    calls_nodes = _calls(select)
    named = _named_windows(select)
    windows: list[_Window] = []
    keys: dict[tuple, int] = {}
    orders: list[exp.Column] = []
    call_windows: list[int] = []
    for node in calls_nodes:
        source = _window_source(node, named)
        kind, size = _frame(source)
        order = source.args.get("order")
        if order is not None:
            orders.append(_order_column(order))
        partition = list(source.args.get("partition_by") or [])
        for p in partition:
            bad = p.find(exp.Window) or next((n for n in p.walk() if _is_aggregate_call(n)), None)
            if bad is not None:
                raise _err(p, "PARTITION BY takes row expressions, not aggregates or windows")
        key = (kind, size, tuple(_sql(p) for p in partition))
        if key not in keys:
            keys[key] = len(windows)
            windows.append(_Window(kind, size, partition, index=len(windows)))
        call_windows.append(keys[key])
    time_col = _time_column(planner, stream, orders, calls_nodes[0])

    low = _Lowering()
    for w in windows:
        w.cols = tuple(f"__p{w.index}_{i}" for i in range(len(w.partition)))
        low.items += [f"{_sql(p)} AS {_q(c)}" for p, c in zip(w.partition, w.cols)]
    calls = [_lower_call(node, j, low, windows) for node, j in zip(calls_nodes, call_windows)]

    where_node = select.args.get("where")
    cond = f" AND ({_sql(where_node.this)})" if where_node is not None else ""
    extra = "".join(f", {item}" for item in low.items)
    prep_sql = (
        f'SELECT *, epoch_us({_q(time_col)}) AS "__t"{extra} FROM __input AS {_q(alias)} '
        f"WHERE {_q(time_col)} IS NOT NULL{cond}"
    )
    in_schema = planner._input_schema(stream).append(pa.field("__arr", pa.int64()))
    prep_schema = planner._dry(prep_sql, {"__input": in_schema}, where_node or select)
    for call in calls:
        if call.kind == "exp_avg":
            typ = prep_schema.field(call.arg.strip('"')).type
            if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)):
                raise _err(call.node, "EXP_AVG averages numbers", hint=f"its argument is {typ}")
        if call.sum_arg is not None and pa.types.is_integer(prep_schema.field(call.sum_arg).type):
            call.text = f"CAST({call.text} AS BIGINT)"  # DuckDB sums integers as HUGEINT

    kept = ("__t", "__arr", *(c for w in windows for c in w.cols), *low.args.values())
    h_schema = pa.schema([prep_schema.field(c) for c in kept]).append(pa.field("__new", pa.bool_()))
    window_sql = _window_sql(windows, calls)
    w_schema = planner._dry(window_sql, {"__h": h_schema}, select)
    if _keep_sql(windows):
        planner._dry(_keep_sql(windows), {"__h": h_schema}, select)

    results = tuple(f"__w{m}" for m in range(len(calls)))
    r_fields = [f for f in prep_schema if not f.name.startswith("__")]
    r_fields += [prep_schema.field(SEQ_COL), prep_schema.field(WM_COL)]
    for m, call in enumerate(calls):
        typ = pa.float64() if call.kind == "exp_avg" else w_schema.field(f"__w{m}").type
        r_fields.append(pa.field(f"__w{m}", typ))
    project_sql = _project_sql(select, calls_nodes, alias)
    out_schema = planner._dry(project_sql, {"__r": pa.schema(r_fields)}, select)

    planner._lineage_add(name.lower(), select, stream)
    spec = OverSpec(
        planner._step_id(f"{name}/over"),
        stream.key,
        name.lower(),
        time_column=time_col,
        prep_sql=prep_sql,
        window_sql=window_sql,
        keep_sql=_keep_sql(windows),
        project_sql=project_sql,
        windows=tuple((w.kind, w.size, w.cols) for w in windows),
        kept_columns=kept,
        result_columns=results,
        exp_avgs=tuple(
            (f"__w{m}", c.window, c.arg.strip('"'), c.half_life_us) for m, c in enumerate(calls) if c.kind == "exp_avg"
        ),
        source_stream=planner._origin(stream.key),
    )
    return spec, out_schema


# ---------------------------------------------------------------------------------- checks
def _refuse_mixtures(planner: _Planner, select: exp.Select, stream: StreamDef, emit: str, tvf: exp.Expr | None) -> None:
    calls = _calls(select)
    for node in select.find_all(exp.Window):
        if not node.args.get("over"):
            continue
        if _inside(node, select.args.get("where")):
            raise _err(node, "an OVER window cannot be used in WHERE", hint="filter its result in an outer query")
        if _inside_subquery(node, select):
            raise _err(node, "an OVER window inside a subquery expression is not supported")
        if not any(node is c for c in calls):
            raise _err(node, "an OVER window can only be used in the SELECT list")
        parent = node.parent
        while parent is not None and parent is not select:
            if isinstance(parent, exp.Window) and parent.args.get("over"):
                raise _err(node, "an OVER window cannot be nested inside another")
            parent = parent.parent
    if not calls:
        named = select.args.get("windows") or [select]
        raise _err(named[0], "this WINDOW is defined but no OVER uses it")
    if tvf is not None:
        raise _err(calls[0], "OVER windows cannot be combined with a window table function")
    group = select.args.get("group")
    if group is not None or select.args.get("having") is not None:
        raise _err(
            group or select.args["having"],
            "GROUP BY and OVER windows cannot share a SELECT",
            hint="aggregate in a view, then use OVER on the view",
        )
    for item in select.expressions:
        for node in item.walk():
            if not _is_aggregate_call(node) or _inside_subquery(node, select):
                continue
            if not any(isinstance(a, exp.Window) and a.args.get("over") for a in _ancestors(node, item)):
                raise _err(
                    node,
                    "an aggregate without OVER cannot share a SELECT with OVER windows",
                    hint="add OVER w to it, or aggregate with GROUP BY in another query",
                )
    if emit == "changes":
        raise _err(calls[0], "EMIT CHANGES does not apply to OVER windows: each row is emitted once")
    if stream.key in planner.changelog:
        raise _err(
            calls[0],
            f"{stream.name} is a changelog (EMIT CHANGES or allowed-lateness corrections): "
            "OVER windows over it are not supported",
            hint="use OVER on the source stream directly",
        )


def _is_aggregate_call(node: exp.Expr) -> bool:
    """An aggregate call, wherever it is (``is_aggregate`` leaves out those directly under OVER)."""
    return isinstance(node, exp.AggFunc) or (
        isinstance(node, exp.Anonymous) and node.name.lower() in _duckdb_aggregates()
    )


def _ancestors(node: exp.Expr, root: exp.Expr) -> list[exp.Expr]:
    out = []
    cur = node.parent
    while cur is not None:
        out.append(cur)
        if cur is root:
            break
        cur = cur.parent
    return out


def _calls(select: exp.Select) -> list[exp.Expr]:
    """The ``f(...) OVER ...`` nodes of the select list, in order."""
    return [w for item in select.expressions for w in item.find_all(exp.Window) if w.args.get("over")]


def _checkable(select: exp.Select) -> exp.Select:
    """``select`` with each window call replaced by its arguments, partition and order columns,
    so the planner's column and function checks see them (and not ``EXP_AVG``)."""
    check = select.copy()
    for node in [w for w in check.find_all(exp.Window) if w.args.get("over")]:
        func = _unwrap(node.this)[0]
        args = list(func.expressions) if _is_exp_avg(func) else [node.this]
        order = node.args.get("order")
        parts = [*args, *(node.args.get("partition_by") or [])]
        parts += [o.this for o in order.expressions] if order is not None else []
        node.replace(exp.Tuple(expressions=[p.copy() for p in parts]))
    return check


def _named_windows(select: exp.Select) -> dict[str, exp.Expr]:
    named: dict[str, exp.Expr] = {}
    for node in select.args.get("windows") or []:
        key = node.this.name.lower()
        if key in named:
            raise _err(node, f'window "{node.this.name}" is defined twice')
        named[key] = node
    return named


def _window_source(node: exp.Expr, named: dict[str, exp.Expr]) -> exp.Expr:
    """The node that holds the window's PARTITION BY, ORDER BY and frame: the call or a named window."""
    ref = node.args.get("alias")
    if ref is None:
        return node
    if node.args.get("partition_by") or node.args.get("spec") or node.args.get("order"):
        raise _err(node, f"OVER ({ref.name} ...) cannot refine a named window", hint="define another WINDOW")
    found = named.get(ref.name.lower())
    if found is None:
        known = ", ".join(sorted(named)) or "none"
        raise _err(ref, f'unknown window "{ref.name}"', hint=f"WINDOW defines: {known}")
    return found


def _frame(node: exp.Expr) -> tuple[str, int]:
    """(kind, size) of a window's frame: rows, or microseconds for RANGE."""
    spec = node.args.get("spec")
    if spec is None:
        raise _err(
            node,
            "an OVER window needs a frame that ends at the current row",
            hint="RANGE INTERVAL '1' MINUTE PRECEDING or ROWS 10 PRECEDING",
        )
    if spec.args.get("exclude"):
        raise _err(node, "EXCLUDE is not supported in a sliding window")
    kind = str(spec.args.get("kind") or "").upper()
    start, end = spec.args.get("start"), spec.args.get("end")
    sides = [str(spec.args.get(s) or "").upper() for s in ("start_side", "end_side")]
    where = start if isinstance(start, exp.Expr) else node
    if "FOLLOWING" in sides:
        raise _err(where, "a sliding window cannot reach FOLLOWING rows", hint="end the window at the current row")
    if end is not None and not (isinstance(end, str) and end.upper() == "CURRENT ROW"):
        where = end if isinstance(end, exp.Expr) else where
        raise _err(where, "a sliding window must end at the current row", hint="write ... PRECEDING AND CURRENT ROW")
    if isinstance(start, str) and start.upper() == "CURRENT ROW":
        return kind.lower(), 0
    if isinstance(start, str):  # UNBOUNDED
        raise _err(
            node,
            "an unbounded window would keep every row forever",
            hint="give it a size: RANGE INTERVAL '1' HOUR PRECEDING or ROWS 100 PRECEDING",
        )
    assert start is not None
    if kind == "ROWS":
        if not (isinstance(start, exp.Literal) and start.is_int):
            raise _err(start, "ROWS counts rows: its size is a whole number, as in ROWS 10 PRECEDING")
        size = int(start.name)
    elif kind == "RANGE":
        if not isinstance(start, (exp.Interval, exp.Neg, exp.Paren)):
            raise _err(
                start,
                "RANGE over the time column needs an INTERVAL size",
                hint="RANGE INTERVAL '1' MINUTE PRECEDING, or ROWS n PRECEDING to count rows",
            )
        size = _interval_us(start)
    else:
        raise _err(node, f"unsupported window frame {kind}", hint="use RANGE or ROWS")
    if size < 0:
        raise _err(start, "a window size cannot be negative")
    if size == 0:
        raise _err(start, "0 PRECEDING is not allowed", hint=f"write {kind} CURRENT ROW")
    return kind.lower(), size


def _interval_us(node: exp.Expr) -> int:
    """Microseconds of an interval, including KDA's spans (``INTERVAL '59:59.999' MINUTE TO SECOND(3)``)."""
    unit = node.args.get("unit") if isinstance(node, exp.Interval) else None
    if not isinstance(unit, exp.IntervalSpan):
        return interval_us(node, "the window size")
    first = unit.this.name.upper()
    last_node = unit.expression
    last = (last_node.name if isinstance(last_node, exp.Var) else type(last_node).__name__).upper()
    if first not in _SPAN_UNITS or last not in _SPAN_UNITS or _SPAN_UNITS.index(last) < _SPAN_UNITS.index(first):
        raise _err(node, f"unsupported interval {node.sql()!r}")
    text = node.this.name.strip()
    sign = -1 if text.startswith("-") else 1
    fields = re.split(r"[ :]", text.lstrip("-"))
    units = _SPAN_UNITS[_SPAN_UNITS.index(first) : _SPAN_UNITS.index(last) + 1]
    if len(fields) != len(units):
        raise _err(node, f"cannot read {text!r} as {first} TO {last}")
    try:
        return sign * round(sum(float(v) * UNIT_US[u] for v, u in zip(fields, units)))
    except ValueError:
        raise _err(node, f"cannot read {text!r} as {first} TO {last}") from None


def _order_column(order: exp.Expr) -> exp.Column:
    items = order.expressions
    if len(items) != 1:
        raise _err(items[1], "a sliding window is ordered by its stream's time column alone")
    item = items[0]
    if item.args.get("desc"):
        raise _err(item, "a sliding window is ordered by time ascending", hint="remove DESC")
    if not isinstance(item.this, exp.Column):
        raise _err(item, "a sliding window is ordered by its stream's time column", hint="ORDER BY <time column>")
    return item.this


def _time_column(planner: _Planner, stream: StreamDef, orders: list[exp.Column], first_call: exp.Expr) -> str:
    """The column that orders the windows: the stream's event time (its WATERMARK column)."""
    candidates = []
    for f in stream.schema:
        roots = planner._roots(stream.key, f.name) if pa.types.is_timestamp(f.type) else []
        if roots and all(
            (planner.streams[k].time_column or "").lower() == c.lower() and planner.streams[k].time_column
            for k, c in roots
        ):
            candidates.append(f.name)
    if not orders:
        if candidates:
            return candidates[0]
        raise _err(
            first_call,
            f"a sliding window is ordered by the event time of {stream.name}, which has none",
            hint="declare WATERMARK FOR <column> AS <column> on its source, or ORDER BY a TIMESTAMP column",
        )
    col = orders[0]
    for other in orders[1:]:
        if other.name.lower() != col.name.lower():
            raise _err(other, "the windows of one SELECT are all ordered by the same time column")
    field_ = next(f for f in stream.schema if f.name.lower() == col.name.lower())
    if not pa.types.is_timestamp(field_.type):
        raise _err(col, f"ORDER BY {col.name}: a sliding window is ordered by a TIMESTAMP column")
    if field_.name in candidates:
        return field_.name
    roots = planner._roots(stream.key, field_.name)
    timed = [planner.streams[k] for k, _ in roots if planner.streams[k].time_column]
    if timed:
        via = f" (through {stream.name})" if timed[0].key != stream.key else ""
        raise _err(
            col,
            f"ORDER BY {col.name}: a sliding window is ordered by the time column of {timed[0].name}{via}",
            hint=f"its watermark is declared on {timed[0].time_column}",
        )
    for root_key, root_col in roots:  # no WATERMARK: the column becomes its time, no delay (as DESCRIPTOR)
        root = planner.streams[root_key]
        if not root.derived:
            planner.streams[root_key] = replace(root, time_column=root_col, delay_us=0)
    return field_.name


# ---------------------------------------------------------------------------------- lowering
def _unwrap(func: exp.Expr) -> tuple[exp.Expr, bool, exp.Expr | None]:
    """(function, IGNORE NULLS?, FILTER condition) of a window call's body."""
    ignore, cond = False, None
    while True:
        if isinstance(func, (exp.IgnoreNulls, exp.RespectNulls)):
            ignore = isinstance(func, exp.IgnoreNulls)
            func = func.this
        elif isinstance(func, exp.Filter):
            cond = func.expression
            func = func.this
        else:
            break
    inner = func.this if isinstance(func, exp.Func) else None
    if isinstance(inner, (exp.IgnoreNulls, exp.RespectNulls)):  # FIRST_VALUE(x IGNORE NULLS)
        ignore = isinstance(inner, exp.IgnoreNulls)
        func = func.copy()
        func.set("this", inner.this.copy())
    return func, ignore, cond


def _is_exp_avg(func: exp.Expr) -> bool:
    return isinstance(func, exp.Anonymous) and func.name.lower() == "exp_avg"


def _func_name(func: exp.Expr) -> str:
    if isinstance(func, exp.Anonymous):
        return func.name.lower()
    return _sql(func).split("(", 1)[0].strip().lower()


def _whole(node: exp.Expr | None, what: str, minimum: int) -> int:
    if node is None:
        return minimum
    if isinstance(node, exp.Literal) and node.is_int and int(node.name) >= minimum:
        return int(node.name)
    raise _err(node, f"{what} must be a whole number >= {minimum} written in the query")


def _lower_call(node: exp.Expr, j: int, low: _Lowering, windows: list[_Window]) -> _Call:
    func, ignore, cond = _unwrap(node.this)
    name = _func_name(func)
    call = _Call(node, j, "agg", ignore_nulls=ignore)
    if isinstance(func, exp.Lag):
        call.kind = "lag"
        call.arg = low.column(func.this)
        call.n = _whole(func.args.get("offset"), "LAG's offset", 0) if func.args.get("offset") else 1
        default = func.args.get("default")
        call.default = low.column(default) if default is not None else "NULL"
    elif isinstance(func, (exp.FirstValue, exp.LastValue)):
        call.kind = "first" if isinstance(func, exp.FirstValue) else "last"
        call.arg = low.column(func.this)
    elif isinstance(func, exp.NthValue):
        call.kind = "nth"
        call.arg = low.column(func.this)
        call.n = _whole(func.args.get("offset"), "NTH_VALUE's position", 1)
        call.from_last = func.args.get("from_first") is False
    elif _is_exp_avg(func):
        args = func.expressions
        if len(args) != 2:
            raise _err(node, "EXP_AVG takes a value and a half-life: EXP_AVG(x, INTERVAL '10' SECOND)")
        call.kind = "exp_avg"
        call.half_life_us = _interval_us(args[1])
        if call.half_life_us <= 0:
            raise _err(args[1], "EXP_AVG's half-life must be positive")
        call.arg = low.column(args[0], force=True)
        windows[j].needs_ids = True
    elif name in RANKING or isinstance(func, (exp.RowNumber, exp.Lead, exp.Ntile)):
        raise _err(
            node,
            f"{name.upper()} is not supported over a sliding window",
            hint="COUNT(*) OVER w counts the rows of the window; LAG looks back",
        )
    elif isinstance(func, exp.AggFunc) or name in _duckdb_aggregates():
        body = func.copy()
        _lower_args(body, low)
        if cond is not None:
            where = cond.copy()
            _lower_args(where, low)
            body = exp.Filter(this=body, expression=where)
        call.text = _sql(body)
        if isinstance(func, exp.Sum) and isinstance(func.this, exp.Expr):
            arg = _sql(func.this)
            call.sum_arg = low.args.get(arg) if func.this.find(exp.Column) is not None else None
    else:
        raise _err(node, f"{name.upper()} is not an aggregate or window function", hint="it cannot take OVER")
    if cond is not None and call.kind != "agg":
        raise _err(node, f"FILTER applies to aggregates, not to {name.upper()}")
    return call


def _lower_args(node: exp.Expr, low: _Lowering) -> None:
    """Replace ``node``'s arguments that read columns by per-row columns (in place)."""
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expr):
            node.set(key, _lower_value(value, low))
        elif isinstance(value, list):
            node.set(key, [_lower_value(v, low) if isinstance(v, exp.Expr) else v for v in value])


def _lower_value(value: exp.Expr, low: _Lowering) -> exp.Expr:
    if isinstance(value, (exp.Distinct, exp.Order, exp.Ordered, exp.Where, exp.Tuple)):
        _lower_args(value, low)
        return value
    if isinstance(value, exp.Star) or value.find(exp.Column) is None:
        return value
    return exp.column(low.column(value).strip('"'), quoted=True)


def _window_sql(windows: list[_Window], calls: list[_Call]) -> str:
    """Over ``__h``: window positions (``__k``), then the functions' results (``__w``).

    When every window is partitioned, only the kept rows of partitions with a row being emitted
    take part (a window never reaches into another partition).
    """
    stage0: list[str] = []
    for w in windows:
        j, part = w.index, (f"PARTITION BY {', '.join(_q(c) for c in w.cols)} " if w.cols else "")
        rn = f"row_number() OVER ({part}{ORDER})"
        if w.kind == "range":
            older = f'count(*) OVER ({part}ORDER BY "__t" RANGE BETWEEN UNBOUNDED PRECEDING AND {w.size + 1} PRECEDING)'
            stage0.append(f'{rn} - 1 - {older} AS "__k{j}"')
        else:
            stage0.append(f'least({w.size}, {rn} - 1) AS "__k{j}"')
        if w.needs_ids:
            group = f"dense_rank() OVER (ORDER BY {', '.join(_q(c) for c in w.cols)})" if w.cols else "1::BIGINT"
            stage0 += [f'{group} AS "__g{j}"', f'{rn} AS "__rn{j}"']
    aux: list[str] = []
    final: list[str] = []
    for m, c in enumerate(calls):
        w = windows[c.window]
        j, frame, plain = w.index, w.over(), w.over(frame=False)
        ign = " IGNORE NULLS" if c.ignore_nulls else ""
        if c.kind == "agg":
            final.append(f'{_over(c.text, frame)} AS "__w{m}"')
        elif c.kind in ("first", "last"):
            fn = "first_value" if c.kind == "first" else "last_value"
            final.append(f'{fn}({c.arg}{ign}) OVER {frame} AS "__w{m}"')
        elif c.kind == "nth" and not c.from_last:
            final.append(f'nth_value({c.arg}, {c.n}{ign}) OVER {frame} AS "__w{m}"')
        elif c.kind == "nth":
            if c.ignore_nulls:
                aux.append(f'count({c.arg}) OVER {frame} AS "__c{m}"')
                pos = f'("__c{m}" + 1 - {c.n})'
            else:
                pos = f'("__k{j}" + 2 - {c.n})'
            nth = f"nth_value({c.arg}, greatest({pos}, 1){ign}) OVER {frame}"
            final.append(f'CASE WHEN {pos} >= 1 THEN {nth} END AS "__w{m}"')
        elif c.kind == "lag":
            if c.n == 0:
                final.append(f'{c.arg} AS "__w{m}"')
                continue
            if c.ignore_nulls:
                part = f"PARTITION BY {', '.join(_q(x) for x in w.cols)} " if w.cols else ""
                before = f'({part}{ORDER} ROWS BETWEEN "__k{j}" PRECEDING AND 1 PRECEDING)'
                aux.append(f'count({c.arg}) OVER {before} AS "__c{m}"')
                inside = f'"__c{m}"'
            else:
                inside = f'"__k{j}"'
            lag = f"lag({c.arg}, {c.n}{ign}) OVER {plain}"
            final.append(f'CASE WHEN {c.n} <= {inside} THEN {lag} ELSE {c.default} END AS "__w{m}"')
    s1 = f"SELECT *{''.join(', ' + a for a in aux)} FROM __s0"
    s2 = f"SELECT *{''.join(', ' + f for f in final)} FROM __s1"
    source = "__h"
    if all(w.cols for w in windows):  # only the partitions that have a row being emitted
        touched = [
            "EXISTS (SELECT 1 FROM __h AS __n WHERE __n.__new AND "
            + " AND ".join(f"__n.{_q(c)} IS NOT DISTINCT FROM __h.{_q(c)}" for c in w.cols)
            + ")"
            for w in windows
        ]
        source = f"(SELECT * FROM __h WHERE __new OR {' OR '.join(touched)}) AS __h"
    return f"WITH __s0 AS (SELECT *, {', '.join(stage0)} FROM {source}), __s1 AS ({s1}) {s2}"


def _is_star(e: exp.Expr) -> bool:
    return isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))


def _keep_sql(windows: list[_Window]) -> str:
    """Over ``__h`` (the kept rows): the ``__arr`` of the rows that ROWS windows still need."""
    keep = []
    for w in windows:
        if w.kind == "rows" and w.size:
            part = f"PARTITION BY {', '.join(_q(c) for c in w.cols)} " if w.cols else ""
            keep.append(f'row_number() OVER ({part}ORDER BY "__t" DESC, "__arr" DESC) <= {w.size}')
    if not keep:
        return ""
    return f'SELECT "__arr" FROM (SELECT "__arr", {" OR ".join(keep)} AS __keep FROM __h) WHERE __keep'


def _over(text: str, frame: str) -> str:
    """``text OVER frame``, keeping DuckDB's ``CAST(agg(...) OVER (...) AS BIGINT)`` shape."""
    if text.startswith("CAST(") and text.endswith(" AS BIGINT)"):
        return f"CAST({text[5:-11]} OVER {frame} AS BIGINT)"
    return f"{text} OVER {frame}"


def _project_sql(select: exp.Select, calls: list[exp.Expr], alias: str) -> str:
    """The SELECT list over ``__r``: window calls read ``__w<i>``, everything else the row itself."""
    body = select.copy()
    body.set("where", None)
    body.set("windows", None)
    body.set("from_", exp.From(this=exp.to_table("__r").as_(alias, quoted=True)))
    items = []
    for item in body.expressions:
        if isinstance(item, exp.Window) and item.args.get("over"):
            item = exp.alias_(item, item.sql(dialect="duckdb"), quoted=True)
        items.append(item)
    body.set("expressions", items)
    copies = _calls(body)
    for m, node in enumerate(copies):
        node.replace(exp.column(f"__w{m}", quoted=True))
    results = [exp.column(f"__w{m}", quoted=True) for m in range(len(calls))]
    if _has_star(body):  # * brings __seq/__wm itself; the results appear where the query names them
        body.set(
            "expressions",
            [exp.Star(except_=results) if _is_star(e) else e for e in body.expressions],
        )
        return _sql(body)
    return _append_hidden(body)


__all__ = ["plan_over", "uses_over"]
