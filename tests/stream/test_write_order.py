"""Write order across a batch: a learn's pattern event is sent only after the changelog
records of every earlier table write are acknowledged (agents.py ``prepare``).

The crash test (test_stream_crash.py) catches a violation only when the SIGKILL lands in the
window; this checks the order on every learn of a stream, with a real worker on the real
broker (probe_worker.py watches the sends, it replaces nothing)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from kato_stream.settings import Settings
from tests.stream.harness import by_source, collect, mixed_stream, publish, setup_topics

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]


async def test_no_learn_is_sent_before_earlier_table_writes_are_durable(
    stream_settings: Settings, spawn_worker, tmp_path: Path
) -> None:
    s = stream_settings
    await setup_topics(s)
    # 4 commands per session and round, one learn among them: batches mix writes and learns
    items = mixed_stream(sessions=4, rounds=range(12))
    learns = sum(b'"op":"learn"' in v for _, v in items)
    report = tmp_path / "order.json"
    w = spawn_worker(s, "probe", ["-m", "tests.stream.probe_worker", str(report)])
    await publish(s.kafka_bootstrap, s.topic("observations"), items)
    recs = await collect(s.kafka_bootstrap, s.topic("predictions"), len(items), timeout=120)
    assert len(by_source(recs)) == len(items), w.log_tail()
    w.stop()
    counts = orjson.loads(report.read_bytes())
    assert counts["sends"] >= learns  # every learn of the stream was watched
    assert counts["early"] == 0, counts
