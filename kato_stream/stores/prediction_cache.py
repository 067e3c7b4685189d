"""Prediction cache: predictions shared between workers through Redis, with a TTL.

Many sessions of one node replay the same sequences (training loops, load tests, fan-out
of one stream to several consumers), so the same (knowledge base, STM, parameters) is
predicted again and again.  :class:`PredictionCache` is an engine ``Predictor``
(``Engine(defaults, predictor=cache)``): it wraps :func:`kato_stream.core.predictions.predict`
and answers from Redis when it can.

Correctness by construction: the key is a SHA-1 of the package version, the node id, the
knowledge base's ``fingerprint`` (a hash chain over every learn, clear and finalize it
applied, in order), the STM and every field of the effective ``PredictParams`` including
the recall threshold actually used.  A learn or clear changes the fingerprint, so the
entries of the old knowledge base are simply never asked for again (they expire by TTL):
there is no invalidation message to lose.  Two workers share an entry only when they
applied the same changes in the same order, i.e. hold the same knowledge base.  Values are
stdlib JSON (floats round-trip exactly, NaN included), so a cached answer serialises to the
same bytes as a computed one (tested).

The client is synchronous because the engine runs synchronously inside the agent; every
Redis call is bounded by ``timeout`` and any Redis failure falls back to computing (a cache
must never fail a command).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import RedisError

from kato_stream import __version__, metrics
from kato_stream.core.knowledge import KnowledgeBase
from kato_stream.core.predictions import PredictionResult, PredictParams, predict
from kato_stream.service import Service
from kato_stream.stores.connect import redis_sync_client
from kato_stream.stores.keys import PREDICTION_CACHE_PREFIX as KEY_PREFIX

log = logging.getLogger(__name__)


def cache_key(kb: KnowledgeBase, stm: Sequence[Sequence[str]], params: PredictParams) -> str:
    """Redis key of the predictions for ``stm`` on ``kb`` with ``params``."""
    ident = json.dumps(
        [
            __version__,
            kb.node_id,
            kb.fingerprint,
            [list(e) for e in stm],
            dataclasses.astuple(params),
        ],
        separators=(",", ":"),
    )
    return KEY_PREFIX + hashlib.sha1(ident.encode("utf-8")).hexdigest()


def encode(res: PredictionResult) -> bytes:
    return json.dumps(
        {"p": res.predictions, "f": res.future_potentials, "fast": res.fast_path},
        separators=(",", ":"),
    ).encode("utf-8")


def decode(raw: bytes) -> PredictionResult:
    d = json.loads(raw)
    return PredictionResult(d["p"], d["f"], bool(d["fast"]))


class PredictionCache(Service):
    """A caching ``Predictor`` over one Redis (``await start()`` before use, ``await stop()``
    after; until started and once stopped it computes every prediction)."""

    def __init__(
        self, url: str, *, ttl: int = 300, timeout: float = 0.05, settings: Any = None
    ) -> None:
        super().__init__()
        self.url = url
        self.settings = settings
        """Its Redis credentials (password, TLS) apply to ``url`` (None: none)."""
        self.ttl = ttl
        self.timeout = timeout
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self._r: redis.Redis | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> PredictionCache:
        return cls(
            settings.redis_url,
            ttl=settings.prediction_cache_ttl,
            timeout=settings.prediction_cache_timeout,
            settings=settings,
        )

    async def on_start(self) -> None:
        # no PING: a cache that cannot reach Redis computes (and counts the errors)
        self._r = redis_sync_client(
            self.settings,
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
        )

    async def on_stop(self) -> None:
        client, self._r = self._r, None
        if client is not None:
            client.close()

    @staticmethod
    def cacheable(kb: KnowledgeBase, stm: Sequence[Sequence[str]]) -> bool:
        """Worth and safe to cache: a non-empty STM on a knowledge base with a fingerprint.

        A knowledge base filled without ``apply_learn`` has patterns but no fingerprint;
        caching it would mix it up with an empty one, so it is always computed.
        """
        return any(stm) and (bool(kb.fingerprint) or not kb.patterns)

    def __call__(
        self, kb: KnowledgeBase, stm: Sequence[Sequence[str]], params: PredictParams
    ) -> PredictionResult:
        """Predictions from the cache or computed; timed (hits too) for a non-empty STM."""
        if not any(stm):
            return self._predict(kb, stm, params)
        with metrics.timed(metrics.PREDICTION_DURATION):
            return self._predict(kb, stm, params)

    def _predict(
        self, kb: KnowledgeBase, stm: Sequence[Sequence[str]], params: PredictParams
    ) -> PredictionResult:
        if self._r is None or not self.cacheable(kb, stm):
            return predict(kb, stm, params)
        key = cache_key(kb, stm, params)
        try:
            raw = self._r.get(key)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return predict(kb, stm, params)
        if raw is not None:
            self.hits += 1
            metrics.cache_hit()
            return decode(raw)  # type: ignore[arg-type]
        self.misses += 1
        metrics.cache_miss()
        res = predict(kb, stm, params)
        try:
            self._r.set(key, encode(res), ex=self.ttl)
        except (RedisError, OSError) as exc:
            self._failed(exc)
        return res

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if self.errors == 1 or self.errors % 1000 == 0:
            log.warning("prediction cache unavailable (%d errors), computing: %s", self.errors, exc)


def apply_redis_memory(client: redis.Redis, maxmemory: str, policy: str) -> dict[str, str]:
    """``CONFIG SET`` the Redis memory settings that are set; returns what was applied.

    Cache entries carry a TTL and knowledge-base keys do not, so a ``volatile-*`` policy
    evicts cache entries (and expiring session records) under memory pressure and never a
    pattern (``Settings`` refuses ``allkeys-*``).  Managed Redis often forbids CONFIG: that
    is logged, not fatal, and the server's own configuration then applies.
    """
    applied: dict[str, str] = {}
    for name, value in (("maxmemory", maxmemory), ("maxmemory-policy", policy)):
        if not value:
            continue
        try:
            client.config_set(name, value)
        except (RedisError, OSError) as exc:
            log.warning("could not set Redis %s=%s: %s", name, value, exc)
            continue
        applied[name] = value
    return applied
