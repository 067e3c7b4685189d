"""Redis: KATO's knowledge-base key layout and kato-stream's hot read path.

* Knowledge base (spec §7.2, no TTL): ``{kb}:frequency:{hash}``, ``{kb}:emotives:{hash}``,
  ``{kb}:metadata:{hash}``, ``{kb}:symbols:freq``, ``{kb}:symbols:pmf``,
  ``{kb}:symbol_to_patterns:{symbol}``, ``{kb}:affinity:{symbol}``, ``{kb}:global:*``,
  finalize-training metrics and ``{kb}:prediction:{unique_id}``, written from
  :class:`LearnEvent` exactly as KATO's learn writes them (§4.2), so KATO clients and KATO's
  test fixtures that read Redis directly see KATO's values.  Each learn is applied in one
  optimistic transaction that also records its ``learn_id`` in
  ``kato-stream:kb:{kb}:applied`` (outside ``{kb}:*``, so it survives clear-all): a
  replayed learn or clear changes nothing.
* Hot path: the latest output record per session (``kato-stream:session:{sid}:latest``,
  with TTL) and KATO's session registry (``kato:session:{sid}`` JSON with TTL plus the
  ``kato:session:_active_index`` set); KATO's session semantics are the gateway's job.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kato_stream.core.knowledge import LearnEvent, Precomputed, average_emotives, merge_metadata
from kato_stream.service import Service
from kato_stream.settings import Settings
from kato_stream.stores._util import redact
from kato_stream.stores.connect import redis_client, redis_hint
from kato_stream.stores.errors import StoreError, StoreUnavailableError
from kato_stream.stores.kb_id import kb_id
from kato_stream.stores.keys import (  # re-exported: stores/keys.py holds every key
    ACTIVE_INDEX,
    APPLIED_KEY,
    LATEST_KEY,
    SESSION_PREFIX,
)

_GLOB_SPECIAL = str.maketrans({"*": r"\*", "?": r"\?", "[": r"\[", "]": r"\]", "\\": "\\\\"})


def _s(value: bytes | str | None) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class RedisStore(Service):
    """Async Redis service (``async start()``/``stop()``); every write is idempotent."""

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.url = settings.redis_url if url is None else url
        self._r: aioredis.Redis | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def on_start(self) -> None:
        """Connect and PING; raises :class:`StoreUnavailableError` when Redis does not answer."""
        t = self.settings.store_timeout
        client = redis_client(self.settings, self.url, socket_connect_timeout=t, socket_timeout=t)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            hint = redis_hint(self.settings, self.url, exc)
            raise StoreUnavailableError(
                f"Redis at {redact(self.url)} unavailable: {exc}{hint}"
            ) from exc
        self._r = client

    async def on_stop(self) -> None:
        """Close the connection pool (writes are never buffered)."""
        client, self._r = self._r, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> aioredis.Redis:
        """The underlying client (for reads this class does not wrap)."""
        if self._r is None:
            raise StoreError("RedisStore is not started")
        return self._r

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[aioredis.Redis]:
        client = self.client
        try:
            yield client
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailableError(f"Redis at {redact(self.url)} unavailable: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"Redis at {redact(self.url)}: {exc}") from exc

    def kb(self, node_id: str) -> str:
        return kb_id(node_id, self.settings.service_name)

    # -- knowledge base writes ---------------------------------------------------------

    async def write_learn(self, ev: LearnEvent) -> bool:
        """Apply one learn to KATO's keys; ``False`` (no change) if its ``learn_id`` was seen."""
        kb = self.kb(ev.node_id)
        h = ev.name
        applied = APPLIED_KEY.format(kb=kb)
        freq_key, emo_key, meta_key = (
            f"{kb}:frequency:{h}",
            f"{kb}:emotives:{h}",
            f"{kb}:metadata:{h}",
        )
        flat = [s for e in ev.events for s in e]
        counts = Counter(flat)
        keep = max(1, ev.persistence)
        emotives = [dict(d) for d in ev.emotives]
        avg = average_emotives(ev.emotives) if ev.emotives else {}
        async with self._guard() as r, r.pipeline(transaction=True) as p:
            while True:
                try:
                    await p.watch(applied, freq_key, emo_key, meta_key)
                    if await p.sismember(applied, ev.learn_id):
                        return False
                    known = bool(await p.exists(freq_key))
                    old_emo: list[dict[str, float]] = []
                    old_meta: dict[str, list[str]] = {}
                    if known and (ev.emotives or ev.metadata):
                        old_emo = json.loads(_s(await p.get(emo_key)) or "[]")
                        old_meta = json.loads(_s(await p.get(meta_key)) or "{}")
                    p.multi()  # type: ignore[no-untyped-call]
                    p.sadd(applied, ev.learn_id)
                    if not known:
                        p.set(freq_key, 1)
                        p.set(emo_key, json.dumps(emotives[-keep:]))
                        p.set(
                            meta_key,
                            json.dumps({k: sorted(set(v)) for k, v in ev.metadata.items()}),
                        )
                        for s in counts:
                            p.hincrby(f"{kb}:symbols:pmf", s, 1)
                        p.incrby(f"{kb}:global:total_pattern_frequencies", 1)
                        p.incrby(f"{kb}:global:total_unique_patterns", 1)
                    else:
                        p.incr(freq_key)
                        if ev.emotives or ev.metadata:
                            p.set(emo_key, json.dumps((old_emo + emotives)[-keep:]))
                            p.set(meta_key, json.dumps(merge_metadata(old_meta, ev.metadata)))
                    for s, c in counts.items():
                        p.hincrby(f"{kb}:symbols:freq", s, c)
                        p.sadd(f"{kb}:symbol_to_patterns:{s}", h)
                    p.incrby(f"{kb}:global:total_symbols_in_patterns_frequencies", len(flat))
                    for s in counts:
                        for k, v in avg.items():
                            p.hincrbyfloat(f"{kb}:affinity:{s}", k, v)
                    await p.execute()
                    return True
                except WatchError:
                    continue

    async def clear_node(self, node_id: str, clear_id: str) -> bool:
        """Clear-all: delete every ``{kb}:*`` key; ``False`` if ``clear_id`` was applied."""
        kb = self.kb(node_id)
        async with self._guard() as r:
            if not await r.sadd(APPLIED_KEY.format(kb=kb), clear_id):
                return False
            batch: list[bytes] = []
            async for key in r.scan_iter(match=kb.translate(_GLOB_SPECIAL) + ":*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await r.unlink(*batch)
                    batch.clear()
            if batch:
                await r.unlink(*batch)
        return True

    async def write_precomputed(self, node_id: str, name: str, m: Precomputed) -> None:
        """finalize-training's per-pattern metrics (spec §4.8), as KATO stores them."""
        kb = self.kb(node_id)
        async with self._guard() as r, r.pipeline(transaction=True) as p:
            p.set(f"{kb}:entropy:{name}", str(m.entropy))
            p.set(f"{kb}:normalized_entropy:{name}", str(m.normalized_entropy))
            p.set(f"{kb}:global_normalized_entropy:{name}", str(m.global_normalized_entropy))
            p.set(f"{kb}:tf_vector:{name}", json.dumps(m.tf_vector))
            await p.execute()

    async def put_prediction(self, node_id: str, unique_id: str, predictions: list[Any]) -> None:
        """KATO's ``{kb}:prediction:{unique_id}`` (observe-time predictions, no TTL)."""
        async with self._guard() as r:
            await r.set(f"{self.kb(node_id)}:prediction:{unique_id}", json.dumps(predictions))

    # -- knowledge base reads ----------------------------------------------------------

    async def get_pattern_meta(self, node_id: str, name: str) -> dict[str, Any] | None:
        """``{"frequency", "emotives", "metadata"}`` of a pattern (bare hash), or None."""
        kb = self.kb(node_id)
        async with self._guard() as r:
            f, e, m = await r.mget(
                f"{kb}:frequency:{name}", f"{kb}:emotives:{name}", f"{kb}:metadata:{name}"
            )
        if f is None:
            return None
        return {
            "frequency": int(f),
            "emotives": json.loads(_s(e) or "[]"),
            "metadata": json.loads(_s(m) or "{}"),
        }

    async def get_symbol_stats(self, node_id: str) -> tuple[dict[str, int], dict[str, int]]:
        """``(symbols:freq, symbols:pmf)`` of the node."""
        kb = self.kb(node_id)
        async with self._guard() as r:
            freq = await r.hgetall(f"{kb}:symbols:freq")
            pmf = await r.hgetall(f"{kb}:symbols:pmf")
        return (
            {str(_s(k)): int(v) for k, v in freq.items()},
            {str(_s(k)): int(v) for k, v in pmf.items()},
        )

    async def get_globals(self, node_id: str) -> dict[str, int]:
        """The three ``{kb}:global:*`` counters (0 when absent)."""
        kb = self.kb(node_id)
        names = [
            "total_symbols_in_patterns_frequencies",
            "total_pattern_frequencies",
            "total_unique_patterns",
        ]
        async with self._guard() as r:
            values = await r.mget([f"{kb}:global:{n}" for n in names])
        return {n: int(v or 0) for n, v in zip(names, values, strict=True)}

    async def get_affinity(self, node_id: str, symbol: str) -> dict[str, float]:
        """``{kb}:affinity:{symbol}``: emotive -> running sum."""
        async with self._guard() as r:
            raw = await r.hgetall(f"{self.kb(node_id)}:affinity:{symbol}")
        return {str(_s(k)): float(v) for k, v in raw.items()}

    # -- latest output record per session ----------------------------------------------

    async def set_latest(
        self, session_id: str, record: Mapping[str, Any] | bytes, ttl: int | None = None
    ) -> None:
        """Store the session's latest output record (JSON; bytes are stored as given)."""
        value = record if isinstance(record, bytes) else json.dumps(record)
        async with self._guard() as r:
            await r.set(
                LATEST_KEY.format(sid=session_id), value, ex=ttl or self.settings.latest_ttl
            )

    async def get_latest(self, session_id: str) -> dict[str, Any] | None:
        async with self._guard() as r:
            raw = await r.get(LATEST_KEY.format(sid=session_id))
        return None if raw is None else json.loads(raw)

    # -- session registry (KATO's keys) --------------------------------------------------

    async def put_session(self, session_id: str, data: Mapping[str, Any], ttl: int) -> None:
        """Write ``kato:session:{sid}`` with ``ttl`` seconds and add it to the active index."""
        async with self._guard() as r, r.pipeline(transaction=True) as p:
            p.set(SESSION_PREFIX + session_id, json.dumps(data), ex=ttl)
            p.sadd(ACTIVE_INDEX, session_id)
            await p.execute()

    async def get_session(
        self, session_id: str, extend_ttl: int | None = None
    ) -> dict[str, Any] | None:
        """The session JSON, or None; ``extend_ttl`` resets its TTL (sliding expiry)."""
        key = SESSION_PREFIX + session_id
        async with self._guard() as r:
            if extend_ttl is None:
                raw = await r.get(key)
            else:
                async with r.pipeline(transaction=True) as p:
                    p.get(key)
                    p.expire(key, extend_ttl)
                    raw, _ = await p.execute()
        return None if raw is None else json.loads(raw)

    async def extend_session(self, session_id: str, ttl: int) -> bool:
        """Set the session's TTL to ``ttl`` seconds; False if it does not exist."""
        async with self._guard() as r:
            return bool(await r.expire(SESSION_PREFIX + session_id, ttl))

    async def session_ttl(self, session_id: str) -> int:
        """Remaining seconds (``-2`` missing, ``-1`` no TTL), as Redis TTL."""
        async with self._guard() as r:
            return int(await r.ttl(SESSION_PREFIX + session_id))

    async def delete_session(self, session_id: str, node_id: str | None = None) -> bool:
        """Delete the session (and KATO's per-node active key); True if it existed."""
        keys = [SESSION_PREFIX + session_id]
        if node_id is not None:
            keys.append(f"{SESSION_PREFIX}node:{node_id}:active")
        async with self._guard() as r, r.pipeline(transaction=True) as p:
            p.delete(keys[0])
            if len(keys) > 1:
                p.delete(keys[1])
            p.srem(ACTIVE_INDEX, session_id)
            p.delete(LATEST_KEY.format(sid=session_id))
            res = await p.execute()
        return bool(res[0])

    async def count_active(self) -> int:
        """``SCARD kato:session:_active_index`` (approximate, as KATO: TTL expiry is not removed)."""
        async with self._guard() as r:
            return int(await r.scard(ACTIVE_INDEX))
