"""Fixtures that start real AWS-protocol servers on loopback (see ``servers.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aws.servers import Kinesalite, MotoServer


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A clean moto server, with this process's AWS environment pointed at it."""
    moto_server.reset()
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    yield moto_server


@pytest.fixture(scope="session")
def kinesalite_server() -> Iterator[Kinesalite]:
    server = Kinesalite().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def kinesalite(kinesalite_server: Kinesalite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kinesalite]:
    """kinesalite, with this process's AWS environment pointed at it (tests use fresh stream names)."""
    for key, value in kinesalite_server.env().items():
        monkeypatch.setenv(key, value)
    yield kinesalite_server
