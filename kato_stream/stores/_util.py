"""Small helpers shared by the store services."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from kato_stream.redact import redact_url

T = TypeVar("T")


def redact(url: str) -> str:
    """``url`` without its password or secret query values, for error messages and logs
    (:func:`kato_stream.redact.redact_url`)."""
    return redact_url(url)


def local_path(url: str, scheme: str) -> str | None:
    """The filesystem path of ``scheme:///abs/path`` / ``file:///abs`` / ``/abs``, else None."""
    for prefix in (f"{scheme}://", "file://"):
        if url.startswith(prefix):
            return os.path.abspath(url[len(prefix) :])
    if url.startswith("/"):
        return os.path.abspath(url)
    return None


def embedded_path(data_dir: str, name: str) -> str:
    """``<data_dir>/<name>`` as an absolute path (the embedded default of a store)."""
    return str(Path(data_dir, name).resolve())


class SerialExecutor:
    """Runs blocking client calls one at a time on a private thread.

    The ClickHouse (chdb) and Qdrant local clients are synchronous and not meant to be
    shared across threads; one worker thread keeps them off the event loop and serialised.
    """

    def __init__(self, name: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
