"""A worker's readiness and liveness: what ``GET /ready`` and ``GET /live`` answer on its web
port (``KATO_STREAM_WEB_PORT``, next to ``/metrics``).

``/ready`` (200 or 503) says whether the worker is serving its share of the commands:

* ``lifecycle``: the app is not stopping (a SIGTERM makes the worker unready at once, while
  it still finishes its batch and leaves the group);
* ``group``: the worker joined its consumer group and no rebalance is in progress.  A worker
  the group gave no input partition while stable (more workers than partitions) is ready:
  it is healthy and takes over on failure, and a StatefulSet rollout must not wait for it;
* ``table``: Faust recovered the sessions table of its assigned partitions
  (``app.tables.actives_ready``, reset at every rebalance, and ``app.in_recovery``);
* ``ltm``: the long-term memory is rebuilt (``PatternFollower.ready``: the agent waits for
  it before its first command);
* ``ltm_follower``, ``persister``, ``latest_writer``: the supervised loops run (the last two
  only with ``KATO_STREAM_PERSIST``).  Whether the persister's stores are open is reported
  (``stores_open``) but does not fail readiness: commands do not wait for the stores.

``/live`` (200 or 503) says whether the process should be restarted:

* ``heartbeat``: a supervised loop stamps the time every ``HEARTBEAT_INTERVAL`` seconds; a
  stamp older than ``STALE_AFTER`` seconds means the event loop was starved (or the loop is
  gone);
* every service (``kato_stream/service.py``) that was started still runs its supervised
  loops: ``ltm_follower``, ``persister``, ``latest_writer`` and ``group_watchdog``
  (``alive()`` of each).  A service not started yet (the follower starts after the table
  recovery) is not a failure; one that ended is.  While the worker stops, the services stop
  by design: only the heartbeat is checked then.

Both answer JSON: ``{"status": "ok"|"failing", "failing": [names], "checks": {name: {"ok":
bool, "state": str, ...}}}``.  The heartbeat is one of the worker's boot services, so it
beats before the app starts and until the app has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kato_stream.service import Service
from kato_stream.stream.continuity import assigned_partitions

__all__ = [
    "HEARTBEAT_INTERVAL",
    "STALE_AFTER",
    "Check",
    "Heartbeat",
    "Supervised",
    "WorkerProbes",
    "verdict",
]

HEARTBEAT_INTERVAL = 1.0
"""Seconds between two heartbeat stamps."""
STALE_AFTER = 30.0
"""A heartbeat older than this fails ``/live``: the event loop did not run the heartbeat for
that long (a blocked loop cannot answer the probe at all; the orchestrator's probe timeout
covers that case)."""


@dataclass(frozen=True)
class Check:
    """One named check of a probe."""

    ok: bool
    state: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "state": self.state, **self.detail}


def verdict(checks: dict[str, Check]) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON body for ``checks``: 200 when every check is ok, else 503."""
    failing = [name for name, c in checks.items() if not c.ok]
    body = {
        "status": "failing" if failing else "ok",
        "failing": failing,
        "checks": {name: c.to_dict() for name, c in checks.items()},
    }
    return (503 if failing else 200), body


class Heartbeat(Service):
    """A supervised loop that stamps the time every ``interval`` seconds."""

    def __init__(
        self, interval: float = HEARTBEAT_INTERVAL, stale_after: float = STALE_AFTER
    ) -> None:
        super().__init__()
        self.interval = interval
        self.stale_after = stale_after
        self.last: float | None = None  # time.monotonic() of the latest stamp
        self.lag = 0.0  # how late the latest stamp came (event-loop lag), seconds

    async def on_start(self) -> None:
        self.last = time.monotonic()
        self.supervise("probe-heartbeat", self._run)

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.lag = max(0.0, now - before - self.interval)
            self.last = now

    def check(self, now: float | None = None) -> Check:
        if not self.started:
            return Check(False, "not started" if self.last is None else "stopped")
        assert self.last is not None  # set by start()
        age = (time.monotonic() if now is None else now) - self.last
        detail = {
            "age_seconds": round(age, 3),
            "lag_seconds": round(self.lag, 3),
            "stale_after_seconds": self.stale_after,
        }
        if not self.alive():
            return Check(False, "stopped", detail)
        if age > self.stale_after:
            return Check(False, "stale", detail)
        return Check(True, "beating", detail)


class Supervised(Protocol):
    """What the probes ask of a component: a :class:`~kato_stream.service.Service`."""

    @property
    def started(self) -> bool: ...

    def alive(self) -> bool: ...


class WorkerProbes:
    """The checks behind a worker's ``/ready`` and ``/live``.

    ``services`` are the worker's supervised components by name (the follower is always
    one, ``ltm_follower``); a service's own ``started`` tells "not started yet" from
    "ended"."""

    def __init__(
        self,
        app: Any,
        input_topic: str,
        follower: Any,
        *,
        services: Mapping[str, Supervised] | None = None,
        persister: Any = None,
        watchdog: Supervised | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.app = app
        self.input_topic = input_topic
        self.follower = follower
        self.persister = persister
        self.watchdog = watchdog
        """The group watchdog: checked by ``/live`` only (it is not a reason to be unready)."""
        self.heartbeat = heartbeat or Heartbeat()
        self.services: dict[str, Supervised] = {"ltm_follower": follower}
        self.services.update(services or {})

    # -- checks --------------------------------------------------------------------------

    def _stopping(self) -> bool:
        return bool(getattr(self.app, "should_stop", False))

    def _lifecycle(self) -> Check:
        if getattr(self.app, "crashed", False):
            return Check(False, "crashed")
        if self._stopping():
            return Check(False, "stopping")
        return Check(True, "running")

    def _assigned(self) -> list[int]:
        return sorted(assigned_partitions(self.app, self.input_topic))

    def _group(self) -> Check:
        if not getattr(self.app, "rebalancing_count", 0):
            return Check(False, "joining")
        if getattr(self.app, "rebalancing", False):
            return Check(False, "rebalancing")
        parts = self._assigned()
        state = "assigned" if parts else "none assigned (standby)"
        return Check(True, state, {"partitions": parts})

    def _table(self) -> Check:
        tables = getattr(self.app, "tables", None)
        if getattr(self.app, "in_recovery", False):
            detail = {}
            with contextlib.suppress(Exception):  # no recovery state yet
                detail["remaining"] = int(tables.recovery.active_remaining_total())  # type: ignore[union-attr]
            return Check(False, "recovering", detail)
        if not getattr(tables, "actives_ready", False):
            return Check(False, "waiting for recovery")
        return Check(True, "recovered")

    def _ltm(self) -> Check:
        detail = {"events_applied": self.follower.registry.applied_events}
        if self.follower.ready.is_set():
            return Check(True, "rebuilt", detail)
        return Check(False, "rebuilding" if self.follower.alive() else "not started", detail)

    def _running(self, name: str) -> Check:
        alive = self.services[name].alive()
        return Check(alive, "running" if alive else "not running")

    def ready(self) -> tuple[int, dict[str, Any]]:
        """``(status, body)`` of ``GET /ready``."""
        checks = {
            "lifecycle": self._lifecycle(),
            "group": self._group(),
            "table": self._table(),
            "ltm": self._ltm(),
        }
        for name in self.services:
            checks[name] = self._running(name)
        if self.persister is not None and "persister" in checks:
            c = checks["persister"]
            checks["persister"] = Check(
                c.ok, c.state, {"stores_open": self.persister.running.is_set()}
            )
        return verdict(checks)

    def live(self) -> tuple[int, dict[str, Any]]:
        """``(status, body)`` of ``GET /live``."""
        checks = {"heartbeat": self.heartbeat.check()}
        if self._stopping():
            checks["lifecycle"] = Check(True, "stopping")
            return verdict(checks)
        live_too = {"group_watchdog": self.watchdog} if self.watchdog is not None else {}
        for name, svc in {**self.services, **live_too}.items():
            if not svc.started:
                checks[name] = Check(True, "not started")
            elif svc.alive():
                checks[name] = Check(True, "running")
            else:
                checks[name] = Check(False, "ended")
        return verdict(checks)
