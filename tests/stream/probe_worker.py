"""A real worker that checks the agent's write order at every send to ``kato.patterns``.

A learn's pattern event must not be acknowledged while the changelog records of table writes
made before it are still buffered or in flight (agents.py ``prepare``): a crash in between
would redo those earlier commands against an LTM that already holds the learn.  This wraps the
session table's ``send_changelog`` (to keep the futures it returns) and the pattern topic's
``send`` (to look at them); nothing is replaced.  After every pattern send the counts go to the
report file as JSON: ``{"sends": N, "early": M}``, M being the sends made while an earlier
changelog record was unacknowledged.

``python -m tests.stream.probe_worker REPORT`` with settings from the environment.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from kato_stream.settings import Settings
from kato_stream.stream.app import build_worker


def instrument(w: Any, report: Path) -> None:
    table = w.sessions
    written: list[Any] = []
    counts = {"sends": 0, "early": 0}
    send_changelog = table.send_changelog
    send_pattern = w.patterns_topic.send

    def logged_changelog(*args: Any, **kwargs: Any) -> Any:
        fut = send_changelog(*args, **kwargs)
        written.append(fut)
        return fut

    async def checked_send(*args: Any, **kwargs: Any) -> Any:
        written[:] = [f for f in written if not f.done()]
        counts["sends"] += 1
        counts["early"] += bool(written)
        report.write_bytes(orjson.dumps(counts))
        return await send_pattern(*args, **kwargs)

    table.send_changelog = logged_changelog
    w.patterns_topic.send = checked_send


if __name__ == "__main__":
    w = build_worker(Settings.from_env())
    instrument(w, Path(sys.argv[1]))
    w.run("info")
