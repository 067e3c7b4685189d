"""What the LTM bootstrap from the stores needs: the persister group's committed offsets,
the report of how the LTM was rebuilt, and the signal to fall back to the topic fold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kato_stream.kafka import known_options

__all__ = ["BootstrapReport", "Fallback", "persisted_offsets"]


@dataclass
class BootstrapReport:
    """How this worker's LTM was rebuilt (logged once ``ready`` is set)."""

    mode: str = "stream"  # the setting asked for
    ran: str = "stream"  # "stores" when any partition started from the snapshot
    reason: str = ""  # why partitions (or all) fell back to the topic fold
    store_events: int = 0  # log entries loaded from ClickHouse and applied
    stream_events: int = 0  # topic records read before ``ready``
    start_offsets: dict[int, int] = field(default_factory=dict)  # partition -> first offset read


class Fallback(Exception):
    """The snapshot cannot be used: fold the whole topic."""


async def persisted_offsets(
    bootstrap: str,
    group: str,
    tps: list[Any],
    *,
    kafka_options: Mapping[str, Any] | None = None,
) -> dict[int, int]:
    """The ``group``'s committed offset of each partition in ``tps`` (those it has one of).
    ``kafka_options``: :func:`kato_stream.kafka.client_options` (None = those known for
    ``bootstrap``)."""
    from aiokafka.admin import AIOKafkaAdminClient

    if kafka_options is None:
        kafka_options = known_options(bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_options)
    await admin.start()
    try:
        got = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    return {tp.partition: int(om.offset) for tp, om in got.items() if om.offset >= 0}
