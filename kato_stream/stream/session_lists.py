"""The bulky lists of each session's state, kept in Redis instead of the session table.

KATO keeps a session's last observe-time predictions in the session (spec §4.1; clients see
them in cognition-data), and kato-stream also keeps the last full-path future potentials
there (the single-symbol fast path returns them).  In a changelog-backed table that is about
200 KB per command at the default 100 predictions, written to the changelog on every command
and held in the worker's memory for every session: the biggest cost of a command.  Here the
table keeps only their ids (processor.py) and this store keeps the lists, in one hash per
session and field, ``kato-stream:{app_id}:session:{sid}:{field}``, id -> JSON list (the app id
keeps deployments that share a Redis apart).

The agent stores a batch's lists in one round trip (:meth:`ListStore.put_many`) and awaits
it before it writes the batch's table values, so the table never names a list the store
does not hold; a failed put leaves the lists inline in the table value (nothing is lost,
those commands just cost what they did before).  A list a command replaced is
kept until that command's input offset is committed (:class:`Retired`): until then a crash
can bring back the table value that names it.  A missing entry (Redis flushed, or its
eviction policy dropped the key) reads as None, which the agent reports and answers with an
empty list.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from kato_stream import metrics
from kato_stream.contracts import TableValue
from kato_stream.stores.keys import LIST_KEY
from kato_stream.stores.lists import ListStore, decode
from kato_stream.stream import codecs
from kato_stream.stream.processor import BULKY, stored_outside

__all__ = [
    "FIELDS",
    "LIST_KEY",
    "ListStore",
    "Lists",
    "Retired",
    "decode",
    "encode",
    "load_or_empty",
    "retired_lists",
    "settle_put",
    "sweep",
]

log = logging.getLogger(__name__)


FIELDS = tuple(BULKY)

Lists = dict[str, list[dict[str, Any]]]


def encode(items: list[Any]) -> bytes:
    """A list as stored: the bytes it has inside an output record (codecs.dumps_sharing)."""
    return codecs.dumps(items)


async def sweep(
    store: ListStore,
    sessions: list[tuple[str, dict[str, str]]],
    keep: set[tuple[str, str, str]],
    chunk: int = 500,
) -> int:
    """Delete the stored lists that no table value names any more; returns how many.

    ``sessions`` are (session id, field -> id of the list its table value names) for the
    sessions of the partitions this worker owns; ``keep`` are lists that must stay although
    no table value names them (replaced by commands whose offsets are not committed yet:
    :class:`Retired`).  A crash forgets what :class:`Retired` knew and can leave lists of
    a batch whose table values were never written: both are orphans that nothing would
    ever delete.  Run between batches, when no list is staged for a table write."""
    dropped = 0
    for i in range(0, len(sessions), chunk):
        part = sessions[i : i + chunk]
        async with store.client.pipeline(transaction=False) as p:
            for sid, _current in part:
                for name in FIELDS:
                    p.hkeys(store.key(sid, name))
            found = await p.execute()
        stale: list[tuple[str, str, str]] = []
        it = iter(found)
        for sid, current in part:
            for name in FIELDS:
                for raw in next(it):
                    ident = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
                    if ident != current.get(name) and (sid, name, ident) not in keep:
                        stale.append((sid, name, ident))
        if stale:
            await store.forget(stale)
            dropped += len(stale)
    return dropped


def retired_lists(before: dict[str, Any] | None, outcome: Any) -> list[tuple[str, str, str]]:
    """The stored lists a command's outcome replaces: (session, field, old id) for each list
    kept outside the table whose id changed (all of them when it closed the session)."""
    sid, value = outcome.session_id, outcome.table_value
    if not sid or value is None or not before or not before.get("state"):
        return []
    new = value["state"] or {}
    return [
        (sid, name, old_id)
        for name, old_id in stored_outside(before["state"]).items()
        if new.get(BULKY[name]) != old_id
    ]


class Retired:
    """Lists replaced (or sessions closed) by commands whose input offsets are not committed
    yet: deletable once they are, since no recovery can bring the old table value back."""

    def __init__(self) -> None:
        self._items: deque[tuple[Any, int, str, str, str]] = deque()

    def add(self, tp: Any, offset: int, session_id: str, name: str, ident: str) -> None:
        self._items.append((tp, offset, session_id, name, ident))

    def due(self, committed: Callable[[Any], int]) -> list[tuple[str, str, str]]:
        """Remove and return the entries whose command's offset is committed."""
        out: list[tuple[str, str, str]] = []
        keep: deque[tuple[Any, int, str, str, str]] = deque()
        while self._items:
            tp, offset, sid, name, ident = self._items.popleft()
            if committed(tp) > offset:
                out.append((sid, name, ident))
            else:
                keep.append((tp, offset, sid, name, ident))
        self._items = keep
        return out

    def __len__(self) -> int:
        return len(self._items)

    def pending(self) -> set[tuple[str, str, str]]:
        """(session, field, id) of every list still waiting for its commit."""
        return {(sid, name, ident) for _tp, _o, sid, name, ident in self._items}


async def settle_put(
    put: asyncio.Future[None],
    table_value: TableValue,
    lists: dict[str, tuple[str, list[Any]]],
) -> bool:
    """Wait for the put of the command's batch; if it failed, put the lists back
    into ``table_value``'s state (the table then holds them, as with ``table``).

    Returns whether the store holds them."""
    try:
        await put
        return True
    except Exception as exc:  # Redis unavailable: nothing may be lost
        log.warning("storing session lists in Redis failed: %s", exc)
        metrics.observe_lists_fallback("put")
        inline = {name: items for name, (_, items) in lists.items()}
        table_value["state"] = {**(table_value["state"] or {}), **inline}
        return False


async def load_or_empty(store: ListStore | None, session_id: str, wanted: dict[str, str]) -> Lists:
    """The session's stored lists named by ``wanted``; [] (logged and counted) for each that
    the store cannot give."""
    got: dict[str, Any] = {}
    if store is not None:
        try:
            got = await store.get(session_id, wanted)
        except Exception as exc:
            log.warning("reading session lists from Redis failed: %s", exc)
    out: Lists = {}
    for name, ident in wanted.items():
        items = got.get(name)
        if items is None:
            log.warning("%s %s of session %s is not in Redis: using []", name, ident, session_id)
            metrics.observe_lists_fallback("get")
            items = []
        out[name] = items
    return out
