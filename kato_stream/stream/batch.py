"""One batch of the agent: commands processed in order, their outputs awaited together.

The agent takes up to ``KATO_STREAM_AGENT_BATCH`` input records at a time (Faust's
``take_events``), processes them one after the other, sends every output without waiting,
then waits for all the broker's acknowledgements at once and only then writes the table
values, in order (agents.py ``finish``).  Waiting once per batch instead of once per command
is what lets the worker use the time the broker takes to acknowledge.  A command that learns
(or clears a node) ends the batch before it: its event on ``kato.patterns`` must not be
visible while earlier commands are unwritten (their changelog records acknowledged, not
just buffered: app.SessionTable), or a crash would redo them against an LTM that already
holds it.

Until ``finish``, a later command of the batch must see what an earlier one did to its
session: :meth:`Batch.lookup` reads the batch's pending table values before the table, and
:meth:`Batch.load` serves session lists (session_lists.py) that an earlier command of the
batch produced from memory: the batch's lists are written to Redis in ``finish``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from kato_stream.stores.lists import ListStore
from kato_stream.stream.processor import Outcome
from kato_stream.stream.session_lists import Lists, load_or_empty


@dataclass
class Pending:
    """A processed command whose outputs are sent but not yet acknowledged."""

    outcome: Outcome
    futures: list[asyncio.Future[Any]]
    stored: dict[str, tuple[str, bytes]] | None
    """The session's new lists to store, field -> (id, JSON): written for the whole batch
    in one round trip before its table values (agents.py ``finish``)."""
    out_value: bytes
    elapsed: float
    event: Any
    """The Faust event whose partition the table write goes to (agents.py)."""
    offset: int
    retire: list[tuple[str, str, str]] = field(default_factory=list)
    """Stored lists this command replaced (session_lists.retired_lists)."""


@dataclass
class Batch:
    """The pending commands of one batch and the session state they left."""

    table: Any
    store: ListStore | None
    stream: Any = None
    """The agent's Faust stream: its events are acknowledged when the batch is finished."""
    pending: list[Pending] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    holes: list[tuple[Any, int, int]] = field(default_factory=list)
    _values: dict[str, Any] = field(default_factory=dict)
    _lists: dict[str, dict[str, tuple[str, list[Any]]]] = field(default_factory=dict)

    def lookup(self, session_id: str) -> Any:
        """The session's table value as this batch left it."""
        if session_id in self._values:
            return self._values[session_id]
        return self.table.get(session_id)

    def add(self, p: Pending) -> None:
        self.pending.append(p)
        o = p.outcome
        if o.session_id is not None and o.table_value is not None:
            self._values[o.session_id] = o.table_value
            if o.observed:
                self._lists.setdefault(o.session_id, {}).update(o.observed)

    def lists_of(self, session_id: str) -> dict[str, tuple[str, list[Any]]]:
        """field -> (id, list) of the newest list of each field the batch made for the
        session (what its last value names; inlined there when Redis fails)."""
        return self._lists.get(session_id, {})

    async def load(self, session_id: str, wanted: dict[str, str]) -> Lists:
        """The session's lists named by ``wanted``: from this batch where it made them,
        else from the store."""
        mine = self._lists.get(session_id, {})
        out: Lists = {}
        rest: dict[str, str] = {}
        for name, ident in wanted.items():
            have = mine.get(name)
            if have is not None and have[0] == ident:
                out[name] = have[1]
            else:
                rest[name] = ident
        if rest:
            out.update(await load_or_empty(self.store, session_id, rest))
        return out

    def clear(self) -> None:
        self.pending.clear()
        self.events.clear()
        self.holes.clear()
        self._values.clear()
        self._lists.clear()
