"""The commands and HTTP paths the deployment files use exist in the CLI and the gateway."""

from __future__ import annotations

import argparse
import re
from typing import Any

import pytest

from .conftest import DEPLOY, load_yaml, load_yaml_all


def _commands(services: dict[str, Any]) -> list[list[str]]:
    cmds = [list(s["command"]) for s in services.values() if "build" in s]
    for res in load_yaml(DEPLOY / "k8s" / "kustomization.yaml")["resources"]:
        for d in load_yaml_all(DEPLOY / "k8s" / res):
            if d["kind"] in ("Deployment", "StatefulSet", "Job"):
                cmds += [list(c["args"]) for c in d["spec"]["template"]["spec"]["containers"]]
    return cmds


def test_cli_accepts_every_deployed_command(services: dict[str, Any]) -> None:
    from kato_stream import cli

    parser: argparse.ArgumentParser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = []
    for cmd in _commands(services):
        if cmd[0] not in sub.choices:
            missing.append(cmd[0])
            continue
        parser.parse_args(cmd)  # SystemExit (a test error) on an unknown option
    assert not missing, f"deployed subcommands the CLI does not have: {sorted(set(missing))}"


def _probed_paths(services: dict[str, Any], workload: str, service: str) -> set[str]:
    """HTTP paths the k8s probes of ``workload`` and the compose health check of
    ``service`` request."""
    paths = set()
    for res in load_yaml(DEPLOY / "k8s" / "kustomization.yaml")["resources"]:
        for d in load_yaml_all(DEPLOY / "k8s" / res):
            if d["metadata"]["name"] == workload and "template" in d.get("spec", {}):
                for c in d["spec"]["template"]["spec"]["containers"]:
                    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                        if probe in c:
                            paths.add(c[probe]["httpGet"]["path"])
    test = " ".join(services[service]["healthcheck"]["test"])
    paths.update(re.findall(r"http://127\.0\.0\.1:\d+(/[\w/.-]*)", test))
    return paths


def test_gateway_serves_the_probed_paths(services: dict[str, Any]) -> None:
    from kato_stream.gateway import routes_system as app_mod

    paths = {getattr(r, "path", None) for r in app_mod.router.routes}
    probed = _probed_paths(services, "kato-stream-gateway", "gateway")
    assert probed == {"/ready", "/live"}
    assert {"/health", "/metrics/prometheus"} | probed <= paths


def test_worker_serves_the_probed_paths(services: dict[str, Any]) -> None:
    """What the worker's Faust web server serves: /metrics (install_faust), /ready and /live
    (install_probes), as build_worker wires them."""
    faust = pytest.importorskip("faust")
    from kato_stream import metrics
    from kato_stream.settings import Settings

    app = faust.App("kato-deploy-probes", broker="kafka://127.0.0.1:1", web_enabled=True)
    metrics.install_faust(app, Settings())
    metrics.install_probes(app, lambda: (200, {}), lambda: (200, {}))
    served = {str(getattr(v, "view_path", "")) for v in app.web.views.values()}
    for n in (1, 2, 3):
        probed = _probed_paths(services, "kato-stream-worker", f"worker-{n}")
        assert probed == {"/ready", "/live"}
        assert probed <= served
