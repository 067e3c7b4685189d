"""Process defaults, per-session config overrides and KATO's validation rules.

KATO validates a session config twice, with different rules (spec §6.3/§6.4): an
update (``POST /sessions/{id}/config``) is rejected as a whole with per-field
messages, while a config passed at session creation is silently rolled back as a
whole if any value is invalid.  Both rule sets are reproduced here, message for
message, because clients test for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from kato_stream.core.errors import ConfigError

STM_MODES = ("CLEAR", "ROLLING")
INDEXER_TYPES = ("VI", "LSH", "ANNOY", "FAISS")
RANK_SORT_ALGOS = (
    "potential",
    "similarity",
    "evidence",
    "confidence",
    "snr",
    "fragmentation",
    "frequency",
    "normalized_entropy",
    "global_normalized_entropy",
    "itfdf_similarity",
    "confluence",
    "predictive_information",
    "bayesian_posterior",
    "bayesian_prior",
    "bayesian_likelihood",
    "tfidf_score",
    "weighted_similarity",
    "weighted_evidence",
    "weighted_confidence",
    "weighted_snr",
)
FILTER_STAGES = ("minhash", "length", "jaccard", "bloom", "rapidfuzz")

# KATO's GET /config key order (spec §6.4).
CONFIG_KEYS = (
    "max_pattern_length",
    "persistence",
    "recall_threshold",
    "indexer_type",
    "max_predictions",
    "sort_symbols",
    "process_predictions",
    "use_token_matching",
    "fuzzy_token_threshold",
    "stm_mode",
    "rank_sort_algo",
    "affinity_emotive",
    "filter_pipeline",
    "length_min_ratio",
    "length_max_ratio",
    "jaccard_threshold",
    "jaccard_min_overlap",
    "minhash_threshold",
    "minhash_bands",
    "minhash_rows",
    "minhash_num_hashes",
    "bloom_false_positive_rate",
    "max_candidates_per_stage",
    "enable_filter_metrics",
    "forward_to",  # kato-stream's: the node a session's learned pattern names go to (§hierarchy)
)
# Keys without a process default: omitted from the effective config when unset (so a
# session without ``forward_to`` shows KATO's config body exactly).
_NO_DEFAULT = ("fuzzy_token_threshold", "affinity_emotive", "forward_to")
#: Longest ``forward_to`` node id (the stream envelope's limit on ids).
MAX_NODE_ID = 1024


@dataclass(frozen=True)
class EngineDefaults:
    """Process-wide defaults (KATO's env settings).  Plain fields: core imports no settings.

    Build it with ``EngineDefaults.from_object(settings)`` (takes every attribute of
    the same name) or field by field.
    """

    max_pattern_length: int = 0
    persistence: int = 5
    recall_threshold: float = 0.1
    indexer_type: str = "VI"
    max_predictions: int = 100
    sort_symbols: bool = True
    process_predictions: bool = True
    use_token_matching: bool = True
    stm_mode: str = "CLEAR"
    rank_sort_algo: str = "potential"
    filter_pipeline: tuple[str, ...] = ()
    length_min_ratio: float = 0.5
    length_max_ratio: float = 2.0
    jaccard_threshold: float = 0.3
    jaccard_min_overlap: int = 2
    minhash_threshold: float = 0.7
    minhash_bands: int = 20
    minhash_rows: int = 5
    minhash_num_hashes: int = 100
    bloom_false_positive_rate: float = 0.01
    max_candidates_per_stage: int = 100000
    enable_filter_metrics: bool = True
    session_ttl: int = 3600
    max_stm_size: int = 1000
    max_accumulator_size: int = 1000

    @classmethod
    def from_object(cls, obj: object) -> EngineDefaults:
        """Take every field that ``obj`` (e.g. ``kato_stream.settings.Settings``) has."""
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if hasattr(obj, f.name):
                value = getattr(obj, f.name)
                kw[f.name] = tuple(value) if f.name == "filter_pipeline" else value
        return cls(**kw)


@dataclass(frozen=True)
class SessionConfig:
    """Per-session overrides of spec §6.3; ``None`` means "use the process default"."""

    max_pattern_length: int | None = None
    persistence: int | None = None
    recall_threshold: float | None = None
    indexer_type: str | None = None
    max_predictions: int | None = None
    sort_symbols: bool | None = None
    process_predictions: bool | None = None
    use_token_matching: bool | None = None
    fuzzy_token_threshold: float | None = None
    stm_mode: str | None = None
    rank_sort_algo: str | None = None
    affinity_emotive: str | None = None
    filter_pipeline: list[str] | None = None
    length_min_ratio: float | None = None
    length_max_ratio: float | None = None
    jaccard_threshold: float | None = None
    jaccard_min_overlap: int | None = None
    minhash_threshold: float | None = None
    minhash_bands: int | None = None
    minhash_rows: int | None = None
    minhash_num_hashes: int | None = None
    bloom_false_positive_rate: float | None = None
    max_candidates_per_stage: int | None = None
    enable_filter_metrics: bool | None = None
    forward_to: str | None = None
    """Node that receives an observe of each pattern this session learns (docs/hierarchy.md)."""

    def to_dict(self) -> dict[str, Any]:
        """Every key, ``None`` included (the session-state form), lists copied.

        Read field by field, not by ``dataclasses.asdict``: a session's config is rebuilt from
        its table value on every command, so this runs once per command, and ``asdict``'s
        recursive deep copy cost about 0.1 ms of it (bench_worker_cpu's profile)."""
        out: dict[str, Any] = {}
        for k in _STATE_KEYS:
            v = getattr(self, k)
            out[k] = list(v) if isinstance(v, (list, tuple)) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SessionConfig:
        return cls(**{k: d[k] for k in CONFIG_KEYS if k in d})

    def updated(self, changes: Mapping[str, Any]) -> SessionConfig:
        """A copy with ``changes`` (already validated) applied."""
        return replace(self, **{k: v for k, v in changes.items() if k in CONFIG_KEYS})

    def get(self, key: str, defaults: EngineDefaults) -> Any:
        """The effective value of one key (session value, else process default)."""
        value = getattr(self, key)
        if value is None and key not in _NO_DEFAULT:
            value = getattr(defaults, key)
            if key == "filter_pipeline":
                value = list(value)
        return value

    def effective(self, defaults: EngineDefaults) -> dict[str, Any]:
        """KATO's ``GET /config`` body: KATO key order, unset no-default keys omitted."""
        out: dict[str, Any] = {}
        for k in CONFIG_KEYS:
            value = self.get(k, defaults)
            if value is None and k in _NO_DEFAULT:
                continue
            out[k] = list(value) if k == "filter_pipeline" else value
        return out


#: The session-state form's keys: every field of :class:`SessionConfig`, in field order.
_STATE_KEYS = tuple(f.name for f in fields(SessionConfig))


def effective_config(cfg: SessionConfig, defaults: EngineDefaults) -> dict[str, Any]:
    """Shorthand for ``cfg.effective(defaults)``."""
    return cfg.effective(defaults)


# -- update-time validation (POST /config, spec §6.4) ----------------------------------


def _is_num(v: Any) -> bool:
    # KATO uses isinstance(v, (int, float)): bools pass as numbers.
    return isinstance(v, (int, float))


def _is_int(v: Any) -> bool:
    return isinstance(v, int)


_MSG_UNIT = "Must be a number between 0.0 and 1.0"
_MSG_BOOL = "Must be a boolean (true/false)"

_UPDATE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "recall_threshold": (lambda v: _is_num(v) and 0.0 <= v <= 1.0, _MSG_UNIT),
    "persistence": (lambda v: _is_int(v) and 1 <= v <= 100, "Must be an integer between 1 and 100"),
    "max_pattern_length": (lambda v: _is_int(v) and v >= 0, "Must be a non-negative integer"),
    "max_predictions": (
        lambda v: _is_int(v) and 1 <= v <= 10000,
        "Must be an integer between 1 and 10000",
    ),
    "indexer_type": (lambda v: v in INDEXER_TYPES, "Must be one of: " + ", ".join(INDEXER_TYPES)),
    "stm_mode": (lambda v: isinstance(v, str), "Must be a string"),
    "process_predictions": (lambda v: isinstance(v, bool), _MSG_BOOL),
    "use_token_matching": (lambda v: isinstance(v, bool), _MSG_BOOL),
    "rank_sort_algo": (
        lambda v: v in RANK_SORT_ALGOS,
        "Must be one of: " + ", ".join(RANK_SORT_ALGOS),
    ),
}


def _node_id(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= MAX_NODE_ID


def _num_or_none(v: Any) -> bool:
    return v is None or (_is_num(v) and not isinstance(v, bool))


def _int_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool))


# Keys KATO does not validate but the engine must be able to use: reject only values
# whose *type* would make prediction crash (KATO would answer 500 later instead).
_TYPE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "sort_symbols": (lambda v: isinstance(v, bool), _MSG_BOOL),
    "enable_filter_metrics": (lambda v: isinstance(v, bool), _MSG_BOOL),
    "fuzzy_token_threshold": (_num_or_none, _MSG_UNIT),
    "affinity_emotive": (lambda v: v is None or isinstance(v, str), "Must be a string"),
    "filter_pipeline": (
        lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        "Must be a list of strings",
    ),
    "forward_to": (
        lambda v: v is None or _node_id(v),
        f"Must be a node id (a non-empty string of at most {MAX_NODE_ID} characters)",
    ),
    "length_min_ratio": (_num_or_none, "Must be a number"),
    "length_max_ratio": (_num_or_none, "Must be a number"),
    "jaccard_threshold": (_num_or_none, "Must be a number"),
    "jaccard_min_overlap": (_int_or_none, "Must be an integer"),
    "minhash_threshold": (_num_or_none, "Must be a number"),
    "minhash_bands": (_int_or_none, "Must be an integer"),
    "minhash_rows": (_int_or_none, "Must be an integer"),
    "minhash_num_hashes": (_int_or_none, "Must be an integer"),
    "bloom_false_positive_rate": (_num_or_none, "Must be a number"),
    "max_candidates_per_stage": (_int_or_none, "Must be an integer"),
}


def unwrap_config(body: Any) -> dict[str, Any]:
    """``{"config": {...}}`` or the config itself (both forms KATO accepts)."""
    if isinstance(body, Mapping) and isinstance(body.get("config"), Mapping):
        return dict(body["config"])
    if isinstance(body, Mapping):
        return dict(body)
    raise ConfigError(
        "Configuration must be an object",
        {
            "error": "Configuration validation failed",
            "validation_errors": {"config": "Must be an object"},
        },
    )


def validate_update(body: Any) -> dict[str, Any]:
    """Validate a config update; return the changes to apply (known keys only).

    Raises ``ConfigError`` with KATO's body (``details`` = ``{"error": "Configuration
    validation failed", "validation_errors": {field: message}}``) when any field is
    invalid; nothing is applied then.  ``null`` resets a key to its default.  Applies
    KATO's auto-toggle: ``use_token_matching`` without ``sort_symbols`` also sets
    ``sort_symbols`` to the same value.
    """
    cfg = unwrap_config(body)
    errors: dict[str, str] = {}
    for key, value in cfg.items():
        if value is None:
            continue
        rule = _UPDATE_RULES.get(key) or _TYPE_RULES.get(key)
        if rule is not None and not rule[0](value):
            errors[key] = rule[1]
    if errors:
        raise ConfigError(
            "Configuration validation failed: " + "; ".join(f"{k}: {m}" for k, m in errors.items()),
            {"error": "Configuration validation failed", "validation_errors": errors},
        )
    changes = {k: v for k, v in cfg.items() if k in CONFIG_KEYS}
    if changes.get("stm_mode") is not None and changes["stm_mode"] not in STM_MODES:
        changes["stm_mode"] = "CLEAR"
    if "use_token_matching" in changes and "sort_symbols" not in changes:
        changes["sort_symbols"] = changes["use_token_matching"]
    if changes.get("filter_pipeline") is not None:
        changes["filter_pipeline"] = list(changes["filter_pipeline"])
    return changes


# -- create-time rules (POST /sessions "config", spec §6.1/§6.3) ------------------------


def _unit(v: Any) -> bool:
    return _num_or_none(v) and (v is None or 0.0 <= v <= 1.0)


def _int_range(lo: int, hi: int | None = None) -> Callable[[Any], bool]:
    return lambda v: v is None or (_is_int(v) and v >= lo and (hi is None or v <= hi))


def _num_range(lo: float, hi: float | None = None) -> Callable[[Any], bool]:
    return lambda v: v is None or (_is_num(v) and v >= lo and (hi is None or v <= hi))


_CREATE_RULES: dict[str, Callable[[Any], bool]] = {
    "max_pattern_length": _int_range(0),
    "persistence": _int_range(1, 100),
    "recall_threshold": _num_range(0.0, 1.0),
    "stm_mode": lambda v: v is None or isinstance(v, str),
    "indexer_type": lambda v: v is None or v in INDEXER_TYPES,
    "max_predictions": _int_range(1, 10000),
    "sort_symbols": lambda v: v is None or isinstance(v, bool),
    "process_predictions": lambda v: v is None or isinstance(v, bool),
    "use_token_matching": lambda v: v is None or isinstance(v, bool),
    "fuzzy_token_threshold": _unit,
    "rank_sort_algo": lambda v: v is None or v in RANK_SORT_ALGOS,
    "affinity_emotive": lambda v: v is None or isinstance(v, str),
    "filter_pipeline": lambda v: (
        v is None
        or (isinstance(v, list) and all(isinstance(s, str) and s in FILTER_STAGES for s in v))
    ),
    "length_min_ratio": _unit,
    "length_max_ratio": lambda v: _num_or_none(v) and (v is None or v >= 1.0),
    "jaccard_threshold": _unit,
    "jaccard_min_overlap": _int_range(1),
    "minhash_threshold": _unit,
    "minhash_bands": _int_range(1, 100),
    "minhash_rows": _int_range(1, 20),
    "minhash_num_hashes": _int_range(10, 256),
    "bloom_false_positive_rate": lambda v: _num_or_none(v) and (v is None or 0.0001 <= v <= 0.1),
    "max_candidates_per_stage": _int_range(100),
    "enable_filter_metrics": lambda v: v is None or isinstance(v, bool),
    "forward_to": lambda v: v is None or _node_id(v),
}


def apply_create(config: Any) -> SessionConfig:
    """The session config for ``POST /sessions {"config": ...}``.

    If any value is invalid, *every* key is rolled back silently (KATO still creates
    the session, with defaults).  Unknown keys are ignored; invalid ``stm_mode``
    strings become ``CLEAR``; there is no sort auto-toggle at creation.
    """
    if not isinstance(config, Mapping) or not config:
        return SessionConfig()
    changes = {k: v for k, v in config.items() if k in CONFIG_KEYS}
    for k, v in changes.items():
        if not _CREATE_RULES[k](v):
            return SessionConfig()
    if changes.get("stm_mode") is not None and changes["stm_mode"] not in STM_MODES:
        changes["stm_mode"] = "CLEAR"
    if changes.get("filter_pipeline") is not None:
        changes["filter_pipeline"] = list(changes["filter_pipeline"])
    return SessionConfig().updated(changes)
