"""Sources and sinks, chosen by what the user types.

A connector is named by a URI or by a SQL ``WITH`` clause:

=====================================  =====================================================
URI                                    WITH (...)
=====================================  =====================================================
``data.jsonl``, ``file:data.csv``       ``'connector' = 'file', 'path' = 'data.csv'``
``-`` (stdin / stdout)                 ``'connector' = 'stdin'`` / ``'stdout'`` (or ``'-'``)
``demo:ticker?rows=1000&seed=7``       ``'connector' = 'demo', 'rows' = '1000'``
``kinesis://clicks?start=latest``      ``'connector' = 'kinesis', 'stream' = 'clicks'``
``s3://bucket/prefix?format=parquet``  ``'connector' = 's3', 'path' = 's3://bucket/prefix'`` (sink)
=====================================  =====================================================

Options go in the URI query (``data.csv?header=false&delimiter=;``) or the ``WITH`` clause; every
connector takes the ones it knows and any other is an error naming it. The WITH keys the engine
reads itself (``STREAM_KEYS``, e.g. ``allowed-lateness``) are left to it. ``data.jsonl?follow=true``
(or ``'follow' = 'true'``) keeps reading a JSON-lines or CSV file as it grows: an unbounded source.

Sinks follow the exactly-once protocol of ``connectors.base.Sink``: file sinks stage each epoch
and make it visible at ``commit`` (a parquet sink writes a *directory* of part files); stdout
prints at once and is at-least-once across crashes.

``SOURCES`` and ``SINKS`` are the registries: URI scheme (or ``connector`` value) to a factory
``(name, target, options) -> Source | Sink`` where ``target`` is the URI after the scheme (the path
for files) or None when the connector was named by a WITH clause.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl

from connectors.base import Sink, Source
from connectors.demo import DemoSource
from connectors.file import FileSink, FileSource
from connectors.kinesis import KinesisSink, KinesisSource
from connectors.options import Options
from connectors.s3 import S3Sink
from connectors.stdio import StdinSource, StdoutSink
from engine.errors import ConnectorError

SourceFactory = Callable[[str, "str | None", Options], Source]
SinkFactory = Callable[[str, "str | None", Options], Sink]

SOURCES: dict[str, SourceFactory] = {
    "file": FileSource.from_uri,
    "-": StdinSource.from_uri,
    "stdin": StdinSource.from_uri,
    "demo": DemoSource.from_uri,
    "kinesis": KinesisSource.from_uri,
}
SINKS: dict[str, SinkFactory] = {
    "file": FileSink.from_uri,
    "-": StdoutSink.from_uri,
    "stdout": StdoutSink.from_uri,
    "s3": S3Sink.from_uri,
    "kinesis": KinesisSink.from_uri,
}

# WITH keys that describe the stream to the engine, not the connector: open_* ignores them.
STREAM_KEYS = frozenset({"allowed-lateness", "idle-timeout"})

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):(.*)", re.DOTALL)


def parse_uri(uri: str, where: str) -> tuple[str, str | None, dict[str, str]]:
    r"""Split a connector URI into (scheme, target, query options).

    ``-`` is stdin/stdout; ``scheme:rest`` (two or more letters, so ``C:\\x`` is a path) names a
    connector, with an optional ``//`` after the colon; anything else is a file path. The query
    starts at the first ``?``.

    Args:
        uri: what the user typed.
        where: a location for messages.

    Returns:
        The lower-cased scheme, the target (None for ``-``) and the query options.

    Raises:
        ConnectorError: for an empty URI or a query option given twice.
    """
    text = uri.strip()
    if not text:
        raise ConnectorError("empty source or sink URI", where=where)
    body, _, query = text.partition("?")
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() in (k.lower() for k in options):
            raise ConnectorError(f"option {key!r} is given twice", where=where)
        options[key] = value
    if body == "-":
        return "-", None, options
    m = _SCHEME.fullmatch(body)
    if m is None:
        return "file", body, options
    target = m.group(2)
    return m.group(1).lower(), target[2:] if target.startswith("//") else target, options


def _resolve(
    registry: Mapping[str, Callable[[str, str | None, Options], object]],
    kind: str,
    uri: str | None,
    options: Mapping[str, str] | None,
    where: str | None,
) -> tuple[Callable[[str, str | None, Options], object], str | None, Options]:
    given = {k: v for k, v in (options or {}).items() if k.lower() not in STREAM_KEYS}
    connector = next((given.pop(k) for k in list(given) if k.lower() == "connector"), None)
    if uri:
        place = where or uri
        scheme, target, query = parse_uri(uri, place)
        if connector is not None and connector.strip().lower() != scheme:
            raise ConnectorError(f"the URI names connector {scheme!r} but the options say {connector!r}", where=place)
        for key in query:
            if key.lower() in (k.lower() for k in given):
                raise ConnectorError(f"option {key!r} is given twice", where=place)
        merged = {**query, **given}
    else:
        place = where or "WITH (...)"
        if connector is None:
            raise ConnectorError(f"no {kind}: give a URI or a 'connector' option", where=place)
        scheme, target, merged = connector.strip().lower(), None, given
    factory = registry.get(scheme)
    if factory is None:
        known = ", ".join(sorted(registry))
        raise ConnectorError(f"unknown {kind} connector {scheme!r} (known: {known})", where=place)
    return factory, target, Options(merged, place)


def open_source(
    uri: str | None, name: str, options: Mapping[str, str] | None = None, where: str | None = None
) -> Source:
    """Build the source a URI (or a WITH clause's options) names. No I/O happens yet.

    Args:
        uri: e.g. ``data.jsonl``, ``file:data.csv?header=false``, ``-``, ``demo:ticker?rows=100``;
            None (or empty) to name the connector with ``options['connector']`` instead.
        name: the stream name (keys metrics and error rows).
        options: more options, e.g. a WITH clause's (``connector``, ``path``, ``format``, ...);
            the engine's own keys (``STREAM_KEYS``) are ignored.
        where: a location prefix for messages (``--source``, ``queries/a.sql:3:1``); default
            the URI.

    Returns:
        The source.

    Raises:
        ConnectorError: for an unknown connector or option, or a missing required one.
    """
    factory, target, opts = _resolve(SOURCES, "source", uri, options, where)
    source = factory(name, target, opts)
    opts.finish()
    return source  # type: ignore[return-value]


def open_sink(uri: str | None, name: str, options: Mapping[str, str] | None = None, where: str | None = None) -> Sink:
    """Build the sink a URI (or a WITH clause's options) names. No I/O happens yet.

    Args:
        uri: e.g. ``out.jsonl``, ``file:out.parquet``, ``-`` (stdout, ``-?format=table``);
            None (or empty) to name the connector with ``options['connector']`` instead.
        name: the sink name.
        options: more options, e.g. a WITH clause's; the engine's own keys are ignored.
        where: a location prefix for messages; default the URI.

    Returns:
        The sink.

    Raises:
        ConnectorError: for an unknown connector or option, or a missing required one.
    """
    factory, target, opts = _resolve(SINKS, "sink", uri, options, where)
    sink = factory(name, target, opts)
    opts.finish()
    return sink  # type: ignore[return-value]


__all__ = ["SINKS", "SOURCES", "STREAM_KEYS", "Options", "open_sink", "open_source", "parse_uri"]
