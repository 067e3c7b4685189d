"""Supervised background tasks: a loop that dies is logged, counted and started again.

A bare ``asyncio.create_task`` whose coroutine raises ends silently: the pattern follower
would stop replicating (before ``ready``, the agent would wait forever), the latest-record
writer would stop writing, and nothing would say so.  :func:`supervised` runs a task's
body, and when it raises: logs the error with its traceback, counts it in
``kato_task_failures_total{task}``, waits (0.5 s, doubling up to 30 s; afresh after a
minute of health) and runs it again.  :class:`Supervisor` owns one such task: ``start``,
``stop``, ``alive`` (for the liveness probe) and ``failures``.

The body must be restartable: it keeps its progress on its object (offsets applied,
consumer positions), not in local variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from kato_stream import metrics

__all__ = ["Supervisor", "supervised"]

log = logging.getLogger(__name__)

BACKOFF = 0.5
MAX_BACKOFF = 30.0
HEALTHY_AFTER = 60.0  # a run this long resets the backoff


async def supervised(
    name: str,
    body: Callable[[], Awaitable[None]],
    *,
    on_failure: Callable[[BaseException], None] | None = None,
    backoff: float = BACKOFF,
    max_backoff: float = MAX_BACKOFF,
) -> None:
    """Run ``body()`` until it returns (its way to stop) or is cancelled, starting it again
    whenever it raises."""
    pause = backoff
    while True:
        started = time.monotonic()
        try:
            await body()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.observe_task_failure(name)
            if on_failure is not None:
                on_failure(exc)
            if time.monotonic() - started >= HEALTHY_AFTER:
                pause = backoff
            log.error("task %s failed: starting it again in %.1f s", name, pause, exc_info=exc)
        await asyncio.sleep(pause)
        pause = min(max_backoff, pause * 2)


class Supervisor:
    """One supervised task of a component (a :class:`~kato_stream.service.Service` owns its
    supervisors and stops them with it).

    ``drain`` and ``grace``: for a body that must finish its work in hand, :meth:`stop`
    calls ``drain()`` (which asks the body to return) and waits up to ``grace`` seconds
    for it before cancelling."""

    def __init__(
        self,
        name: str,
        body: Callable[[], Awaitable[None]],
        *,
        drain: Callable[[], None] | None = None,
        grace: float = 0.0,
    ) -> None:
        self.name = name
        self.body = body
        self.drain = drain
        self.grace = grace
        self.failures = 0
        self.last_error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = exc

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(
                supervised(self.name, self.body, on_failure=self._failed), name=self.name
            )

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def alive(self) -> bool:
        """Whether the supervising task runs (its body may be between two attempts)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if self.drain is not None and not task.done():
            self.drain()
            try:
                await asyncio.wait_for(asyncio.shield(task), self.grace)
                return
            except TimeoutError:  # (the body's own failures never reach here: supervised())
                log.warning("task %s did not finish in %.1f s: cancelled", self.name, self.grace)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
