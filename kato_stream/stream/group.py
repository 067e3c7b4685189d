"""Consumer-group maintenance: fence the membership of a crashed worker.

Apache Kafka expires a SIGKILLed worker's membership after the session timeout and gives its
partitions to the survivors.  The embedded broker (noida-db) never expires members, so a
crashed worker would keep its partitions forever; ``evict_members`` sends the LeaveGroup the
dead worker could not send.  Only evict members that are really gone: a live worker evicted
this way simply rejoins (one extra rebalance).
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.group import LeaveGroupRequest


async def group_members(bootstrap: str, group: str) -> list[str]:
    """Member ids currently in ``group``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resp = await admin.describe_consumer_groups([group])
        return [m[0] for g in resp[0].groups for m in g[5]]
    finally:
        await admin.close()


async def evict_members(
    bootstrap: str, group: str, member_ids: list[str] | None = None
) -> list[str]:
    """Remove ``member_ids`` (default: every member) from ``group``; returns those removed."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if member_ids is None:
            resp = await admin.describe_consumer_groups([group])
            member_ids = [m[0] for g in resp[0].groups for m in g[5]]
        node = await admin.find_coordinator(group)
        done = []
        for mid in member_ids:
            r = await admin._send_request_to_node(node, LeaveGroupRequest(group, mid))  # noqa: SLF001
            if r.error_code == 0:
                done.append(mid)
        return done
    finally:
        await admin.close()
