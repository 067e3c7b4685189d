"""Topic definitions and message schemas, loaded from the repository's ``topics/`` directory.

The JSON files under ``topics/`` are the single source of truth (users read them, the CLI
creates topics from them, tests validate records against the schemas); an installed wheel
carries a copy as package data, ``kato_stream/_topics`` (``setup.py``).  Topics are created
up front with their partition counts because auto-created topics get a single partition,
which would silently cap the number of workers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kato_stream import compat
from kato_stream.kafka import known_options
from kato_stream.settings import Settings


def _topics_dir() -> Path:
    """``kato_stream/_topics`` in an installed wheel (``setup.py`` copies the repository's
    ``topics/`` there: package data, no top-level ``topics`` in ``site-packages``), else the
    repository's ``topics/`` (a checkout, an editable install)."""
    here = Path(__file__).resolve().parent
    packaged = here / "_topics"
    return packaged if (packaged / "topics.json").is_file() else here.parent / "topics"


TOPICS_DIR = _topics_dir()


@dataclass(frozen=True)
class TopicSpec:
    """One topic: full name, partition count, broker configs and the schema of its values."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    value_schema: str = ""


@cache
def _definitions() -> dict[str, Any]:
    with open(TOPICS_DIR / "topics.json", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic kato-stream uses, named and sized for ``settings``."""
    out = []
    for t in _definitions()["topics"]:
        parts = settings.partitions if t["partitions"] == "default" else int(t["partitions"])
        out.append(
            TopicSpec(
                name=settings.topic(t["name"]),
                partitions=parts,
                configs={str(k): str(v) for k, v in t.get("configs", {}).items()},
                value_schema=str(t.get("value_schema", "")),
            )
        )
    return out


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A JSON Schema by short name (``command``, ``prediction``, ``pattern_event``, ``dead_letter``)."""
    fname = name if name.endswith(".json") else f"{name}.schema.json"
    with open(TOPICS_DIR / "schemas" / fname, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def validate(name: str, value: Any) -> None:
    """Raise ``jsonschema.ValidationError`` if ``value`` does not match schema ``name``."""
    import jsonschema

    jsonschema.validate(value, load_schema(name))


_TOPIC_ALREADY_EXISTS = 36


class TopicError(RuntimeError):
    """A topic could not be created, or exists with a different partition count."""


async def create_topics(
    bootstrap: str,
    specs: list[TopicSpec],
    *,
    replication_factor: int = 1,
    timeout: float = 30.0,
    kafka_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    Existing topics are left alone (their partition count is not changed: growing the input
    topic would move sessions to other partitions and break per-session ordering), but one
    with another partition count than its spec (an auto-created topic has one) raises
    :class:`TopicError`, as does a failed creation.  ``kafka_options``: the security options
    (:func:`kato_stream.kafka.client_options`; None = those known for ``bootstrap``).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    if kafka_options is None:
        kafka_options = known_options(bootstrap)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **kafka_options
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        existing = set(await asyncio.wait_for(admin.list_topics(), timeout))
        new = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=replication_factor,
                topic_configs=s.configs,
            )
            for s in specs
            if s.name not in existing
        ]
        if new:
            resp = await asyncio.wait_for(admin.create_topics(new), timeout)
            for err in getattr(resp, "topic_errors", ()):
                name, code = err[0], err[1]
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise TopicError(f"creating topic {name!r} failed: error {code} {err[2:]}")
    finally:
        await admin.close()
    counts = await describe_partitions(
        bootstrap, [s.name for s in specs], timeout, kafka_options=kafka_options
    )
    for spec in specs:
        if counts.get(spec.name) != spec.partitions:
            raise TopicError(
                f"topic {spec.name!r} has {counts.get(spec.name)} partitions, "
                f"expected {spec.partitions}"
            )
    return [t.name for t in new]


async def describe_partitions(
    bootstrap: str,
    names: list[str],
    timeout: float = 30.0,
    *,
    kafka_options: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Partition count of each named topic that exists."""
    from aiokafka import AIOKafkaConsumer

    if kafka_options is None:
        kafka_options = known_options(bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_options)
    try:
        await asyncio.wait_for(consumer.start(), timeout)  # inside: a failed start is closed
        out: dict[str, int] = {}
        for n in names:
            parts = consumer.partitions_for_topic(n)
            if parts is None:
                await compat.refresh_metadata(consumer)
                parts = consumer.partitions_for_topic(n)
            if parts:
                out[n] = len(parts)
        return out
    finally:
        await consumer.stop()
