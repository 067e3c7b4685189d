"""Style is part of the build: ruff (lint + format, complexity at most 20) over the tree,
mypy --strict over the package, and no function over 80 lines outside the engine core."""

from __future__ import annotations

import ast
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


MAX_LINES = 80


def test_no_function_outside_the_core_is_over_80_lines() -> None:
    """A function that long does several things; split it (core/ has the engine's long
    numeric routines, which are measured against KATO line by line, and is exempt)."""
    long = []
    for path in sorted((ROOT / "kato_stream").rglob("*.py")):
        if "core" in path.relative_to(ROOT / "kato_stream").parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert not long, long
