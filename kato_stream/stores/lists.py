"""The Redis side of a session's bulky lists: one hash per session and field.

``kato-stream:{app_id}:session:{sid}:{field}`` maps a list's id to the list's JSON (the
bytes it has inside an output record).  Why the lists live here and not in the session
table, and when a list may be deleted: ``stream/session_lists.py``.
"""

from __future__ import annotations

from typing import Any

import orjson

from kato_stream.service import Service
from kato_stream.settings import Settings
from kato_stream.stores.keys import LIST_KEY

__all__ = ["ListStore", "decode"]


def decode(raw: bytes | None) -> list[dict[str, Any]] | None:
    """The stored list, or None if ``raw`` is missing or not a JSON list."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


class ListStore(Service):
    """Redis-backed store of each session's bulky lists (a hash per session and field)."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        super().__init__()
        self.settings = settings
        self.client: Any = client
        self._owned = client is None

    async def on_start(self) -> None:
        if self.client is None:
            from kato_stream.stores.connect import redis_client  # the settings' credentials

            self.client = redis_client(
                self.settings,
                socket_timeout=self.settings.store_timeout,
                socket_connect_timeout=self.settings.store_timeout,
            )
        await self.client.ping()

    async def on_stop(self) -> None:
        client = self.client
        if client is not None and self._owned:
            self.client = None
            await client.aclose()

    def key(self, session_id: str, field_name: str) -> str:
        return LIST_KEY.format(app=self.settings.app_id, sid=session_id, field=field_name)

    async def put(self, session_id: str, lists: dict[str, tuple[str, bytes]]) -> None:
        """Store the session's new lists, field -> (id, the list's JSON from :func:`encode`),
        in one round trip (raises on a Redis failure: the caller keeps them inline)."""
        await self.put_many([(session_id, lists)])

    async def put_many(self, items: list[tuple[str, dict[str, tuple[str, bytes]]]]) -> None:
        """:meth:`put` for several commands' lists (a batch), in one round trip."""
        async with self.client.pipeline(transaction=False) as p:
            for session_id, lists in items:
                for name, (ident, raw) in lists.items():
                    p.hset(self.key(session_id, name), ident, raw)
            await p.execute()

    async def get(self, session_id: str, wanted: dict[str, str]) -> dict[str, Any]:
        """field -> the stored list named by ``wanted[field]``, or None where it is not."""
        async with self.client.pipeline(transaction=False) as p:
            for name, ident in wanted.items():
                p.hget(self.key(session_id, name), ident)
            raws = await p.execute()
        return {n: decode(raw) for n, raw in zip(wanted, raws, strict=True)}

    async def forget(self, items: list[tuple[str, str, str]]) -> None:
        """Drop retired lists, (session, field, id) each (Redis drops an emptied hash)."""
        async with self.client.pipeline(transaction=False) as p:
            for sid, name, ident in items:
                p.hdel(self.key(sid, name), ident)
            await p.execute()
