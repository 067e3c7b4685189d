"""One lifecycle for every long-lived component: :class:`Service`.

A component that holds a connection, a consumer or a background loop is a ``Service``:

* ``await start()`` opens it, starts its loops and returns it.  It is idempotent, and a
  failure part way closes what was opened (``stop``) before it raises, so a failed start
  leaks nothing.
* ``await stop()`` stops its loops first, then closes it (``on_stop``).  It is idempotent
  and safe after a failed start.
* ``alive()`` says whether it is started and every loop it supervises runs (the liveness
  probe asks); ``async with`` starts and stops it.

Background loops are not bare ``asyncio.create_task`` calls: ``self.supervise(name, body)``
inside ``on_start`` runs ``body`` under a :class:`~kato_stream.supervise.Supervisor` (logged,
counted in ``kato_task_failures_total``, started again), owned by the service and stopped
with it.  A loop that must finish its work in hand passes ``drain`` (a callable that asks it
to return) and ``grace`` (how long ``stop`` waits for it before cancelling).

In the worker, Faust starts and stops the app's services: :func:`as_mode_service` adapts a
group of ours into one ``mode.Service`` (``stream/app.py``).  The gateway, the stores and
the tools start theirs directly.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self

from kato_stream.supervise import Supervisor

__all__ = ["Service", "as_mode_service"]

log = logging.getLogger(__name__)


class Service:
    """The base of every long-lived component (see the module docstring)."""

    def __init__(self) -> None:
        self._started = False
        self._loops: list[Supervisor] = []

    # -- what a service adds ---------------------------------------------------------------

    async def on_start(self) -> None:
        """Open connections and call :meth:`supervise` for each background loop."""

    async def on_stop(self) -> None:
        """Close what ``on_start`` opened (its loops are already stopped).  It also runs
        after a failed start, so it must cope with a half-open state."""

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> Self:
        """Start it (once); returns it, so ``x = await X(...).start()`` reads well."""
        if self._started:
            return self
        self._started = True
        try:
            await self.on_start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        loops, self._loops = self._loops, []
        try:
            for sup in reversed(loops):
                await sup.stop()
        finally:
            await self.on_stop()

    @property
    def loops(self) -> tuple[Supervisor, ...]:
        """The supervisors of its background loops, in the order they were started."""
        return tuple(self._loops)

    def alive(self) -> bool:
        """Started, and every supervised loop's task runs (a body between two attempts
        counts as running: the supervisor will start it again)."""
        return self._started and all(sup.alive() for sup in self._loops)

    def supervise(
        self,
        name: str,
        body: Callable[[], Awaitable[None]],
        *,
        drain: Callable[[], None] | None = None,
        grace: float = 0.0,
    ) -> Supervisor:
        """Run ``body`` supervised until the service stops; returns its supervisor."""
        sup = Supervisor(name, body, drain=drain, grace=grace)
        self._loops.append(sup)
        sup.start()
        return sup

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def as_mode_service(
    services: Sequence[Service], *, before: Callable[[], Awaitable[None]] | None = None
) -> Any:
    """A ``mode.Service`` class whose instances start ``services`` in order (after
    ``before``) and stop them in reverse: how the worker hands its services to Faust, whose
    app and worker start and stop ``mode`` services (``app.service`` takes the class, a
    boot service is an instance of it)."""
    import mode

    async def on_start(self: Any) -> None:
        if before is not None:
            await before()
        for service in services:
            await service.start()

    async def on_stop(self: Any) -> None:
        for service in reversed(services):
            try:
                await service.stop()
            except Exception:  # the others must stop still
                log.exception("stopping %s failed", type(service).__name__)

    # named after what it runs (mode names a service by its class in its logs and its
    # tree, and keys its bookkeeping by the name it had when the class was made)
    name = "+".join(type(s).__name__ for s in services)
    return type(name, (mode.Service,), {"on_start": on_start, "on_stop": on_stop})
