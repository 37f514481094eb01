"""SIGTERM and SIGINT stop a run gracefully: the batch in flight finishes, a checkpoint is
written, the exit code is 0, and the next run resumes where this one stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully_and_the_next_run_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    out, ckpt = tmp_path / "kpis.jsonl", tmp_path / "ckpt"
    args = [sys.executable, str(ROOT / "cli.py"), "run", str(ROOT / "queries" / "ticker_kpis.sql")]
    args += ["--source", "demo:ticker", "--sink", str(out), "--checkpoint-dir", str(ckpt)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:  # the demo stream never ends by itself
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopping after the current batch" in err
    manifest = json.loads((ckpt / "MANIFEST.json").read_text())
    assert manifest["epoch"] >= 1
    first_rows = out.read_text().splitlines()
    assert first_rows, "the rows delivered before the stop are committed"
    # the next run resumes: it keeps those rows and adds later windows, none twice
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(out.read_text().splitlines()) <= len(first_rows) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    rows = out.read_text().splitlines()
    assert rows[: len(first_rows)] == first_rows and len(rows) > len(first_rows)
    keys = [(r["window_start"], r["ticker"]) for r in map(json.loads, rows)]
    assert len(keys) == len(set(keys)), "a window was emitted twice across the stop"
