"""kato_stream/service.py: one lifecycle for every long-lived component.

A service starts once, stops once, stops its loops before it closes, leaks nothing when its
start fails half way, and reports a loop that ended; Faust starts and stops a group of them
as one ``mode`` service, in order.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from kato_stream.service import Service, as_mode_service


class Recorder(Service):
    """Logs its lifecycle into ``events``; its loop ticks until stopped."""

    def __init__(self, name: str, events: list[str], fail_start: bool = False) -> None:
        super().__init__()
        self.name, self.events, self.fail_start = name, events, fail_start
        self.ticks = 0

    async def on_start(self) -> None:
        self.events.append(f"{self.name} start")
        self.supervise(f"{self.name}-loop", self._loop)
        if self.fail_start:
            await asyncio.sleep(0.02)  # the loop runs by now
            raise RuntimeError("cannot open")

    async def _loop(self) -> None:
        try:
            while True:
                self.ticks += 1
                await asyncio.sleep(0.01)
        finally:
            self.events.append(f"{self.name} loop stopped")

    async def on_stop(self) -> None:
        self.events.append(f"{self.name} close")


async def test_start_and_stop_happen_once_and_loops_stop_before_close() -> None:
    events: list[str] = []
    svc = Recorder("a", events)
    assert await svc.start() is svc
    await svc.start()  # again: nothing
    await asyncio.sleep(0.05)
    assert svc.started and svc.alive() and svc.ticks > 0
    await svc.stop()
    await svc.stop()  # again: nothing
    assert events == ["a start", "a loop stopped", "a close"]
    assert not svc.started and not svc.alive() and svc.loops == ()


async def test_a_failed_start_closes_what_it_opened_and_raises() -> None:
    events: list[str] = []
    svc = Recorder("a", events, fail_start=True)
    with pytest.raises(RuntimeError, match="cannot open"):
        await svc.start()
    assert events == ["a start", "a loop stopped", "a close"]
    assert not svc.started and svc.loops == ()
    ticks = svc.ticks
    await asyncio.sleep(0.03)
    assert svc.ticks == ticks  # nothing left running
    svc.fail_start = False  # the cause is gone: it starts afresh
    await svc.start()
    assert svc.alive()
    await svc.stop()


async def test_a_loop_that_ended_makes_it_not_alive() -> None:
    svc = Recorder("a", [])
    async with svc:
        task = svc.loops[0].task
        assert task is not None
        task.cancel()
        await asyncio.sleep(0.01)
        assert svc.started and not svc.alive()
    assert not svc.started


async def test_a_draining_loop_finishes_its_work_before_stop_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    finished: list[str] = []

    class Batch(Service):
        def __init__(self, work: float) -> None:
            super().__init__()
            self.work = work
            self.asked = asyncio.Event()

        async def on_start(self) -> None:
            self.supervise("batch", self._run, drain=self.asked.set, grace=0.3)

        async def _run(self) -> None:
            await self.asked.wait()
            await asyncio.sleep(self.work)  # the batch in hand
            finished.append(f"{self.work}")

    quick = await Batch(0.05).start()
    await quick.stop()
    assert finished == ["0.05"]  # asked, then waited for

    slow = await Batch(5.0).start()
    with caplog.at_level(logging.WARNING, logger="kato_stream.supervise"):
        await slow.stop()  # past the grace: cancelled
    assert finished == ["0.05"]
    assert "task batch did not finish in 0.3 s: cancelled" in caplog.text


async def test_faust_starts_a_group_in_order_and_stops_it_in_reverse() -> None:
    events: list[str] = []
    before_ran: list[str] = []

    async def before() -> None:
        before_ran.append("before")
        events.append("before")

    group = as_mode_service([Recorder("a", events), Recorder("b", events)], before=before)
    assert group.__name__ == "Recorder+Recorder"
    svc = group()  # a mode.Service, as Faust's worker and app start them
    await svc.start()
    await asyncio.sleep(0.02)
    await svc.stop()
    assert events == [
        "before",
        "a start",
        "b start",
        "b loop stopped",
        "b close",
        "a loop stopped",
        "a close",
    ]


async def test_one_failing_stop_does_not_keep_the_others_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[str] = []

    class BadClose(Recorder):
        async def on_stop(self) -> None:
            raise OSError("close failed")

    first = Recorder("a", events)
    svc = as_mode_service([first, BadClose("b", events)])()
    await svc.start()
    with caplog.at_level(logging.ERROR, logger="kato_stream.service"):
        await svc.stop()
    assert "stopping BadClose failed" in caplog.text
    assert events[-2:] == ["a loop stopped", "a close"] and not first.started
