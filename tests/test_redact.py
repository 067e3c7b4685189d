"""Secrets never printed: ``redact_url`` and the places that show a store URL."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kato_stream.redact import redact_url
from kato_stream.stores._util import redact

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://kato:p%40ss@h:6380/1", "rediss://kato:***@h:6380/1"),
        ("redis://u:p@[::1]:6379/0", "redis://u:***@[::1]:6379/0"),
        ("http://default:pw@ch:8123/kato", "http://default:***@ch:8123/kato"),
        ("http://ch:8123/db?password=pw&compress=1", "http://ch:8123/db?password=***&compress=1"),
        ("https://q.example:6333?api_key=k", "https://q.example:6333?api_key=***"),
        ("redis://u@h:6379", "redis://u@h:6379"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("127.0.0.1:9092,127.0.0.2:9092", "127.0.0.1:9092,127.0.0.2:9092"),
        ("file:///data/qdrant", "file:///data/qdrant"),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact(url) == shown  # the stores' helper is the same


def test_a_malformed_url_keeps_no_user_info() -> None:
    assert "pw" not in redact_url("redis://u:pw@h:notaport/0")


def _printed_urls() -> list[str]:
    """``*_url`` values the package prints or logs (f-strings, log %-arguments) unredacted."""
    out = []
    for path in sorted((ROOT / "kato_stream").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if not (name == "print" or name.startswith("log.")):
                continue
            shown = [a for a in node.args[1:] if name.startswith("log.")]  # %-arguments
            for arg in node.args:
                shown += [v.value for v in ast.walk(arg) if isinstance(v, ast.FormattedValue)]
            for v in shown:
                text = ast.unparse(v)
                if text.endswith("_url"):
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {text}")
    return out


def test_printed_store_urls_are_redacted() -> None:
    """A store URL is printed or logged only through redact_url."""
    assert _printed_urls() == []
