"""Checkpoints: source offsets and every operator's state, written atomically, read back whole.

A checkpoint directory holds ``ckpt-<epoch>.bin`` files (the state, pickled: Arrow tables,
numbers, dicts) and ``MANIFEST.json``, which names the newest checkpoint with its SHA-256, the
format version and a hash of the program. Each file is written to a temporary name, fsynced and
renamed, then the directory is fsynced, so a crash leaves either the old manifest or the new one.

Loading refuses, with a message saying why, a manifest or state file that is damaged, from
another format version, or from a different program: a checkpoint is never silently ignored.

Trap: state is pickled, so only load checkpoint directories you (or your runs) wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

from engine.errors import DuckstreamError
from engine.runtime.faults import crash_point

FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
KEEP = 2  # checkpoints kept on disk (the newest and the one before)


class CheckpointError(DuckstreamError):
    """A checkpoint that cannot be used; the run does not start."""


def program_fingerprint(text: str) -> str:
    """What ties a checkpoint to the program that wrote it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class CheckpointStore:
    """A local directory of checkpoints for one program."""

    def __init__(self, directory: str | Path, fingerprint: str) -> None:
        self.dir = Path(directory)
        self.fingerprint = fingerprint

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        """Write checkpoint ``epoch`` and make it the one ``load`` returns."""
        self.dir.mkdir(parents=True, exist_ok=True)
        blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        name = f"ckpt-{epoch:010d}.bin"
        _write_atomic(self.dir / name, blob)
        crash_point("mid-checkpoint")  # state written, manifest not yet
        manifest = {
            "version": FORMAT_VERSION,
            "epoch": epoch,
            "file": name,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "bytes": len(blob),
            "program": self.fingerprint,
        }
        _write_atomic(self.dir / MANIFEST, json.dumps(manifest, indent=2).encode())
        for old in sorted(self.dir.glob("ckpt-*.bin"))[:-KEEP]:
            old.unlink()

    def load(self) -> tuple[int, dict[str, Any]] | None:
        """The newest checkpoint as (epoch, state), None for an empty directory."""
        path = self.dir / MANIFEST
        if not path.exists():
            if self.dir.exists() and any(self.dir.glob("ckpt-*.bin")):
                raise CheckpointError(f"{self.dir}: checkpoint files without {MANIFEST}; refusing to start over")
            return None
        try:
            manifest = json.loads(path.read_text())
            version, epoch, name = manifest["version"], int(manifest["epoch"]), manifest["file"]
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path}: damaged manifest ({err})") from None
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{path}: checkpoint format {version}, this duckstream reads {FORMAT_VERSION}")
        if manifest.get("program") != self.fingerprint:
            raise CheckpointError(
                f"{path}: written by a different program",
                hint="use a new --checkpoint-dir for a changed program",
            )
        try:
            blob = (self.dir / name).read_bytes()
        except OSError as err:
            raise CheckpointError(f"{self.dir / name}: cannot read the checkpoint ({err.strerror})") from None
        if hashlib.sha256(blob).hexdigest() != manifest.get("sha256"):
            raise CheckpointError(f"{self.dir / name}: checksum mismatch (damaged checkpoint)")
        try:
            state = pickle.loads(blob)  # noqa: S301 - our own file, verified by its checksum
        except Exception as err:  # a corrupt pickle can raise almost anything
            raise CheckpointError(f"{self.dir / name}: cannot decode the checkpoint ({err})") from None
        return epoch, state


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
