"""Wait for a condition in a test: one polling loop instead of a deadline loop per test."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    fetch: Callable[[], Awaitable[T]] | Callable[[], T],
    ok: Callable[[T], bool] = bool,
    timeout: float = 30.0,
    *,
    every: float = 0.1,
    what: str = "",
    context: Callable[[], str] | None = None,
) -> T:
    """Call ``fetch`` (sync or async) until ``ok(value)``, every ``every`` seconds; returns
    that value.  After ``timeout`` seconds fails with ``what``, the last value and
    ``context()`` (e.g. a worker's log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if inspect.isawaitable(value):
            value = await value
        if ok(value):  # type: ignore[arg-type]
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            extra = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"timed out waiting for {what or 'a condition'}: {value!r}{extra}")
        await asyncio.sleep(every)
