"""Replay a KATO conformance recording over HTTP and list every difference.

Comparison rules (README of shared/conformance/, bundled in tests/conformance_data/):
server-generated values are skipped (session ids are substituted, ``unique_id``, timestamps, ``time_ms``); floats within 1e-9;
prediction lists in ranking order with ties compared as a set keyed by name.  Deliberate
deviations (docs/gateway.md, DESIGN.md) are passed in as ``(step, path-prefix)`` pairs
that may differ.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CONFORMANCE = Path(__file__).resolve().parents[1] / "conformance_data" / "kato-3.10.1"
GENERATED = {"unique_id", "created_at", "expires_at", "time_ms", "elapsed_ms"}
PLACEHOLDER = re.compile(r"<(SESSION|NODE):([^>]+)>")


@dataclass
class Replay:
    scenario: str
    diffs: list[str] = field(default_factory=list)
    steps: int = 0

    def diff(self, where: str, msg: str) -> None:
        self.diffs.append(f"{where}: {msg}")


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def compare(ours: Any, theirs: Any, where: str, out: Replay, rank_key: str = "potential") -> None:
    """Deep comparison appending every difference to ``out``."""
    if isinstance(theirs, bool) or isinstance(ours, bool):
        if ours is not theirs:
            out.diff(where, f"{ours!r} != {theirs!r}")
    elif isinstance(theirs, int | float) and isinstance(ours, int | float):
        if not _close(float(ours), float(theirs)):
            out.diff(where, f"{ours!r} != {theirs!r}")
    elif isinstance(theirs, dict) and isinstance(ours, dict):
        keys = [k for k in theirs if k not in GENERATED]
        extra = [k for k in ours if k not in theirs and k not in GENERATED]
        for k in keys:
            if k not in ours:
                out.diff(f"{where}.{k}", "missing")
            elif k == "predictions" and isinstance(theirs[k], list):
                compare_predictions(ours[k], theirs[k], f"{where}.{k}", out, rank_key)
            elif k == "future_potentials" and isinstance(theirs[k], list):
                compare_potentials(ours[k], theirs[k], f"{where}.{k}", out)
            else:
                compare(ours[k], theirs[k], f"{where}.{k}", out, rank_key)
        for k in extra:
            out.diff(f"{where}.{k}", "unexpected key")
    elif isinstance(theirs, list) and isinstance(ours, list):
        if len(ours) != len(theirs):
            out.diff(
                where, f"length {len(ours)} != {len(theirs)}: {ours!r:.300} vs {theirs!r:.300}"
            )
            return
        for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
            compare(o, t, f"{where}[{i}]", out, rank_key)
    elif ours != theirs:
        out.diff(where, f"{ours!r:.200} != {theirs!r:.200}")


def compare_predictions(
    ours: list[dict[str, Any]], theirs: list[dict[str, Any]], where: str, out: Replay, key: str
) -> None:
    """Same names and fields; ours ranked by ``key`` (descending), theirs' ties as a set."""
    if len(ours) != len(theirs):
        out.diff(where, f"{len(ours)} predictions != {len(theirs)}")
        return
    for i in range(1, len(ours)):
        if ours[i][key] > ours[i - 1][key] + 1e-9:
            out.diff(f"{where}[{i}]", f"not ranked by {key}")
    if key == "potential":
        for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
            if not _close(o["potential"], t["potential"]):
                out.diff(f"{where}[{i}].potential", f"{o['potential']!r} != {t['potential']!r}")
    by_name = {p["name"]: p for p in theirs}
    for o in ours:
        t = by_name.get(o["name"])
        if t is None:
            # A tie cut by max_predictions: KATO's choice among equals is arbitrary.
            mine = {p["name"] for p in ours}
            swapped = [p for p in theirs if p["name"] not in mine and _close(p[key], o[key])]
            tied = sum(1 for p in theirs if _close(p[key], o[key]))
            if not (swapped and tied >= 2 and _close(o[key], ours[-1][key])):
                out.diff(where, f"unexpected prediction {o['name']}")
            continue
        t = {k: v for k, v in t.items() if k != "_pre_potential"}
        compare(o, t, f"{where}[{o['name'][:8]}]", out)


def compare_potentials(
    ours: list[dict[str, Any]], theirs: list[dict[str, Any]], where: str, out: Replay
) -> None:
    def canon(fps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(fps, key=lambda f: (-round(f["aggregate_potential"], 9), repr(f["future"])))

    compare(canon(ours), canon(theirs), where, out)


class Substitutions:
    """Recorded placeholders -> this run's node and session ids (fresh nodes per replay)."""

    def __init__(self, scenario: str) -> None:
        self.token = uuid.uuid4().hex[:8]
        self.scenario = scenario[:3]
        self.values: dict[str, str] = {}

    def node(self, name: str) -> str:
        return self.values.setdefault(f"<NODE:{name}>", f"gw{self.scenario}{name}{self.token}")

    def sub(self, value: Any) -> Any:
        if isinstance(value, str):

            def repl(m: re.Match[str]) -> str:
                full = m.group(0)
                if m.group(1) == "NODE":
                    return self.node(m.group(2))
                return self.values.get(full, full)

            return PLACEHOLDER.sub(repl, value)
        if isinstance(value, list):
            return [self.sub(v) for v in value]
        if isinstance(value, dict):
            return {self.sub(k): self.sub(v) for k, v in value.items()}
        return value


async def replay(
    http: httpx.AsyncClient, path: Path, deviations: dict[int, tuple[str, ...]] | None = None
) -> Replay:
    """Send every recorded request; compare status and body; return the differences."""
    data = json.loads(path.read_text())
    subs = Substitutions(path.stem)
    out = Replay(path.stem)
    rank_key = "potential"
    allowed = deviations or {}
    for step in data["steps"]:
        req = step["request"]
        expected = step["response"]
        body = subs.sub(req.get("body"))
        method, url = req["method"], subs.sub(req["path"])
        r = await http.request(
            method,
            url,
            params=subs.sub(req.get("query")) or None,
            json=body if body is not None else None,
        )
        out.steps += 1
        where = f"step {step['i']} {step['op']}"
        if step["op"] == "create_session" and r.status_code == 200:
            m = PLACEHOLDER.fullmatch(str(expected.get("session_id", "")))
            if m:
                subs.values[m.group(0)] = r.json()["session_id"]
        if step["op"] == "update_config" and r.status_code == 200:
            cfg = (req.get("body") or {}).get("config", req.get("body") or {})
            rank_key = cfg.get("rank_sort_algo", rank_key) or rank_key
        if r.status_code != step["status"]:
            out.diff(where, f"status {r.status_code} != {step['status']}: {r.text[:300]}")
            continue
        step_out = Replay(out.scenario)
        compare(r.json(), subs.sub(expected), where, step_out, rank_key)
        for d in step_out.diffs:
            if not any(d.startswith(f"{where}{p}") for p in allowed.get(step["i"], ())):
                out.diffs.append(d)
    return out
