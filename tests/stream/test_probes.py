"""A worker's ``/ready`` and ``/live`` (kato_stream/stream/probes.py).

Against real worker subprocesses on the embedded broker:

* start: with thousands of pattern events on ``kato.patterns`` the LTM rebuild takes a
  moment; ``/ready`` and ``/live`` are polled from the worker's first moment and the sequence
  of states is recorded: 503 while the group joins and the table recovers, 503 while the
  LTM is rebuilding, 200 once it serves (a command is answered), 503 ``stopping`` once a
  SIGTERM began; ``/live`` is 200 throughout;
* a supervised task that ends (the pattern follower's loop, cancelled in the worker by a
  trigger file) turns ``/live`` and ``/ready`` to 503 naming it.

And in process: each check's states (heartbeat stale, a task that ended, the group
watchdog's ``_watch`` task ended or crashed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kato_stream import metrics
from kato_stream.core.knowledge import LearnEvent
from kato_stream.core.naming import pattern_name
from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.stream.group import GroupWatchdog
from kato_stream.stream.ltm import learn_event_dict
from kato_stream.stream.probes import (
    Check,
    Heartbeat,
    WorkerProbes,
    verdict,
)
from tests.polling import until
from tests.stream.harness import WorkerProc, collect, env_record, publish, setup_topics

PATTERNS = 60_000  # pattern events on the topic before the worker starts

Sample = tuple[float, str, int | None, dict[str, Any] | None]


def _learn(node: str, learn_id: str, events: list[list[str]]) -> bytes:
    """A learn event of about 1 KB (metadata): the follower's consumer then fetches the topic
    in several rounds, and the worker answers its probes between them."""
    ev = tuple(tuple(e) for e in events)
    return codecs.dumps(
        learn_event_dict(
            LearnEvent(
                node_id=node,
                learn_id=learn_id,
                name=pattern_name(ev),
                events=ev,
                metadata={"note": [learn_id + "." * 1000]},
            )
        )
    )


async def _get(client: httpx.AsyncClient, port: int, path: str) -> tuple[int | None, Any]:
    try:
        r = await client.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except (httpx.HTTPError, OSError):
        return None, None  # not listening (yet, or any more)
    return r.status_code, r.json()


def _states(body: Any) -> str:
    if body is None:
        return "-"
    return (
        ", ".join(f"{name}={c['state']}" for name, c in body["checks"].items() if not c["ok"])
        or "all ok"
    )


def _runs(samples: list[Sample], path: str) -> list[tuple[float, int | None, str]]:
    """Consecutive samples of ``path`` with the same status and failing states, collapsed to
    the first one of each run: (seconds since start, status, failing states)."""
    out: list[tuple[float, int | None, str]] = []
    for t, p, status, body in samples:
        if p != path:
            continue
        key = (status, _states(body))
        if not out or (out[-1][1], out[-1][2]) != key:
            out.append((round(t, 2), *key))
    return out


async def _poll(
    client: httpx.AsyncClient,
    port: int,
    samples: list[Sample],
    t0: float,
    done: Callable[[list[Sample]], bool],
    timeout: float,
    w: WorkerProc,
    every: float = 0.05,
) -> None:
    """Sample ``/ready`` and ``/live`` into ``samples`` until ``done(samples)``."""

    async def sample() -> list[Sample]:
        for path in ("/ready", "/live"):
            status, body = await _get(client, port, path)
            samples.append((time.monotonic() - t0, path, status, body))
        return samples

    await until(sample, done, timeout, every=every, what="the probes", context=w.log_tail)


def _ready(ss: list[Sample]) -> bool:
    """``/ready`` answered 200 once."""
    return any(p == "/ready" and st == 200 for _, p, st, _ in ss)


def _gone(w: WorkerProc, since: int) -> Callable[[list[Sample]], bool]:
    """The worker exited, or its probes stopped answering (4 samples in a row after
    ``samples[since]``)."""

    def gone(ss: list[Sample]) -> bool:
        tail = ss[since:]
        return (w.proc is not None and w.proc.poll() is not None) or (
            len(tail) >= 4 and all(st is None for _, _, st, _ in tail[-4:])
        )

    return gone


@pytest.mark.stack
@pytest.mark.timeout(300)
async def test_ready_and_live_through_start_serve_and_sigterm(
    stream_settings: Settings,
    spawn_worker: Callable[..., WorkerProc],
    unique_id: str,
    tmp_path: Path,
) -> None:
    s = stream_settings
    await setup_topics(s)
    node = f"probe-{unique_id}"
    t = time.monotonic()
    learns = [
        (node.encode(), _learn(node, f"L{i}", [[f"a{i}"], [f"b{i % 97}", "c"]]))
        for i in range(PATTERNS)
    ]
    await publish(s.kafka_bootstrap, s.topic("patterns"), learns)
    published = time.monotonic() - t

    t0 = time.monotonic()
    w = spawn_worker(s, "probes")
    samples: list[Sample] = []
    port = s.web_port

    async with httpx.AsyncClient() as client:
        await _poll(client, port, samples, t0, _ready, 240, w)
        ready_at = next(t for t, p, st, _ in samples if p == "/ready" and st == 200)
        # serving: a command is answered now
        sid = f"s-{unique_id}"
        await publish(
            s.kafka_bootstrap,
            s.topic("observations"),
            [(sid.encode(), env_record("observe", sid, node, {"strings": ["a1"]}, "m1"))],
        )
        out = await collect(s.kafka_bootstrap, s.topic("predictions"), 1, 60)
        assert [codecs.loads(r.value)["status"] for r in out] == ["ok"], w.log_tail()
        answered_at = time.monotonic() - t0
        n_running = len(samples)
        await _poll(client, port, samples, t0, lambda ss: len(ss) >= n_running + 10, 30, w)

        # SIGTERM: the worker stops being ready while it still answers
        assert w.proc is not None
        w.proc.send_signal(signal.SIGTERM)
        term_at = time.monotonic() - t0
        n_before_term = len(samples)
        await _poll(client, port, samples, t0, _gone(w, n_before_term), 60, w, every=0.0)
    w.stop()

    ready_runs, live_runs = _runs(samples, "/ready"), _runs(samples, "/live")
    times = [t for t, p, st, _ in samples if p == "/ready" and st is not None and t < term_at]
    gap = max((b - a, a) for a, b in zip(times, times[1:], strict=False))
    print(f"\nlongest wait between two answers before SIGTERM: {gap[0]:.2f}s after {gap[1]:.2f}s")
    print(f"\npublished {PATTERNS} pattern events in {published:.1f}s")
    print(f"/ready runs: {ready_runs}")
    print(f"/live runs: {live_runs}")
    applied = sorted(
        {
            (round(t, 2), b["checks"]["ltm"]["events_applied"])
            for t, p, _, b in samples
            if p == "/ready" and b is not None and b["checks"]["ltm"]["state"] == "rebuilding"
        }
    )
    print(f"LTM rebuilding (seconds, events applied): {applied}")
    print(
        f"first 200 at {ready_at:.2f}s, command answered at {answered_at:.2f}s, "
        f"SIGTERM at {term_at:.2f}s"
    )

    before = [(st, b) for t, p, st, b in samples if p == "/ready" and t < ready_at]
    answered = [(st, b) for st, b in before if st is not None]
    assert answered and all(st == 503 for st, _ in answered), ready_runs
    # 503 with the group stable and the table recovered, only because the LTM is not rebuilt
    # yet: the follower starting, or folding the topic
    waiting_for_ltm = [
        b
        for _, b in answered
        if b["checks"]["table"]["ok"]
        and b["checks"]["group"]["ok"]
        and b["checks"]["ltm"]["state"] in ("not started", "rebuilding")
    ]
    assert waiting_for_ltm, ready_runs
    assert all(b["checks"]["ltm"]["events_applied"] < PATTERNS for b in waiting_for_ltm)
    assert {f for b in waiting_for_ltm for f in b["failing"]} <= {"ltm", "ltm_follower"}
    # the fold gives the event loop turns as it goes (ltm/follower.py, YIELD_SECONDS): the probes are
    # answered during it and see it progress, not only before and after
    progress = {
        b["checks"]["ltm"]["events_applied"]
        for b in waiting_for_ltm
        if b["checks"]["ltm"]["state"] == "rebuilding"
    }
    assert len({n for n in progress if 0 < n < PATTERNS}) >= 3, ready_runs
    assert all(b["failing"] for _, b in answered)
    # ready = every check ok, the LTM holding every event
    first = next(b for t, p, st, b in samples if p == "/ready" and st == 200)
    assert first["status"] == "ok" and not first["failing"]
    assert first["checks"]["ltm"]["events_applied"] >= PATTERNS
    assert first["checks"]["group"]["partitions"] == list(range(s.partitions))
    assert set(first["checks"]) == {"lifecycle", "group", "table", "ltm", "ltm_follower"}
    # ready from the first 200 to the SIGTERM
    running = [st for t, p, st, _ in samples if p == "/ready" and ready_at <= t < term_at]
    assert running and all(st == 200 for st in running), ready_runs
    # /live: 200 whenever the worker answered before the SIGTERM
    live = [(st, b) for t, p, st, b in samples if p == "/live" and t < term_at and st]
    assert live and all(st == 200 for st, _ in live), live_runs
    assert all(b["checks"]["heartbeat"]["state"] == "beating" for _, b in live)
    # after the SIGTERM: never ready again once it said so (503 "stopping" while the web
    # server still answers: the window is short without a persister), then gone
    after = [(st, b) for t, p, st, b in samples[n_before_term:] if p == "/ready"]
    first_not = next(i for i, (st, _) in enumerate(after) if st != 200)
    assert all(st != 200 for st, _ in after[first_not:]), ready_runs
    for st, b in after[first_not:]:
        assert st is None or b["checks"]["lifecycle"]["state"] == "stopping", b
    live_after = [(st, b) for _, p, st, b in samples[n_before_term:] if p == "/live" and st]
    assert all(st == 200 for st, _ in live_after), live_runs  # stopping is not dead
    assert w.proc is not None and w.proc.returncode == 0, w.log_tail()


_ENDING_WORKER = """
import asyncio
import sys
from pathlib import Path

import mode

from kato_stream.settings import Settings
from kato_stream.stream.app import build_worker

w = build_worker(Settings.from_env())
trigger = Path(sys.argv[1])


@w.app.timer(interval=0.1)
async def end_the_follower_loop() -> None:
    # the supervised loop of the pattern follower ends (its task cancelled): what /live is for
    if trigger.exists() and w.follower.alive():
        trigger.unlink()
        w.follower.loops[0].task.cancel()


@w.app.service
class SlowToStop(mode.Service):
    # stops first and takes a second, as an agent finishing a long batch would
    async def on_stop(self) -> None:
        await asyncio.sleep(1.0)


w.run("info")
"""


@pytest.mark.stack
@pytest.mark.timeout(180)
async def test_persisting_worker_a_task_that_ends_then_sigterm(
    stream_settings: Settings,
    spawn_worker: Callable[..., WorkerProc],
    tmp_path: Path,
) -> None:
    """With persistence (as deployed): ready names the persister and the latest-record
    writer; the pattern follower's loop ends -> /live and /ready 503 naming it; a SIGTERM ->
    /ready 503 ``stopping`` while the worker finishes (a service of the app that takes a
    second to stop stands for a long last batch)."""
    s = dataclasses.replace(
        stream_settings, persist=True, clickhouse_url=f"chdb://{tmp_path / 'chdb'}"
    )
    await setup_topics(s)
    trigger = tmp_path / "end-follower"
    t0 = time.monotonic()
    w = spawn_worker(s, "ending", argv=["-c", _ENDING_WORKER, str(trigger)])
    samples: list[Sample] = []
    async with httpx.AsyncClient() as client:
        await _poll(client, s.web_port, samples, t0, _ready, 120, w)
        ready_at = time.monotonic() - t0

        def stores_open(ss: list[Sample]) -> bool:  # reported, not required to be ready
            return any(
                p == "/ready" and st == 200 and b["checks"]["persister"]["stores_open"]
                for _, p, st, b in ss
            )

        await _poll(client, s.web_port, samples, t0, stores_open, 60, w)
        first = next(b for _, p, st, b in samples if p == "/ready" and st == 200)
        live = [b for _, p, st, b in samples if p == "/live" and st == 200]
        trigger.write_text("now")
        ended_at = time.monotonic() - t0

        def dead(ss: list[Sample]) -> bool:
            return any(p == "/live" and st == 503 for _, p, st, _ in ss)

        await _poll(client, s.web_port, samples, t0, dead, 30, w)
        dead_at = time.monotonic() - t0
        status, body = await _get(client, s.web_port, "/ready")
        assert w.alive()  # nothing else happened to it

        assert w.proc is not None
        w.proc.send_signal(signal.SIGTERM)
        term_at = time.monotonic() - t0
        n_before_term = len(samples)
        await _poll(client, s.web_port, samples, t0, _gone(w, n_before_term), 60, w, every=0.0)
    w.stop()
    print(f"\n/ready runs: {_runs(samples, '/ready')}")
    print(f"/live runs: {_runs(samples, '/live')}")
    print(
        f"ready at {ready_at:.2f}s, follower loop ended at {ended_at:.2f}s, /live 503 by "
        f"{dead_at:.2f}s, SIGTERM at {term_at:.2f}s"
    )

    assert {"persister", "latest_writer"} <= set(first["checks"])
    assert first["checks"]["persister"]["state"] == "running"
    assert live and {"persister", "latest_writer", "group_watchdog"} <= set(live[-1]["checks"])
    tasks = ("ltm_follower", "persister", "latest_writer", "group_watchdog")
    assert all(live[-1]["checks"][n]["state"] == "running" for n in tasks), live[-1]
    b = next(b for _, p, st, b in samples if p == "/live" and st == 503)
    assert b["failing"] == ["ltm_follower"]
    assert b["checks"]["ltm_follower"] == {"ok": False, "state": "ended"}
    assert b["checks"]["heartbeat"]["ok"] and b["checks"]["group_watchdog"]["ok"]
    assert status == 503 and body["failing"] == ["ltm_follower"], body
    assert body["checks"]["ltm_follower"]["state"] == "not running"
    # the SIGTERM: 503 "stopping" seen while the worker still answered, then gone
    after = [(st, b) for _, p, st, b in samples[n_before_term:] if p == "/ready" and st]
    assert after and all(st == 503 for st, _ in after)
    assert any(b["checks"]["lifecycle"]["state"] == "stopping" for _, b in after), after
    assert w.proc is not None and w.proc.returncode == 0, w.log_tail()


# -- in process ----------------------------------------------------------------------------


class _Event:
    def __init__(self, on: bool = False) -> None:
        self.on = on

    def is_set(self) -> bool:
        return self.on


class _Follower:
    """What the probes read of the pattern follower (a Service: ``started``, ``alive()``)."""

    def __init__(self) -> None:
        self.ready = _Event()
        self.started = False
        self.running = False
        self.registry = type("R", (), {"applied_events": 0})()

    def alive(self) -> bool:
        return self.running


class _Service:
    def __init__(self, started: bool = True, running: bool = True) -> None:
        self.started, self.running = started, running

    def alive(self) -> bool:
        return self.running


class _TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class _App:
    def __init__(self) -> None:
        self.should_stop = False
        self.crashed = False
        self.rebalancing_count = 0
        self.rebalancing = False
        self.in_recovery = False
        self.tables = type("T", (), {"actives_ready": False})()
        self.assigned = [_TP("x.observations", 1), _TP("x.sessions-changelog", 1)]
        self.consumer = self

    def assignment(self) -> list[_TP]:
        return self.assigned


def test_ready_checks_each_state() -> None:
    app, follower = _App(), _Follower()
    persister = _Service()
    probes = WorkerProbes(app, "x.observations", follower, services={"persister": persister})

    def failing() -> list[str]:
        status, body = probes.ready()
        assert (status == 200) == (not body["failing"])
        return [f"{n}={body['checks'][n]['state']}" for n in body["failing"]]

    assert failing() == [
        "group=joining",
        "table=waiting for recovery",
        "ltm=not started",
        "ltm_follower=not running",
    ]
    app.rebalancing_count, app.rebalancing = 1, True
    app.in_recovery = True
    assert failing()[:2] == ["group=rebalancing", "table=recovering"]
    app.rebalancing, app.in_recovery, app.tables.actives_ready = False, False, True
    follower.running = True
    assert failing() == ["ltm=rebuilding"]
    follower.ready.on = True
    assert failing() == []
    assert probes.ready()[1]["checks"]["group"]["partitions"] == [1]
    app.assigned = []  # the group gave it none while stable: ready, as a standby
    status, body = probes.ready()
    assert status == 200 and body["checks"]["group"]["state"] == "none assigned (standby)"
    persister.running = False
    assert failing() == ["persister=not running"]
    persister.running = True
    app.should_stop = True
    assert failing() == ["lifecycle=stopping"]


def test_live_checks_started_tasks_only_and_skips_them_while_stopping() -> None:
    app, follower = _App(), _Follower()
    hb = Heartbeat(interval=0.01, stale_after=5.0)
    probes = WorkerProbes(app, "x.observations", follower, heartbeat=hb)

    async def run() -> None:
        assert probes.live()[1]["checks"]["heartbeat"]["state"] == "not started"
        await hb.start()
        await asyncio.sleep(0.05)
        status, body = probes.live()
        assert status == 200, body  # the follower is not started yet: not a failure
        assert body["checks"]["ltm_follower"]["state"] == "not started"
        follower.started = follower.running = True
        assert probes.live()[0] == 200
        follower.running = False  # its loop ended
        status, body = probes.live()
        assert status == 503 and body["failing"] == ["ltm_follower"]
        assert body["checks"]["ltm_follower"]["state"] == "ended"
        app.should_stop = True  # stopping: the tasks stop by design, only the heartbeat
        status, body = probes.live()
        assert status == 200 and body["checks"]["lifecycle"]["state"] == "stopping"
        app.should_stop = False
        follower.started = False  # stopped by its owner: not started, not a failure
        assert probes.live()[0] == 200
        # a stale heartbeat: the loop did not run it for longer than stale_after
        assert hb.last is not None
        c = hb.check(now=hb.last + 6.0)
        assert c == Check(False, "stale", c.detail) and c.detail["age_seconds"] == 6.0
        await hb.stop()
        assert hb.check().state == "stopped"

    asyncio.run(run())


def test_live_follows_the_group_watchdogs_loop() -> None:
    async def run() -> None:
        calls = []

        class Quiet(GroupWatchdog):
            async def check(self) -> list[Any]:
                calls.append(1)
                return []

        app, follower = _App(), _Follower()
        wd = Quiet("127.0.0.1:1", ["g"], interval=0.05)
        probes = WorkerProbes(app, "x.observations", follower, watchdog=wd)
        assert probes.live()[1]["checks"]["group_watchdog"]["state"] == "not started"
        await probes.heartbeat.start()
        await wd.start()
        await asyncio.sleep(0.1)
        status, body = probes.live()
        assert calls and status == 200 and body["checks"]["group_watchdog"]["state"] == "running"
        assert "group_watchdog" not in probes.ready()[1]["checks"]  # not a reason to be unready
        wd.loops[0].task.cancel()  # its loop ends (cancelled from outside)
        await asyncio.sleep(0.05)
        status, body = probes.live()
        assert status == 503 and body["failing"] == ["group_watchdog"]
        assert body["checks"]["group_watchdog"]["state"] == "ended"
        await wd.stop()
        await probes.heartbeat.stop()

    asyncio.run(run())


def test_verdict_shape() -> None:
    assert verdict({"a": Check(True, "x")}) == (
        200,
        {"status": "ok", "failing": [], "checks": {"a": {"ok": True, "state": "x"}}},
    )
    status, body = verdict({"a": Check(True, "x"), "b": Check(False, "y", {"n": 1})})
    assert status == 503 and body["failing"] == ["b"]
    assert body["checks"]["b"] == {"ok": False, "state": "y", "n": 1}


def test_install_probes_serves_both_paths_and_a_failing_check_as_503() -> None:
    pages: dict[str, Any] = {}

    class App:
        def page(self, path: str) -> Any:
            return lambda fn: pages.setdefault(path, fn)

    class View:
        def json(self, body: Any, *, status: int, headers: dict[str, str]) -> Any:
            return status, body, headers

    def broken() -> tuple[int, dict[str, Any]]:
        raise RuntimeError("no consumer")

    metrics.install_probes(App(), lambda: (200, {"status": "ok"}), broken)
    assert set(pages) == {"/ready", "/live"}
    status, body, headers = asyncio.run(pages["/ready"](View(), None))
    assert (status, body, headers) == (200, {"status": "ok"}, {"Cache-Control": "no-store"})
    status, body, _ = asyncio.run(pages["/live"](View(), None))
    assert status == 503 and body["failing"] == ["probe"] and "no consumer" in body["error"]
