"""The Faust and aiokafka internals of ``kato_stream/compat.py`` still exist and still mean
what kato-stream relies on: an upgrade that removes or changes one fails here, by name."""

from __future__ import annotations

import asyncio

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kato_stream.compat import aiokafka_member_id, faust_member_id
from kato_stream.stream.group import describe, evict_members


@pytest.mark.stack
async def test_member_id_and_admin_requests_on_a_real_group(
    kafka_bootstrap: str, unique_id: str
) -> None:
    topic, group = f"compat-{unique_id}", f"compat-g-{unique_id}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group)
    assert aiokafka_member_id(consumer) is None  # not joined
    await consumer.start()
    try:
        for _ in range(40):
            await consumer.getmany(timeout_ms=250)
            if consumer.assignment():
                break
        mid = aiokafka_member_id(consumer)
        assert isinstance(mid, str) and mid
        state, members = (await describe(kafka_bootstrap, [group]))[group]
        assert [m.member_id for m in members] == [mid]
        # compat.admin_request carries the LeaveGroup the operator's command sends
        assert await evict_members(kafka_bootstrap, group, [mid]) == [mid]
        for _ in range(40):
            if not (await describe(kafka_bootstrap, [group]))[group][1]:
                break
            await asyncio.sleep(0.1)
        assert (await describe(kafka_bootstrap, [group]))[group][1] == []
    finally:
        await consumer.stop()


def test_faust_consumer_thread_holds_the_aiokafka_consumer() -> None:
    app = faust.App("compat-probe", broker="kafka://127.0.0.1:1", autodiscover=False)
    thread = app.consumer._thread  # noqa: SLF001  (what compat.faust_member_id reads)
    assert hasattr(thread, "_consumer")
    assert hasattr(thread, "_create_consumer")  # where Faust builds it: an AIOKafkaConsumer
    assert faust_member_id(app) is None  # not started
