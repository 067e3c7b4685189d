"""Kafka security for every Kafka client kato-stream creates, in one place.

Why: a secured cluster (TLS, SASL over TLS: what Confluent Cloud, Amazon MSK and Aiven ask
for) must be spoken to the same way by each client the project opens - the worker's Faust
consumer, producer and admin, the LTM follower, the persister, the group watchdog, the
gateway, the CLI and the tools.  One client left on PLAINTEXT fails late and obscurely (a
worker that starts, then hangs in its follower).  So the settings
(``KATO_STREAM_KAFKA_SECURITY_PROTOCOL`` and friends) are turned into

* aiokafka's keyword options by :func:`client_options`, passed as ``**`` to every
  ``AIOKafkaConsumer``/``AIOKafkaProducer``/``AIOKafkaAdminClient`` (``tests/test_kafka.py``
  checks each construction in the package), and
* Faust's ``broker_credentials`` by :func:`faust_credentials` (Faust hands them to its own
  consumer, producer and topic admin);

both validated by :func:`check`, whose :class:`KafkaSecurityError` names the environment
variable to fix.  Nothing here logs or returns a password outside the options themselves.
The embedded broker (``kato_stream/embedded``) is started by kato-stream on loopback and
speaks PLAINTEXT only: its readiness probe stays plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from kato_stream import compat
from kato_stream.settings import Settings, SettingsError

__all__ = [
    "KafkaSecurityError",
    "PartitionRange",
    "RangeSpec",
    "SourceRecord",
    "check",
    "client_options",
    "faust_credentials",
    "known_options",
    "read_range",
    "resolve",
    "ssl_context",
]

_TLS = frozenset({"SSL", "SASL_SSL"})
_SASL = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})

_KNOWN: dict[str, dict[str, Any]] = {}
"""bootstrap -> the options :func:`client_options` last built for it (:func:`known_options`)."""


class KafkaSecurityError(SettingsError):
    """The Kafka security settings are incomplete or point at unusable files."""


def _env(name: str) -> str:
    """The environment variable of the setting ``name``."""
    for f in fields(Settings):
        if f.name == name:
            return str(f.metadata["env"])
    raise KeyError(name)


def check(settings: Settings) -> None:
    """Raise :class:`KafkaSecurityError` unless the security settings make sense together:
    SASL protocols need a user name and password, TLS files must exist, and credentials or
    TLS files the chosen protocol would silently ignore are refused."""
    proto = settings.kafka_security_protocol
    p_env = _env("kafka_security_protocol")
    if proto in _SASL:
        missing = [
            _env(n)
            for n in ("kafka_sasl_username", "kafka_sasl_password")
            if not getattr(settings, n)
        ]
        if missing:
            raise KafkaSecurityError(f"{p_env}={proto} needs {' and '.join(missing)}")
    else:
        given = [
            _env(n) for n in ("kafka_sasl_username", "kafka_sasl_password") if getattr(settings, n)
        ]
        if given:
            raise KafkaSecurityError(
                f"{' and '.join(given)} set, but {p_env}={proto} sends no SASL credentials "
                "(use SASL_SSL or SASL_PLAINTEXT)"
            )
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(settings, name)
        if not path:
            continue
        if proto not in _TLS:
            raise KafkaSecurityError(
                f"{_env(name)} set, but {p_env}={proto} does not use TLS (use SSL or SASL_SSL)"
            )
        if not os.path.isfile(path):
            raise KafkaSecurityError(f"{_env(name)}={path!r}: no such file")
    if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        raise KafkaSecurityError(
            f"{_env('kafka_ssl_keyfile')} set without {_env('kafka_ssl_certfile')}"
        )


def _no_key_password() -> str:
    # called by OpenSSL only for an encrypted private key: without this it would prompt on
    # the terminal (and a worker under a supervisor would hang)
    raise KafkaSecurityError(
        f"{_env('kafka_ssl_keyfile')} (or {_env('kafka_ssl_certfile')}): the private key is "
        "encrypted; give an unencrypted PEM key (openssl pkey -in KEY -out KEY.plain)"
    )


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The client TLS context of the settings (None for PLAINTEXT and SASL_PLAINTEXT):
    verifies the brokers against ``KATO_STREAM_KAFKA_SSL_CAFILE`` (or the system's trust
    store) including their host name, and presents the client certificate if one is set."""
    check(settings)
    if settings.kafka_security_protocol not in _TLS:
        return None
    from aiokafka.helpers import create_ssl_context

    cafile = settings.kafka_ssl_cafile or None
    try:
        ctx: ssl.SSLContext = create_ssl_context(cafile=cafile)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise KafkaSecurityError(
            f"{_env('kafka_ssl_cafile')}={cafile!r}: not a usable PEM CA bundle: {exc}"
        ) from None
    if settings.kafka_ssl_certfile:
        try:
            ctx.load_cert_chain(
                settings.kafka_ssl_certfile,
                settings.kafka_ssl_keyfile or None,
                password=_no_key_password,
            )
        except (ssl.SSLError, OSError) as exc:
            raise KafkaSecurityError(
                f"{_env('kafka_ssl_certfile')}={settings.kafka_ssl_certfile!r}, "
                f"{_env('kafka_ssl_keyfile')}={settings.kafka_ssl_keyfile!r}: not a PEM "
                f"certificate and its private key: {exc}"
            ) from None
    return ctx


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword options for ``settings``' security: ``{}`` for PLAINTEXT (aiokafka's
    defaults), else ``security_protocol`` with ``ssl_context`` (TLS) and the SASL mechanism,
    user name and password (SASL).  Pass them as ``**client_options(settings)`` to every
    aiokafka client; raises :class:`KafkaSecurityError` (see :func:`check`)."""
    proto = settings.kafka_security_protocol
    ctx = ssl_context(settings)  # checks
    opts: dict[str, Any] = {}
    if proto != "PLAINTEXT":
        opts["security_protocol"] = proto
    if ctx is not None:
        opts["ssl_context"] = ctx
    if proto in _SASL:
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = settings.kafka_sasl_password
    _KNOWN[settings.kafka_bootstrap] = opts
    return dict(opts)


def known_options(bootstrap: str) -> dict[str, Any]:
    """The options :func:`client_options` last built for ``bootstrap`` in this process
    (``{}`` if none): for the few calls that receive a bare bootstrap string from code that
    does not pass options yet (``continuity.fetch_range`` from the worker's agent)."""
    return dict(_KNOWN.get(bootstrap, {}))


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for ``settings`` (None for PLAINTEXT):
    ``faust.SSLCredentials`` for SSL, ``faust.SASLCredentials`` (with the TLS context for
    SASL_SSL) for SASL.  Faust turns them into the same aiokafka options as
    :func:`client_options` (``faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth``)
    for its consumer, producer and the client that creates its topics."""
    proto = settings.kafka_security_protocol
    opts = client_options(settings)  # checks, and records the bootstrap's options
    if proto == "PLAINTEXT":
        return None
    import faust

    if proto == "SSL":
        return faust.SSLCredentials(opts["ssl_context"])
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        ssl_context=opts.get("ssl_context"),
        mechanism=settings.kafka_sasl_mechanism,
    )


# -- reading a bounded range of a topic (the tools' replay and archive, the worker's hole
# filler: one reader) -----------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRecord:
    """One record as read from a topic (or from an archive line that kept its coordinates)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = field(default=())

    @property
    def identity(self) -> str:
        """``topic:partition:offset``: the worker's learn_id for a command without msg_id."""
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True)
class RangeSpec:
    """What to read.  ``partitions`` None = all; per-partition ``offsets`` override the rest."""

    topic: str
    partitions: tuple[int, ...] | None = None
    start_offset: int | None = None
    end_offset: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    offsets: tuple[tuple[int, int | None, int | None], ...] = ()  # (partition, start, end)


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int
    end: int  # exclusive

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def _consumer(
    bootstrap: str,
    kafka_options: Mapping[str, Any] | None = None,
    max_fetch_bytes: int = 4 * 1024 * 1024,
) -> Any:
    from aiokafka import AIOKafkaConsumer

    if kafka_options is None:
        kafka_options = known_options(bootstrap)
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=max_fetch_bytes,
        fetch_max_bytes=max(max_fetch_bytes, 52_428_800),
        **kafka_options,
    )


async def _partitions(c: Any, topic: str) -> list[int]:
    parts = c.partitions_for_topic(topic)
    if not parts:
        await compat.refresh_metadata(c)
        parts = c.partitions_for_topic(topic)
    if not parts:
        raise ValueError(f"topic {topic!r} does not exist (or has no partitions)")
    return sorted(parts)


async def resolve(c: Any, spec: RangeSpec) -> list[PartitionRange]:
    """Turn ``spec`` into concrete ``[start, end)`` offsets per partition, clamped to what exists."""
    from aiokafka import TopicPartition

    existing = await _partitions(c, spec.topic)
    explicit = {p: (s, e) for p, s, e in spec.offsets}
    wanted = sorted(explicit) if explicit else list(spec.partitions or existing)
    missing = [p for p in wanted if p not in existing]
    if missing:
        raise ValueError(f"topic {spec.topic!r} has no partition(s) {missing} (has {existing})")
    tps = [TopicPartition(spec.topic, p) for p in wanted]
    if not tps:
        return []
    begin = await c.beginning_offsets(tps)
    end = await c.end_offsets(tps)
    since = until = None
    if spec.since_ms is not None:
        since = await c.offsets_for_times({tp: spec.since_ms for tp in tps})
    if spec.until_ms is not None:
        until = await c.offsets_for_times({tp: spec.until_ms for tp in tps})
    out = []
    for tp in tps:
        lo, hi = begin[tp], end[tp]
        start, stop = explicit.get(tp.partition, (spec.start_offset, spec.end_offset))
        if since is not None:
            hit = since[tp]
            start = max(start or 0, hit.offset if hit is not None else hi)
        if until is not None:
            hit = until[tp]
            stop = min(stop if stop is not None else hi, hit.offset if hit is not None else hi)
        s = min(max(lo, start if start is not None else lo), hi)
        e = min(hi, stop if stop is not None else hi)
        out.append(PartitionRange(tp.partition, s, max(s, e)))
    return out


async def read_range(
    bootstrap: str,
    spec: RangeSpec,
    *,
    idle_timeout: float = 30.0,
    on_resolved: Callable[[list[PartitionRange]], None] | None = None,
    kafka_options: Mapping[str, Any] | None = None,
    max_fetch_bytes: int = 4 * 1024 * 1024,
) -> AsyncGenerator[SourceRecord, None]:
    """Yield every record of the range, each partition in offset order.

    Partitions are read together (getmany); the order *between* partitions is not defined, as
    in Kafka itself.  ``on_resolved(ranges)`` is called once the range is known (progress total).
    Raises ``TimeoutError`` when no record arrives for ``idle_timeout`` seconds while some
    partition has not reached its end (a broker that went away; never hangs forever).
    ``kafka_options``: :func:`kato_stream.kafka.client_options` (None = those known for
    ``bootstrap``).
    """
    from aiokafka import TopicPartition

    consumer = _consumer(bootstrap, kafka_options, max_fetch_bytes)
    await consumer.start()
    try:
        ranges = await resolve(consumer, spec)
        if on_resolved is not None:
            on_resolved(ranges)
        todo = {TopicPartition(spec.topic, r.partition): r for r in ranges if r.size > 0}
        if not todo:
            return
        consumer.assign(list(todo))
        for tp, r in todo.items():
            consumer.seek(tp, r.start)
        last = time.monotonic()
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=500)
            for tp in sorted(batch, key=lambda t: t.partition):
                pr = todo.get(tp)
                if pr is None:
                    continue
                for m in batch[tp]:
                    if m.offset >= pr.end:
                        break
                    yield SourceRecord(
                        topic=m.topic,
                        partition=m.partition,
                        offset=m.offset,
                        timestamp=m.timestamp,
                        key=m.key,
                        value=m.value,
                        headers=tuple((k, bytes(v)) for k, v in (m.headers or ())),
                    )
            if batch:
                last = time.monotonic()
            for tp in list(todo):
                # position() also covers offsets that hold no record (compaction, txn markers).
                if await consumer.position(tp) >= todo[tp].end:
                    del todo[tp]
            if todo:
                consumer.pause(*[tp for tp in consumer.assignment() if tp not in todo])
                if time.monotonic() - last > idle_timeout:
                    left = {tp.partition: todo[tp].end for tp in todo}
                    raise TimeoutError(
                        f"no records for {idle_timeout}s; partitions left (end offsets): {left}"
                    )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 10)
