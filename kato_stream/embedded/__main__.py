"""``python -m kato_stream.embedded``: the embedded stack in the foreground."""

from __future__ import annotations

import asyncio
import contextlib

from kato_stream.embedded.launcher import run_forever
from kato_stream.settings import Settings

if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_forever(Settings.from_env()))
