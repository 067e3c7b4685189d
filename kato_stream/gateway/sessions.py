"""KATO's session registry in Redis: who exists, for how long (spec §6.1-6.2).

The registry holds only what the gateway needs to answer KATO's session endpoints without
the stream: ``kato:session:{id}`` (JSON, Redis TTL = the session's TTL) and the set
``kato:session:_active_index``.  STM, accumulators and config live in the worker's
changelog-backed table; they are reached through the input topic.

KATO semantics kept: every access slides the expiry to now + ttl_seconds (auto-extend);
``extend`` sets a one-off TTL without changing ``ttl_seconds``; ``exists`` never extends
and reports a key whose stored ``expires_at`` has passed as expired (then deletes it);
the active index is approximate (TTL expiry never removes ids from it), as in KATO.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from redis.asyncio import Redis

from kato_stream.stores.keys import ACTIVE_INDEX
from kato_stream.stores.keys import SESSION_PREFIX as KEY_PREFIX


def new_session_id(now: datetime | None = None) -> str:
    """KATO's id form (spec §1.2): ``session-<uuid4 hex>-<epoch ms>``."""
    t = now or datetime.now(UTC)
    return f"session-{uuid.uuid4().hex}-{int(t.timestamp() * 1000)}"


def iso_z(t: datetime) -> str:
    """KATO's response timestamp form: ISO-8601 UTC with a ``Z`` suffix."""
    return t.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def _parse(t: str) -> datetime:
    return datetime.fromisoformat(t.replace("Z", "+00:00"))


@dataclass
class SessionRecord:
    """The registry's view of one session (a subset of KATO's stored blob, §6.2)."""

    session_id: str
    node_id: str
    created_at: str
    last_accessed: str
    expires_at: str
    ttl_seconds: int
    metadata: dict[str, Any] = field(default_factory=dict)
    access_count: int = 0

    @property
    def expires(self) -> datetime:
        return _parse(self.expires_at)

    def remaining_seconds(self, now: datetime) -> int:
        """Whole seconds left before expiry (>= 0), as KATO's GET /sessions/{id} reports."""
        return max(0, int((self.expires - now).total_seconds()))

    def dumps(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes | str) -> SessionRecord:
        d = orjson.loads(raw)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class SessionRegistry:
    """Session existence and TTL in Redis, shared by every gateway replica."""

    def __init__(self, redis: Redis, *, default_ttl: int = 3600, auto_extend: bool = True):
        self._redis = redis
        self.default_ttl = default_ttl
        self.auto_extend = auto_extend

    @staticmethod
    def key(session_id: str) -> str:
        return KEY_PREFIX + session_id

    async def create(
        self,
        node_id: str,
        *,
        ttl_seconds: int | None = None,
        metadata: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> SessionRecord:
        """Register a new session; ``ttl_seconds`` 0/None means the default (KATO)."""
        now = datetime.now(UTC)
        ttl = ttl_seconds or self.default_ttl
        rec = SessionRecord(
            session_id=session_id or new_session_id(now),
            node_id=node_id,
            created_at=now.isoformat(),
            last_accessed=now.isoformat(),
            expires_at=(now + timedelta(seconds=ttl)).isoformat(),
            ttl_seconds=ttl,
            metadata=dict(metadata or {}),
        )
        async with self._redis.pipeline(transaction=True) as p:
            p.set(self.key(rec.session_id), rec.dumps(), ex=ttl)
            p.sadd(ACTIVE_INDEX, rec.session_id)
            await p.execute()
        return rec

    async def _load(self, session_id: str) -> SessionRecord | None:
        raw = await self._redis.get(self.key(session_id))
        return None if raw is None else SessionRecord.loads(raw)

    async def get(self, session_id: str) -> SessionRecord | None:
        """Look a session up, sliding its expiry (KATO's ``get_session``); None if gone."""
        rec = await self._load(session_id)
        if rec is None:
            return None
        now = datetime.now(UTC)
        if rec.expires <= now:
            await self._drop(rec)
            return None
        rec.last_accessed = now.isoformat()
        rec.access_count += 1
        if self.auto_extend:
            rec.expires_at = (now + timedelta(seconds=rec.ttl_seconds)).isoformat()
            ttl = rec.ttl_seconds
        else:
            ttl = max(1, rec.remaining_seconds(now))
        # xx=True: a concurrent delete wins over this refresh.
        await self._redis.set(self.key(session_id), rec.dumps(), ex=ttl, xx=True)
        return rec

    async def extend(self, session_id: str, ttl_seconds: int) -> bool:
        """One-off expiry of now + ttl_seconds; the session's own ttl_seconds is unchanged."""
        rec = await self._load(session_id)
        if rec is None:
            return False
        now = datetime.now(UTC)
        rec.expires_at = (now + timedelta(seconds=ttl_seconds)).isoformat()
        rec.last_accessed = now.isoformat()
        return bool(
            await self._redis.set(self.key(session_id), rec.dumps(), ex=ttl_seconds, xx=True)
        )

    async def exists(self, session_id: str) -> tuple[bool, bool]:
        """``(exists, expired)`` without extending; an expired leftover is deleted."""
        rec = await self._load(session_id)
        if rec is None:
            return False, False
        if rec.expires <= datetime.now(UTC):
            await self._drop(rec)
            return False, True
        return True, False

    async def delete(self, session_id: str) -> SessionRecord | None:
        """Remove the session, its node's active marker and its index entry."""
        rec = await self._load(session_id)
        if rec is None:
            return None
        await self._drop(rec)
        return rec

    async def _drop(self, rec: SessionRecord) -> None:
        async with self._redis.pipeline(transaction=True) as p:
            p.delete(self.key(rec.session_id), f"{KEY_PREFIX}node:{rec.node_id}:active")
            p.srem(ACTIVE_INDEX, rec.session_id)
            await p.execute()

    async def count(self) -> int:
        """SCARD of the active index (approximate: TTL expiry leaves ids behind, as KATO)."""
        return int(await self._redis.scard(ACTIVE_INDEX))
