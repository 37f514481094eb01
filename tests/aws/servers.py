"""Real AWS-protocol servers on 127.0.0.1 for the connector tests: moto and kinesalite.

Nothing here mocks boto3: the engine and the tests talk HTTP to servers bound to loopback.

* ``MotoServer``: moto's threaded server (S3 and Kinesis wire protocols) on a free port. Its
  data lives in this process's moto backends, so ``stop()`` then ``start()`` on the same port
  is an outage with nothing forgotten (the S3-down tests use that).
* ``Kinesalite``: the kinesalite Node.js server (real sequence numbers, closed shards,
  resharding), installed from the npm registry into ``KINESALITE_HOME`` (default
  ``~/.cache/duckstream-tests/kinesalite``) on first use; ``.ci/run`` installs it up front.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import boto3
from botocore.config import Config

KINESALITE_VERSION = "3.3.3"
KINESALITE_HOME = Path(os.environ.get("KINESALITE_HOME", Path.home() / ".cache" / "duckstream-tests" / "kinesalite"))
REGION = "us-east-1"
# Dummy credentials for the loopback servers; they never leave this machine.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


class _Server:
    """What both servers offer: an endpoint on 127.0.0.1, boto3 clients, an environment."""

    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, service: str = "kinesis"):  # noqa: ANN201 - a boto3 client
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    def env(self) -> dict[str, str]:
        """Environment for a duckstream process that should use this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}


class MotoServer(_Server):
    """moto in server mode on 127.0.0.1:``port``; restartable on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server = None

    def start(self) -> MotoServer:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log on the test output
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def reset(self) -> None:
        """Forget every bucket and stream (moto's reset endpoint)."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")).read()


def install_kinesalite() -> Path:
    """The kinesalite entry script, installing it from the npm registry if needed."""
    script = KINESALITE_HOME / "node_modules" / "kinesalite" / "cli.js"
    if script.exists():
        return script
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("kinesalite needs Node.js and npm (apt-get install nodejs npm)")
    KINESALITE_HOME.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(KINESALITE_HOME)]
        + [f"kinesalite@{KINESALITE_VERSION}"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return script


class Kinesalite(_Server):
    """A kinesalite process on 127.0.0.1:``port`` (in-memory; shards become ACTIVE quickly)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Kinesalite:
        script = install_kinesalite()
        node = shutil.which("node") or "node"
        self._proc = subprocess.Popen(
            [
                node,
                str(script),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--createStreamMs",
                "10",
                "--deleteStreamMs",
                "10",
                "--updateStreamMs",
                "10",
                "--shardLimit",
                "100",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
