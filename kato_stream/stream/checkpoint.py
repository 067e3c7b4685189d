"""The write path of one batch, in one place: :meth:`Checkpoint.commit`, in numbered steps.

The agent (agents.py) processes a batch of input records and sends each command's outputs
without waiting (pattern events, dead letter, output record, forwards).  Committing the
batch then makes its effects durable in the one order that survives a crash at any point:

1. the batch's session lists go to Redis (one round trip), while the broker acknowledges;
2. every output of the batch is acknowledged by the broker;
3. the sessions' table values are written, in input order, to the changelog partition of
   their input (with the latest records and the expiry index): each session's last value of
   the batch only;
4. those changelog records are acknowledged;
5. the inputs become committable (filled holes and events acknowledged to Faust);
6. the lists replaced by commands whose offsets are committed now are dropped.

Why this order: a table value carries the offset of the last command applied to its session
(``applied``), and a redelivered command at or below it is skipped.  If a value reached the
changelog before its command's outputs were acknowledged (3 before 2), a crash in between
would skip the redelivered command and lose its output or learn for good.  If an input
became committable before its table value was durable (5 before 4), a crash would restart
after it with the state before it.  A crash anywhere else redoes the batch's commands from
the last commit: their outputs are published again, identical, and their forwards carry the
same ids.  A learn's pattern event additionally waits for every earlier table write to be
durable (agents.py), so that a redone command never meets an LTM that already holds it.

Only each session's last value of a batch is written, and only the lists it can name are
stored (a write cache, as Kafka Streams' record cache in front of a changelogged store): a
value that a later command of the same batch replaced would be overwritten before anyone
could read it, since the batch's inputs become committable together (step 5).  A crash in
between leaves each session either at its value before the batch (redone) or at its last
value (its commands skipped as applied: their outputs were acknowledged in step 2).  Under
load a batch holds several commands per session, and each observe's lists are ~150 KB.

Each step is a method, so a test can stop between any two (tests/stream/test_checkpoint.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kato_stream import compat, metrics
from kato_stream.stream.batch import Batch
from kato_stream.stream.processor import stored_outside
from kato_stream.stream.session_lists import Retired, settle_put

__all__ = ["DURABLE_TIMEOUT", "Checkpoint", "Plan"]

log = logging.getLogger(__name__)

DURABLE_TIMEOUT = 120.0  # longest wait for a batch's changelog records before giving up


class Checkpoint:
    """Commits the agent's batches (one object per agent; :meth:`commit` per batch)."""

    def __init__(
        self,
        *,
        sessions: Any,
        retired: Retired,
        ack_range: Callable[[Any, int, int], None],
        committed: Callable[[Any], int],
        lists: Any = None,
        latest: Any = None,
        expirer: Any = None,
    ) -> None:
        self.sessions = sessions
        self.retired = retired
        self.ack_range = ack_range
        """``ack_range(tp, start, end)``: acknowledge offsets the agent filled or found empty."""
        self.committed = committed
        """``committed(tp)``: the partition's committed offset (for dropping retired lists)."""
        self.lists = lists
        self.latest = latest
        self.expirer = expirer

    async def commit(self, batch: Batch) -> None:
        """Make the batch durable, steps 1 to 6 (module docstring), and clear it."""
        plan = Plan.of(batch)
        put = self.store_lists(plan)  # 1
        await self.outputs_acknowledged(batch)  # 2
        await self.write_tables(batch, put, plan)  # 3
        await self.tables_durable()  # 4
        await self.acknowledge_inputs(batch)  # 5
        batch.clear()
        await self.drop_retired()  # 6

    # -- the steps ---------------------------------------------------------------------------

    def store_lists(self, plan: Plan) -> asyncio.Future[None] | None:
        """1. The batch's new session lists that its last values name to Redis, in one round
        trip (not awaited here: step 3 waits for it before the table values that name them)."""
        if self.lists is None or not plan.stored:
            return None
        staged = list(plan.stored.items())
        put: asyncio.Future[None] = asyncio.ensure_future(self.lists.put_many(staged))
        return put

    async def outputs_acknowledged(self, batch: Batch) -> None:
        """2. Every output the batch sent, acknowledged by the broker (raises if one failed:
        the agent then takes the worker down before anything below happens)."""
        await asyncio.gather(*(f for p in batch.pending for f in p.futures))

    async def write_tables(
        self, batch: Batch, put: asyncio.Future[None] | None, plan: Plan
    ) -> None:
        """3. Each session's last table value of the batch, in input order, to its input's
        changelog partition; the latest records, retired lists and expiry deadlines they
        imply; the command metrics (of every command)."""
        try:
            for i, p in enumerate(batch.pending):
                outcome = p.outcome
                sid = outcome.session_id
                if sid is not None and outcome.table_value is not None and plan.final[sid] == i:
                    if put is not None and sid in plan.stored:
                        # Redis failed: the lists go into the table value (nothing is lost)
                        mine = plan.stored[sid]
                        lists = {
                            name: have
                            for name, have in batch.lists_of(sid).items()
                            if name in mine and mine[name][0] == have[0]
                        }
                        await settle_put(put, outcome.table_value, lists)
                    compat.faust_table_set(self.sessions, sid, outcome.table_value, p.event)
                    if self.expirer is not None:
                        self.expirer.written(p.event.message.partition, sid, outcome.table_value)
                for retired in p.retire:
                    if retired not in plan.unstored:  # a list never stored needs no drop
                        self.retired.add(p.event.message.tp, p.offset, *retired)
                if self.latest is not None and outcome.session_id is not None and outcome.record:
                    self.latest.put(outcome.session_id, p.out_value)
                _observe(p)
        finally:
            compat.faust_table_set_done()

    async def tables_durable(self) -> None:
        """4. The changelog records of every table write so far, acknowledged (a failed write
        raises here; the commands are then redone after the restart, never skipped)."""
        await asyncio.wait_for(self.sessions.durable(), DURABLE_TIMEOUT)

    async def acknowledge_inputs(self, batch: Batch) -> None:
        """5. The batch's inputs committable: offsets of filled holes, then its events."""
        for tp, start, end in batch.holes:
            self.ack_range(tp, start, end)
        for event in batch.events:
            await batch.stream.ack(event)

    async def drop_retired(self) -> None:
        """6. Drop the stored lists replaced by commands whose offsets are committed now (no
        recovery can bring their old table values back)."""
        if self.lists is None or not len(self.retired):
            return
        due = self.retired.due(self.committed)
        if due:
            try:
                await self.lists.forget(due)
            except Exception as exc:  # left in Redis: harmless, only memory
                log.warning("dropping %d retired session lists failed: %s", len(due), exc)


@dataclass(frozen=True)
class Plan:
    """What step 1 stores and step 3 writes of a batch, worked out once per commit."""

    final: dict[str, int]
    """session -> index in ``batch.pending`` of its last table value (the one written)."""
    stored: dict[str, dict[str, tuple[str, bytes]]]
    """session -> field -> (id, JSON) of the lists the batch made that those last values
    name: the only ones to store."""
    unstored: set[tuple[str, str, str]]
    """(session, field, id) of the lists the batch made and does not store: replaced within
    the batch (or dropped, as a clear leaves an empty list inline), named by no value that
    is ever written."""

    @classmethod
    def of(cls, batch: Batch) -> Plan:
        final: dict[str, int] = {}
        made: dict[tuple[str, str, str], bytes] = {}
        for i, p in enumerate(batch.pending):
            sid = p.outcome.session_id
            if sid is not None and p.outcome.table_value is not None:
                final[sid] = i
            for name, (ident, raw) in (p.stored or {}).items():
                made[(sid or "", name, ident)] = raw
        stored: dict[str, dict[str, tuple[str, bytes]]] = {}
        if made:
            for sid, i in final.items():
                value = batch.pending[i].outcome.table_value
                state = value.get("state") if value is not None else None
                for name, ident in stored_outside(state).items():
                    if (sid, name, ident) in made:
                        raw = made.pop((sid, name, ident))
                        stored.setdefault(sid, {})[name] = (ident, raw)
        return cls(final, stored, set(made))


def _observe(p: Any) -> None:
    """The metrics of one committed command."""
    outcome = p.outcome
    rec = outcome.record or {}
    if rec.get("session_expired"):
        metrics.observe_session_expired("command")
    err = rec.get("error") or {}
    metrics.observe_command(
        str(rec.get("op")), str(rec.get("status")), p.elapsed, reason=str(err.get("code", ""))
    )
    if outcome.dead_letter is not None:
        metrics.observe_dlq()
    if outcome.forwards:
        metrics.observe_forwarded(outcome.forwards[0].to_node, len(outcome.forwards))
    threshold = rec.get("recall_threshold")
    if threshold is not None:
        metrics.set_recall_threshold(str(rec.get("node_id")), float(threshold))
