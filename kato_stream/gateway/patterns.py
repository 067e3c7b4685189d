"""Node-level reads: ``GET /pattern/{id}`` and ``/symbols/*``.

Where a pattern is read from (docs/gateway.md "Pattern reads"): the long-term memory that
every worker folds from ``kato.patterns`` (:class:`~kato_stream.stream.ltm.LtmRegistry`).
A gateway in its own process follows the topic itself (a :class:`PatternFollower`); a
gateway running inside a worker process (``kato-stream dev``) shares the worker's registry.
Either way no ClickHouse connection is needed, which matters for embedded chdb (one process
per data directory).  A read first waits (bounded) until the follower has applied every event
that was on the topic when the read came in (:meth:`PatternFollower.sync`): a worker answers a
learn only once its event is on the topic, so a read after a learn's answer sees it, new
pattern or higher frequency alike.

Symbol statistics and affinities are read from Redis under KATO's keys (spec §7.2), which
the persister writes as KATO does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kato_stream.stores.kb_id import kb_id

if TYPE_CHECKING:
    from kato_stream.gateway.service import Gateway
    from kato_stream.stream.ltm import LtmRegistry

log = logging.getLogger(__name__)
SYNC_WAIT_SECONDS = 1.0  # longest wait for the follower before answering from what it has


def _lookup(ltm: LtmRegistry, kb: str, service: str, name: str) -> dict[str, Any] | None:
    """Find ``name`` in any node of the registry that maps to ``kb`` (``a-b``/``a.b`` share one)."""
    for node_id, mem in list(ltm.nodes.items()):
        if kb_id(node_id, service) != kb:
            continue
        rec = mem.kb.get(name)
        if rec is not None:
            api: dict[str, Any] = rec.to_api()
            return api
    return None


async def pattern_body(
    gw: Gateway, node_id: str, kb: str, pattern_id: str
) -> dict[str, Any] | None:
    """KATO's pattern record (``name`` with ``PTRN|``) or None when the node has no such pattern."""
    if gw.ltm is None:
        return None
    if gw.follower is not None and not await gw.follower.sync(SYNC_WAIT_SECONDS):
        log.warning(
            "pattern follower behind the topic after %ss: reading it as is", SYNC_WAIT_SECONDS
        )
    return _lookup(gw.ltm, kb, gw.settings.service_name, pattern_id)


def _text(v: bytes | str) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else v


async def read_symbol_stats(gw: Gateway, kb: str) -> dict[str, dict[str, Any]]:
    """``{symbol: {"name", "frequency", "pattern_member_frequency"}}`` from ``{kb}:symbols:*``."""
    assert gw.redis is not None
    freq = await gw.redis.hgetall(f"{kb}:symbols:freq")
    pmf = {_text(k): int(v) for k, v in (await gw.redis.hgetall(f"{kb}:symbols:pmf")).items()}
    out: dict[str, dict[str, Any]] = {}
    for k, v in freq.items():
        s = _text(k)
        out[s] = {"name": s, "frequency": int(v), "pattern_member_frequency": pmf.get(s, 0)}
    return out


async def read_affinities(
    gw: Gateway, kb: str, symbol: str | None = None
) -> dict[str, dict[str, float]]:
    """``{symbol: {emotive: running sum}}`` from ``{kb}:affinity:{symbol}`` (one or all)."""
    assert gw.redis is not None
    prefix = f"{kb}:affinity:"
    if symbol is not None:
        keys = [prefix + symbol]
    else:
        keys = [
            _text(k) async for k in gw.redis.scan_iter(match=_glob_escape(prefix) + "*", count=500)
        ]
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        raw = await gw.redis.hgetall(key)
        if raw:
            out[key[len(prefix) :]] = {_text(k): float(v) for k, v in raw.items()}
    return out


def _glob_escape(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)
