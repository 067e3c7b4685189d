"""What the benchmarks' reports share: the command line, the machine, printing and saving.

Import as ``from benchmarks._common import ...`` after putting the repository on
``sys.path`` (every benchmark does, for ``kato_stream``)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def command(script: str) -> str:
    """How the benchmark was run: ``python benchmarks/<script> <its arguments>``."""
    return " ".join(["python", f"benchmarks/{Path(script).name}", *sys.argv[1:]])


def machine(**extra: Any) -> dict[str, Any]:
    """Python version, CPU count and platform of this host (and ``extra``)."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        **extra,
    }


def emit(report: dict[str, Any], out: Path | None) -> None:
    """Print ``report`` as JSON and, with ``out``, write it there (directories created)."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
