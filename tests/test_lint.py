"""Style is part of the build: ruff (lint + format) over the tree, mypy --strict over the
package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_ruff_check() -> None:
    r = _run("ruff", "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format() -> None:
    r = _run("ruff", "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_package_is_mypy_strict_clean() -> None:
    r = _run("mypy")  # [tool.mypy] in pyproject.toml: strict, files = kato_stream
    assert r.returncode == 0, r.stdout + r.stderr
