"""Supervised tasks (supervise.py): a failing body is logged, counted and run again; a body
that returns ends its supervision; stop cancels."""

from __future__ import annotations

import asyncio

import pytest

from kato_stream import metrics
from kato_stream.supervise import Supervisor, supervised


def failures(task: str) -> float:
    return metrics.REGISTRY.get_sample_value("kato_task_failures_total", {"task": task}) or 0.0


async def test_a_failing_body_is_counted_logged_and_run_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = []

    async def body() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"boom {len(runs)}")

    before = failures("t-fail")
    await asyncio.wait_for(supervised("t-fail", body, backoff=0.01), 5)
    assert len(runs) == 3  # two failures, then a clean return ends it
    assert failures("t-fail") == before + 2
    assert sum("task t-fail failed" in r.getMessage() for r in caplog.records) == 2
    assert all(r.exc_info for r in caplog.records if "task t-fail failed" in r.getMessage())


async def test_supervisor_reports_alive_failures_and_stops() -> None:
    gate = asyncio.Event()

    async def body() -> None:
        if not gate.is_set():
            gate.set()
            raise ValueError("first run fails")
        await asyncio.Event().wait()  # then runs forever

    sup = Supervisor("t-sup", body)
    assert not sup.alive()
    sup.start()
    for _ in range(200):
        if sup.failures:
            break
        await asyncio.sleep(0.01)
    assert sup.failures == 1 and isinstance(sup.last_error, ValueError)
    assert sup.alive()
    await sup.stop()
    assert not sup.alive()
