"""Settings: every field parses from its env var, bad values name the variable, docs exist."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from kato_stream.settings import Settings, SettingsError, settings_table

FIELDS = list(fields(Settings))


def _other_valid(f: Any) -> tuple[str, Any]:
    """A raw env string different from the default (where possible) and the value it parses to."""
    d = f.default
    if isinstance(d, bool):
        return ("false" if d else "true"), (not d)
    choices = f.metadata["choices"]
    if choices:
        alt = next((c for c in choices if c != d), d)
        return alt, alt
    check = f.metadata["check"] or (lambda v: True)
    if isinstance(d, int):
        for cand in (d + 1, d - 1, d * 2, d):
            if check(cand):
                return str(cand), cand
    if isinstance(d, float):
        for cand in (d / 2, d * 2, d + 0.5, d):
            if check(cand):
                return repr(cand), cand
    if isinstance(d, tuple):
        return "length,jaccard", ("length", "jaccard")
    if isinstance(d, str) and check("custom-value"):
        return "custom-value", "custom-value"
    return str(d), d


def test_env_names_are_unique_and_documented() -> None:
    names = [f.metadata["env"] for f in FIELDS]
    assert len(names) == len(set(names))
    table = settings_table()
    for f in FIELDS:
        assert f.metadata["doc"].strip(), f.name
        assert f"`{f.metadata['env']}`" in table
        assert f"`{f.default!r}`" in table


def test_defaults_are_valid() -> None:
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.metadata["env"])
def test_each_setting_parses_from_env(f: Any) -> None:
    raw, expected = _other_valid(f)
    s = Settings.from_env({f.metadata["env"]: raw})
    assert getattr(s, f.name) == expected
    assert type(getattr(s, f.name)) is type(f.default)
    others = {g.name for g in FIELDS} - {f.name}
    assert all(getattr(s, n) == getattr(Settings(), n) for n in others)


@pytest.mark.parametrize(
    "f",
    [f for f in FIELDS if isinstance(f.default, (bool, int, float))],
    ids=lambda f: f.metadata["env"],
)
def test_malformed_numbers_and_booleans_name_the_variable(f: Any) -> None:
    name = f.metadata["env"]
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: "not-a-number"})


@pytest.mark.parametrize(
    ("env", "raw"),
    [
        ("KATO_STREAM_PARTITIONS", "0"),
        ("KATO_STREAM_PARTITIONS", "1.5"),
        ("KATO_STREAM_WEB_PORT", "70000"),
        ("KATO_STREAM_REPLICATION_FACTOR", "0"),
        ("RECALL_THRESHOLD", "1.5"),
        ("RECALL_THRESHOLD", "nan"),
        ("STM_MODE", "SIDEWAYS"),
        ("SORT_SYMBOLS", "maybe"),
        ("KATO_STREAM_METRICS_MAX_NODES", "0"),
        ("KATO_STREAM_METRICS_LAG_INTERVAL", "0"),
        ("KATO_STREAM_METRICS_NODE_LABEL", "2"),
    ],
)
def test_out_of_range_values_name_the_variable(env: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=env) as info:
        Settings.from_env({env: raw})
    assert raw in str(info.value)


@pytest.mark.parametrize(
    ("raw", "value"), [("1", True), ("YES", True), ("off", False), (" False ", False)]
)
def test_boolean_spellings(raw: str, value: bool) -> None:
    assert Settings.from_env({"KATO_STREAM_METRICS_NODE_LABEL": raw}).metrics_node_label is value


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KATO_STREAM_PARTITIONS", "24")
    monkeypatch.setenv("KATO_STREAM_METRICS_NODE_LABEL", "false")
    s = Settings.from_env()
    assert (s.partitions, s.metrics_node_label) == (24, False)


def test_topic_names_use_the_prefix() -> None:
    s = Settings.from_env({"KATO_STREAM_TOPIC_PREFIX": "prod"})
    assert s.topic("observations") == "prod.observations"


def test_exactly_once_is_refused_not_ignored() -> None:
    """The setting was removed (docs/operations.md, 'Delivery guarantee'): asking for
    exactly-once must stop the start, naming why, while the guarantee that holds is accepted."""
    with pytest.raises(SettingsError, match="at-least-once"):
        Settings.from_env({"KATO_STREAM_PROCESSING_GUARANTEE": "exactly_once"})
    assert Settings.from_env({"KATO_STREAM_PROCESSING_GUARANTEE": "at_least_once"})


def test_secrets_stay_out_of_repr() -> None:
    s = Settings.from_env(
        {
            "KATO_STREAM_KAFKA_SASL_PASSWORD": "pw-kafka-123",
            "KATO_STREAM_REDIS_PASSWORD": "pw-redis-123",
            "KATO_STREAM_CLICKHOUSE_PASSWORD": "pw-ch-123",
            "KATO_STREAM_QDRANT_API_KEY": "key-qd-123",
        }
    )
    assert s.kafka_sasl_password == "pw-kafka-123"
    for secret in ("pw-kafka-123", "pw-redis-123", "pw-ch-123", "key-qd-123"):
        assert secret not in repr(s)
