"""Shared loaders for the static deployment tests (no Docker or cluster needed)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Histogram

from kato_stream import metrics
from kato_stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

#: Every env var kato-stream reads (the Settings fields' "env" metadata).
SETTINGS_ENV: frozenset[str] = frozenset(f.metadata["env"] for f in fields(Settings))

_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose-style ``${VAR:-default}`` with the default (what a bare `compose up` uses)."""
    return _VAR.sub(lambda m: m.group(2) or "", value)


def load_yaml(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_yaml_all(path: Path) -> list[Any]:
    with open(path, encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def metric_sample_names() -> frozenset[str]:
    """Names a query may use: every family, plus _bucket/_sum/_count of histograms."""
    hist = {obj._name for obj in vars(metrics).values() if isinstance(obj, Histogram)}
    extra = {h + s for h in hist for s in ("_bucket", "_sum", "_count")}
    return metrics.METRIC_NAMES | extra


_METRIC_REF = re.compile(r"\bkato_[a-z0-9_]+")


def metric_refs(expr: str) -> set[str]:
    """``kato_*`` identifiers in a PromQL expression (label values in quotes are skipped)."""
    no_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(_METRIC_REF.findall(no_strings))


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(ROOT / "docker-compose.yml")
    return data


@pytest.fixture(scope="session")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    svcs: dict[str, Any] = compose["services"]
    return svcs


@pytest.fixture(scope="session")
def kato_services(services: dict[str, Any]) -> dict[str, Any]:
    """Services running the kato-stream image."""
    return {n: s for n, s in services.items() if str(s.get("image", "")).startswith("kato-stream")}
