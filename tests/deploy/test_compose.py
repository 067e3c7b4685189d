"""docker-compose.yml: pinned images, consistent references, env vars that Settings knows."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from kato_stream.settings import Settings

from .conftest import ROOT, SETTINGS_ENV, interpolate

IMAGES = {
    "kafka": "apache/kafka:",
    "clickhouse": "clickhouse/clickhouse-server:",
    "qdrant": "qdrant/qdrant:",
    "redis": "redis:7.",
    "prometheus": "prom/prometheus:",
    "grafana": "grafana/grafana:",
}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def test_every_service_is_present(services: dict[str, Any], kato_services: dict[str, Any]) -> None:
    for name in [*IMAGES, "topics", "gateway", "worker-1", "worker-2", "worker-3"]:
        assert name in services, name
    assert set(kato_services) == {"topics", "gateway", "worker-1", "worker-2", "worker-3"}
    for name, prefix in IMAGES.items():
        assert services[name]["image"].startswith(prefix), name


@pytest.mark.parametrize("image_field", ["image"])
def test_images_are_pinned(services: dict[str, Any], image_field: str) -> None:
    for name, svc in services.items():
        image = svc[image_field]
        repo, sep, tag = image.rpartition(":")
        assert sep and repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag not in ("latest", "stable", "main", "edge"), f"{name}: {image}"
        assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not a version tag"


def test_kato_env_vars_are_settings_fields_and_parse(kato_services: dict[str, Any]) -> None:
    for name, svc in kato_services.items():
        env = env_of(svc)
        unknown = set(env) - SETTINGS_ENV
        assert not unknown, f"{name} sets env vars that Settings does not read: {unknown}"
        s = Settings.from_env(env)  # raises SettingsError on a bad value
        assert s.table_store == "rocksdb://"
        assert s.data_dir == "/data"


def test_kato_env_points_at_the_compose_services(
    services: dict[str, Any], kato_services: dict[str, Any]
) -> None:
    env = env_of(kato_services["worker-1"])
    s = Settings.from_env(env)
    kafka_env = env_of(services["kafka"])
    for addr in s.kafka_bootstrap.split(","):
        host, port = addr.rsplit(":", 1)
        assert host in services
        assert f"PLAINTEXT://{host}:{port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    for url, service, port in (
        (s.clickhouse_url, "clickhouse", 8123),
        (s.qdrant_url, "qdrant", 6333),
        (s.redis_url, "redis", 6379),
    ):
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == (service, port), url
    ch = env_of(services["clickhouse"])
    parts = urlsplit(s.clickhouse_url)
    assert (parts.username, parts.password, parts.path) == (
        ch["CLICKHOUSE_USER"],
        ch["CLICKHOUSE_PASSWORD"],
        "/" + ch["CLICKHOUSE_DB"],
    )
    # every kato service shares the same settings, apart from each worker's instance id
    shared = {k: v for k, v in env.items() if k != "KATO_STREAM_INSTANCE_ID"}
    for svc in kato_services.values():
        assert {k: v for k, v in env_of(svc).items() if k != "KATO_STREAM_INSTANCE_ID"} == shared


def test_each_worker_has_its_own_instance_id(kato_services: dict[str, Any]) -> None:
    """Static group membership: one KATO_STREAM_INSTANCE_ID per worker, none elsewhere."""
    ids = {}
    for name, svc in kato_services.items():
        s = Settings.from_env(env_of(svc))
        if name.startswith("worker-"):
            assert s.instance_id == name, name
            ids[name] = s.instance_id
        else:
            assert s.instance_id == "", f"{name} must not join the workers' group statically"
    assert len(set(ids.values())) == len(ids) == 3


def test_commands(kato_services: dict[str, Any]) -> None:
    assert kato_services["topics"]["command"] == ["topics", "create"]
    assert kato_services["topics"]["restart"] == "no"
    for n in (1, 2, 3):
        assert kato_services[f"worker-{n}"]["command"] == ["worker"]
    cmd = kato_services["gateway"]["command"]
    assert cmd[0] == "gateway"
    port = cmd[cmd.index("--port") + 1]
    assert f"127.0.0.1:{port}:{port}" in kato_services["gateway"]["ports"]


def test_depends_on_targets_exist_with_matching_conditions(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for dep, spec in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            cond = spec["condition"]
            if cond == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health check"
            elif cond == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} must be one-shot"
            else:
                assert cond == "service_started"
    for n in (1, 2, 3):
        deps = services[f"worker-{n}"]["depends_on"]
        assert deps["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_long_running_services_have_health_checks(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        if svc.get("restart") != "no":
            assert "healthcheck" in svc, name
            assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|m)", value)
    assert m, value
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


def test_health_checks_probe_readiness_on_the_configured_ports(
    kato_services: dict[str, Any],
) -> None:
    """Workers and the gateway are healthy when ready (/ready: 503 while a worker recovers
    or rebuilds its LTM); not on /metrics or KATO's /health, which answer 200 regardless."""
    for n in (1, 2, 3):
        svc = kato_services[f"worker-{n}"]
        port = env_of(svc)["KATO_STREAM_WEB_PORT"]
        hc = svc["healthcheck"]
        assert f"http://127.0.0.1:{port}/ready" in " ".join(hc["test"])
        # urlopen raises on a 503: the check fails while the worker is not ready
        assert "urlopen(" in hc["test"][-1]
        # recovery and the LTM rebuild are not counted against the worker
        assert _seconds(hc["start_period"]) >= 120
        assert _seconds(hc["timeout"]) < _seconds(hc["interval"])
    gw = kato_services["gateway"]
    port = gw["command"][gw["command"].index("--port") + 1]
    assert f"http://127.0.0.1:{port}/ready" in " ".join(gw["healthcheck"]["test"])


def test_volumes_declared_mounted_and_not_shared(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    declared = set(compose["volumes"])
    used: dict[str, str] = {}
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if src.startswith("."):
                path = ROOT / src
                assert path.exists(), f"{name} mounts missing {src}"
                continue
            assert src in declared, f"{name} uses undeclared volume {src}"
            assert src not in used, f"{src} shared by {used.get(src)} and {name}"
            used[src] = name
    assert set(used) == declared, "declared but unused volumes"
    for n in (1, 2, 3):
        assert f"worker-{n}-data:/data" in services[f"worker-{n}"]["volumes"]


def test_published_host_ports_are_unique_and_local(services: dict[str, Any]) -> None:
    seen: set[str] = set()
    for name, svc in services.items():
        for p in svc.get("ports", []):
            ip, host, container = str(p).split(":")
            assert ip == "127.0.0.1", f"{name} publishes {p} on every interface"
            assert host not in seen, f"host port {host} published twice"
            seen.add(host)
    assert "127.0.0.1:19092:19092" in services["kafka"]["ports"]


def test_build_points_at_the_dockerfile(kato_services: dict[str, Any]) -> None:
    for name, svc in kato_services.items():
        build = svc["build"]
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        assert dockerfile.is_file(), name


def test_dockerfile() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base is not None and re.search(r":\d+\.\d+\.\d+", base.group(1)), "base image unpinned"
    assert 'ENTRYPOINT ["kato-stream"]' in text
    assert "COPY topics ./topics" in text  # kato_stream/topics.py reads <repo>/topics
    assert re.search(r"^USER kato$", text, re.M)
    for port in ("6066", "8000"):
        assert port in re.search(r"^EXPOSE (.+)$", text, re.M).group(1)  # type: ignore[union-attr]
    assert (ROOT / "deploy" / "Dockerfile.dockerignore").is_file()
