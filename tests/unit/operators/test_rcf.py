"""RANDOM_CUT_FOREST: the forest's scores, its independence of micro-batching and checkpoints,
its invariants after many inserts and deletes, and the planner's argument checks."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pytest

from engine.errors import PlanError
from engine.operators.rcf import EXPLANATION_COL, SCORE_COL, Forest, RcfOperator
from engine.plan.logical import RcfSpec
from engine.plan.planner import compile_program

OUTLIER = 700


def _data(n: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) * [1.0, 3.0] + [10.0, 50.0]
    if n > OUTLIER:
        x[OUTLIER] = [18.0, 20.0]
    return x


def _spec(**kw: object) -> RcfSpec:
    base: dict[str, object] = dict(
        columns=("a", "b"), trees=40, sample_size=64, time_decay=10_000, shingle_size=1, seed=7
    )
    base.update(kw)
    return RcfSpec("s", "in", "out", **base)  # type: ignore[arg-type]


def _table(x: np.ndarray, start: int = 0) -> pa.Table:
    n = len(x)
    return pa.table(
        {
            "a": pa.array(x[:, 0]),
            "b": pa.array(x[:, 1]),
            "tag": pa.array([f"r{i}" for i in range(start, start + n)]),
            "__seq": pa.array(np.arange(start, start + n, dtype=np.int64)),
            "__wm": pa.array(np.zeros(n, dtype=np.int64)),
        }
    )


def _run(op: RcfOperator, x: np.ndarray, cuts: list[int]) -> list[float | None]:
    out: list[float | None] = []
    bounds = [0, *cuts, len(x)]
    for a, b in zip(bounds, bounds[1:]):
        if a == b:
            continue
        table, errors = op.process(_table(x[a:b], a), 0)
        assert errors is None and table is not None
        assert table.column_names == ["a", "b", "tag", SCORE_COL, "__seq", "__wm"]
        assert table["tag"].to_pylist() == [f"r{i}" for i in range(a, b)]
        out += table[SCORE_COL].to_pylist()
    return out


def test_an_injected_outlier_scores_far_above_normal_points() -> None:
    x = _data()
    scores = np.array(Forest(50, 128, 2, 100_000, 3).update(x)[0])
    normal = np.delete(scores[128:], OUTLIER - 128)
    assert scores[OUTLIER] > 3.0
    assert scores[OUTLIER] > 1.5 * normal.max()  # the largest normal one is a 3-sigma point
    assert np.median(normal) < 1.2 and np.quantile(normal, 0.99) < 2.5
    assert (scores[:128] == 0).all()  # the forest is filling: KDA's 0 for the first sample


def test_scores_do_not_depend_on_micro_batches() -> None:
    x = _data(500)
    whole = _run(RcfOperator(_spec()), x, [])
    rng = np.random.default_rng(1)
    for _ in range(3):
        cuts = sorted(set(rng.integers(1, len(x), size=12).tolist()))
        assert _run(RcfOperator(_spec()), x, cuts) == whole
    assert _run(RcfOperator(_spec()), x[:150], list(range(1, 150))) == whole[:150]  # row by row


def test_the_seed_makes_scores_repeatable_and_a_different_seed_changes_them() -> None:
    x = _data(400)
    one = _run(RcfOperator(_spec(seed=11)), x, [200])
    assert _run(RcfOperator(_spec(seed=11)), x, [50, 300]) == one
    other = _run(RcfOperator(_spec(seed=12)), x, [])
    assert other != one


@pytest.mark.parametrize("at", [30, 64, 65, 333])
def test_a_checkpoint_restores_the_same_scores(at: int) -> None:
    x = _data(500)
    whole = _run(RcfOperator(_spec()), x, [])
    first = RcfOperator(_spec())
    head = _run(first, x[:at], [])
    snap = pickle.loads(pickle.dumps(first.snapshot()))
    first.process(_table(x[at : at + 50], at), 0)  # the old operator goes on: the snapshot must not follow
    second = RcfOperator(_spec())
    second.restore(snap)
    tail = []
    for a in range(at, len(x), 37):
        table, _ = second.process(_table(x[a : a + 37], a), 0)
        assert table is not None
        tail += table[SCORE_COL].to_pylist()
    assert head + tail == whole


def test_trees_keep_their_invariants_through_many_inserts_and_deletes() -> None:
    rng = np.random.default_rng(5)
    x = np.round(rng.normal(size=(3000, 3)), 1)  # rounded: duplicate points share a leaf
    forest = Forest(8, 32, 3, 200, 9)
    forest.update(x)
    for t in range(forest.T):
        assert forest.count[t] == 32 and int(forest.filled[t]) == 32
        root = forest.root[t]
        assert forest.mass[t][root] == 32 and forest.parent[t][root] == -1

        def check(node: int, t: int = t) -> list[float]:
            left, right = forest.left[t][node], forest.right[t][node]
            if left < 0:
                return [forest.mass[t][node]]
            assert forest.parent[t][left] == node and forest.parent[t][right] == node
            lo = np.minimum(forest.lo[t][left], forest.lo[t][right])
            hi = np.maximum(forest.hi[t][left], forest.hi[t][right])
            assert np.array_equal(lo, forest.lo[t][node]) and np.array_equal(hi, forest.hi[t][node])
            d, c = forest.cdim[t][node], forest.cval[t][node]
            assert forest.hi[t][left][d] <= c < forest.lo[t][right][d]
            masses = check(left) + check(right)
            assert sum(masses) == forest.mass[t][node]
            return masses

        assert sum(check(root)) == 32
        leaves = {leaf for leaf in forest.slot_leaf[t]}
        assert -1 not in leaves and len(forest.free[t]) == forest.N - (2 * len(leaves) - 1)


def test_time_decay_forgets_an_old_regime() -> None:
    rng = np.random.default_rng(2)
    old, new = rng.normal(size=(1500, 1)), rng.normal(size=(1500, 1)) + 10.0
    probe = np.array([[0.0]])
    scores = {}
    for decay in (300, 10**9):
        forest = Forest(40, 64, 1, decay, 4)
        forest.update(np.vstack([old, new]))
        scores[decay] = float(forest.update(probe)[0][0])
    assert scores[300] > 3.0  # the sample holds only the new regime: the old mean is an anomaly
    assert scores[10**9] < 2.0  # no decay: half the sample is still the old regime


def test_a_shingle_sees_a_broken_pattern_that_single_rows_cannot() -> None:
    x = np.tile([[0.0], [1.0]], (300, 1))
    x[500] = x[499]  # ... 0 1 0 1 1 1 0 ...: every value is common, the pair (1, 1) is not
    scores = {}
    for shingle in (1, 2):
        op = RcfOperator(_spec(columns=("a",), shingle_size=shingle, trees=40, sample_size=64))
        table, _ = op.process(pa.table({"a": x[:, 0], "__seq": np.arange(600), "__wm": np.zeros(600, np.int64)}), 0)
        assert table is not None
        scores[shingle] = table[SCORE_COL].to_pylist()
    assert scores[2][500] > 2.0 and scores[2][500] > 3 * max(scores[2][100:500])
    assert scores[1][500] < 1.0
    assert scores[2][0] == 0.0  # no full shingle yet


def test_a_null_or_nan_value_scores_null_and_is_not_a_point() -> None:
    op = RcfOperator(_spec(columns=("a",), sample_size=10, trees=5))
    values = [1.0, None, 2.0, float("nan"), 3.0]
    table, _ = op.process(pa.table({"a": pa.array(values, pa.float64()), "__seq": np.arange(5)}), 0)
    assert table is not None
    assert table[SCORE_COL].to_pylist() == [0.0, None, 0.0, None, 0.0]
    assert op.forest.seen == 3


def test_the_explanation_splits_the_score_over_the_columns() -> None:
    x = _data(800)
    x[OUTLIER] = [10.0, 90.0]  # normal a, very high b
    op = RcfOperator(_spec(explanation=True, directionality=True, trees=30))
    table, _ = op.process(_table(x), 0)
    assert table is not None and table.column_names[3:5] == [SCORE_COL, EXPLANATION_COL]
    row = table.slice(OUTLIER, 1).to_pylist()[0]
    doc = json.loads(row[EXPLANATION_COL])
    assert set(doc) == {"a", "b"}
    assert doc["b"]["DIRECTION"] == "HIGH" and doc["b"]["ATTRIBUTION_SCORE"] > 5 * doc["a"]["ATTRIBUTION_SCORE"]
    total = doc["a"]["ATTRIBUTION_SCORE"] + doc["b"]["ATTRIBUTION_SCORE"]
    assert total == pytest.approx(row[SCORE_COL], abs=1e-5)
    plain = RcfOperator(_spec(explanation=True, trees=30)).process(_table(x[:100]), 0)[0]
    assert plain is not None and "DIRECTION" not in plain[EXPLANATION_COL][99].as_py()


# ---------------------------------------------------------------------------- planning

SRC = '"SOURCE_SQL_STREAM_001"'
SCHEMA = pa.schema([("X", pa.float64()), ("Y", pa.int32()), ("NAME", pa.string()), ("D", pa.decimal128(5, 2))])


def _compile(call: str, schema: pa.Schema = SCHEMA) -> object:
    text = f"SELECT STREAM *\nFROM TABLE({call});"
    return compile_program(text, resolve_schema=lambda name: schema if name == SRC.strip('"') else None)


def _error(call: str, schema: pa.Schema = SCHEMA) -> PlanError:
    with pytest.raises(PlanError) as info:
        _compile(call, schema)
    return info.value


def test_the_forest_scores_the_numeric_columns_and_passes_every_column_through() -> None:
    program = _compile(f"RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM {SRC}), 10, 20, 1000, 2)")
    spec = next(s for s in program.operators if isinstance(s, RcfSpec))  # type: ignore[attr-defined]
    assert spec.columns == ("X", "Y") and (spec.trees, spec.sample_size, spec.time_decay, spec.shingle_size) == (
        10,
        20,
        1000,
        2,
    )
    out = program.streams["result"]  # type: ignore[attr-defined]
    assert [f.name for f in out.schema][:4] == ["X", "Y", "NAME", "D"] and SCORE_COL in out.schema.names
    assert out.schema.field(SCORE_COL).type == pa.float64() and "ROWTIME" in out.schema.names
    again = _compile(f"RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM {SRC}), 10, 20, 1000, 2)")
    assert next(s for s in again.operators if isinstance(s, RcfSpec)).seed == spec.seed  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "bad", "message"),
    [
        ("0", "0", "numberOfTrees must be from 1 to 1000, not 0"),
        ("1001", "1001", "numberOfTrees must be from 1 to 1000, not 1001"),
        ("100, 9", "9", "subSampleSize must be from 10 to 1000, not 9"),
        ("100, 1001", "1001", "subSampleSize must be from 10 to 1000, not 1001"),
        ("100, 256, 200", "200", "subSampleSize (256) must be below timeDecay"),
        ("100, 256, 100000, 31", "31", "shingleSize must be from 1 to 30, not 31"),
        ("100, 256, 100000, 0", "0", "shingleSize must be from 1 to 30, not 0"),
        ("1.5", "1.5", "numberOfTrees must be a whole number"),
        ("'100'", "'100'", "numberOfTrees must be a whole number"),
        ("100, 256, 100000, 1, 2", "2", "takes at most 5 arguments"),
    ],
)
def test_arguments_are_checked_as_kda_checks_them(args: str, bad: str, message: str) -> None:
    call = f"RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM {SRC}), {args})"
    err = _error(call)
    assert message in err.message and "\n" not in str(err)
    line = f"FROM TABLE({call});"
    assert (err.line, err.col) == (2, line.rindex(bad) + 1)  # at the bad argument


def test_the_cursor_needs_numeric_columns_and_at_most_thirty() -> None:
    err = _error(f"RANDOM_CUT_FOREST(CURSOR(SELECT STREAM NAME, D FROM {SRC}))")
    assert "no numeric column" in err.message and err.line == 2
    wide = pa.schema([(f"C{i}", pa.float64()) for i in range(31)])
    assert "31 numeric columns" in _error(f"RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM {SRC}))", wide).message
    assert "must be CURSOR" in _error(f"RANDOM_CUT_FOREST({SRC})").message
    flag = _error(f"RANDOM_CUT_FOREST_WITH_EXPLANATION(CURSOR(SELECT STREAM X FROM {SRC}), 10, 20, 100, 1, 3)")
    assert "withDirectionality must be TRUE or FALSE" in flag.message
    huge = pa.schema([(f"C{i}", pa.float64()) for i in range(30)])
    big = _error(f"RANDOM_CUT_FOREST(CURSOR(SELECT STREAM * FROM {SRC}), 1000, 1000, 100000, 30)", huge)
    assert "MiB" in big.message


def test_tumbling_item_functions_check_their_arguments() -> None:
    cur = f"CURSOR(SELECT STREAM * FROM {SRC})"
    assert "k must be from 1 to 100000, not 0" in _error(f"TOP_K_ITEMS_TUMBLING({cur}, 'NAME', 0, 60)").message
    assert "window size (seconds) must be from 1 to 3600" in (
        _error(f"TOP_K_ITEMS_TUMBLING({cur}, 'NAME', 5, 3601)").message
    )
    assert "from 1 to 3600, not 0" in _error(f"COUNT_DISTINCT_ITEMS_TUMBLING({cur}, 'NAME', 0)").message
    assert "takes 3 arguments" in _error(f"COUNT_DISTINCT_ITEMS_TUMBLING({cur}, 'NAME', 5, 60)").message
    assert "quoted literal" in _error(f"TOP_K_ITEMS_TUMBLING({cur}, NAME, 5, 60)").message
    missing = _error(f"TOP_K_ITEMS_TUMBLING({cur}, 'TICKER', 5, 60)")
    assert "has no column 'TICKER'" in missing.message and (missing.line, missing.col) == (2, 87)
    assert "not supported yet" in _error(f"HOTSPOTS({cur}, 100, 0.2, 17)").message


def test_tumbling_item_functions_need_an_event_time_in_a_plain_program() -> None:
    text = (
        "CREATE TABLE t (ts TIMESTAMP, k VARCHAR);\n"
        "SELECT * FROM TABLE(TOP_K_ITEMS_TUMBLING(CURSOR(SELECT k FROM t), 'k', 3, 60));"
    )
    with pytest.raises(PlanError) as info:
        compile_program(text)
    assert "no event-time column" in info.value.message
