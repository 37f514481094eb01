"""The logical plan: streams, the operators between them, and where results go.

Everything here is a frozen description (``...Def``/``...Spec``); the live objects that hold
state are in ``engine.operators`` and ``engine.runtime``. A spec carries the DuckDB SQL its
operator runs, so ``EXPLAIN`` can print exactly what will execute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass(frozen=True)
class StreamDef:
    """A named stream: a declared source or sink table, a view, or an intermediate result.

    ``key`` is the lower-cased name used for lookups; ``name`` keeps the user's spelling.
    ``time_column``/``delay_us``: the event-time column and its out-of-orderness from
    ``WATERMARK FOR ts AS ts - INTERVAL ...`` (``delay_us`` may be negative for ``ts + ...``).
    """

    name: str
    key: str
    schema: pa.Schema
    time_column: str | None = None
    delay_us: int = 0
    options: dict[str, str] = field(default_factory=dict)
    where: str | None = None
    declared: bool = True
    derived: bool = False  # written by an operator (view, subquery, INSERT target)
    rowtime: bool = False  # KDA: read from a source, its ROWTIME column is stamped at ingestion

    @property
    def connector(self) -> str | None:
        """The WITH ('connector' = ...) value, if any."""
        return self.options.get("connector")


@dataclass(frozen=True)
class OperatorSpec:
    """Base of every operator description: a step id, one input stream and one output stream."""

    step_id: str
    input: str
    output: str

    @property
    def kind(self) -> str:
        """Short name of the operator kind, for EXPLAIN and metrics."""
        return type(self).__name__.removesuffix("Spec").lower()

    def sql_parts(self) -> list[tuple[str, str]]:
        """(label, DuckDB SQL) pairs that this operator runs, for EXPLAIN."""
        return []


@dataclass(frozen=True)
class StatelessSpec(OperatorSpec):
    """Filter/project row by row: ``sql`` runs over each batch registered as ``__input``.

    With ``retime_column`` (an INSERT target declared with its own WATERMARK), the output's
    watermarks are computed afresh from that column and delay, as if the rows had been written
    to a stream and read back.
    """

    sql: str = ""
    retime_column: str | None = None
    retime_delay_us: int = 0
    references: tuple[str, ...] = ()  # reference tables the SQL joins (registered as ``__ref_<key>``)

    def sql_parts(self) -> list[tuple[str, str]]:
        return [("per batch", self.sql)]


@dataclass(frozen=True)
class WindowAggSpec(OperatorSpec):
    """Grouped aggregation over tumbling, hopping, cumulating or global (unwindowed) windows.

    Rows become ``__x`` (each row once per window it belongs to, with ``__ws``/``__we`` in
    microseconds, after WHERE); ``pre_sql`` reduces ``__x`` to state rows (partial aggregates,
    or the rows themselves in ``buffer`` mode); ``final_sql`` turns the state rows of some
    windows (``__state``) into result rows; ``compact_sql`` merges state rows (partial mode).
    """

    window: str = "tumble"  # tumble | hop | cumulate | global
    size_us: int = 0
    slide_us: int = 0  # hop: slide; cumulate: step; tumble: == size
    offset_us: int = 0
    time_column: str = ""
    expand_sql: str = ""  # __input -> __x (general path)
    fast_path: bool = False  # tumble in partial mode: windows assigned in numpy, not SQL
    fast_filter_sql: str | None = None  # fast path: WHERE over the batch (None: no WHERE)
    fast_pre_sql: str = ""  # fast path: pre_sql with the WHERE folded in
    pre_sql: str = ""
    final_sql: str = ""
    compact_sql: str | None = None
    mode: str = "partial"  # partial | buffer
    arrow: Any = None  # an aggregates.ArrowPlan when Arrow can do the partial aggregation
    emit: str = "final"  # final | changes
    allowed_lateness_us: int = 0
    n_keys: int = 0
    source_stream: str = ""  # for error rows' source_offset

    def sql_parts(self) -> list[tuple[str, str]]:
        parts = [("assign windows", self.expand_sql), (f"per batch ({self.mode})", self.pre_sql)]
        if self.compact_sql:
            parts.append(("compact state", self.compact_sql))
        parts.append(("when windows close", self.final_sql))
        return parts


@dataclass(frozen=True)
class KeyedWindowSpec(OperatorSpec):
    """What session and stagger windows share: rows of open windows are buffered per partition
    key, and ``final_sql`` aggregates the rows of closed windows (``__state`` with ``__ws``/``__we``
    set per window)."""

    time_column: str = ""
    partition_sql: list[str] = field(default_factory=list)  # key expressions over __input
    filter_sql: str = ""  # __input -> rows that pass WHERE, with __t (time us) and __pk* keys
    final_sql: str = ""
    emit: str = "final"
    allowed_lateness_us: int = 0
    n_keys: int = 0
    source_stream: str = ""


@dataclass(frozen=True)
class SessionAggSpec(KeyedWindowSpec):
    """Session windows: rows of a partition key closer than ``gap_us`` share a session.

    A session is ``[first, last + gap)``; sessions that touch or overlap merge.
    """

    gap_us: int = 0

    def sql_parts(self) -> list[tuple[str, str]]:
        return [("per batch", self.filter_sql), ("when sessions close", self.final_sql)]


@dataclass(frozen=True)
class StaggerAggSpec(KeyedWindowSpec):
    """KDA stagger windows (``WINDOWED BY STAGGER (PARTITION BY ... RANGE ...)``).

    The first row of a partition key opens ``[t0, t0 + range_us)`` at its own time ``t0``; the
    window holds every later-arriving row of that key whose time is before its end, and closes
    when the watermark reaches the end.
    """

    range_us: int = 0

    def sql_parts(self) -> list[tuple[str, str]]:
        return [("per batch", self.filter_sql), ("when windows close", self.final_sql)]


@dataclass(frozen=True)
class OutputDef:
    """A stream whose rows leave the program: an INSERT target or a bare SELECT's result."""

    stream: str  # stream key
    name: str  # what --sink NAME= matches
    where: str | None = None
    optional: bool = False  # written only when a sink is named for it (KDA: a stream other pumps read)


@dataclass(frozen=True)
class ReferenceDef:
    """A table joined whole by row-by-row queries (``--reference NAME=URI``): loaded at start,
    reloadable, never windowed. The SQL sees it as ``__ref_<key>``."""

    name: str
    key: str
    schema: pa.Schema

    @property
    def table_name(self) -> str:
        return f"__ref_{self.key}"


@dataclass
class Program:
    """A planned program: streams, operators in run order, sources to read, outputs to write."""

    text: str
    path: str | None
    streams: dict[str, StreamDef]
    operators: list[OperatorSpec]
    sources: list[str]  # stream keys read from outside
    outputs: list[OutputDef]
    references: dict[str, ReferenceDef] = field(default_factory=dict)  # key -> reference table
    kda: bool = False  # KDA SQL: every stream has ROWTIME, which results do not write out
    pumps: dict[str, str] = field(default_factory=dict)  # step id prefix -> KDA pump name (error rows)
    functions: list[str] = field(default_factory=list)  # CREATE FUNCTION: DuckDB macros to define first

    def stream(self, key: str) -> StreamDef:
        """The stream called ``key`` (case-insensitive)."""
        return self.streams[key.lower()]


@dataclass(frozen=True)
class OverSpec(OperatorSpec):
    """Sliding windows: ``agg(x) OVER w`` gives each input row (after WHERE) one output row,
    computed over the rows of its partition at or before it in (time, arrival) order that are
    still in its window (``RANGE``: time >= its time - size; ``ROWS``: the last size + 1 rows).

    ``prep_sql`` turns ``__input`` (plus ``__arr``, the operator's arrival counter) into the rows
    that pass WHERE, with ``__t`` (time in us), partition keys ``__p<window>_<i>`` and window
    function arguments ``__a<i>``. ``window_sql`` runs over ``__h`` (the kept rows plus the rows
    being emitted, flagged ``__new``) and adds ``__w<i>`` per window function (``__k<window>``:
    how many rows before the current one are in its window). ``keep_sql`` picks the kept rows
    that ``ROWS`` windows still need (the last ``size`` of each partition). ``project_sql``
    evaluates the SELECT list over ``__r`` (the emitted rows with their ``__w<i>``). ``windows``
    holds (kind, size, partition columns) per window (size: rows or microseconds);
    ``exp_avgs`` (result column, window, argument column, half-life us) are computed by the
    operator.
    """

    time_column: str = ""
    prep_sql: str = ""
    window_sql: str = ""
    keep_sql: str = ""
    project_sql: str = ""
    windows: tuple[tuple[str, int, tuple[str, ...]], ...] = ()
    kept_columns: tuple[str, ...] = ()  # what rows that were emitted keep while later windows need them
    result_columns: tuple[str, ...] = ()  # ``__w<i>``, one per window function
    exp_avgs: tuple[tuple[str, int, str, int], ...] = ()
    source_stream: str = ""

    def sql_parts(self) -> list[tuple[str, str]]:
        return [
            ("per batch", self.prep_sql),
            ("windows over kept + ready rows", self.window_sql),
            ("per emitted row", self.project_sql),
        ]


@dataclass(frozen=True)
class StreamJoinSpec(OperatorSpec):
    """A windowed join of two streams: KDA's ``FROM a OVER (RANGE ...) AS o JOIN b AS s ON ...``.

    The planner writes both inputs into ``input``, one stream whose rows carry ``__side`` (0: the
    FROM side, 1: the joined side), ``__t`` (that side's event time, microseconds), the side's row
    packed in ``__left`` or ``__right`` and the hidden ``__seq``/``__wm``. ``windows`` gives each
    side's window as (``range``, microseconds), (``rows``, n) or (``none``, 0): a row arriving on
    one side matches the other side's rows in that side's window ending at the row's time.
    ``match_sql`` finds the pairs whose later row became due (``__ja``/``__jb``: each side's
    buffered rows with ``__id``, ``__t``, ``__idx``, ``__due``, ``__mx0``/``__mx1``);
    ``project_sql`` turns pairs and unmatched outer rows (``__jp``) into output rows.
    """

    join_type: str = "inner"  # inner | left | right | full
    windows: tuple[tuple[str, int], tuple[str, int]] = (("none", 0), ("none", 0))
    side_schemas: tuple[Any, Any] = (None, None)  # each side's columns (pa.Schema)
    aliases: tuple[str, str] = ("", "")
    sources: tuple[str, str] = ("", "")  # each side's source stream name, for error rows
    match_sql: str = ""
    project_sql: str = ""
    candidates_sql: str = ""  # match_sql without the ON condition (when evaluating it fails)
    condition_sql: str = ""  # the ON condition over candidate pairs (``__jc``), one pair at a time

    def sql_parts(self) -> list[tuple[str, str]]:
        return [("pairs whose later row is due", self.match_sql), ("output rows", self.project_sql)]


@dataclass(frozen=True)
class SortSpec(OperatorSpec):
    """KDA's streaming ORDER BY: rows wait until the watermark passes the end of their
    ``size_us``-wide bucket of ``time_column`` (the ORDER BY's leading time key), then leave in
    ``order_sql``'s order (run over the closed rows registered as ``__batch``)."""

    time_column: str = ""
    size_us: int = 0
    order_sql: str = ""

    def sql_parts(self) -> list[tuple[str, str]]:
        return [("when a time bucket closes", self.order_sql)]


@dataclass(frozen=True)
class RcfSpec(OperatorSpec):
    """KDA's ``RANDOM_CUT_FOREST``: each input row, in arrival order, comes out with
    ``ANOMALY_SCORE`` (and ``ANOMALY_EXPLANATION`` when ``explanation``), scored by a streaming
    Random Cut Forest over ``columns`` (see ``engine.operators.rcf``). ``seed`` comes from the
    program, so a replay gives the same scores."""

    columns: tuple[str, ...] = ()
    trees: int = 100
    sample_size: int = 256
    time_decay: int = 100_000
    shingle_size: int = 1
    seed: int = 0
    explanation: bool = False
    directionality: bool = False

    def sql_parts(self) -> list[tuple[str, str]]:
        what = (
            f"random cut forest over {', '.join(self.columns)}: {self.trees} trees, sample {self.sample_size}, "
            f"time decay {self.time_decay}, shingle {self.shingle_size}"
        )
        return [("per row, in arrival order", what)]
