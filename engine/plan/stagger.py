"""Planning of KDA stagger windows: ``SELECT ... FROM s [WHERE ...] WINDOWED BY STAGGER
(PARTITION BY <exprs> RANGE INTERVAL ...) [HAVING ...]`` -> a ``StaggerAggSpec``.

The stagger clause takes the place of ``GROUP BY``: its ``PARTITION BY`` expressions are the
group keys (a SELECT item may be one of them, or a column or alias that is one), and every other
column must be inside an aggregate. ``window_start`` (the time of the row that opened the
window), ``window_end`` (start + range, when the window closes: KDA's output ROWTIME) and
``window_time`` (end - 1 ms) can be selected as over a window table function. The window's time
is the input stream's event time: the column its ``WATERMARK`` names, traced through views (in a
KDA program, ``ROWTIME``).

Rows that pass ``WHERE`` are buffered per window; when a window closes, ``final_sql`` runs the
user's aggregates over its rows (``FIRST_VALUE``/``LAST_VALUE`` are the first/last row in arrival
order). Windows that close in the same tick come out by close time, then key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
from sqlglot import exp

from engine.plan import aggregates
from engine.plan.logical import OperatorSpec, StaggerAggSpec, StreamDef
from engine.sql.dialect import Stagger, WindowTVF
from engine.types import WINDOW_END, WINDOW_START, WINDOW_TIME

if TYPE_CHECKING:
    from engine.plan.planner import _Planner

WINDOW_COLS = (WINDOW_START, WINDOW_END, WINDOW_TIME)


def plan_stagger(
    planner: _Planner,
    select: exp.Select,
    stream: StreamDef,
    alias: str,
    name: str,
    emit: str,
    aggs: list[exp.Expr],
    tvf: WindowTVF | None = None,
) -> tuple[OperatorSpec, pa.Schema]:
    """Plan a SELECT whose ``group`` is a ``Stagger``; returns (spec, output schema).

    ``select`` has been checked for unknown columns and unqualified by the planner; ``aggs`` are
    its aggregate calls (SELECT list and HAVING).
    """
    from engine.plan.planner import _duck_message, _err, _output_schema, _q, _sql, interval_us, is_aggregate

    stagger = select.args["group"]
    assert isinstance(stagger, Stagger)
    if tvf is not None:
        raise _err(
            tvf,
            "WINDOWED BY STAGGER cannot read a window table function",
            hint="read the stream itself: FROM s WINDOWED BY STAGGER (...)",
        )
    if select.args.get("distinct"):
        raise _err(select.args["distinct"], "SELECT DISTINCT cannot be used with WINDOWED BY STAGGER")
    range_node = stagger.args.get("range")
    range_us = interval_us(range_node, "the STAGGER range")
    if range_us <= 0:
        raise _err(range_node, "the STAGGER range must be positive")
    for item in stagger.expressions:
        for node in item.walk():
            if isinstance(node, exp.Column) and node.name.lower() in WINDOW_COLS:
                raise _err(node, f"{node.name} cannot be a stagger PARTITION BY key (it is the window's own column)")
            if is_aggregate(node):
                raise _err(node, "an aggregate cannot be a stagger PARTITION BY key")
    time_col = _time_column(planner, stream, stagger, _err)
    planner._current_cols = {f.name.lower() for f in stream.schema}
    keys = planner._group_keys(select, window_required=False)
    in_schema = planner._input_schema(stream)
    for key in keys:  # locate a key DuckDB cannot evaluate at the key itself
        planner._dry(f"SELECT {_sql(key)} FROM __input AS {_q(alias)}", {"__input": in_schema}, key)
    where_node = select.args.get("where")
    where = where_node.this if where_node is not None else None
    pk = "".join(f", {_sql(k)} AS __pk{i}" for i, k in enumerate(keys))
    filter_sql = (
        f"SELECT *, epoch_us({_q(time_col)}) AS __t{pk} FROM __input AS {_q(alias)} WHERE {_q(time_col)} IS NOT NULL"
    )
    if where is not None:
        filter_sql += f" AND ({_sql(where)})"
    f_schema = planner._dry(filter_sql, {"__input": in_schema}, where or select)
    x_schema = f_schema
    for field_name, typ in (
        ("__ws", pa.int64()),
        ("__we", pa.int64()),
        (WINDOW_START, pa.timestamp("us")),
        (WINDOW_END, pa.timestamp("us")),
        (WINDOW_TIME, pa.timestamp("us")),
        ("__sess", pa.int64()),
    ):
        x_schema = x_schema.append(pa.field(field_name, typ))
    try:
        lowered = aggregates.lower(
            select, keys, aggs, alias, x_schema, planner.con, _err, force_buffer=True, extra_group=("__sess",)
        )
    except duckdb.Error as err:
        raise _err(select, _duck_message(err)) from None
    _check_grouped(select, keys, is_aggregate, _err)
    final_sql = lowered.final_sql
    if select.args.get("order") is None:  # windows closing together: by close time, then key
        order = ", ".join(["__we", *(f"__k{i}" for i in range(len(keys))), "__sess"])
        final_sql = f"SELECT * FROM ({final_sql}) ORDER BY {order}"
    out_schema = planner._dry(final_sql, {"__state": x_schema}, select)
    spec = StaggerAggSpec(
        planner._step_id(f"{name}/stagger"),
        stream.key,
        name.lower(),
        range_us=range_us,
        time_column=time_col,
        partition_sql=[_sql(k) for k in keys],
        filter_sql=filter_sql,
        final_sql=final_sql,
        emit=emit,
        allowed_lateness_us=planner._lateness(stream),
        n_keys=len(keys),
        source_stream=planner._origin(stream.key),
    )
    if emit == "changes" or spec.allowed_lateness_us:
        planner.changelog.add(name.lower())
    return spec, _output_schema(out_schema, emit)


def _time_column(planner: _Planner, stream: StreamDef, stagger: Stagger, err: aggregates.ErrFactory) -> str:
    """The event-time column of ``stream``: its own, or the column that carries its source's."""
    if stream.time_column is not None:
        return stream.time_column
    for col in (f.name for f in stream.schema if pa.types.is_timestamp(f.type)):
        roots = planner._roots(stream.key, col)
        if roots and all(_is_time_of(planner.streams[k], c) for k, c in roots):
            return col
    raise err(
        stagger,
        f"WINDOWED BY STAGGER needs the event time of {stream.name}, which has none",
        hint="declare it in CREATE TABLE with WATERMARK FOR ts AS ts",
    )


def _is_time_of(stream: StreamDef, col: str) -> bool:
    return stream.time_column is not None and stream.time_column.lower() == col.lower()


def _norm(node: exp.Expr) -> str:
    return node.sql(dialect="duckdb").lower().replace('"', "")


def _check_grouped(
    select: exp.Select, keys: list[exp.Expr], is_aggregate: Callable[[exp.Expr], bool], err: aggregates.ErrFactory
) -> None:
    """Every column of the SELECT list and HAVING outside an aggregate is a partition key."""
    key_norms = {_norm(k) for k in keys}
    aliases = {e.alias.lower() for e in select.expressions if isinstance(e, exp.Alias)}

    def visit(node: exp.Expr, in_having: bool) -> None:
        if is_aggregate(node) or isinstance(node, (exp.Subquery, exp.Select)) or _norm(node) in key_norms:
            return
        if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
            name = node.name.lower()
            if name in WINDOW_COLS or (in_having and name in aliases):
                return
            raise err(
                node,
                f'column "{node.name}" must be a stagger PARTITION BY key or inside an aggregate',
                hint=f"add it to PARTITION BY, or aggregate it, e.g. LAST_VALUE({node.name})",
            )
        for child in node.iter_expressions():
            visit(child, in_having)

    for item in select.expressions:
        visit(item.this if isinstance(item, exp.Alias) else item, False)
    having = select.args.get("having")
    if having is not None:
        visit(having.this, True)


__all__ = ["plan_stagger"]
