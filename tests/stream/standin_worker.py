"""Run a worker with the stand-in engine (plumbing tests): ``python -m tests.stream.standin_worker``."""

from kato_stream.cli import run_worker
from kato_stream.settings import Settings
from tests.stream.standin import StandInEngine, _MemIndex

if __name__ == "__main__":
    run_worker(Settings.from_env(), engine=StandInEngine(), vector_factory=_MemIndex)
