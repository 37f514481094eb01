"""Nothing lost, nothing doubled: a keyed tumbling + sliding query from a file to file sinks,
killed with SIGKILL again and again (during batches, between checkpoint and commit, between two
sinks' commits) and restarted from its checkpoint directory, ends with exactly the output of an
uninterrupted run: no missing and no duplicate window, no temporary file visible.

The CI size is small and seeded; ``pytest --run-slow`` runs the full size (100,000 events,
20 kills).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = """
CREATE TABLE events (ts TIMESTAMP, k VARCHAR, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '3' SECOND);
CREATE TABLE per_10s (k VARCHAR, window_start TIMESTAMP, n BIGINT, total BIGINT)
  WITH ('connector' = 'file', 'path' = '{out}/tumble.jsonl');
CREATE TABLE moving (k VARCHAR, window_end TIMESTAMP, n BIGINT, avg_v DOUBLE)
  WITH ('connector' = 'file', 'path' = '{out}/hop.csv');
INSERT INTO per_10s
SELECT k, window_start, COUNT(*), SUM(v)
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY k, window_start, window_end;
INSERT INTO moving
SELECT k, window_end, COUNT(*), AVG(v)
FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '1' MINUTE))
GROUP BY k, window_start, window_end;
"""
POINTS = ["before-checkpoint", "mid-checkpoint", "before-commit", "mid-commit"]


def _events(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            ms = i * 100 + rng.randint(-2500, 2500)  # out of order by up to 5 s: some rows are late
            ts = f"2024-05-01T{10 + ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}Z"
            f.write(json.dumps({"ts": ts, "k": f"k{rng.randrange(20)}", "v": rng.randrange(1000)}) + "\n")


def _run(
    tmp: Path, out: Path, *, ckpt: Path | None, crash: str | None = None, kill_after_s: float | None = None
) -> int:
    sql = tmp / f"prog-{out.name}.sql"
    sql.write_text(PROGRAM.format(out=out))
    args = [sys.executable, str(ROOT / "cli.py"), "run", str(sql), "--source", f"events={tmp / 'events.jsonl'}"]
    args += ["--errors", str(out / "errors.jsonl"), "--batch-rows", "100"]
    if ckpt is not None:
        args += ["--checkpoint-dir", str(ckpt), "--checkpoint-interval", "0s"]
    env = dict(os.environ)
    env.pop("DUCKSTREAM_CRASH_AT", None)
    if crash:
        env["DUCKSTREAM_CRASH_AT"] = crash
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after_s is not None:
        try:
            proc.wait(timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, -signal.SIGKILL), err
    return proc.returncode


def _rows(out: Path) -> dict[str, list[str]]:
    return {
        name: sorted((out / name).read_text().splitlines()) if (out / name).exists() else []
        for name in ("tumble.jsonl", "hop.csv", "errors.jsonl")
    }


def _comparable_errors(lines: list[str]) -> list[str]:
    return sorted(json.dumps({k: v for k, v in json.loads(x).items() if k != "detected_at"}) for x in lines)


def _crash_loop(tmp: Path, events: int, kills: int, seed: int) -> None:
    _events(tmp / "events.jsonl", events, seed)
    clean, crashed = tmp / "clean", tmp / "crashed"
    clean.mkdir()
    crashed.mkdir()
    assert _run(tmp, clean, ckpt=None) == 0
    expected = _rows(clean)
    assert expected["tumble.jsonl"] and expected["hop.csv"] and expected["errors.jsonl"]
    rng = random.Random(seed)
    killed = 0
    for attempt in range(kills):
        if attempt % 4 == 3:  # now and then, a kill at a random moment instead of a chosen point
            code = _run(tmp, crashed, ckpt=tmp / "ckpt", kill_after_s=rng.uniform(0.8, 2.5))
        else:
            crash = f"{rng.choice(POINTS)}:{rng.randint(1, 12)}"
            code = _run(tmp, crashed, ckpt=tmp / "ckpt", crash=crash)
        killed += code != 0
        if code == 0:
            break
    while _run(tmp, crashed, ckpt=tmp / "ckpt") != 0:  # finish the job
        pass
    assert killed >= 1
    got = _rows(crashed)
    for name in ("tumble.jsonl", "hop.csv"):
        assert len(got[name]) == len(set(got[name])), f"duplicate rows in {name}"
        assert got[name] == expected[name], f"{name} differs from the uninterrupted run"
    assert _comparable_errors(got["errors.jsonl"]) == _comparable_errors(expected["errors.jsonl"])
    visible = sorted(p.name for p in crashed.iterdir() if not p.name.startswith("."))
    assert visible == ["errors.jsonl", "hop.csv", "tumble.jsonl"]


def test_sigkill_and_restart_gives_the_uninterrupted_output(tmp_path: Path) -> None:
    _crash_loop(tmp_path, events=6_000, kills=5, seed=11)


@pytest.mark.slow
def test_sigkill_twenty_times_full_size(tmp_path: Path) -> None:
    _crash_loop(tmp_path, events=100_000, kills=20, seed=12)
