"""ClickHouse store on real chdb (the session's chdb dir): round-trip, replay, clear."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from kato_stream.core.knowledge import KnowledgeBase, LearnEvent
from kato_stream.settings import Settings
from kato_stream.stores import ClickHouseStore, StoreError, StoreUnavailableError, kb_id
from kato_stream.stores.clickhouse import schema_sql, schema_statements
from tests.stores.worked_example import P1, P2, applied, kb_view, learns

pytestmark = pytest.mark.timeout(120)


async def test_load_node_reproduces_applied_knowledge_base(
    clickhouse_store: ClickHouseStore, unique_id: str
) -> None:
    node = f"node-{unique_id}"
    events = learns(node)
    await clickhouse_store.write_learns(events, seq=100)
    loaded = await clickhouse_store.load_node(node)
    assert kb_view(loaded) == kb_view(applied(node, events))
    assert loaded.patterns[P1].frequency == 4
    assert await clickhouse_store.count_patterns(node) == 2
    assert await clickhouse_store.count_learns(node) == 5


async def test_replayed_inserts_count_once(
    clickhouse_store: ClickHouseStore, unique_id: str
) -> None:
    node = f"node-{unique_id}"
    events = learns(node)
    await clickhouse_store.write_learns(events, seq=0)
    await clickhouse_store.write_learns(events, seq=50)  # redelivered later: same learn_ids
    assert await clickhouse_store.count_learns(node) == 5
    assert await clickhouse_store.count_patterns(node) == 2
    assert kb_view(await clickhouse_store.load_node(node)) == kb_view(applied(node, events))


async def test_load_follows_seq_not_insert_order(
    clickhouse_store: ClickHouseStore, unique_id: str
) -> None:
    node = f"node-{unique_id}"
    events = learns(node)
    for i in reversed(range(len(events))):  # inserted backwards, ordered by seq
        clickhouse_store.add_learn(events[i], seq=i)
    assert clickhouse_store.pending == 5
    loaded = await clickhouse_store.load_node(node)  # reads flush first
    assert clickhouse_store.pending == 0
    assert kb_view(loaded) == kb_view(applied(node, events))
    assert loaded.patterns[P1].emotives == [{"joy": 0.1}, {"joy": 0.3}]


async def test_get_pattern_and_patterns_data_row(
    clickhouse_store: ClickHouseStore, unique_id: str
) -> None:
    node = f"node-{unique_id}"
    await clickhouse_store.write_learns(learns(node))
    p1 = await clickhouse_store.get_pattern(node, "PTRN|" + P1)
    assert p1 == {
        "name": "PTRN|" + P1,
        "pattern_data": [["a", "b"], ["c"]],
        "length": 3,
        "frequency": 4,
        "emotives": [{"joy": 0.1}, {"joy": 0.3}],
        "metadata": {"src": ["w", "x"], "k": ["1"]},
    }
    assert await clickhouse_store.get_pattern(node, "0" * 40) is None
    rows = await clickhouse_store._run(
        clickhouse_store._rows,
        "SELECT name, pattern_data, length, token_set, token_count, first_token, last_token"
        " FROM kato.patterns_data FINAL WHERE kb_id = {kb:String} ORDER BY name",
        {"kb": kb_id(node)},
    )
    assert sorted(rows) == sorted(
        [
            (P1, [["a", "b"], ["c"]], 3, ["a", "b", "c"], 3, "a", "c"),
            (P2, [["b"], ["d", "d"]], 3, ["b", "d"], 2, "b", "d"),
        ]
    )


async def test_clear_node_forgets_and_blocks_echoes(
    clickhouse_store: ClickHouseStore, unique_id: str
) -> None:
    node, other = f"node-{unique_id}", f"other-{unique_id}"
    events = learns(node)
    await clickhouse_store.write_learns(events, seq=1)
    await clickhouse_store.write_learns(learns(other), seq=1)
    await clickhouse_store.clear_node(node, "clear-1", seq=10)
    assert await clickhouse_store.count_patterns(node) == 0
    assert (await clickhouse_store.load_node(node)).patterns == {}
    # An echo of an old learn after the clear does not resurrect it; a new learn counts.
    await clickhouse_store.write_learns(events[:1], seq=11)
    fresh = LearnEvent(node, "m6", P2, (("b",), ("d", "d")))
    await clickhouse_store.write_learns([fresh], seq=12)
    expected = KnowledgeBase(node_id=node)
    for ev in events:
        expected.apply_learn(ev)
    expected.clear("clear-1")
    expected.apply_learn(events[0])
    expected.apply_learn(fresh)
    loaded = await clickhouse_store.load_node(node)
    assert kb_view(loaded) == kb_view(expected)
    assert list(loaded.patterns) == [P2]
    # Isolation: the other node is untouched.
    assert await clickhouse_store.count_patterns(other) == 2
    assert kb_view(await clickhouse_store.load_node(other)) == kb_view(
        applied(other, learns(other))
    )


async def test_buffer_flushes_on_interval_and_on_stop(
    stack_settings: Settings, unique_id: str
) -> None:
    node = f"node-{unique_id}"
    events = learns(node)
    settings = dataclasses.replace(
        stack_settings, store_flush_seconds=0.05, clickhouse_batch_size=1000
    )
    async with ClickHouseStore(settings) as store:
        store.add_learn(events[0])
        for _ in range(100):
            if store.pending == 0:
                break
            await asyncio.sleep(0.02)
        assert store.pending == 0  # the interval flusher inserted it
    slow = dataclasses.replace(stack_settings, store_flush_seconds=3600, clickhouse_batch_size=1000)
    store = ClickHouseStore(slow)
    await store.start()
    for ev in events[1:]:
        store.add_learn(ev)
    assert store.pending == 4
    await store.stop()  # stop flushes
    async with ClickHouseStore(slow) as reader:
        assert await reader.count_learns(node) == 5


def test_deploy_schema_is_the_packaged_schema() -> None:
    deploy = Path(__file__).resolve().parents[2] / "deploy" / "clickhouse" / "schema.sql"
    assert deploy.read_text("utf-8") == schema_sql()
    stmts = schema_statements(schema_sql())
    assert [s.split("(")[0].split()[-1] for s in stmts] == [
        "kato",
        "kato.patterns_data",
        "kato.pattern_learns",
        "kato.node_clears",
    ]


async def test_unreachable_server_is_a_clear_error(stack_settings: Settings) -> None:
    settings = dataclasses.replace(
        stack_settings, clickhouse_url="http://default:secret@127.0.0.1:1/", store_timeout=2
    )
    store = ClickHouseStore(settings)
    with pytest.raises(StoreUnavailableError) as err:
        await store.start()
    assert "ClickHouse at http://default:***@127.0.0.1:1/ unavailable" in str(err.value)
    assert "secret" not in str(err.value)


async def test_second_chdb_dir_in_one_process_is_a_clear_error(
    clickhouse_store: ClickHouseStore, tmp_path: Path
) -> None:
    other = ClickHouseStore(clickhouse_store.settings, url=f"chdb://{tmp_path}/ch")
    with pytest.raises(StoreUnavailableError, match="one process per data directory"):
        await other.start()


async def test_calls_before_start_fail_clearly(stack_settings: Settings) -> None:
    with pytest.raises(StoreError, match="not started"):
        await ClickHouseStore(stack_settings).count_patterns("n")
