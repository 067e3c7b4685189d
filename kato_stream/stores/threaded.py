"""The lifecycle shared by the stores over a synchronous client (ClickHouse, Qdrant).

Both clients block and are not meant to be shared across threads, so each store runs its
client on a private thread (:class:`SerialExecutor`), buffers writes, and flushes them from a
background loop every ``store_flush_seconds`` (or sooner, when :attr:`_wake` is set), before
reads where it must, and on :meth:`stop`.  The store is a :class:`~kato_stream.service.Service`:
the flush loop is supervised and stopped with it.  A subclass says how to connect, what to do once
connected, how to flush and what to forget on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, ClassVar, Generic, TypeVar

from kato_stream.service import Service
from kato_stream.settings import Settings
from kato_stream.stores._util import SerialExecutor, redact
from kato_stream.stores.errors import StoreError

log = logging.getLogger(__name__)

C = TypeVar("C")


class ThreadedStore(Service, Generic[C]):
    """``async start()``/``stop()`` around a blocking client ``C``; stop flushes."""

    kind: ClassVar[str]
    """The store's name in errors, logs, its thread and its flush task."""

    def __init__(self, settings: Settings, url: str) -> None:
        super().__init__()
        self.settings = settings
        self.url = url
        self._client: C | None = None
        self._exec: SerialExecutor | None = None
        self._wake = asyncio.Event()

    # -- what a store adds -----------------------------------------------------------------

    def _connect(self) -> C:
        """Open the client (on the store's thread); raise StoreUnavailableError if it can't."""
        raise NotImplementedError

    async def _setup(self) -> None:
        """Once connected, before the flush task starts (e.g. apply the schema)."""

    async def flush(self) -> None:
        """Write what is buffered (raises StoreError; what failed stays buffered)."""

    def _forget(self) -> None:
        """Drop per-connection caches once the client is closed."""

    # -- lifecycle -------------------------------------------------------------------------

    async def on_start(self) -> None:
        """Connect and set up (a failure closes what was opened and raises)."""
        name = self.kind.lower()
        self._exec = SerialExecutor(name)
        try:
            self._client = await self._exec.run(self._connect)
            await self._setup()
        except BaseException:  # closed here: the stop that follows must not flush
            await self._close_client()
            raise
        self._wake = asyncio.Event()  # bound to this start's event loop
        self.supervise(f"{name}-flush", self._flush_loop)

    async def on_stop(self) -> None:
        """Flush everything buffered, then close.  Raises if the final flush fails."""
        try:
            if self._client is not None:
                await self.flush()
        finally:
            await self._close_client()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if self._exec is not None:
            if client is not None:
                with contextlib.suppress(Exception):
                    await self._exec.run(client.close)  # type: ignore[attr-defined]
            self._exec.shutdown()
            self._exec = None
        self._forget()

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the store's thread; its failures as StoreError."""
        if self._client is None or self._exec is None:
            raise StoreError(f"{type(self).__name__} is not started")
        try:
            return await self._exec.run(lambda: fn(*args, **kwargs))
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{self.kind} at {redact(self.url)}: {exc}") from exc

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.store_flush_seconds)
            self._wake.clear()
            try:
                await self.flush()
            except StoreError as exc:
                log.warning("%s flush failed, will retry: %s", self.kind, exc)
