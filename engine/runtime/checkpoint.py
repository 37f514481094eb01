"""Checkpoints: source offsets and every operator's state, written atomically, read back whole.

A checkpoint location holds ``ckpt-<epoch>.bin`` files (the state, pickled: Arrow tables,
numbers, dicts) and ``MANIFEST.json``, which names the newest checkpoint with its SHA-256, the
format version and a hash of the program. The state file is written before the manifest that
names it, so a crash leaves either the old manifest or the new one.

Two places are supported: a local directory (each file written to a temporary name, fsynced and
renamed, then the directory fsynced) and ``s3://BUCKET/PREFIX`` (a PUT is atomic: an object is
there whole or not at all; the client comes from the standard AWS chain, see ``connectors._aws``).

Loading refuses, with a message saying why, a manifest or state file that is damaged, from
another format version, or from a different program: a checkpoint is never silently ignored.

Trap: state is pickled, so only load checkpoint directories you (or your runs) wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any, Protocol

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


class _Blobs(Protocol):
    """Where checkpoint files live."""

    label: str

    def put(self, name: str, data: bytes) -> None: ...
    def get(self, name: str) -> bytes | None: ...  # None if there is no such file
    def names(self) -> list[str]: ...
    def delete(self, name: str) -> None: ...


class _LocalBlobs:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.label = str(directory)

    def put(self, name: str, data: bytes) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.dir / name, data)

    def get(self, name: str) -> bytes | None:
        try:
            return (self.dir / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise CheckpointError(f"{self.dir / name}: cannot read the checkpoint ({err.strerror})") from None

    def names(self) -> list[str]:
        return sorted(p.name for p in self.dir.glob("*")) if self.dir.is_dir() else []

    def delete(self, name: str) -> None:
        (self.dir / name).unlink(missing_ok=True)


class _S3Blobs:
    """Checkpoint files as S3 objects; calls are retried while S3 is unreachable (bounded)."""

    def __init__(self, uri: str, where: str, retry_timeout_s: float = 600.0) -> None:
        from connectors._aws import client

        rest = uri[len("s3://") :]
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise CheckpointError(f"{uri!r} names no bucket (write s3://BUCKET/PREFIX)", where=where)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.label = f"s3://{self.bucket}/{self.prefix}"
        self.where = where
        self.retry_timeout_s = retry_timeout_s
        self.s3 = client("s3", where=where, max_attempts=1)  # _call retries

    def _call(self, doing: str, fn: Any, **kwargs: Any) -> Any:
        from connectors._aws import describe, is_retryable

        deadline = time.monotonic() + self.retry_timeout_s
        delay = 0.2
        while True:
            try:
                return fn(**kwargs)
            except Exception as err:  # botocore raises many kinds; sorted out below
                if not is_retryable(err) or time.monotonic() + delay > deadline:
                    raise CheckpointError(f"{self.label}: cannot {doing}: {describe(err)}", where=self.where) from None
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def put(self, name: str, data: bytes) -> None:
        self._call("write " + name, self.s3.put_object, Bucket=self.bucket, Key=self.prefix + name, Body=data)

    def get(self, name: str) -> bytes | None:
        from connectors._aws import error_code

        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + name)
        except Exception as err:
            if error_code(err) in ("NoSuchKey", "404"):
                return None
            response = self._call("read " + name, self.s3.get_object, Bucket=self.bucket, Key=self.prefix + name)
        return bytes(response["Body"].read())

    def names(self) -> list[str]:
        found: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = self._call(
                "list checkpoints", self.s3.list_objects_v2, Bucket=self.bucket, Prefix=self.prefix, **token
            )
            found += [o["Key"][len(self.prefix) :] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(n for n in found if "/" not in n)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, name: str) -> None:
        self._call("delete " + name, self.s3.delete_object, Bucket=self.bucket, Key=self.prefix + name)


class CheckpointStore:
    """The checkpoints of one program, in a local directory or under an ``s3://`` prefix."""

    def __init__(self, location: str | Path, fingerprint: str, where: str | None = None) -> None:
        self.fingerprint = fingerprint
        text = str(location)
        self.blobs: _Blobs
        if text.lower().startswith("s3://"):
            self.blobs = _S3Blobs(text, where or text)
        else:
            self.blobs = _LocalBlobs(Path(location))
        self.label = self.blobs.label

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        """Write checkpoint ``epoch`` and make it the one ``load`` returns."""
        blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        name = f"ckpt-{epoch:010d}.bin"
        self.blobs.put(name, blob)
        crash_point("mid-checkpoint")  # state written, manifest not yet
        manifest = {
            "version": FORMAT_VERSION,
            "epoch": epoch,
            "file": name,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "bytes": len(blob),
            "program": self.fingerprint,
        }
        self.blobs.put(MANIFEST, json.dumps(manifest, indent=2).encode())
        for old in [n for n in self.blobs.names() if _is_state(n)][:-KEEP]:
            self.blobs.delete(old)

    def load(self) -> tuple[int, dict[str, Any]] | None:
        """The newest checkpoint as (epoch, state), None for an empty location."""
        where = f"{self.label.rstrip('/')}/{MANIFEST}"
        raw = self.blobs.get(MANIFEST)
        if raw is None:
            if any(_is_state(n) for n in self.blobs.names()):
                raise CheckpointError(f"{self.label}: checkpoint files without {MANIFEST}; refusing to start over")
            return None
        try:
            manifest = json.loads(raw)
            version, epoch, name = manifest["version"], int(manifest["epoch"]), manifest["file"]
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{where}: damaged manifest ({err})") from None
        if version != FORMAT_VERSION:
            raise CheckpointError(f"{where}: checkpoint format {version}, this duckstream reads {FORMAT_VERSION}")
        if manifest.get("program") != self.fingerprint:
            raise CheckpointError(
                f"{where}: written by a different program",
                hint="use a new --checkpoint-dir for a changed program",
            )
        state_at = f"{self.label.rstrip('/')}/{name}"
        blob = self.blobs.get(str(name))
        if blob is None:
            raise CheckpointError(f"{state_at}: the checkpoint named by {MANIFEST} is missing")
        if hashlib.sha256(blob).hexdigest() != manifest.get("sha256"):
            raise CheckpointError(f"{state_at}: checksum mismatch (damaged checkpoint)")
        try:
            state = pickle.loads(blob)  # noqa: S301 - our own file, verified by its checksum
        except Exception as err:  # a corrupt pickle can raise almost anything
            raise CheckpointError(f"{state_at}: cannot decode the checkpoint ({err})") from None
        return epoch, state


def _is_state(name: str) -> bool:
    return name.startswith("ckpt-") and name.endswith(".bin")


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
