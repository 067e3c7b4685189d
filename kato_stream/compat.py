"""The Faust and aiokafka internals kato-stream relies on, in one place.

Each function here reads or calls something that is not the library's public API; each has a
check in ``tests/test_compat.py`` that fails loudly when an upgrade removes it.  Code
elsewhere calls these functions, never the internals themselves.
"""

from __future__ import annotations

from typing import Any

__all__ = ["admin_request", "aiokafka_member_id", "faust_member_id"]


def aiokafka_member_id(consumer: Any) -> str | None:
    """The member id an aiokafka group consumer holds now (None before it joined).

    aiokafka keeps it on the consumer's group coordinator (``_coordinator.member_id``); it
    has no public accessor."""
    coordinator = getattr(consumer, "_coordinator", None)
    member = getattr(coordinator, "member_id", None)
    return member or None


def faust_member_id(app: Any) -> str | None:
    """The member id of a Faust app's consumer (None before it joined or when stopped).

    Faust runs its aiokafka consumer in a thread service (``app.consumer._thread``) whose
    ``_consumer`` is the aiokafka consumer."""
    thread = getattr(app.consumer, "_thread", None)
    return aiokafka_member_id(getattr(thread, "_consumer", None))


async def admin_request(admin: Any, node: Any, request: Any) -> Any:
    """Send a protocol request (e.g. LeaveGroup) through an aiokafka admin client.

    ``AIOKafkaAdminClient`` has no public call for requests it does not wrap; its
    ``_send_request_to_node`` is the one it uses itself."""
    return await admin._send_request_to_node(node, request)  # noqa: SLF001
