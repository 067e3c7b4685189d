"""Consumer-group maintenance: fence the membership of a crashed worker.

Apache Kafka expires a SIGKILLed worker's membership after the session timeout and gives its
partitions to the survivors.  The embedded broker (noida-db) never expires members: a
crashed worker keeps its place in the group, and the next rebalance (a restarted or an added
worker joining) waits for it forever.  So every group member of kato-stream names its
process in its ``client.id`` (:func:`client_id`: role, host, pid and the process's start
time), and every worker runs a :class:`GroupWatchdog` that sends the LeaveGroup a dead
member could not send, for members that are **provably** dead: on this host, with no
process of that pid and start time.  A member on another host is never evicted by the
watchdog (its broker is a real Kafka in every deployment this project describes, and that
expires it); ``kato-stream group evict`` is the operator's command for any other case.

A live member evicted by mistake simply rejoins (one extra rebalance): nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import LeaveGroupRequest

from kato_stream.compat import admin_request
from kato_stream.kafka import known_options
from kato_stream.procstat import start_ticks
from kato_stream.service import Service

__all__ = [
    "GroupWatchdog",
    "abandoned",
    "Member",
    "client_id",
    "describe",
    "evict_dead",
    "evict_members",
    "group_members",
    "provably_dead",
]

log = logging.getLogger(__name__)

PREFIX = "kato-stream"


def client_id(role: str) -> str:
    """``client.id`` of this process's group members: ``kato-stream/<role>/<host>/<pid>/<start>``.

    The start time tells a dead process from a new one that reused its pid."""
    pid = os.getpid()
    return f"{PREFIX}/{role}/{socket.gethostname()}/{pid}/{start_ticks(pid) or 0}"


def provably_dead(cid: str, host: str | None = None) -> bool:
    """Whether the member with client id ``cid`` (from :func:`client_id`) belongs to a
    process of this host that no longer runs.  False for anything it cannot prove."""
    parts = cid.split("/")
    if len(parts) != 5 or parts[0] != PREFIX:
        return False
    _, _role, their_host, pid, start = parts
    if their_host != (host or socket.gethostname()) or not pid.isdigit():
        return False
    ticks = start_ticks(int(pid))
    return ticks is None or str(ticks) != start


@dataclass(frozen=True)
class Member:
    group: str
    member_id: str
    client_id: str
    client_host: str


async def _describe_one(
    bootstrap: str, group: str, kafka_options: Mapping[str, Any]
) -> tuple[str, list[Member]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_options)
    await admin.start()
    try:
        for resp in await admin.describe_consumer_groups([group]):
            for g in resp.groups:
                _err, gid, state, _ptype, _proto, members = g[:6]
                if gid == group:
                    return state, [Member(gid, m[0], m[1], m[2]) for m in members]
        return "Dead", []
    finally:
        await admin.close()


async def describe(
    bootstrap: str, groups: list[str], *, kafka_options: Mapping[str, Any] | None = None
) -> dict[str, tuple[str, list[Member]]]:
    """group -> (state, members) as the broker reports them.

    One request per group: noida-db answers a DescribeGroups that names a group it does not
    know (a persister group before its first join, say) with a response aiokafka cannot
    decode, and closes the connection; such a group reads as ``("Dead", [])``.
    ``kafka_options`` (here and below): :func:`kato_stream.kafka.client_options`, None =
    those known for ``bootstrap`` (:func:`kato_stream.kafka.known_options`)."""
    opts = known_options(bootstrap) if kafka_options is None else kafka_options
    out: dict[str, tuple[str, list[Member]]] = {}
    for group in groups:
        try:
            out[group] = await _describe_one(bootstrap, group, opts)
        except (KafkaError, ValueError) as exc:
            log.debug("describing group %s failed: %r", group, exc)
            out[group] = ("Dead", [])
    return out


async def group_members(
    bootstrap: str, group: str, *, kafka_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Member ids currently in ``group``."""
    found = await describe(bootstrap, [group], kafka_options=kafka_options)
    return [m.member_id for m in found.get(group, ("", []))[1]]


async def evict_members(
    bootstrap: str,
    group: str,
    member_ids: list[str] | None = None,
    *,
    kafka_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Send LeaveGroup for ``member_ids`` (default: every member) of ``group``; returns the
    ids the broker removed.  The operator's command (``kato-stream group evict``)."""
    if kafka_options is None:
        kafka_options = known_options(bootstrap)
    if member_ids is None:
        member_ids = await group_members(bootstrap, group, kafka_options=kafka_options)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_options)
    await admin.start()
    try:
        node = await admin.find_coordinator(group)
        done = []
        for mid in member_ids:
            r = await admin_request(admin, node, LeaveGroupRequest(group, mid))
            if r.error_code == 0:
                done.append(mid)
        return done
    finally:
        await admin.close()


def abandoned(m: Member, state: str, own: dict[str, str]) -> bool:
    """Whether ``m`` is a membership this process left behind: same client id as one of its
    consumers, another member id, while the group is rebalancing.  (A consumer whose commit
    fails with IllegalGeneration during a rebalance rejoins under a new id; noida-db then
    waits for the old one forever, where Kafka would drop it after the rebalance timeout.)"""
    current = own.get(m.client_id)
    return state != "Stable" and current is not None and m.member_id != current


async def evict_dead(
    bootstrap: str,
    groups: list[str],
    own: dict[str, str] | None = None,
    *,
    kafka_options: Mapping[str, Any] | None = None,
) -> list[Member]:
    """Evict the members of ``groups`` that are provably dead, or abandoned by this process
    (``own``: client id -> the member id its consumer holds now); returns them."""
    opts = known_options(bootstrap) if kafka_options is None else kafka_options
    evicted = []
    for group, (state, members) in (await describe(bootstrap, groups, kafka_options=opts)).items():
        dead = [m for m in members if provably_dead(m.client_id) or abandoned(m, state, own or {})]
        if dead:
            ids = [m.member_id for m in dead]
            gone = set(await evict_members(bootstrap, group, ids, kafka_options=opts))
            evicted += [m for m in dead if m.member_id in gone]
    return evicted


class GroupWatchdog(Service):
    """Evicts provably dead members of the worker's groups every ``interval`` seconds, so a
    restarted or added worker is not held up by a crashed one on a broker that never
    expires members.  It must run before the worker's consumer joins (the join itself is
    what a dead member holds up): the Faust worker starts it ahead of the app
    (``Worker.run``)."""

    def __init__(
        self,
        bootstrap: str,
        groups: list[str],
        interval: float,
        own: Callable[[], dict[str, str]] | None = None,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.kafka_options = known_options(bootstrap) if kafka_options is None else kafka_options
        """Security options (None: those known for ``bootstrap`` when it is built, i.e. the
        worker's: ``faust_app_options`` built them first)."""
        self.groups = groups
        self.interval = interval
        self.own = own or dict
        self.evicted: list[Member] = []

    async def check(self) -> list[Member]:
        """One pass; returns the members it evicted."""
        gone = await evict_dead(
            self.bootstrap, self.groups, self.own(), kafka_options=self.kafka_options
        )
        for m in gone:
            log.warning(
                "evicted member %s (%s) of group %s: its process is gone or left it behind",
                m.member_id,
                m.client_id,
                m.group,
            )
        self.evicted += gone
        return gone

    async def on_start(self) -> None:
        self.supervise("group-watchdog", self._watch)

    async def _watch(self) -> None:
        while True:
            try:
                await self.check()
            except Exception as exc:  # the broker is restarting, say: try again later
                log.info("group watchdog: %s", exc)
            await asyncio.sleep(self.interval)
