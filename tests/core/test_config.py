"""Session config: KATO's update messages, create-time roll-back, effective order (§6.3-6.4)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kato_stream.core.config import (
    CONFIG_KEYS,
    EngineDefaults,
    SessionConfig,
    apply_create,
    effective_config,
    validate_update,
)
from kato_stream.core.errors import ConfigError
from kato_stream.settings import Settings

RANK_MSG = (
    "Must be one of: potential, similarity, evidence, confidence, snr, fragmentation, "
    "frequency, normalized_entropy, global_normalized_entropy, itfdf_similarity, "
    "confluence, predictive_information, bayesian_posterior, bayesian_prior, "
    "bayesian_likelihood, tfidf_score, weighted_similarity, weighted_evidence, "
    "weighted_confidence, weighted_snr"
)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("recall_threshold", 1.5, "Must be a number between 0.0 and 1.0"),
        ("recall_threshold", "0.5", "Must be a number between 0.0 and 1.0"),
        ("persistence", 0, "Must be an integer between 1 and 100"),
        ("persistence", 5.0, "Must be an integer between 1 and 100"),
        ("max_pattern_length", -1, "Must be a non-negative integer"),
        ("max_predictions", 10001, "Must be an integer between 1 and 10000"),
        ("indexer_type", "XX", "Must be one of: VI, LSH, ANNOY, FAISS"),
        ("stm_mode", 3, "Must be a string"),
        ("process_predictions", "yes", "Must be a boolean (true/false)"),
        ("use_token_matching", 1, "Must be a boolean (true/false)"),
        ("rank_sort_algo", "nope", RANK_MSG),
    ],
)
def test_update_messages(key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_update({"config": {"jaccard_threshold": 0.5, key: value}})
    assert info.value.status == 400
    assert info.value.details == {
        "error": "Configuration validation failed",
        "validation_errors": {key: message},
    }


def test_update_accepts_both_body_forms_and_bools_as_ints() -> None:
    assert validate_update({"config": {"max_predictions": 3}}) == {"max_predictions": 3}
    assert validate_update({"max_predictions": 3}) == {"max_predictions": 3}
    assert validate_update({"max_pattern_length": True}) == {"max_pattern_length": True}


def test_update_invalid_stm_mode_string_becomes_clear_and_unknown_keys_ignored() -> None:
    assert validate_update({"stm_mode": "rolling", "bogus": 1}) == {"stm_mode": "CLEAR"}
    assert validate_update({"stm_mode": "ROLLING"}) == {"stm_mode": "ROLLING"}


def test_update_sort_auto_toggle() -> None:
    assert validate_update({"use_token_matching": False}) == {
        "use_token_matching": False,
        "sort_symbols": False,
    }
    assert validate_update({"use_token_matching": False, "sort_symbols": True}) == {
        "use_token_matching": False,
        "sort_symbols": True,
    }


def test_update_not_validated_keys_are_stored() -> None:
    changes = validate_update({"fuzzy_token_threshold": 5, "filter_pipeline": ["nope"]})
    assert changes == {"fuzzy_token_threshold": 5, "filter_pipeline": ["nope"]}


def test_update_null_resets() -> None:
    cfg = SessionConfig(recall_threshold=0.5).updated(validate_update({"recall_threshold": None}))
    assert cfg.recall_threshold is None


def test_create_rolls_back_everything_on_one_bad_value() -> None:
    assert apply_create({"max_predictions": 3, "recall_threshold": 2}) == SessionConfig()
    assert apply_create({"max_predictions": 3, "recall_threshold": "0.5"}) == SessionConfig()
    assert apply_create({"filter_pipeline": ["minhash", "nope"]}) == SessionConfig()
    assert apply_create({"minhash_rows": 21}) == SessionConfig()
    assert apply_create(None) == SessionConfig()


def test_create_accepts_valid_and_has_no_auto_toggle() -> None:
    cfg = apply_create({"use_token_matching": False, "max_predictions": 3, "stm_mode": "x"})
    assert cfg.use_token_matching is False
    assert cfg.sort_symbols is None
    assert cfg.stm_mode == "CLEAR"
    assert cfg.max_predictions == 3


def test_effective_order_and_omissions() -> None:
    eff = effective_config(SessionConfig(), EngineDefaults())
    unset = ("fuzzy_token_threshold", "affinity_emotive", "forward_to")
    assert list(eff) == [k for k in CONFIG_KEYS if k not in unset]  # KATO's body exactly
    assert eff["filter_pipeline"] == []
    eff2 = SessionConfig(
        affinity_emotive="joy", fuzzy_token_threshold=0.8, forward_to="L1"
    ).effective(EngineDefaults())
    assert list(eff2) == list(CONFIG_KEYS)
    assert eff2["affinity_emotive"] == "joy"
    assert eff2["forward_to"] == "L1"


def test_forward_to_is_a_node_id() -> None:
    assert validate_update({"forward_to": "L1"}) == {"forward_to": "L1"}
    assert validate_update({"forward_to": None}) == {"forward_to": None}  # back to none
    for bad in ("", 3, ["L1"], "x" * 1025):
        with pytest.raises(ConfigError, match="forward_to"):
            validate_update({"forward_to": bad})
    assert apply_create({"forward_to": "L1", "max_pattern_length": 3}).forward_to == "L1"
    assert apply_create({"forward_to": 7, "max_pattern_length": 3}) == SessionConfig()


def test_config_round_trip() -> None:
    cfg = SessionConfig(max_predictions=4, filter_pipeline=["length"], sort_symbols=False)
    assert SessionConfig.from_dict(cfg.to_dict()) == cfg


def test_state_form_has_every_field_in_order_with_lists_copied() -> None:
    """The session-state form: every field (None included) in field order, as
    ``dataclasses.asdict`` gives it, with the filter pipeline as a list of its own."""
    pipeline = ["length", "jaccard"]
    cfg = SessionConfig(max_predictions=4, filter_pipeline=pipeline, forward_to="L1")
    d = cfg.to_dict()
    assert list(d) == [f.name for f in dataclasses.fields(SessionConfig)]
    assert d == dataclasses.asdict(cfg)
    assert d["filter_pipeline"] == pipeline and d["filter_pipeline"] is not pipeline
    d["filter_pipeline"].append("x")
    assert cfg.filter_pipeline == ["length", "jaccard"]
    assert SessionConfig().to_dict() == dict.fromkeys(d)


def test_defaults_from_settings() -> None:
    s = Settings.from_env({"RECALL_THRESHOLD": "0.3", "MAX_PREDICTIONS": "7"})
    d = EngineDefaults.from_object(s)
    assert d.recall_threshold == 0.3
    assert d.max_predictions == 7
    assert d.session_ttl == 3600
