"""Running the gateway: standalone (``kato-stream gateway``) or inside a worker (``dev``).

Inside a worker the gateway is an ASGI server on the worker's own event loop and shares the
worker's long-term memory (pattern reads need no second copy and no ClickHouse handle,
which embedded chdb would refuse to a second process).  Commands still go through the
input topic, exactly as from a standalone gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Generator
from typing import Any

import uvicorn

from kato_stream.core import kernel
from kato_stream.gateway.app import create_app
from kato_stream.gateway.service import Gateway
from kato_stream.service import Service, as_mode_service
from kato_stream.settings import Settings


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host (Faust's worker)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
    )


def run_standalone(settings: Settings, host: str, port: int) -> None:
    """Serve KATO's API in the foreground until SIGINT/SIGTERM (own pattern follower)."""
    kernel.log_status("gateway")  # the gateway does not refuse: the workers predict
    server = uvicorn.Server(_config(create_app(Gateway(settings)), host, port))

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            print(f"kato-stream gateway ready on http://{host}:{port}", flush=True)
        await task

    asyncio.run(main())


def attach_to_worker(
    worker: Any, host: str, port: int, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve the gateway from ``worker``'s Faust app (started and stopped with it).

    ``worker`` is a :class:`kato_stream.stream.app.Worker`; the gateway shares its
    ``ltm`` and pattern follower.  ``on_ready`` gets the base URL once the socket listens
    (default: print it).
    """
    settings: Settings = worker.settings
    gateway = Gateway(
        settings, ltm=worker.ltm, follower=worker.follower, stm_info=lambda: _stm_info(worker)
    )
    server = _QuietServer(_config(create_app(gateway), host, port))
    http = HttpServer(server, f"http://{host}:{port}", on_ready or _announce)
    worker.app.service(as_mode_service([http]))


class HttpServer(Service):
    """A uvicorn server on this event loop, started and stopped as a service: its serve
    loop is supervised; stopping asks it to exit (finishing the requests in hand, 10 s at
    most) before it is cancelled."""

    def __init__(self, server: uvicorn.Server, url: str, on_ready: Callable[[str], None]) -> None:
        super().__init__()
        self.server, self.url, self.on_ready = server, url, on_ready

    async def on_start(self) -> None:
        self.server.should_exit = False
        sup = self.supervise("gateway-http", self.server.serve, drain=self._exit, grace=10.0)
        task = sup.task
        assert task is not None
        while not self.server.started and not task.done():
            await asyncio.sleep(0.05)
        if task.done():
            task.result()  # surface the start error (port in use, ...)
        self.on_ready(self.url)

    def _exit(self) -> None:
        self.server.should_exit = True


def _stm_info(worker: Any) -> dict[str, Any]:
    """This worker's share of the session table (``GET /distributed-stm/stats``)."""
    table = worker.sessions
    changelog = table.changelog_topic.get_topic_name()
    assignor = worker.app.assignor
    topics = {changelog, worker.settings.topic("observations")}  # co-partitioned
    actives = assignor.assigned_actives()
    standbys = assignor.assigned_standbys()
    return {
        "table": table.name,
        "changelog_topic": changelog,
        "active_partitions": sorted({tp.partition for tp in actives if tp.topic in topics}),
        "standby_partitions": sorted({tp.partition for tp in standbys if tp.topic in topics}),
        "sessions_in_table": len(table),
    }


def _announce(url: str) -> None:
    print(f"kato-stream gateway ready on {url}", file=sys.stdout, flush=True)
