"""Benchmark: RANDOM_CUT_FOREST (KDA's defaults: 100 trees, 256-point samples) against a plain
stateless query over the same rows, both through the engine's pipeline in the same run.

Prints rows/second for the forest while it fills and churns its samples (the first ``--warmup``
rows: a reservoir replaces points often while the stream is short), then for the measured rows,
for the stateless query, and the ratio.

    python bench/bench_rcf.py                                  # 20,000 warm-up + 20,000 rows, 2 numeric columns
    python bench/bench_rcf.py --rows 100000 --batch 10000 --columns 5 --trees 50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.plan.planner import compile_program  # noqa: E402
from engine.runtime.pipeline import Pipeline  # noqa: E402

T0_US = 1_714_557_600_000_000  # 2024-05-01T10:00:00Z


def batches(rows: int, batch: int, columns: int, start: int, seed: int) -> list[pa.Table]:
    rng = np.random.default_rng(seed)
    out = []
    for a in range(start, start + rows, batch):
        n = min(batch, start + rows - a)
        data: dict[str, pa.Array] = {"ts": pa.array(T0_US + np.arange(a, a + n) * 10_000, pa.timestamp("us"))}
        for c in range(columns):
            data[f"v{c}"] = pa.array(rng.normal(size=n) * (c + 1) + 10 * c)
        data["__seq"] = pa.array(np.arange(a, a + n, dtype=np.int64))
        out.append(pa.table(data))
    return out


def run(sql: str, tables: list[pa.Table], pipeline: Pipeline | None = None) -> tuple[float, int, Pipeline]:
    pipeline = pipeline or Pipeline(compile_program(sql))
    rows_out = 0
    start = time.perf_counter()
    for table in tables:
        result = pipeline.push("t", table)
        rows_out += sum(t.num_rows for ts in result.outputs.values() for t in ts)
    return time.perf_counter() - start, rows_out, pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="rows measured after the warm-up")
    parser.add_argument("--warmup", type=int, default=20_000, help="rows fed first (the samples fill and churn)")
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--columns", type=int, default=2, help="numeric columns scored")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--sample", type=int, default=256)
    args = parser.parse_args()

    cols = ", ".join(f"v{c} DOUBLE" for c in range(args.columns))
    table = f"CREATE TABLE t (ts TIMESTAMP, {cols}, WATERMARK FOR ts AS ts);\n"
    forest = (
        table + f"SELECT ts, v0, anomaly_score FROM TABLE(RANDOM_CUT_FOREST(CURSOR(SELECT * FROM t), "
        f"{args.trees}, {args.sample}, 100000, 1)) WHERE anomaly_score > 0;"
    )
    stateless = table + "SELECT ts, v0, v0 * 2 + 1 AS w FROM t WHERE v0 > -1e9;"

    warm = batches(args.warmup, args.batch, args.columns, 0, 1)
    measured = batches(args.rows, args.batch, args.columns, args.warmup, 2)
    warm_s, _, pipeline = run(forest, warm)
    forest_s, _, _ = run(forest, measured, pipeline)
    plain_s, _, _ = run(stateless, warm + measured)

    plain_rate = (args.warmup + args.rows) / plain_s
    forest_rate = args.rows / forest_s
    print(
        f"RANDOM_CUT_FOREST {args.trees} trees x {args.sample} points, {args.columns} columns, batches of {args.batch}"
    )
    print(f"  warm-up   {args.warmup:>9,} rows  {args.warmup / warm_s:>12,.0f} rows/s  (samples filling and churning)")
    print(f"  measured  {args.rows:>9,} rows  {forest_rate:>12,.0f} rows/s")
    print(f"stateless query     {args.warmup + args.rows:>9,} rows  {plain_rate:>12,.0f} rows/s")
    print(f"ratio (stateless / forest): {plain_rate / forest_rate:.1f}x")


if __name__ == "__main__":
    main()
