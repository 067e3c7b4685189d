"""The commands and HTTP paths the deployment files use exist in the CLI and the gateway."""

from __future__ import annotations

import argparse
from typing import Any

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


def test_gateway_serves_the_probed_paths() -> None:
    from kato_stream.gateway import routes_system as app_mod

    paths = {getattr(r, "path", None) for r in app_mod.router.routes}
    assert {"/health", "/metrics/prometheus"} <= paths
