"""A real worker's /metrics, scraped during a run, moves exactly as the traffic says.

One worker subprocess on the real broker; two batches of commands to one session of one
node (observes, learns, an observe_sequence, invalid records).  The worker's Prometheus
exposition is scraped with prometheus_client's own text parser before the first batch,
between the batches and after the second, and every assertion is on a delta: counters by
op/status/reason, the engine histograms' ``_count``/``_sum``/buckets, the node's LTM
size, consumer lag per partition (present, back to 0 once drained), rebalances and
table recovery.  An in-process gateway on the same topics then serves one observe
through that worker, and its ``/metrics/prometheus`` counts the request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kato_stream import metrics
from kato_stream.settings import Settings
from kato_stream.stream import codecs
from tests.stream.harness import WorkerProc, collect, env_record, publish, setup_topics

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

Labels = frozenset[tuple[str, str]]
Scrape = dict[tuple[str, Labels], float]

ENGINE_HISTOGRAMS = (
    "kato_observation_duration_seconds",
    "kato_prediction_duration_seconds",
    "kato_learn_duration_seconds",
)


def parse(text: str) -> Scrape:
    """Every sample of an exposition, keyed by (sample name, labels)."""
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


async def scrape_worker(s: Settings) -> Scrape:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"http://127.0.0.1:{s.web_port}/metrics")
    r.raise_for_status()
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def val(sc: Scrape, name: str, **labels: str) -> float:
    return sc.get((name, frozenset(labels.items())), 0.0)


def delta(a: Scrape, b: Scrape, name: str, **labels: str) -> float:
    return val(b, name, **labels) - val(a, name, **labels)


def series(sc: Scrape, name: str) -> dict[Labels, float]:
    return {lb: v for (n, lb), v in sc.items() if n == name}


async def poll(
    what: str, fetch: Callable[[], Any], ok: Callable[[Any], bool], worker: WorkerProc, t: float
) -> Any:
    """Fetch until ``ok(value)`` or the deadline; fail with the last value and the log."""
    deadline = time.monotonic() + t
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await fetch()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if ok(last):
                return last
        assert worker.alive(), worker.log_tail()
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {last!r}\n{worker.log_tail()}")


def batch(
    sid: str, node: str, tag: str, learns: list[tuple[str, str]], invalid: int
) -> tuple[list[tuple[bytes | None, bytes]], dict[str, int]]:
    """Per learn: observe a, observe b, learn (a pattern of two events); then one
    observe_sequence of two, and ``invalid`` records (half malformed JSON, half a learn on
    an empty STM).  Returns the records and the expected counts."""
    k = sid.encode()
    items: list[tuple[bytes | None, bytes]] = []
    for i, (a, b) in enumerate(learns):
        items.append((k, env_record("observe", sid, node, {"strings": [a]}, f"{tag}o{i}a")))
        items.append((k, env_record("observe", sid, node, {"strings": [b]}, f"{tag}o{i}b")))
        items.append((k, env_record("learn", sid, node, {}, f"{tag}l{i}")))
    seq = {"observations": [{"strings": [f"{tag}x"]}, {"strings": [f"{tag}y"]}]}
    items.append((k, env_record("observe_sequence", sid, node, seq, f"{tag}seq")))
    malformed, empty_learns = invalid - invalid // 2, invalid // 2
    for i in range(malformed):
        items.append(
            (k, b'{"op": "observe", "session_id": "' + k + b'", not json ' + str(i).encode())
        )
    # the STM holds the sequence's two events: clear it, then learns on an empty STM
    items.append((k, env_record("clear_stm", sid, node, {}, f"{tag}clear")))
    for i in range(empty_learns):
        items.append((k, env_record("learn", sid, node, {}, f"{tag}empty{i}")))
    n = len(learns)
    want = {
        "observe": 2 * n,
        "learn": n,
        "observe_sequence": 1,
        "clear_stm": 1,
        "malformed": malformed,
        "empty_learns": empty_learns,
        "observations": 2 * n + 2,
        # one prediction per observe (its result reuses it), two inside the sequence plus
        # one on its final STM; none on an empty STM (after a learn, a clear)
        "predictions": 2 * n + 3,
        "records": len(items),
    }
    return items, want


async def test_worker_metrics_move_with_the_traffic(
    stream_settings: Settings, spawn_worker: Callable[..., WorkerProc], unique_id: str
) -> None:
    s = dataclasses.replace(stream_settings, metrics_lag_interval=0.5)
    await setup_topics(s)
    w = spawn_worker(s)
    sid, node = f"{unique_id}-s", f"{unique_id}-n"
    obs_topic = s.topic("observations")

    # the worker is up and has joined the group (its lag series exist) before the baseline
    def lag_series(sc: Scrape) -> dict[Labels, float]:
        return {lb: v for lb, v in series(sc, "kato_consumer_lag").items()}

    def joined(sc: Scrape) -> bool:
        return any(dict(lb)["topic"] == obs_topic for lb in lag_series(sc))

    base = await poll("the worker to serve /metrics", lambda: scrape_worker(s), joined, w, 90)

    b1, want1 = batch(sid, node, "a", [("a1", "b1"), ("a2", "b2"), ("a3", "b3")], invalid=2)
    b2, want2 = batch(sid, node, "b", [("a1", "b1"), ("c1", "d1")], invalid=4)
    distinct_patterns = [3, 4]  # batch 2 relearns a1->b1 (frequency 2) and adds c1->d1

    scrapes = [base]
    sent_total = 0
    for items, want in ((b1, want1), (b2, want2)):
        prev = scrapes[-1]
        await publish(s.kafka_bootstrap, obs_topic, items)
        sent_total += len(items)
        recs = await collect(s.kafka_bootstrap, s.topic("predictions"), sent_total, 90)
        assert len(recs) == sent_total, w.log_tail()
        rejected = [codecs.loads(r.value) for r in recs[-len(items) :]]
        assert sum(d["status"] == "rejected" for d in rejected) == (
            want["malformed"] + want["empty_learns"]
        )

        # the counters are incremented right after the outputs are acknowledged: poll
        # until the last command is counted, then every figure must be exact
        expect_rej = (
            val(prev, "kato_commands_total", op="learn", status="rejected") + want["empty_learns"]
        )

        def counted(sc: Scrape, expect_rej: float = expect_rej) -> bool:
            return val(sc, "kato_commands_total", op="learn", status="rejected") >= expect_rej

        now = await poll("the batch to be counted", lambda: scrape_worker(s), counted, w, 60)
        scrapes.append(now)

        def d(name: str, now: Scrape = now, prev: Scrape = prev, **labels: str) -> float:
            return delta(prev, now, name, **labels)

        # commands by op and status
        assert d("kato_commands_total", op="observe", status="ok") == want["observe"]
        assert d("kato_commands_total", op="learn", status="ok") == want["learn"]
        assert d("kato_commands_total", op="observe_sequence", status="ok") == 1
        assert d("kato_commands_total", op="clear_stm", status="ok") == 1
        assert d("kato_commands_total", op="learn", status="rejected") == want["empty_learns"]
        assert d("kato_commands_total", op="unknown", status="rejected") == want["malformed"]
        total = sum(
            v - prev.get((n, lb), 0.0) for (n, lb), v in now.items() if n == "kato_commands_total"
        )
        assert total == want["records"]
        for op, count in (
            ("observe", want["observe"]),
            ("learn", want["learn"] + want["empty_learns"]),
        ):
            assert d("kato_command_duration_seconds_count", op=op) == count
            assert d("kato_command_duration_seconds_sum", op=op) > 0
        # rejections by reason, and the dead letters
        invalid = want["malformed"] + want["empty_learns"]
        assert d("kato_rejections_total", reason="MALFORMED_JSON") == want["malformed"]
        assert d("kato_rejections_total", reason="EMPTY_STM") == want["empty_learns"]
        assert d("kato_dlq_total") == invalid
        # observations (the sequence's two count) and the engine histograms
        assert d("kato_observations_total", node=node) == want["observations"]
        counts = {
            "kato_observation_duration_seconds": want["observations"],
            "kato_prediction_duration_seconds": want["predictions"],
            "kato_learn_duration_seconds": want["learn"],
        }
        for name, count in counts.items():
            assert d(f"{name}_count") == count, name
            assert d(f"{name}_sum") > 0, name
            buckets = {float(dict(lb)["le"]): v for lb, v in series(now, f"{name}_bucket").items()}
            assert sorted(buckets) == [*metrics.ENGINE_BUCKETS, math.inf], name
            cumulative = [buckets[le] for le in sorted(buckets)]
            assert cumulative == sorted(cumulative), name  # buckets are cumulative
            assert buckets[math.inf] == val(now, f"{name}_count"), name
            assert d(f"{name}_bucket", le="+Inf") == count, name
        # the node's LTM: distinct patterns, not learns
        want_patterns = distinct_patterns[len(scrapes) - 2]
        assert val(now, "kato_patterns_total", node=node) == want_patterns

    # lag: one series per input partition, back to 0 once everything is processed
    def drained(sc: Scrape) -> bool:
        lags = {
            dict(lb)["partition"]: v
            for lb, v in lag_series(sc).items()
            if dict(lb)["topic"] == obs_topic
        }
        return sorted(lags) == [str(p) for p in range(s.partitions)] and not any(lags.values())

    final = await poll("consumer lag back to 0", lambda: scrape_worker(s), drained, w, 60)
    for lb in lag_series(final):
        assert dict(lb)["topic"] == obs_topic  # changelog/internal topics are not reported

    # rebalances: the initial join counted, none during steady traffic
    rebalances = [val(sc, "kato_rebalances_total") for sc in (*scrapes, final)]
    assert 1 <= rebalances[0] <= 3 and len(set(rebalances)) == 1, rebalances
    # recovery finished; its duration is that of a real (short) recovery
    assert val(final, "kato_table_recovery_progress") == 1.0
    assert 0 < val(final, "kato_table_recovery_seconds") < 60
    print(
        f"\nrebalances {rebalances[0]:.0f}, last table recovery "
        f"{val(final, 'kato_table_recovery_seconds'):.3f} s"
    )

    # the gateway in front of the same topics: one observe through this worker
    from kato_stream.gateway.app import create_app
    from kato_stream.gateway.service import Gateway

    gw = Gateway(s, request_timeout=30.0)
    await gw.start()
    try:
        transport = httpx.ASGITransport(app=create_app(gw))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60) as c:
            gnode = f"{unique_id}-gw"
            created = await c.post("/sessions", json={"node_id": gnode})
            assert created.status_code == 200, created.text
            gsid = created.json()["session_id"]
            g0 = parse((await c.get("/metrics/prometheus")).text)
            w0 = await scrape_worker(s)
            r = await c.post(f"/sessions/{gsid}/observe", json={"strings": ["hello"]})
            assert r.status_code == 200, r.text
            g1 = parse((await c.get("/metrics/prometheus")).text)
    finally:
        await gw.stop()
    route = {"method": "POST", "route": "/sessions/{session_id}/observe", "status": "200"}
    assert delta(g0, g1, "kato_request_duration_seconds_count", **route) == 1
    assert delta(g0, g1, "kato_request_duration_seconds_sum", **route) > 0
    les = sorted(
        float(dict(lb)["le"])
        for lb in series(g1, "kato_request_duration_seconds_bucket")
        if {k: dict(lb).get(k) for k in route} == route  # other tests add other statuses
    )
    assert les == [*metrics.REQUEST_BUCKETS, math.inf]

    def observed(sc: Scrape) -> bool:
        return val(sc, "kato_observations_total", node=gnode) >= 1

    w1 = await poll(
        "the gateway's observe on the worker", lambda: scrape_worker(s), observed, w, 30
    )
    assert delta(w0, w1, "kato_commands_total", op="observe", status="ok") == 1
    assert val(w1, "kato_observations_total", node=gnode) == 1
    assert w.alive(), w.log_tail()
    w.stop()
