"""A worker serving the gateway in its own process (what ``kato-stream dev`` runs).

``python -m tests.gateway.inproc_worker PORT`` with settings from the environment.
"""

import sys

from kato_stream.gateway.server import attach_to_worker
from kato_stream.settings import Settings
from kato_stream.stream.app import build_worker

if __name__ == "__main__":
    w = build_worker(Settings.from_env())
    attach_to_worker(w, "127.0.0.1", int(sys.argv[1]))
    w.run("warning")
