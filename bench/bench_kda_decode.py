"""Benchmark: KdaDecoder (a KDA input schema) against the JSON Decoder on the same flat records.

Prints records/second for both, measured in the same run over the same batches, and their ratio.
Target: the KDA decoder is at most 3x slower than ``Decoder`` on flat records (both go the
vectorised way there). Also prints the rate for a nested-and-exploded schema, for reference.

    python bench/bench_kda_decode.py                      # 200,000 records in 10,000-record batches
    python bench/bench_kda_decode.py --rows 1000000 --batch 50000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.formats.decode import Decoder  # noqa: E402
from engine.formats.kda_decode import KdaDecoder  # noqa: E402
from engine.formats.kda_schema import parse_input_schema  # noqa: E402
from engine.types import RAW_SCHEMA  # noqa: E402

DEMO = {
    "RecordFormat": {
        "RecordFormatType": "JSON",
        "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}},
    },
    "RecordEncoding": "UTF-8",
    "RecordColumns": [
        {"Name": "TICKER_SYMBOL", "SqlType": "VARCHAR(4)", "Mapping": "$.TICKER_SYMBOL"},
        {"Name": "SECTOR", "SqlType": "VARCHAR(16)", "Mapping": "$.SECTOR"},
        {"Name": "CHANGE", "SqlType": "REAL", "Mapping": "$.CHANGE"},
        {"Name": "PRICE", "SqlType": "REAL", "Mapping": "$.PRICE"},
        {"Name": "VOLUME", "SqlType": "BIGINT", "Mapping": "$.VOLUME"},
        {"Name": "EVENT_TIME", "SqlType": "TIMESTAMP", "Mapping": "$.EVENT_TIME"},
    ],
}
NESTED = {
    "RecordFormat": {"RecordFormatType": "JSON"},
    "RecordColumns": [
        {"Name": "ORDER_ID", "SqlType": "BIGINT", "Mapping": "$.order.id"},
        {"Name": "CUSTOMER", "SqlType": "VARCHAR(16)", "Mapping": "$.order.customer.name"},
        {"Name": "SKU", "SqlType": "VARCHAR(8)", "Mapping": "$.order.lines[0:].sku"},
        {"Name": "QTY", "SqlType": "INTEGER", "Mapping": "$.order.lines[0:].qty"},
    ],
}
TICKERS = ["QXZ", "AMZN", "TGT", "WMT", "DFG", "AAPL", "NFS", "WAS", "CRM", "BAC"]
SECTORS = ["TECHNOLOGY", "HEALTHCARE", "ENERGY", "FINANCIAL", "RETAIL"]


def flat_record(rng: random.Random, i: int) -> bytes:
    return json.dumps(
        {
            "TICKER_SYMBOL": rng.choice(TICKERS),
            "SECTOR": rng.choice(SECTORS),
            "CHANGE": round(rng.uniform(-2, 2), 2),
            "PRICE": round(rng.uniform(5, 500), 2),
            "VOLUME": rng.randint(1, 10_000),
            "EVENT_TIME": f"2024-05-01T10:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        }
    ).encode()


def nested_record(rng: random.Random, i: int) -> bytes:
    lines = [{"sku": f"S{rng.randint(1, 999)}", "qty": rng.randint(1, 9)} for _ in range(rng.randint(0, 4))]
    return json.dumps({"order": {"id": i, "customer": {"name": f"c{i % 97}"}, "lines": lines}}).encode()


def batches(records: list[bytes], size: int) -> list[pa.RecordBatch]:
    out = []
    for start in range(0, len(records), size):
        chunk = records[start : start + size]
        out.append(
            pa.record_batch(
                [
                    pa.array(chunk, pa.large_binary()),
                    pa.array(range(start, start + len(chunk)), pa.int64()),
                    pa.array([0] * len(chunk), pa.timestamp("us")),
                ],
                schema=RAW_SCHEMA,
            )
        )
    return out


def rate(decoder: Decoder | KdaDecoder, data: list[pa.RecordBatch], repeat: int) -> tuple[float, int, int]:
    """Best records/second over ``repeat`` passes, with the rows and error rows of one pass."""
    best = 0.0
    rows = errors = 0
    n = sum(b.num_rows for b in data)
    for _ in range(repeat):
        rows = errors = 0
        started = time.perf_counter()
        for batch in data:
            r, e = decoder.decode(batch)
            rows += r.num_rows
            errors += e.num_rows
        best = max(best, n / (time.perf_counter() - started))
    return best, rows, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(7)
    flat = batches([flat_record(rng, i) for i in range(args.rows)], args.batch)
    schema = parse_input_schema(DEMO, "bench")
    plain = Decoder("trades", schema.arrow_schema(), "json", time_column="EVENT_TIME")
    kda = KdaDecoder("trades", schema, time_column="EVENT_TIME")
    base, base_rows, base_errors = rate(plain, flat, args.repeat)
    ours, rows, errors = rate(kda, flat, args.repeat)
    assert (rows, errors) == (base_rows, base_errors) == (args.rows, 0), (rows, errors, base_rows, base_errors)
    print(f"flat records ({args.rows:,}, batches of {args.batch:,}):")
    print(f"  Decoder     {base:12,.0f} records/s")
    print(f"  KdaDecoder  {ours:12,.0f} records/s")
    ratio = base / ours
    verdict = "ok" if ratio <= 3 else "MISSED"
    print(f"  time ratio  {ratio:12.2f} (KdaDecoder time / Decoder time; target at most 3)  {verdict}")
    nested = batches([nested_record(rng, i) for i in range(args.rows)], args.batch)
    exploding = KdaDecoder("orders", parse_input_schema(NESTED, "bench"))
    speed, rows, errors = rate(exploding, nested, args.repeat)
    assert errors == 0
    print(f"nested + exploded: {speed:,.0f} records/s ({rows:,} rows from {args.rows:,} records)")


if __name__ == "__main__":
    main()
