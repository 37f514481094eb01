"""KDA's table functions over a stream: ``FROM TABLE(F(CURSOR(<query>), args...))``.

The CURSOR's query is planned as a stream of its own; the function becomes the steps that read
it, and the surrounding SELECT reads their output like any stream (``WHERE ANOMALY_SCORE > 2``).

- ``RANDOM_CUT_FOREST(CURSOR(q) [, numberOfTrees, subSampleSize, timeDecay, shingleSize])``:
  q's columns (ROWTIME too) and ``ANOMALY_SCORE DOUBLE``, from a streaming Random Cut Forest over
  q's numeric columns (``engine.operators.rcf``); ``RANDOM_CUT_FOREST_WITH_EXPLANATION(CURSOR(q),
  trees, sample, decay, shingle, withDirectionality)`` adds ``ANOMALY_EXPLANATION`` (JSON).
- ``COUNT_DISTINCT_ITEMS_TUMBLING(CURSOR(q), 'col', windowSeconds)``: per tumbling window of the
  event time (ROWTIME in KDA programs), one row ``NUMBER_OF_DISTINCT_ITEMS BIGINT``.
- ``TOP_K_ITEMS_TUMBLING(CURSOR(q), 'col', k, windowSeconds)``: per window, one row per item among
  the k most frequent: ``<col>``, ``MOST_FREQUENT_VALUES BIGINT`` (its count), in descending count
  (ties: ascending item).

Both tumbling functions are a ``TUMBLE`` aggregation (plus a ranking step for TOP_K); their rows
come when the window closes, with ROWTIME = the window's end in a KDA program and
``window_start``/``window_end`` columns otherwise. Counts are exact (KDA's are approximate above
10,000 distinct items); NULL items are not counted.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import pyarrow as pa
import sqlglot
from sqlglot import exp

from engine.operators.rcf import EXPLANATION_COL, SCORE_COL, numeric_type
from engine.plan.logical import RcfSpec, StatelessSpec, StreamDef
from engine.sql import kda
from engine.sql.dialect import Cursor, Duckstream
from engine.types import WINDOW_END, WINDOW_START

if TYPE_CHECKING:
    from engine.plan.planner import _Planner, _Scope

RCF = "RANDOM_CUT_FOREST"
RCF_EXPLAINED = "RANDOM_CUT_FOREST_WITH_EXPLANATION"
TOP_K = "TOP_K_ITEMS_TUMBLING"
COUNT_DISTINCT = "COUNT_DISTINCT_ITEMS_TUMBLING"
MOST_FREQUENT = "MOST_FREQUENT_VALUES"
DISTINCT_ITEMS = "NUMBER_OF_DISTINCT_ITEMS"
MAX_NUMERIC_COLUMNS = 30
MAX_FOREST_BYTES = 2 << 30  # the trees' boxes: trees x 2 sample x dims x 16 bytes
_RCF_ARGS = (  # name, default, low, high
    ("numberOfTrees", 100, 1, 1000),
    ("subSampleSize", 256, 10, 1000),
    ("timeDecay", 100_000, 1, 2**62),
    ("shingleSize", 1, 1, 30),
)


def plan_table_function(
    planner: _Planner, source: exp.TableFromRows, name: str, scope: _Scope
) -> tuple[StreamDef, str]:
    """Plan ``TABLE(F(CURSOR(q), ...))``: returns the stream its rows are in and the FROM alias."""
    from engine.plan.planner import _err

    call = source.this
    fname = call.name.upper() if isinstance(call, exp.Anonymous) else type(call).__name__.upper()
    alias = source.alias or fname
    planners = {RCF: _random_cut_forest, RCF_EXPLAINED: _random_cut_forest, TOP_K: _tumbling, COUNT_DISTINCT: _tumbling}
    if fname not in planners:
        raise _err(
            source,
            f"unsupported table function {fname}",
            hint="KDA's RANDOM_CUT_FOREST, TOP_K_ITEMS_TUMBLING, COUNT_DISTINCT_ITEMS_TUMBLING; or a window",
        )
    args = list(call.expressions)
    if not args or not isinstance(args[0], Cursor):
        raise _err(args[0] if args else call, f"{fname}: the first argument must be CURSOR(SELECT STREAM ...)")
    stream = planners[fname](planner, source, fname, args, name, scope)
    # the query now reads a stream: later checks (unknown functions, columns) see no call here
    table = exp.Table(
        this=exp.to_identifier(stream.name, quoted=True), alias=exp.TableAlias(this=exp.to_identifier(alias))
    )
    table.meta.update(source.meta)
    source.replace(table)
    return stream, alias


def _integer(node: exp.Expr, fname: str, what: str, low: int, high: int) -> int:
    from engine.plan.planner import _err

    inner, sign = node, 1
    while isinstance(inner, (exp.Neg, exp.Paren)):
        sign = -sign if isinstance(inner, exp.Neg) else sign
        inner = inner.this
    if not (isinstance(inner, exp.Literal) and not inner.is_string and inner.is_int):
        raise _err(node, f"{fname}: {what} must be a whole number, not {node.sql()}")
    value = sign * int(inner.name)
    if not low <= value <= high:
        bound = f"at least {low}" if high >= 2**62 else f"from {low} to {high}"
        raise _err(node, f"{fname}: {what} must be {bound}, not {value}")
    return value


def _cursor_stream(planner: _Planner, cursor: exp.Expr, name: str, scope: _Scope) -> StreamDef:
    key = planner._query_into(cursor.this, f"{name}/cursor", True, cursor, scope)
    return planner.streams[key]


def _visible(stream: StreamDef) -> list[pa.Field]:
    return [f for f in stream.schema if not f.name.startswith("__")]


def _derived(planner: _Planner, out: str, schema: pa.Schema, source: exp.Expr, inputs: list[StreamDef]) -> str:
    """Register ``out`` as a derived stream whose columns come from ``inputs``' same-named ones."""
    key = out.lower()
    planner.streams[key] = StreamDef(out, key, schema, where=planner._where(source), declared=False, derived=True)
    for stream in inputs:
        names = {f.name.lower() for f in stream.schema}
        planner.lineage.setdefault(key, []).append(
            {f.name.lower(): (stream.key, f.name) for f in schema if f.name.lower() in names}
        )
    return key


# ---------------------------------------------------------------------------- RANDOM_CUT_FOREST


def _random_cut_forest(
    planner: _Planner, source: exp.TableFromRows, fname: str, args: list[exp.Expr], name: str, scope: _Scope
) -> StreamDef:
    from engine.plan.planner import _err

    explained = fname == RCF_EXPLAINED
    most = len(_RCF_ARGS) + (2 if explained else 1)
    if len(args) > most:
        raise _err(args[most], f"{fname} takes at most {most} arguments, not {len(args)}")
    values = [default for _, default, _, _ in _RCF_ARGS]
    for i, (what, _, low, high) in enumerate(_RCF_ARGS):
        if i + 1 < len(args):
            values[i] = _integer(args[i + 1], fname, what, low, high)
    trees, sample, decay, shingle = values
    if sample >= decay and len(args) > 2:
        raise _err(args[3] if len(args) > 3 else args[2], f"{fname}: subSampleSize ({sample}) must be below timeDecay")
    directional = False
    if explained and len(args) > len(_RCF_ARGS) + 1:
        flag = args[len(_RCF_ARGS) + 1]
        if not isinstance(flag, exp.Boolean):
            raise _err(flag, f"{fname}: withDirectionality must be TRUE or FALSE, not {flag.sql()}")
        directional = bool(flag.this)
    stream = _cursor_stream(planner, args[0], name, scope)
    fields = _visible(stream)
    numeric = [f.name for f in fields if numeric_type(f.type)]
    if not numeric:
        raise _err(
            args[0],
            f"{fname}: the CURSOR's query has no numeric column to score",
            hint="DOUBLE, REAL, FLOAT, BIGINT, INTEGER, SMALLINT or TINYINT (not DECIMAL): cast one",
        )
    if len(numeric) > MAX_NUMERIC_COLUMNS:
        raise _err(
            args[0],
            f"{fname}: the CURSOR's query has {len(numeric)} numeric columns, more than {MAX_NUMERIC_COLUMNS}",
            hint="select the columns to score",
        )
    added = [SCORE_COL, *([EXPLANATION_COL] if explained else [])]
    clash = next((f.name for f in fields if f.name.upper() in added), None)
    if clash is not None:
        raise _err(args[0], f"{fname}: the CURSOR's query already has a column named {clash}", hint="rename it")
    if stream.key in planner.changelog:
        raise _err(args[0], f"{fname} cannot read a changelog (EMIT CHANGES or allowed-lateness corrections)")
    forest_bytes = trees * 2 * sample * len(numeric) * shingle * 16
    if forest_bytes > MAX_FOREST_BYTES:
        raise _err(
            source,
            f"{fname}: this forest would need {forest_bytes >> 20} MiB "
            f"({trees} trees x {sample} points x {len(numeric) * shingle} values)",
            hint="use fewer trees, a smaller sample, a smaller shingle or fewer numeric columns",
        )
    step = planner._step_id(f"{name}/{fname.lower()}")
    seed = zlib.crc32(f"{step}|{source.sql(dialect=Duckstream)}".encode())
    out_schema = pa.schema(
        [*fields, pa.field(SCORE_COL, pa.float64()), *([pa.field(EXPLANATION_COL, pa.string())] if explained else [])]
    )
    out = _derived(planner, f"{name}/{fname.lower()}", out_schema, source, [stream])
    spec = RcfSpec(
        step,
        stream.key,
        out,
        columns=tuple(numeric),
        trees=trees,
        sample_size=sample,
        time_decay=decay,
        shingle_size=shingle,
        seed=seed,
        explanation=explained,
        directionality=directional,
    )
    planner._add(spec, out)
    return planner.streams[out]


# ---------------------------------------------------------------------------- tumbling items


def _tumbling(
    planner: _Planner, source: exp.TableFromRows, fname: str, args: list[exp.Expr], name: str, scope: _Scope
) -> StreamDef:
    from engine.plan.planner import _err, _q

    top_k = fname == TOP_K
    want = 4 if top_k else 3
    if len(args) != want:
        shape = "CURSOR(...), 'column', k, windowSeconds" if top_k else "CURSOR(...), 'column', windowSeconds"
        raise _err(source.this, f"{fname} takes {want} arguments ({shape}), not {len(args)}")
    col_node = args[1]
    if not (isinstance(col_node, exp.Literal) and col_node.is_string):
        raise _err(col_node, f"{fname}: the column name must be a quoted literal such as 'TICKER_SYMBOL'")
    k = _integer(args[2], fname, "k", 1, 100_000) if top_k else 0
    seconds = _integer(args[-1], fname, "the window size (seconds)", 1, 3600)
    stream = _cursor_stream(planner, args[0], name, scope)
    fields = _visible(stream)
    wanted = col_node.name
    column = next((f.name for f in fields if f.name == wanted), None)
    if column is None:
        folded = [f.name for f in fields if f.name.lower() == wanted.lower()]
        column = folded[0] if len(folded) == 1 else None
    if column is None:
        have = ", ".join(f.name for f in fields)
        raise _err(col_node, f"{fname}: the CURSOR's query has no column {wanted!r}", hint=f"it has {have}")
    time_col = _time_column(planner, stream)
    if time_col is None:
        raise _err(
            args[0],
            f"{fname}: the CURSOR's query has no event-time column",
            hint="select the time column of a stream with a WATERMARK (ROWTIME in a KDA program)",
        )
    table = _q(stream.name)
    tumble = f"TABLE(TUMBLE(TABLE {table}, DESCRIPTOR({_q(time_col)}), INTERVAL '{seconds}' SECOND))"
    item = _q(column)
    end = kda.ROWTIME if planner.kda else WINDOW_END
    window = f"window_end AS {_q(kda.ROWTIME)}" if planner.kda else f"{WINDOW_START}, {WINDOW_END}"
    measure = f"COUNT(*) AS {_q(MOST_FREQUENT)}" if top_k else f"COUNT(DISTINCT {item}) AS {_q(DISTINCT_ITEMS)}"
    keys = f", {item}" if top_k else ""
    text = (
        f"SELECT {item + ', ' if top_k else ''}{measure}, {window} FROM {tumble} AS {_q(fname.lower())} "
        f"WHERE {item} IS NOT NULL GROUP BY window_start, window_end{keys}"
    )
    query = sqlglot.parse_one(text, read=Duckstream)
    for node in query.walk():  # errors in the generated query point at the call
        node.meta.clear()
        node.meta.update({k: v for k, v in source.meta.items() if k in ("line", "col", "start", "end")})
    counts_key = planner._query_into(query, f"{name}/{fname.lower()}", True, source, scope)
    if counts_key in planner.changelog:
        raise _err(source, f"{fname} over a stream with allowed lateness is not supported")
    counts = planner.streams[counts_key]
    if not top_k:
        return counts
    rank = '"__rank"'
    sql = (
        f"SELECT * EXCLUDE ({rank}) FROM (SELECT *, row_number() OVER (PARTITION BY {_q(end)} "
        f"ORDER BY {_q(MOST_FREQUENT)} DESC, {item} ASC) AS {rank} FROM __input) "
        f"WHERE {rank} <= {k} ORDER BY {_q(end)}, {rank}"
    )
    schema = planner._dry(sql, {"__input": planner._input_schema(counts)}, source)
    out = _derived(planner, f"{name}/top_k", pa.schema(_visible_fields(schema)), source, [counts])
    planner._add(StatelessSpec(planner._step_id(f"{name}/top_k"), counts_key, out, sql=sql), out)
    return planner.streams[out]


def _visible_fields(schema: pa.Schema) -> list[pa.Field]:
    return [f for f in schema if not f.name.startswith("__")]


def _time_column(planner: _Planner, stream: StreamDef) -> str | None:
    """The CURSOR stream's event-time column: ROWTIME in a KDA program, else a TIMESTAMP column
    that is its sources' time attribute (one with a WATERMARK)."""
    fields = _visible(stream)
    if planner.kda:
        return next((f.name for f in fields if f.name.upper() == kda.ROWTIME), None)
    for f in fields:
        if not pa.types.is_timestamp(f.type):
            continue
        roots = planner._roots(stream.key, f.name)
        if roots and all(
            (planner.streams[k].time_column or "").lower() == c.lower() for k, c in roots if k in planner.streams
        ):
            return f.name
    return None
