"""Prometheus scrape config, alert rules and the Grafana dashboard agree with the code."""

from __future__ import annotations

import json
from typing import Any

from .conftest import DEPLOY, ROOT, load_yaml, metric_refs, metric_sample_names


def _balanced(expr: str) -> bool:
    depth = 0
    for ch in expr:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_metric_sample_names_cover_histograms() -> None:
    names = metric_sample_names()
    assert "kato_request_duration_seconds_bucket" in names
    assert "kato_commands_total" in names
    assert "kato_commands_total_bucket" not in names


def test_scrape_targets_match_the_metrics_ports(services: dict[str, Any]) -> None:
    prom = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    targets = {
        name: {t for sc in job["static_configs"] for t in sc["targets"]}
        for name, job in jobs.items()
    }
    workers = {n for n in services if n.startswith("worker-")}
    expected = {f"{w}:{services[w]['environment']['KATO_STREAM_WEB_PORT']}" for w in workers}
    assert targets["kato-worker"] == expected
    gw = services["gateway"]["command"]
    assert targets["kato-gateway"] == {f"gateway:{gw[gw.index('--port') + 1]}"}
    assert jobs["kato-worker"]["metrics_path"] == "/metrics"
    assert jobs["kato-gateway"]["metrics_path"] == "/metrics/prometheus"


def test_rule_files_are_mounted_and_exist(services: dict[str, Any]) -> None:
    prom = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    mounts = dict(v.split(":")[:2][::-1] for v in services["prometheus"]["volumes"])
    host_dir = mounts["/etc/prometheus"]
    for rule_file in prom["rule_files"]:
        assert rule_file.startswith("/etc/prometheus/")
        assert (ROOT / host_dir / rule_file.removeprefix("/etc/prometheus/")).is_file()
    command = " ".join(services["prometheus"]["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in command


def test_alert_rules_are_well_formed_and_use_real_metrics() -> None:
    rules = [
        r for g in load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"] for r in g["rules"]
    ]
    names = metric_sample_names()
    alerts = {r["alert"] for r in rules}
    assert len(alerts) == len(rules), "duplicate alert names"
    referenced: set[str] = set()
    for r in rules:
        expr = r["expr"]
        assert _balanced(expr), r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"], r["alert"]
        refs = metric_refs(expr)
        assert refs <= names, f"{r['alert']} uses unknown metrics {refs - names}"
        referenced |= refs
    for required in (
        "kato_consumer_lag",
        "kato_rejections_total" if "kato_rejections_total" in referenced else "kato_commands_total",
        "kato_observation_duration_seconds_bucket",
        "kato_prediction_duration_seconds_bucket",
        "kato_request_duration_seconds_bucket",
        "kato_dlq_total",
    ):
        assert required in referenced, required


def test_p95_alerts_use_histogram_buckets() -> None:
    rules = [
        r for g in load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"] for r in g["rules"]
    ]
    for r in rules:
        if "histogram_quantile" in r["expr"]:
            assert "_bucket[" in r["expr"] and "by (le" in r["expr"], r["alert"]


def _dashboard() -> dict[str, Any]:
    with open(DEPLOY / "grafana" / "dashboards" / "kato-stream.json", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def test_dashboard_queries_use_real_metrics_and_the_provisioned_datasource() -> None:
    dash = _dashboard()
    ds = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uid = ds["datasources"][0]["uid"]
    names = metric_sample_names()
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert panels
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    referenced: set[str] = set()
    for p in panels:
        assert p["datasource"]["uid"] == uid, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert _balanced(t["expr"]), p["title"]
            refs = metric_refs(t["expr"])
            assert refs, f"{p['title']}: query without a kato metric"
            assert refs <= names, f"{p['title']}: unknown {refs - names}"
            referenced |= refs
    families = {
        n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for n in referenced
    }
    missing = metrics_on_dashboard_required() - families
    assert not missing, f"metrics without a panel: {missing}"


def metrics_on_dashboard_required() -> set[str]:
    from kato_stream.metrics import METRIC_NAMES

    return set(METRIC_NAMES) - {"kato_build_info"}


def test_grafana_provisioning_paths_match_compose(services: dict[str, Any]) -> None:
    mounts = dict(v.split(":")[:2][::-1] for v in services["grafana"]["volumes"])
    prov = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "kato-stream.yml")
    path = prov["providers"][0]["options"]["path"]
    assert (ROOT / mounts[path] / "kato-stream.json").is_file()
    assert (ROOT / mounts["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml").is_file()
    ds = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    url = ds["datasources"][0]["url"]
    assert url == "http://prometheus:9090" and "prometheus" in services
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/kato-stream.json"


def test_operations_doc_lists_every_metric_and_alert() -> None:
    from kato_stream.metrics import METRIC_NAMES

    doc = (ROOT / "docs" / "operations.md").read_text()
    for name in METRIC_NAMES:
        assert f"`{name}`" in doc, name
    for group in load_yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"]:
        for rule in group["rules"]:
            assert f"`{rule['alert']}`" in doc, rule["alert"]
