"""S3 as the runtime uses it: checkpoints under s3:// and reference tables from s3:// objects (real moto server)."""

from __future__ import annotations

import json

import pytest

from engine.plan.planner import compile_program
from engine.runtime.checkpoint import CheckpointError, CheckpointStore
from engine.runtime.loop import RunOptions
from engine.testing import run_program
from tests.aws.servers import MotoServer

SQL = """
CREATE TABLE t (ts TIMESTAMP, k VARCHAR, v INT, WATERMARK FOR ts AS ts);
SELECT k, window_start, COUNT(*) AS n, SUM(v) AS total
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY k, window_start, window_end
"""


def _batches() -> list[list[dict]]:
    rows = [
        {"ts": f"2024-05-01T10:{m:02d}:{s:02d}Z", "k": "ab"[s % 2], "v": s} for m in range(4) for s in range(0, 60, 7)
    ]
    return [rows[i : i + 5] for i in range(0, len(rows), 5)]


def _options(stop: int | None = None) -> RunOptions:
    return RunOptions(idle_timeout_us=None, sleep=lambda s: None, stop_after_batches=stop, checkpoint_interval_s=0)


def test_a_run_stopped_and_resumed_from_an_s3_checkpoint_equals_an_uninterrupted_run(moto: MotoServer) -> None:
    moto.client("s3").create_bucket(Bucket="ckpts")
    program = compile_program(SQL)
    whole, _, _ = run_program(program, {"t": _batches()})
    expected = sorted(whole["result"].rows(), key=repr)

    location = "s3://ckpts/apps/kpis"
    first, _, _ = run_program(program, {"t": _batches()}, _options(stop=3), checkpoint_dir=location)
    second, _, _ = run_program(program, {"t": _batches()}, _options(), checkpoint_dir=location)
    got = sorted(first["result"].rows() + second["result"].rows(), key=repr)
    assert got == expected

    keys = sorted(o["Key"] for o in moto.client("s3").list_objects_v2(Bucket="ckpts")["Contents"])
    assert "apps/kpis/MANIFEST.json" in keys
    assert 1 <= sum(k.endswith(".bin") for k in keys) <= 2  # the newest and the one before


def test_a_damaged_s3_checkpoint_refuses_to_start(moto: MotoServer) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="ckpts")
    program = compile_program(SQL)
    run_program(program, {"t": _batches()}, _options(stop=2), checkpoint_dir="s3://ckpts/x")
    manifest = json.loads(s3.get_object(Bucket="ckpts", Key="x/MANIFEST.json")["Body"].read())
    s3.put_object(Bucket="ckpts", Key=f"x/{manifest['file']}", Body=b"garbage")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        run_program(program, {"t": _batches()}, _options(), checkpoint_dir="s3://ckpts/x")


def test_another_programs_s3_checkpoint_is_refused(moto: MotoServer) -> None:
    moto.client("s3").create_bucket(Bucket="ckpts")
    run_program(compile_program(SQL), {"t": _batches()}, _options(stop=2), checkpoint_dir="s3://ckpts/y")
    other = compile_program(SQL.replace("COUNT(*) AS n", "COUNT(*) AS cnt"))
    with pytest.raises(CheckpointError, match="different program"):
        run_program(other, {"t": _batches()}, _options(), checkpoint_dir="s3://ckpts/y")


def test_a_missing_bucket_is_a_one_line_error(moto: MotoServer) -> None:
    store = CheckpointStore("s3://no-such-bucket/p", "f", where="--checkpoint-dir")
    with pytest.raises(CheckpointError) as info:
        store.save(1, {"x": 1})
    text = str(info.value)
    assert text.startswith("--checkpoint-dir: s3://no-such-bucket/p/: cannot write") and "NoSuchBucket" in text
    assert "\n" not in text and "testing" not in text  # no credentials in the message


def test_s3_checkpoints_hold_no_credentials(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "SECRET-MARKER-7f3a9c"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)  # moto accepts any key
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="ckpts")
    run_program(compile_program(SQL), {"t": _batches()}, _options(stop=2), checkpoint_dir="s3://ckpts/z")
    for obj in s3.list_objects_v2(Bucket="ckpts")["Contents"]:
        assert secret.encode() not in s3.get_object(Bucket="ckpts", Key=obj["Key"])["Body"].read()


def test_a_reference_table_from_an_s3_object_joins_the_stream(moto: MotoServer, tmp_path) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from cli import app

    s3 = moto.client("s3")
    s3.create_bucket(Bucket="refdata")
    s3.put_object(Bucket="refdata", Key="companies.json", Body=b'{"ticker": "AMZN", "company": "Amazon"}\n')
    sql = tmp_path / "join.sql"
    sql.write_text(
        "CREATE TABLE trades (ts TIMESTAMP, sym VARCHAR, WATERMARK FOR ts AS ts);\n"
        "SELECT t.sym, c.company FROM trades t LEFT JOIN companies c ON t.sym = c.ticker;\n"
    )
    data = tmp_path / "trades.jsonl"
    data.write_text('{"ts": "2024-01-01T00:00:01Z", "sym": "AMZN"}\n{"ts": "2024-01-01T00:00:02Z", "sym": "IBM"}\n')
    out = tmp_path / "out.jsonl"
    args = ["run", str(sql), "-s", f"trades={data}", "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "-r", "companies=s3://refdata/companies.json"])
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines() == ['{"sym":"AMZN","company":"Amazon"}', '{"sym":"IBM","company":null}']
    result = CliRunner().invoke(app, [*args, "-r", "companies=s3://refdata/missing.json"])
    assert result.exit_code == 2 and "s3://refdata/missing.json does not exist" in result.output
