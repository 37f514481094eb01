"""Lowering of a grouped SELECT into the three SQL statements a window operator runs.

Two modes:

- ``partial``: every aggregate is decomposable (COUNT, SUM, MIN, MAX, AVG, FIRST_VALUE,
  LAST_VALUE, with or without FILTER). ``pre_sql`` reduces a batch to one state row per
  (window, key) holding partial aggregates ``__p0, __p1, ...``; ``final_sql`` merges the state
  rows of closing windows and evaluates the user's SELECT and HAVING over the merged values.
  State size is open windows x keys, whatever the row count.
- ``buffer``: anything else (COUNT(DISTINCT), STDDEV, MEDIAN, any DuckDB aggregate). The rows of
  open windows are kept and the user's aggregates run over them when a window closes.

Both final statements also return ``__ws``, ``__we`` and ``__k0..`` (the group's identity), which
the operator uses to diff and evict, then drops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from sqlglot import exp, parse_one

from engine.runtime.duck import run
from engine.types import SEQ_COL, WINDOW_END, WINDOW_START, WINDOW_TIME

WINDOW_EXPRS = {
    WINDOW_START: "make_timestamp(__ws)",
    WINDOW_END: "make_timestamp(__we)",
    WINDOW_TIME: "make_timestamp(__we - 1000)",
}
ErrFactory = Callable[..., Exception]


@dataclass(frozen=True)
class Lowered:
    """The SQL of one grouped query: see the module docstring."""

    mode: str
    pre_sql: str
    final_sql: str
    compact_sql: str | None


def _sql(node: exp.Expr) -> str:
    return node.sql(dialect="duckdb", identify=True)


def _norm(node: exp.Expr) -> str:
    """Comparable text of an expression: ``t.k`` and ``k`` are the same column (one input)."""

    def bare(n: exp.Expr) -> exp.Expr:
        return exp.column(n.name, quoted=True) if isinstance(n, exp.Column) and n.table else n

    if any(isinstance(c, exp.Column) and c.table for c in node.find_all(exp.Column)):
        node = node.copy().transform(bare, copy=False)
    return node.sql(dialect="duckdb").lower().replace('"', "")


def _unwrap(unit: exp.Expr) -> tuple[exp.Expr, str]:
    """(aggregate call, ' FILTER (WHERE ...)' or '')."""
    if isinstance(unit, exp.Filter):
        return unit.this, f" FILTER ({_sql(unit.expression)})"
    return unit, ""


def _decomposable(agg: exp.Expr) -> bool:
    if isinstance(agg, exp.Count):
        return not isinstance(agg.this, exp.Distinct)
    return type(agg) in (exp.Sum, exp.Min, exp.Max, exp.Avg, exp.FirstValue, exp.LastValue)


def lower(
    select: exp.Select,
    keys: list[exp.Expr],
    units: list[exp.Expr],
    alias: str,
    x_schema: pa.Schema,
    con: duckdb.DuckDBPyConnection,
    err: ErrFactory,
    force_buffer: bool = False,
    extra_group: tuple[str, ...] = (),
) -> Lowered:
    """Lower a grouped ``select`` over ``__x`` (the rows with window columns) to SQL."""
    seen: dict[str, exp.Expr] = {}
    for unit in units:
        seen.setdefault(_norm(unit), unit)
    units = list(seen.values())
    for e in select.expressions:
        if isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star)):
            raise err(e, "SELECT * cannot be used with GROUP BY", hint="name the keys and aggregates")
    partial = not force_buffer and all(_decomposable(_unwrap(u)[0]) for u in units)
    if partial:
        return _lower_partial(select, keys, units, alias, x_schema, con, err)
    return _lower_buffer(select, keys, alias, err, extra_group)


def _arg_types(
    units: list[exp.Expr], alias: str, x_schema: pa.Schema, con: duckdb.DuckDBPyConnection
) -> list[pa.DataType | None]:
    args = []
    for unit in units:
        agg, _ = _unwrap(unit)
        arg = agg.this if not isinstance(agg.this, exp.Star) else None
        args.append(arg)
    present = [a for a in args if a is not None]
    if not present:
        return [None for _ in args]
    items = ", ".join(f"{_sql(a)} AS __a{i}" for i, a in enumerate(present))
    schema = run(con, f'SELECT {items} FROM __x AS "{alias}"', __x=x_schema.empty_table()).schema
    types = iter(schema.types)
    return [next(types) if a is not None else None for a in args]


def _lower_partial(
    select: exp.Select,
    keys: list[exp.Expr],
    units: list[exp.Expr],
    alias: str,
    x_schema: pa.Schema,
    con: duckdb.DuckDBPyConnection,
    err: ErrFactory,
) -> Lowered:
    types = _arg_types(units, alias, x_schema, con)
    partials: list[str] = []  # per batch, over __x
    merges: list[str] = []  # state rows -> fewer state rows
    finals: dict[str, str] = {}  # normalized unit -> expression over state rows
    seq = f'"{SEQ_COL}"'
    for unit, typ in zip(units, types):
        agg, filt = _unwrap(unit)
        i = len(partials)
        p = f"__p{i}"
        arg = _sql(agg.this) if not isinstance(agg.this, exp.Star) else "*"
        if isinstance(agg, exp.Count):
            partials.append(f"count({arg}){filt} AS {p}")
            merges.append(f"sum({p}) AS {p}")
            finals[_norm(unit)] = f"CAST(COALESCE(sum({p}), 0) AS BIGINT)"
        elif isinstance(agg, exp.Sum):
            partials.append(f"sum({arg}){filt} AS {p}")
            merges.append(f"sum({p}) AS {p}")
            integer = typ is not None and pa.types.is_integer(typ)
            finals[_norm(unit)] = f"CAST(sum({p}) AS BIGINT)" if integer else f"sum({p})"
        elif isinstance(agg, (exp.Min, exp.Max)):
            fn = "min" if isinstance(agg, exp.Min) else "max"
            partials.append(f"{fn}({arg}){filt} AS {p}")
            merges.append(f"{fn}({p}) AS {p}")
            finals[_norm(unit)] = f"{fn}({p})"
        elif isinstance(agg, exp.Avg):
            q = f"__p{i + 1}"
            partials += [f"sum({arg}){filt} AS {p}", f"count({arg}){filt} AS {q}"]
            merges += [f"sum({p}) AS {p}", f"sum({q}) AS {q}"]
            finals[_norm(unit)] = f"CAST(sum({p}) AS DOUBLE) / NULLIF(sum({q}), 0)"
        else:  # FIRST_VALUE / LAST_VALUE by arrival order, ignoring NULLs
            q = f"__p{i + 1}"
            pick, edge = ("arg_min", "min") if isinstance(agg, exp.FirstValue) else ("arg_max", "max")
            partials += [
                f"{pick}({arg}, {seq}){filt} AS {p}",
                f"{edge}(CASE WHEN ({arg}) IS NOT NULL THEN {seq} END){filt} AS {q}",
            ]
            merges += [f"{pick}({p}, {q}) AS {p}", f"{edge}({q}) AS {q}"]
            finals[_norm(unit)] = f"{pick}({p}, {q})"
    key_sql = [f"{_sql(k)} AS __k{i}" for i, k in enumerate(keys)]
    key_cols = [f"__k{i}" for i in range(len(keys))]
    group_cols = ", ".join(["__ws", "__we", *key_cols])
    pre = f'SELECT {", ".join(["__ws", "__we", *key_sql, *partials])} FROM __x AS "{alias}" GROUP BY ALL'
    compact = f"SELECT {', '.join(['__ws', '__we', *key_cols, *merges])} FROM __state GROUP BY ALL"
    items = [_rewrite_item(e, finals, keys, err) for e in select.expressions]
    aliases = {  # HAVING and ORDER BY may name a SELECT item by its alias
        e.alias.lower(): _rewrite(e.this, finals, keys, err) for e in select.expressions if isinstance(e, exp.Alias)
    }
    final = f"SELECT {', '.join([*items, group_cols])} FROM __state GROUP BY {group_cols}"
    having = select.args.get("having")
    if having is not None:
        final += f" HAVING {_rewrite(having.this, finals, keys, err, aliases)}"
    order = select.args.get("order")
    if order is not None:
        final += " ORDER BY " + ", ".join(_rewrite(o, finals, keys, err, aliases) for o in order.expressions)
    return Lowered("partial", pre, final, compact)


def _output_name(item: exp.Expr) -> str:
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(item, exp.Column):
        return item.name
    return item.sql(dialect="duckdb")


def _rewrite_item(item: exp.Expr, finals: dict[str, str], keys: list[exp.Expr], err: ErrFactory) -> str:
    name = _output_name(item)
    body = item.this if isinstance(item, exp.Alias) else item
    return f'{_rewrite(body, finals, keys, err)} AS "{name.replace(chr(34), chr(34) * 2)}"'


def _rewrite(
    node: exp.Expr,
    finals: dict[str, str],
    keys: list[exp.Expr],
    err: ErrFactory,
    aliases: dict[str, str] | None = None,
) -> str:
    key_norms = {_norm(k): f"__k{i}" for i, k in enumerate(keys)}

    def swap(n: exp.Expr) -> exp.Expr:
        norm = _norm(n)
        if aliases and isinstance(n, exp.Column) and not n.table and n.name.lower() in aliases:
            if norm not in finals and norm not in key_norms:
                return exp.paren(parse_one(aliases[n.name.lower()], read="duckdb"), copy=False)
        if norm in finals:
            return parse_one(finals[norm], read="duckdb")
        if norm in key_norms:
            return exp.column(key_norms[norm])
        if isinstance(n, exp.Column) and n.name.lower() in WINDOW_EXPRS and not n.table:
            return parse_one(WINDOW_EXPRS[n.name.lower()], read="duckdb")
        if isinstance(n, exp.Column) and n.table and n.name.lower() in WINDOW_EXPRS:
            return parse_one(WINDOW_EXPRS[n.name.lower()], read="duckdb")
        return n

    out = node.copy().transform(swap, copy=False)
    for column in out.find_all(exp.Column):
        if not column.name.startswith("__"):
            original = next((c for c in node.find_all(exp.Column) if c.name == column.name), node)
            raise err(original, f'column "{column.name}" must be in GROUP BY or inside an aggregate')
    return _sql(out)


def _lower_buffer(
    select: exp.Select, keys: list[exp.Expr], alias: str, err: ErrFactory, extra_group: tuple[str, ...] = ()
) -> Lowered:
    def first_last(n: exp.Expr) -> exp.Expr:
        if isinstance(n, (exp.FirstValue, exp.LastValue)):
            pick = "arg_min" if isinstance(n, exp.FirstValue) else "arg_max"
            return exp.Anonymous(this=pick, expressions=[n.this.copy(), exp.column(SEQ_COL, quoted=True)])
        return n

    items = []
    for e in select.expressions:
        body = (e.this if isinstance(e, exp.Alias) else e).copy().transform(first_last, copy=False)
        name = _output_name(e).replace('"', '""')
        items.append(f'{_sql(body)} AS "{name}"')
    key_items = [f"{_sql(k)} AS __k{i}" for i, k in enumerate(keys)]
    window = [f'"{c}"' for c in (WINDOW_START, WINDOW_END, WINDOW_TIME)]
    group = ", ".join(["__ws", "__we", *window, *extra_group, *(_sql(k) for k in keys)])
    ids = ["__ws", "__we", *extra_group, *key_items]
    final = f'SELECT {", ".join([*items, *ids])} FROM __state AS "{alias}" GROUP BY {group}'
    having = select.args.get("having")
    if having is not None:
        final += f" HAVING {_sql(having.this.copy().transform(first_last, copy=False))}"
    order = select.args.get("order")
    if order is not None:
        final += " ORDER BY " + ", ".join(_sql(o) for o in order.expressions)
    return Lowered("buffer", "SELECT * FROM __x", final, None)


@dataclass(frozen=True)
class ArrowPlan:
    """The same partial aggregation done with Arrow's hash aggregation, for the common case.

    Eligible when the window is a tumble without WHERE, every key is a plain input column and
    every aggregate is COUNT, SUM (of floats, decimals or integers up to 32 bits), MIN, MAX or
    AVG of a plain column, without FILTER. DuckDB's fixed cost per query (about 1 ms) dominates
    small micro-batches; Arrow's ``group_by`` has almost none. State rows have the same columns
    as in DuckDB's partial mode, so ``final_sql`` still applies to them.

    ``partials``: (state column, Arrow function, input column or None for COUNT(*)).
    ``merges``: (state column, Arrow function that merges it).
    ``final``: when every SELECT item is a key, a window column or a bare aggregate (and there
    is no HAVING or ORDER BY): (output name, operation, state columns) to compute results
    without DuckDB; otherwise None.
    """

    keys: tuple[str, ...]
    partials: tuple[tuple[str, str, str | None], ...]
    merges: tuple[tuple[str, str], ...]
    final: tuple[tuple[str, str, tuple[str, ...]], ...] | None


def arrow_plan(
    select: exp.Select, keys: list[exp.Expr], units: list[exp.Expr], x_schema: pa.Schema
) -> ArrowPlan | None:
    """An ``ArrowPlan`` for this grouped query, or None when it needs DuckDB."""
    if select.args.get("where") is not None:
        return None
    lookup = {f.name.lower(): f for f in x_schema}
    key_cols: list[str] = []
    for key in keys:
        if not isinstance(key, exp.Column) or key.name.lower() not in lookup:
            return None
        key_cols.append(lookup[key.name.lower()].name)
    seen: dict[str, exp.Expr] = {}
    for unit in units:
        seen.setdefault(_norm(unit), unit)
    partials: list[tuple[str, str, str | None]] = []
    merges: list[tuple[str, str]] = []
    by_unit: dict[str, tuple[str, tuple[str, ...]]] = {}
    for norm, unit in seen.items():
        if isinstance(unit, exp.Filter):
            return None
        i = len(partials)
        p, q = f"__p{i}", f"__p{i + 1}"
        arg = unit.this
        if isinstance(unit, exp.Count) and isinstance(arg, exp.Star):
            partials.append((p, "count_all", None))
            merges.append((p, "sum"))
            by_unit[norm] = ("count", (p,))
            continue
        if not isinstance(arg, exp.Column) or arg.name.lower() not in lookup:
            return None
        col = lookup[arg.name.lower()]
        numeric = (
            pa.types.is_floating(col.type)
            or pa.types.is_decimal(col.type)
            or (pa.types.is_integer(col.type) and col.type.bit_width <= 32)
        )
        if isinstance(unit, exp.Count) and not isinstance(arg, exp.Distinct):
            partials.append((p, "count", col.name))
            merges.append((p, "sum"))
            by_unit[norm] = ("count", (p,))
        elif isinstance(unit, exp.Sum) and numeric:
            partials.append((p, "sum", col.name))
            merges.append((p, "sum"))
            by_unit[norm] = ("sum_int" if pa.types.is_integer(col.type) else "sum", (p,))
        elif isinstance(unit, (exp.Min, exp.Max)) and (
            numeric or pa.types.is_integer(col.type) or pa.types.is_timestamp(col.type)
        ):
            fn = "min" if isinstance(unit, exp.Min) else "max"
            partials.append((p, fn, col.name))
            merges.append((p, fn))
            by_unit[norm] = (fn, (p,))
        elif isinstance(unit, exp.Avg) and numeric and not pa.types.is_decimal(col.type):
            partials += [(p, "sum", col.name), (q, "count", col.name)]
            merges += [(p, "sum"), (q, "sum")]
            by_unit[norm] = ("avg", (p, q))
        else:
            return None
    final: list[tuple[str, str, tuple[str, ...]]] | None = []
    if select.args.get("having") is not None or select.args.get("order") is not None:
        final = None
    key_norms = {_norm(k): f"__k{i}" for i, k in enumerate(keys)}
    for item in select.expressions if final is not None else []:
        body = item.this if isinstance(item, exp.Alias) else item
        name = _output_name(item)
        norm = _norm(body)
        if norm in by_unit:
            final.append((name, *by_unit[norm]))  # type: ignore[union-attr]
        elif norm in key_norms:
            final.append((name, "key", (key_norms[norm],)))  # type: ignore[union-attr]
        elif isinstance(body, exp.Column) and body.name.lower() in WINDOW_EXPRS:
            final.append((name, body.name.lower(), ()))  # type: ignore[union-attr]
        else:
            final = None
            break
    return ArrowPlan(tuple(key_cols), tuple(partials), tuple(merges), tuple(final) if final is not None else None)
