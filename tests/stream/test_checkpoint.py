"""The batch write path (kato_stream/stream/checkpoint.py), step by step and crash by crash.

In process: the broker's acknowledgements are futures this test resolves (or fails), the
Faust table is a stand-in that records which partition each write's changelog goes to (the
one compat.faust_table_set names) and holds its changelog acknowledgements until the test
releases them; the session lists go to the real Redis of the embedded stack.  What each test
reads off is what a restarted worker would find: the table, the acknowledged inputs, Redis.
The same order is checked through a real worker in test_write_order.py and test_stream_crash.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.streams import current_event

from kato_stream.embedded import free_port
from kato_stream.settings import Settings
from kato_stream.stream.batch import Batch, Pending
from kato_stream.stream.checkpoint import Checkpoint
from kato_stream.stream.processor import Outcome
from kato_stream.stream.session_lists import ListStore, Retired, decode


class Table(dict[str, Any]):
    """The session table as the checkpoint uses it: assignment and ``durable()``."""

    def __init__(self) -> None:
        super().__init__()
        self.changelog: list[tuple[int, str]] = []  # (partition, key) per write, in order
        self.acked = asyncio.Event()
        self.fail: BaseException | None = None

    def __setitem__(self, key: str, value: Any) -> None:
        event = current_event()
        assert event is not None, "a table write outside an event has no partition"
        self.changelog.append((event.message.partition, key))
        super().__setitem__(key, value)

    async def durable(self) -> None:
        await self.acked.wait()
        if self.fail is not None:
            raise self.fail


class Stream:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, event: Any) -> None:
        self.acked.append(event.message.offset)


class Event:
    """What the checkpoint reads of a Faust event (Faust holds events by weak reference)."""

    def __init__(self, partition: int, offset: int) -> None:
        tp = SimpleNamespace(topic="in", partition=partition)
        self.message = SimpleNamespace(partition=partition, offset=offset, tp=tp)


def event(partition: int, offset: int) -> Any:
    return Event(partition, offset)


def pending(
    loop: asyncio.AbstractEventLoop, sid: str, partition: int, offset: int, lists: bool = False
) -> tuple[Pending, asyncio.Future[Any]]:
    """A processed command whose output the broker has not acknowledged yet."""
    ack: asyncio.Future[Any] = loop.create_future()
    observed = {"predictions": ("p" + str(offset), [{"name": "x"}])} if lists else {}
    outcome = Outcome(
        key=sid.encode(),
        record={"op": "observe", "status": "ok", "error": None, "recall_threshold": None},
        session_id=sid,
        # as the processor leaves it: a list stored outside is named by its id
        table_value={
            "state": {"stm": [["a"]], **({"predictions_id": "p" + str(offset)} if lists else {})},
            "applied": {"offset": offset},
        },
        observed=observed,
    )
    stored = {"predictions": ("p" + str(offset), b'[{"name":"x"}]')} if lists else None
    ev = event(partition, offset)
    return Pending(outcome, [ack], stored, b"{}", 0.001, ev, offset), ack


def setup(
    lists: Any = None, committed: int = 0
) -> tuple[Checkpoint, Batch, Table, Stream, list[tuple[Any, int, int]]]:
    table, stream, holes_acked = Table(), Stream(), []
    cp = Checkpoint(
        sessions=table,
        retired=Retired(),
        ack_range=lambda tp, s, e: holes_acked.append((tp, s, e)),
        committed=lambda tp: committed,
        lists=lists,
    )
    batch = Batch(table, lists, stream)
    return cp, batch, table, stream, holes_acked


def taken(batch: Batch, *ps: Pending) -> None:
    """The agent processed ``ps`` in this batch (their events wait for the commit)."""
    for p in ps:
        batch.add(p)
        batch.events.append(p.event)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[ListStore]:
    """A list store on the embedded stack's Redis, under an app id of its own."""
    s = dataclasses.replace(Settings(), redis_url=redis_url, app_id="cp-" + str(free_port()))
    lists = ListStore(s)
    await lists.start()
    yield lists
    await lists.stop()


def dead_list_store() -> ListStore:
    """A list store whose Redis is down (nothing listens on its port)."""
    import redis.asyncio as aioredis

    dead = dataclasses.replace(
        Settings(), redis_url=f"redis://127.0.0.1:{free_port()}/0", store_timeout=1.0
    )
    return ListStore(dead, client=aioredis.Redis.from_url(dead.redis_url))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_each_step_waits_for_the_one_before() -> None:
    loop = asyncio.get_running_loop()
    cp, batch, table, stream, _ = setup()
    p1, ack1 = pending(loop, "s1", 0, 10)
    p2, ack2 = pending(loop, "s2", 3, 11)
    taken(batch, p1, p2)
    commit = asyncio.ensure_future(cp.commit(batch))

    await settle()  # step 2: one output still unacknowledged
    ack1.set_result(None)
    await settle()
    assert table == {} and stream.acked == []  # no table value before every output

    ack2.set_result(None)
    await settle()  # step 3 done: values written, each to its own input's partition
    assert table.changelog == [(0, "s1"), (3, "s2")]
    assert current_event() is None  # nothing else writes to the last value's partition
    assert stream.acked == []  # step 4: the changelog is not acknowledged yet

    table.acked.set()
    await commit  # steps 4 to 6
    assert stream.acked == [10, 11]
    assert batch.pending == [] and batch.events == []


async def test_a_failed_output_leaves_the_batch_uncommitted() -> None:
    """Crash between 2 and 3: the broker refused an output.  Nothing of the batch is written
    or acknowledged, so the restarted worker redoes all of it."""
    loop = asyncio.get_running_loop()
    cp, batch, table, stream, _ = setup()
    p1, ack1 = pending(loop, "s1", 0, 10)
    p2, ack2 = pending(loop, "s2", 0, 11)
    taken(batch, p1, p2)
    ack1.set_result(None)
    ack2.set_exception(RuntimeError("MessageSizeTooLarge"))
    with pytest.raises(RuntimeError, match="MessageSizeTooLarge"):
        await cp.commit(batch)
    assert table == {} and stream.acked == []


async def test_a_changelog_write_that_fails_leaves_the_inputs_uncommitted() -> None:
    """Crash between 4 and 5: the table values were sent but the changelog refused them.  The
    inputs stay uncommitted: after the restart the table is recovered without the values and
    the commands are redone."""
    loop = asyncio.get_running_loop()
    cp, batch, table, stream, holes = setup()
    p1, ack1 = pending(loop, "s1", 0, 10)
    taken(batch, p1)
    batch.holes.append((p1.event.message.tp, 7, 10))
    ack1.set_result(None)
    table.fail = RuntimeError("changelog write failed")
    table.acked.set()
    with pytest.raises(RuntimeError, match="changelog"):
        await cp.commit(batch)
    assert table.changelog == [(0, "s1")]  # sent, not acknowledged
    assert stream.acked == [] and holes == []  # the inputs and the filled hole: uncommitted


async def test_lists_go_to_redis_before_the_values_that_name_them(store: ListStore) -> None:
    loop = asyncio.get_running_loop()
    cp, batch, table, stream, _ = setup(lists=store)
    p1, ack1 = pending(loop, "s1", 0, 10, lists=True)
    taken(batch, p1)
    ack1.set_result(None)
    table.acked.set()
    await cp.commit(batch)
    raw = await store.client.hget(store.key("s1", "predictions"), "p10")
    assert decode(raw) == [{"name": "x"}]
    assert "predictions" not in table["s1"]["state"]  # the value names it, holds it not


async def test_replaced_lists_are_dropped_only_once_their_command_is_committed(
    store: ListStore,
) -> None:
    committed = {"offset": 0}
    retired = Retired()
    cp = Checkpoint(
        sessions=Table(),
        retired=retired,
        ack_range=lambda *a: None,
        committed=lambda tp: committed["offset"],
        lists=store,
    )
    await store.put("s1", {"predictions": ("old", b"[]")})
    retired.add("tp", 10, "s1", "predictions", "old")
    await cp.drop_retired()  # step 6 with offset 10 not committed: kept
    assert await store.client.hexists(store.key("s1", "predictions"), "old")
    committed["offset"] = 11
    await cp.drop_retired()
    assert not await store.client.hexists(store.key("s1", "predictions"), "old")


async def test_a_session_with_several_commands_in_a_batch_writes_only_its_last_value(
    store: ListStore,
) -> None:
    """Under load a batch holds several commands per session.  Only the session's last value
    is written to the changelog and only the list it names goes to Redis: the first
    command's list is replaced in the same batch and no written value ever names it.  The
    list the batch replaced from before it is retired as ever; every input is committed."""
    loop = asyncio.get_running_loop()
    cp, batch, table, stream, _ = setup(lists=store)
    p1, ack1 = pending(loop, "s1", 0, 10, lists=True)
    p2, ack2 = pending(loop, "s2", 1, 11, lists=True)
    p3, ack3 = pending(loop, "s1", 0, 12, lists=True)
    p1.retire = [("s1", "predictions", "before")]
    p3.retire = [("s1", "predictions", "p10")]
    taken(batch, p1, p2, p3)
    for ack in (ack1, ack2, ack3):
        ack.set_result(None)
    table.acked.set()
    await cp.commit(batch)
    assert table.changelog == [(1, "s2"), (0, "s1")]  # in the order of the last values
    assert table["s1"]["applied"] == {"offset": 12}
    key = store.key("s1", "predictions")
    assert sorted(await store.client.hkeys(key)) == [b"p12"]
    assert await store.client.hkeys(store.key("s2", "predictions")) == [b"p11"]
    assert cp.retired.pending() == {("s1", "predictions", "before")}
    assert stream.acked == [10, 11, 12]


@pytest.mark.parametrize("commands", [1, 3])
async def test_when_redis_fails_the_last_value_holds_the_newest_lists(commands: int) -> None:
    """Step 1 failed (Redis down): nothing is lost, the session's last value of the batch
    carries the lists it names (those of its newest command)."""
    loop = asyncio.get_running_loop()
    store = dead_list_store()
    cp, batch, table, stream, _ = setup(lists=store)
    made = [pending(loop, "s1", 0, 10 + i, lists=True) for i in range(commands)]
    for i, (p, ack) in enumerate(made):
        p.outcome.observed = {"predictions": (f"p{10 + i}", [{"name": f"v{i}"}])}
        ack.set_result(None)
    taken(batch, *(p for p, _ in made))
    table.acked.set()
    await cp.commit(batch)
    assert table.changelog == [(0, "s1")]
    assert table["s1"]["state"]["predictions"] == [{"name": f"v{commands - 1}"}]
    assert stream.acked == [10 + i for i in range(commands)]
    await store.client.aclose()
