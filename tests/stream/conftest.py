"""Stream fixtures: settings for one test's private topics/group, and worker subprocesses
that are always stopped (killed if need be) when the test ends."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kato_stream.settings import Settings
from tests.stream.harness import WorkerProc


@pytest.fixture
def stream_settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    return dataclasses.replace(
        stack_settings,
        partitions=4,
        data_dir=str(tmp_path / "worker"),
        commit_interval=0.5,
        persist=False,  # workers here share one Qdrant dir; persistence: test_persist.py
    )


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProc]]:
    procs: list[WorkerProc] = []

    def spawn(settings: Settings, name: str = "w", argv: list[str] | None = None) -> WorkerProc:
        s = dataclasses.replace(settings, data_dir=str(tmp_path / f"data-{name}-{len(procs)}"))
        p = WorkerProc(s, tmp_path / f"{name}-{len(procs)}.log", argv).start()
        procs.append(p)
        return p

    yield spawn
    for p in procs:
        if p.alive():
            p.kill()
    # an agent that crashes is restarted by Faust and may still produce the right outputs:
    # no test may pass over a crash
    crashed = [p.log_path.name for p in procs if "Crashed reason=" in p.log_tail(10**7)]
    assert not crashed, f"agent crashed in {crashed}"
