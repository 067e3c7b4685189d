"""``kato-stream topics create|check`` against the real broker: statuses and exit codes."""

from __future__ import annotations

import pytest

from kato_stream.cli import main
from kato_stream.settings import Settings
from kato_stream.topics import topic_specs


def test_topics_create_and_check(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, v in stack_settings.to_env().items():
        monkeypatch.setenv(k, v)
    names = [t.name for t in topic_specs(stack_settings)]

    def statuses() -> dict[str, str]:
        out = capsys.readouterr().out
        return {line.split("\t")[0]: line.split("\t")[2] for line in out.splitlines()}

    assert main(["topics", "check"]) == 1
    assert set(statuses().items()) == {(n, "missing") for n in names}
    assert main(["topics", "create"]) == 0
    assert set(statuses().items()) == {(n, "created") for n in names}
    assert main(["topics", "create"]) == 0  # idempotent
    assert set(statuses().items()) == {(n, "exists") for n in names}
    assert main(["topics", "check"]) == 0
    assert set(statuses().values()) == {"ok"}

    # a deployment expecting another partition count is told, not silently accepted
    more = str(stack_settings.partitions + 2)
    assert main(["topics", "create", "--partitions", more]) == 1
    err = capsys.readouterr().err
    assert f"expected {more}" in err and "error: topic" in err
    assert main(["topics", "check", "--partitions", more]) == 1
    assert f"has {stack_settings.partitions}" in capsys.readouterr().out
