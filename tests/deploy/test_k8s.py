"""deploy/k8s: manifests parse, reference each other, and carry Settings' env vars."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

from kato_stream.settings import Settings

from .conftest import DEPLOY, SETTINGS_ENV, load_yaml, load_yaml_all

K8S = DEPLOY / "k8s"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    kust = load_yaml(K8S / "kustomization.yaml")
    out: list[dict[str, Any]] = []
    for res in kust["resources"]:
        assert (K8S / res).is_file(), res
        out.extend(load_yaml_all(K8S / res))
    return out


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            out += [(d["metadata"]["name"], c) for c in d["spec"]["template"]["spec"]["containers"]]
    return out


def test_every_doc_has_kind_and_name(docs: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in docs}
    assert {"ConfigMap", "StatefulSet", "Deployment", "Service", "Job"} <= kinds
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"]


def test_configmap_keys_are_settings_and_parse(docs: list[dict[str, Any]]) -> None:
    data = by_kind(docs, "ConfigMap")["kato-stream-env"]["data"]
    assert set(data) <= SETTINGS_ENV, set(data) - SETTINGS_ENV
    s = Settings.from_env(data)
    assert s.table_store == "rocksdb://"
    secret = load_yaml(K8S / "secret.example.yaml")
    assert set(secret["stringData"]) <= SETTINGS_ENV


def test_containers_use_the_configmap_and_pinned_image(docs: list[dict[str, Any]]) -> None:
    kust = load_yaml(K8S / "kustomization.yaml")
    images = {i["name"]: i["newTag"] for i in kust["images"]}
    assert re.fullmatch(r"\d+\.\d+\.\d+", images["kato-stream"])
    for name, c in containers(docs):
        assert c["image"] == "kato-stream", name  # tag set by kustomization images
        refs = [e["configMapRef"]["name"] for e in c["envFrom"] if "configMapRef" in e]
        assert refs == ["kato-stream-env"], name
        assert c["args"][0] in ("worker", "gateway", "topics"), name


def test_worker_statefulset_ports_probes_and_storage(docs: list[dict[str, Any]]) -> None:
    cm = Settings.from_env(by_kind(docs, "ConfigMap")["kato-stream-env"]["data"])
    sts = by_kind(docs, "StatefulSet")["kato-stream-worker"]
    assert 1 <= sts["spec"]["replicas"] <= cm.partitions
    pod = sts["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == cm.web_port
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(cm.web_port)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] in ports
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    claims = {v["metadata"]["name"] for v in sts["spec"]["volumeClaimTemplates"]}
    assert mounts["data"] == cm.data_dir and "data" in claims
    assert sts["spec"]["serviceName"] in by_kind(docs, "Service")


def _budget(probe: dict[str, Any]) -> float:
    """Seconds of consecutive failures before the kubelet acts on a probe."""
    return float(probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3))


def test_worker_probes_ready_live_and_startup(docs: list[dict[str, Any]]) -> None:
    """Readiness on /ready, liveness on /live (not /metrics, which answers while the worker
    recovers its table or rebuilds its LTM), and a startup probe on /ready so that liveness
    only starts once the worker was ready: recovery and the LTM rebuild (which holds the
    event loop) must not get the pod killed."""
    from kato_stream import metrics

    sts = by_kind(docs, "StatefulSet")["kato-stream-worker"]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    params = inspect.signature(metrics.install_probes).parameters
    ready, live = params["ready_path"].default, params["live_path"].default
    assert c["readinessProbe"]["httpGet"]["path"] == ready
    assert c["livenessProbe"]["httpGet"]["path"] == live
    assert c["startupProbe"]["httpGet"]["path"] == ready
    assert _budget(c["startupProbe"]) >= 15 * 60  # a long recovery or rebuild
    # a stale heartbeat (probes.STALE_AFTER) fails /live; restart only after a minute of it
    assert _budget(c["livenessProbe"]) >= 60
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = c[probe]
        assert p.get("timeoutSeconds", 1) < p.get("periodSeconds", 10), probe
    grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 30  # a SIGTERMed worker finishes its batch and leaves the group
    # the headless Service keeps a recovering (unready) worker addressable and scrapeable
    assert by_kind(docs, "Service")["kato-stream-worker"]["spec"]["publishNotReadyAddresses"]


def test_worker_instance_id_is_the_pod_name(docs: list[dict[str, Any]]) -> None:
    """Static group membership: KATO_STREAM_INSTANCE_ID from metadata.name (stable in a
    StatefulSet: kato-stream-worker-0, -1, ...)."""
    sts = by_kind(docs, "StatefulSet")["kato-stream-worker"]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c.get("env", [])}
    assert set(env) <= SETTINGS_ENV, set(env) - SETTINGS_ENV
    field = env["KATO_STREAM_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.name"
    cm = by_kind(docs, "ConfigMap")["kato-stream-env"]["data"]
    assert "KATO_STREAM_INSTANCE_ID" not in cm  # shared with the gateway: must not be set there
    gw = by_kind(docs, "Deployment")["kato-stream-gateway"]
    for gc in gw["spec"]["template"]["spec"]["containers"]:
        assert "KATO_STREAM_INSTANCE_ID" not in {e["name"] for e in gc.get("env", [])}


def test_gateway_probes_ready_and_live(docs: list[dict[str, Any]]) -> None:
    from kato_stream.gateway import routes_system

    paths = {getattr(r, "path", None) for r in routes_system.router.routes}
    dep = by_kind(docs, "Deployment")["kato-stream-gateway"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    ports = {p["name"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/live"
    assert c["startupProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] in paths
        assert c[probe]["httpGet"]["port"] in ports
    assert _budget(c["livenessProbe"]) >= 60


def test_services_select_their_pods_and_ports(docs: list[dict[str, Any]]) -> None:
    workloads = {**by_kind(docs, "Deployment"), **by_kind(docs, "StatefulSet")}
    for name, svc in by_kind(docs, "Service").items():
        targets = [
            w
            for w in workloads.values()
            if svc["spec"]["selector"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert targets, f"service {name} selects no pods"
        for w in targets:
            assert (
                w["spec"]["selector"]["matchLabels"].items()
                <= w["spec"]["template"]["metadata"]["labels"].items()
            )
            port_names = {
                p["name"] for c in w["spec"]["template"]["spec"]["containers"] for p in c["ports"]
            }
            for p in svc["spec"]["ports"]:
                assert p["targetPort"] in port_names, f"{name}: {p['targetPort']}"


def test_gateway_port_matches_its_args(docs: list[dict[str, Any]]) -> None:
    dep = by_kind(docs, "Deployment")["kato-stream-gateway"]
    pod = dep["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    port = int(c["args"][c["args"].index("--port") + 1])
    assert {p["containerPort"] for p in c["ports"]} == {port}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert by_kind(docs, "Service")["kato-stream-gateway"]["spec"]["ports"][0]["port"] == port
