"""The README stays true: its settings table and its commands match the code."""

from __future__ import annotations

from pathlib import Path

from kato_stream.cli import build_parser
from kato_stream.settings import settings_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_settings_table_is_current() -> None:
    assert settings_table() in README, "regenerate with: ./run.sh settings"


def test_ci_runs_the_readme_test_command() -> None:
    assert "./run.sh test" in README
    assert "./run.sh test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_subcommands_exist() -> None:
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for cmd in (
        "dev",
        "topics",
        "worker",
        "gateway",
        "publish",
        "consume",
        "archive",
        "replay",
        "loadgen",
        "settings",
    ):
        assert f"./run.sh {cmd}" in README, cmd
        assert cmd in choices, cmd
