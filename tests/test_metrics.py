"""kato_stream.metrics: helpers move the right series; the exposition parses and names match."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kato_stream import metrics
from kato_stream.settings import Settings


def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the registry, keyed by (sample name, labels)."""
    body, _ = metrics.render()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(name: str, **labels: str) -> float:
    return scrape().get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(autouse=True)
def _default_label_policy() -> Any:
    metrics.configure(Settings())
    yield
    metrics.configure(Settings())


def test_exposition_declares_exactly_the_documented_families() -> None:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    declared = {
        line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE kato_")
    }
    assert declared == metrics.METRIC_NAMES


def test_no_created_series_and_build_info() -> None:
    samples = scrape()
    assert not any(name.endswith("_created") for name, _ in samples)
    assert value("kato_build_info", version=metrics.__version__) == 1.0


def test_histograms_use_the_explicit_buckets() -> None:
    metrics.PREDICTION_DURATION.observe(0.003)
    les = [
        float(dict(labels)["le"])
        for (name, labels) in scrape()
        if name == "kato_prediction_duration_seconds_bucket"
    ]
    assert sorted(les) == [*metrics.ENGINE_BUCKETS, float("inf")]


def test_observe_command_counts_times_and_rejects() -> None:
    ok0 = value("kato_commands_total", op="observe", status="ok")
    n0 = value("kato_command_duration_seconds_count", op="observe")
    s0 = value("kato_command_duration_seconds_sum", op="observe")
    metrics.observe_command("observe", "ok", 0.25)
    assert value("kato_commands_total", op="observe", status="ok") == ok0 + 1
    assert value("kato_command_duration_seconds_count", op="observe") == n0 + 1
    assert value("kato_command_duration_seconds_sum", op="observe") == pytest.approx(s0 + 0.25)

    r0 = value("kato_rejections_total", reason="ObservationError")
    rej0 = value("kato_commands_total", op="configure", status="rejected")
    metrics.observe_command("configure", "rejected", reason="ObservationError")
    assert value("kato_rejections_total", reason="ObservationError") == r0 + 1
    assert value("kato_commands_total", op="configure", status="rejected") == rej0 + 1


def test_unknown_op_and_status_are_folded() -> None:
    before = value("kato_commands_total", op="unknown", status="other")
    metrics.observe_command("drop table", "weird")
    assert value("kato_commands_total", op="unknown", status="other") == before + 1
    assert not any(dict(labels).get("op") == "drop table" for _, labels in scrape())


def test_rejection_reasons_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics._config, "reasons", metrics.LabelCap(2))
    other0 = value("kato_rejections_total", reason="_other")
    for reason in ("capA", "capB", "capC", "capD"):
        metrics.observe_command("observe", "rejected", reason=reason)
    assert value("kato_rejections_total", reason="capA") >= 1
    assert value("kato_rejections_total", reason="capB") >= 1
    assert value("kato_rejections_total", reason="capC") == 0
    assert value("kato_rejections_total", reason="_other") == other0 + 2


def test_timed_observes_seconds_even_on_error() -> None:
    c0 = value("kato_learn_duration_seconds_count")
    with metrics.timed(metrics.LEARN_DURATION) as t:
        pass
    assert t.seconds >= 0.0
    with pytest.raises(RuntimeError), metrics.timed(metrics.LEARN_DURATION):
        raise RuntimeError("boom")
    assert value("kato_learn_duration_seconds_count") == c0 + 2

    r0 = value("kato_command_duration_seconds_count", op="learn")
    with metrics.timed(metrics.COMMAND_DURATION, op="learn"):
        pass
    assert value("kato_command_duration_seconds_count", op="learn") == r0 + 1


def test_node_label_on_capped_and_off() -> None:
    metrics.configure(Settings.from_env({"KATO_STREAM_METRICS_MAX_NODES": "1"}))
    a0 = value("kato_observations_total", node="node-a")
    o0 = value("kato_observations_total", node="_other")
    metrics.observe_observations("node-a", 3)
    metrics.observe_observations("node-b", 2)
    metrics.observe_observations("node-a", 0)
    assert value("kato_observations_total", node="node-a") == a0 + 3
    assert value("kato_observations_total", node="_other") == o0 + 2

    metrics.configure(Settings.from_env({"KATO_STREAM_METRICS_NODE_LABEL": "false"}))
    all0 = value("kato_observations_total", node="_all")
    metrics.observe_observations("node-z")
    metrics.set_patterns("node-z", 42)
    metrics.set_recall_threshold("node-z", 0.3)
    assert value("kato_observations_total", node="_all") == all0 + 1
    assert value("kato_patterns_total", node="_all") == 42
    assert value("kato_effective_recall_threshold", node="_all") == 0.3
    assert value("kato_observations_total", node="node-z") == 0


def test_gauges_counters_and_visibility() -> None:
    metrics.set_patterns("n1", 7)
    assert value("kato_patterns_total", node="n1") == 7
    metrics.set_patterns("n1", 9)
    assert value("kato_patterns_total", node="n1") == 9

    d0, h0, m0 = (
        value("kato_dlq_total"),
        value("kato_prediction_cache_hits_total"),
        value("kato_prediction_cache_misses_total"),
    )
    metrics.observe_dlq()
    metrics.cache_hit()
    metrics.cache_hit()
    metrics.cache_miss()
    assert value("kato_dlq_total") == d0 + 1
    assert value("kato_prediction_cache_hits_total") == h0 + 2
    assert value("kato_prediction_cache_misses_total") == m0 + 1

    le1 = value("kato_pattern_visibility_seconds_bucket", le="1.0")
    le05 = value("kato_pattern_visibility_seconds_bucket", le="0.5")
    assert metrics.observe_visibility(100.0, now=100.75) == pytest.approx(0.75)
    assert metrics.observe_visibility(100.0, now=99.0) == 0.0  # clock skew clamps to 0
    assert value("kato_pattern_visibility_seconds_bucket", le="1.0") == le1 + 2
    assert value("kato_pattern_visibility_seconds_bucket", le="0.5") == le05 + 1


def test_consumer_lag_clamps_and_forgets() -> None:
    metrics.set_consumer_lag("kato.observations", 3, 120)
    assert value("kato_consumer_lag", topic="kato.observations", partition="3") == 120
    metrics.set_consumer_lag("kato.observations", 3, -5)
    assert value("kato_consumer_lag", topic="kato.observations", partition="3") == 0
    metrics.forget_partition("kato.observations", 3)
    metrics.forget_partition("kato.observations", 3)  # idempotent
    assert (
        "kato_consumer_lag",
        frozenset({("topic", "kato.observations"), ("partition", "3")}),
    ) not in scrape()


def test_request_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics._config, "routes", metrics.LabelCap(1))
    metrics.observe_request("get", "/sessions/{session_id}", 200, 0.02)
    metrics.observe_request("BREW", "/x/1", 418, 0.02)
    assert (
        value(
            "kato_request_duration_seconds_count",
            method="GET",
            route="/sessions/{session_id}",
            status="200",
        )
        >= 1
    )
    assert (
        value("kato_request_duration_seconds_count", method="OTHER", route="_other", status="418")
        >= 1
    )


def test_render_openmetrics_on_request() -> None:
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_asgi_app_and_middleware_by_route_template() -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def session(request: Any) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["sid"])

    app = Starlette(
        routes=[Route("/sessions/{sid}", session), Mount("/metrics", app=metrics.asgi_app)]
    )
    transport = httpx.ASGITransport(app=metrics.MetricsMiddleware(app))

    async def get(path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.get(path)

    labels = {"method": "GET", "route": "/sessions/{sid}", "status": "200"}
    before = value("kato_request_duration_seconds_count", **labels)
    miss0 = value(
        "kato_request_duration_seconds_count", method="GET", route="_unmatched", status="404"
    )
    assert asyncio.run(get("/sessions/abc")).text == "abc"
    assert asyncio.run(get("/sessions/def")).status_code == 200
    assert asyncio.run(get("/nope/123")).status_code == 404
    assert value("kato_request_duration_seconds_count", **labels) == before + 2
    assert (
        value("kato_request_duration_seconds_count", method="GET", route="_unmatched", status="404")
        == miss0 + 1
    )

    resp = asyncio.run(get("/metrics/"))
    assert resp.status_code == 200
    assert "kato_commands_total" in resp.text
    # /metrics itself is not timed
    assert not any(dict(lb).get("route", "").startswith("/metrics") for _, lb in scrape())


def test_aiohttp_handler() -> None:
    class Req:
        headers = {"Accept": "text/plain"}

    resp = asyncio.run(metrics.aiohttp_handler(Req()))
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    assert b"# TYPE kato_dlq_total counter" in resp.body


class _TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class _Consumer:
    def __init__(self) -> None:
        self.tps = {_TP("kato.observations", 0): 50, _TP("kato.observations", 1): 10}
        self._committed_offset = {tp: 20 for tp in self.tps}

    def assignment(self) -> set[_TP]:
        return set(self.tps)

    def highwater(self, tp: _TP) -> int:
        return self.tps[tp]


class _Recovery:
    def __init__(self) -> None:
        self.in_recovery = False
        self.remaining = 0

    def active_remaining_total(self) -> int:
        return self.remaining


class _App:
    def __init__(self) -> None:
        self.rebalancing_count = 0
        self.consumer = _Consumer()
        self.tables = type("T", (), {})()
        self.tables.recovery = _Recovery()
        self.pages: dict[str, Any] = {}
        self.timers: list[tuple[float, Any]] = []

    def page(self, path: str) -> Any:
        return lambda fn: self.pages.setdefault(path, fn)

    def timer(self, interval: float) -> Any:
        return lambda fn: self.timers.append((interval, fn)) or fn


def test_faust_sampler_lag_rebalances_recovery() -> None:
    app = _App()
    sampler = metrics.FaustSampler(app)
    reb0 = value("kato_rebalances_total")
    sampler.sample()
    assert value("kato_consumer_lag", topic="kato.observations", partition="0") == 30
    assert value("kato_consumer_lag", topic="kato.observations", partition="1") == 0
    assert value("kato_table_recovery_progress") == 1.0

    app.rebalancing_count = 3
    app.consumer.tps.pop(next(tp for tp in app.consumer.tps if tp.partition == 1))
    app.tables.recovery.in_recovery = True
    app.tables.recovery.remaining = 200
    sampler.sample()
    assert value("kato_rebalances_total") == reb0 + 3
    assert value("kato_table_recovery_progress") == 0.0
    assert value("kato_consumer_lag", topic="kato.observations", partition="1") == 0
    assert not any(
        n == "kato_consumer_lag" and dict(lb).get("partition") == "1" for n, lb in scrape()
    )

    app.tables.recovery.remaining = 50
    sampler.sample()
    assert value("kato_table_recovery_progress") == pytest.approx(0.75)
    app.tables.recovery.in_recovery = False
    sampler.sample()
    assert value("kato_table_recovery_progress") == 1.0
    assert value("kato_table_recovery_seconds") >= 0.0


def test_faust_sampler_tolerates_unstarted_app() -> None:
    class Broken:
        rebalancing_count = None
        consumer = type("C", (), {"assignment": lambda self: 1 / 0})()

    metrics.FaustSampler(Broken()).sample()  # no exception


def test_install_faust_registers_page_and_timer() -> None:
    app = _App()
    settings = Settings.from_env({"KATO_STREAM_METRICS_LAG_INTERVAL": "2.5"})
    metrics.install_faust(app, settings)
    assert list(app.pages) == ["/metrics"]
    assert app.timers[0][0] == 2.5

    class View:
        def bytes(self, body: bytes, *, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
            return body, headers

    class Req:
        headers: dict[str, str] = {}

    body, headers = asyncio.run(app.pages["/metrics"](View(), Req()))
    assert headers["Content-Type"].startswith("text/plain")
    assert b"kato_consumer_lag" in body
    asyncio.run(app.timers[0][1]())  # one sampler tick runs
    assert value("kato_consumer_lag", topic="kato.observations", partition="0") == 30


def test_install_faust_on_a_real_faust_app() -> None:
    faust = pytest.importorskip("faust")
    app = faust.App("kato-metrics-test", broker="kafka://127.0.0.1:1", web_enabled=True)
    metrics.install_faust(app, Settings())
    paths = [str(getattr(v, "view_path", "")) for v in app.web.views.values()]
    assert "/metrics" in paths
