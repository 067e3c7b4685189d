"""All settings in one typed place: each field has its env var, default and one line of doc.

``Settings.from_env()`` reads ``KATO_STREAM_*`` (and KATO's own engine variables, where KATO
reads them) and validates every value; a bad value raises ``SettingsError`` naming the
variable.  ``kato-stream settings`` prints the table (``settings_table()``), which is also
the README's configuration table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from kato_stream.core.config import EngineDefaults

#: The engine's defaults are declared once, in the core (``EngineDefaults``); the settings of
#: the same name take their defaults from there.
_D = EngineDefaults()


class SettingsError(ValueError):
    """A setting's environment value is malformed or out of range."""


def _bool(raw: str) -> bool:
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


#: Kafka compression types (aiokafka's names).
_CODECS = ("none", "gzip", "lz4", "snappy", "zstd")
#: KATO's filter names (spec §6.3).
_FILTERS = frozenset({"minhash", "length", "jaccard", "bloom", "rapidfuzz"})


def _codec_available(name: str) -> bool:
    """A compression type is valid only if aiokafka can load its codec here (it uses cramjam
    for lz4, snappy and zstd), so a worker never starts with a producer that cannot send."""
    if name not in _CODECS:
        return False
    if name == "none":
        return True
    from aiokafka import codec

    return bool(getattr(codec, f"has_{name}")())


#: Settings that no longer exist, with the values that mean what now holds anyway: any other
#: value is an error naming the reason, never silently ignored.
REMOVED: dict[str, tuple[frozenset[str], str]] = {
    "KATO_STREAM_PROCESSING_GUARANTEE": (
        frozenset({"", "at_least_once"}),
        "removed: kato-stream is at-least-once, with redeliveries recognised by source "
        "offsets and msg_id (docs/operations.md, 'Delivery guarantee'); exactly_once was "
        "never safe here (pattern followers and the persister read uncommitted records)",
    ),
}


def setting(
    env: str,
    default: Any,
    doc: str,
    *,
    check: Callable[[Any], bool] | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
) -> Any:
    """Declare a setting: its env var, default, one-line doc and optional validation.

    A ``secret`` (a password, an API key) is left out of ``repr`` and printed by no command,
    so a logged ``Settings`` never carries it."""
    return field(
        default=default,
        repr=not secret,
        metadata={"env": env, "doc": doc, "check": check, "choices": choices, "secret": secret},
    )


@dataclass(frozen=True)
class Settings:
    # -- Kafka ---------------------------------------------------------------------------
    kafka_bootstrap: str = setting(
        "KATO_STREAM_KAFKA_BOOTSTRAP", "127.0.0.1:19092", "Kafka bootstrap servers (host:port,...)."
    )
    topic_prefix: str = setting(
        "KATO_STREAM_TOPIC_PREFIX",
        "kato",
        "Prefix of every topic name (<prefix>.observations, ...).",
    )
    partitions: int = setting(
        "KATO_STREAM_PARTITIONS",
        8,
        "Partitions of the input and predictions topics (the ceiling on worker parallelism).",
        check=lambda v: 1 <= v <= 10_000,
    )
    replication_factor: int = setting(
        "KATO_STREAM_REPLICATION_FACTOR",
        1,
        "Replication factor for created topics.",
        check=lambda v: v >= 1,
    )
    max_message_bytes: int = setting(
        "KATO_STREAM_MAX_MESSAGE_BYTES",
        1_048_576,
        "Largest accepted command envelope; larger ones go to the DLQ.",
        check=lambda v: v >= 1024,
    )
    max_output_bytes: int = setting(
        "KATO_STREAM_MAX_OUTPUT_BYTES",
        1_000_000,
        "Largest output record; a larger one is published truncated (status 'truncated'); keep below the broker's message.max.bytes.",
        check=lambda v: v >= 4096,
    )
    idempotency_window: int = setting(
        "KATO_STREAM_IDEMPOTENCY_WINDOW",
        1000,
        "Command ids (msg_id, else origin or source) remembered per session: a command whose id is among them is answered 'duplicate' and changes nothing (0 = offsets only).",
        check=lambda v: 0 <= v <= 100_000,
    )
    # -- Kafka security (every client the project creates: kato_stream/kafka.py) ----------
    kafka_security_protocol: str = setting(
        "KATO_STREAM_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "How clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS, what managed clusters use).",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    kafka_sasl_mechanism: str = setting(
        "KATO_STREAM_KAFKA_SASL_MECHANISM",
        "PLAIN",
        "SASL mechanism for SASL_* protocols: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
        choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    )
    kafka_sasl_username: str = setting(
        "KATO_STREAM_KAFKA_SASL_USERNAME", "", "SASL user name (SASL_* protocols)."
    )
    kafka_sasl_password: str = setting(
        "KATO_STREAM_KAFKA_SASL_PASSWORD", "", "SASL password (secret: never printed).", secret=True
    )
    kafka_ssl_cafile: str = setting(
        "KATO_STREAM_KAFKA_SSL_CAFILE",
        "",
        "CA bundle (PEM) that signs the brokers' certificates; empty = the system's trust store.",
    )
    kafka_ssl_certfile: str = setting(
        "KATO_STREAM_KAFKA_SSL_CERTFILE",
        "",
        "Client certificate (PEM) for mutual TLS; empty = none.",
    )
    kafka_ssl_keyfile: str = setting(
        "KATO_STREAM_KAFKA_SSL_KEYFILE",
        "",
        "Private key (unencrypted PEM) of the client certificate; empty = in the certificate file.",
    )
    # -- worker --------------------------------------------------------------------------
    app_id: str = setting("KATO_STREAM_APP_ID", "kato-stream", "Faust app id (consumer group).")
    data_dir: str = setting(
        "KATO_STREAM_DATA_DIR",
        ".kato-stream",
        "Directory for the embedded stack and local table data.",
    )
    table_store: str = setting(
        "KATO_STREAM_TABLE_STORE",
        "memory://",
        "Faust table store: memory:// (changelog only) or rocksdb:// (needs rocksdict).",
    )
    web_port: int = setting(
        "KATO_STREAM_WEB_PORT", 6066, "Worker web/metrics port.", check=lambda v: 0 <= v <= 65535
    )
    pure_python: bool = setting(
        "KATO_STREAM_PURE_PYTHON",
        False,
        "Allow the pure-Python matcher when the C kernel is missing (about 100x slower predictions); set, it also turns a built kernel off.",
    )
    # -- metrics -------------------------------------------------------------------------
    metrics_node_label: bool = setting(
        "KATO_STREAM_METRICS_NODE_LABEL",
        True,
        'Label per-node metrics with the node id (false: one series, node="_all").',
    )
    metrics_max_nodes: int = setting(
        "KATO_STREAM_METRICS_MAX_NODES",
        100,
        'Distinct node label values per process; later nodes are counted as node="_other".',
        check=lambda v: 1 <= v <= 100_000,
    )
    metrics_lag_interval: float = setting(
        "KATO_STREAM_METRICS_LAG_INTERVAL",
        5.0,
        "Seconds between consumer-lag samples (kato_consumer_lag).",
        check=lambda v: 0.1 <= v <= 3600,
    )
    commit_interval: float = setting(
        "KATO_STREAM_COMMIT_INTERVAL", 1.0, "Seconds between offset commits.", check=lambda v: v > 0
    )
    commit_every: int = setting(
        "KATO_STREAM_COMMIT_EVERY",
        1000,
        "Commit after this many records at most.",
        check=lambda v: v >= 1,
    )
    session_timeout: float = setting(
        "KATO_STREAM_SESSION_TIMEOUT",
        10.0,
        "Consumer-group session timeout (s): how long a crashed worker keeps its partitions.",
        check=lambda v: v >= 3,
    )
    instance_id: str = setting(
        "KATO_STREAM_INSTANCE_ID",
        "",
        "Static group membership id (e.g. the pod name): a restarted worker takes its partitions back at once; empty = dynamic.",
    )
    gateway_wait_persisted: bool = setting(
        "KATO_STREAM_GATEWAY_WAIT_PERSISTED",
        True,
        "The gateway answers a command that learned once its patterns are in Redis, ClickHouse and Qdrant (KATO's read-your-writes; needs KATO_STREAM_PERSIST).",
    )
    evict_dead_members: bool = setting(
        "KATO_STREAM_EVICT_DEAD_MEMBERS",
        True,
        "Evict group members whose process on this host is gone (a broker like noida-db never expires them; stream/group.py).",
    )
    agent_batch: int = setting(
        "KATO_STREAM_AGENT_BATCH",
        100,
        "Most input records the agent processes before it waits for their outputs' acknowledgements at once.",
        check=lambda v: 1 <= v <= 10_000,
    )
    agent_batch_within: float = setting(
        "KATO_STREAM_AGENT_BATCH_WITHIN",
        0.002,
        "Seconds the agent collects records for a batch (the most a record waits for others).",
        check=lambda v: 0 < v <= 10,
    )
    gc_threshold: int = setting(
        "KATO_STREAM_GC_THRESHOLD",
        20_000,
        "Allocations between a worker's young-generation GC passes (Python's 700 cost ~25 % of a command's CPU at 100 predictions; 0 = Python's).",
        check=lambda v: v >= 0,
    )
    stream_buffer: int = setting(
        "KATO_STREAM_BUFFER",
        1000,
        "Records buffered per partition ahead of the agent.",
        check=lambda v: v >= 1,
    )
    idle_fetch_backoff: float = setting(
        "KATO_STREAM_IDLE_FETCH_BACKOFF_SECONDS",
        0.005,
        "Pause after a fetch that found no records (noida-db answers empty fetches at once; 0 = off).",
        check=lambda v: 0 <= v <= 1,
    )
    idle_fetch_backoff_max: float = setting(
        "KATO_STREAM_IDLE_FETCH_BACKOFF_MAX_SECONDS",
        0.05,
        "Longest pause the idle fetch backoff doubles up to while a partition stays empty (a produce in the process wakes it at once).",
        check=lambda v: 0 <= v <= 10,
    )
    reply_fetch_backoff: float = setting(
        "KATO_STREAM_REPLY_FETCH_BACKOFF_SECONDS",
        0.001,
        "Pause after an empty fetch of a client's answers (the gateway's, the load generator's) in the first moments after it sent a command (0 = the idle pause; never above it).",
        check=lambda v: 0 <= v <= 1,
    )
    reply_window: float = setting(
        "KATO_STREAM_REPLY_WINDOW_SECONDS",
        0.05,
        "How long after a client's send the reply pause applies (at most window / pause extra fetches per command).",
        check=lambda v: 0 <= v <= 10,
    )
    tail_fetch_backoff: float = setting(
        "KATO_STREAM_TAIL_FETCH_BACKOFF_SECONDS",
        0.05,
        "Pause after an empty fetch of the worker's kato.patterns followers (LTM, persister): adds at most this to cross-worker visibility.",
        check=lambda v: 0 <= v <= 1,
    )
    producer_compression: str = setting(
        "KATO_STREAM_PRODUCER_COMPRESSION",
        "none",
        "Kafka producer compression: none, gzip, lz4, snappy or zstd (consumers must support it).",
        check=_codec_available,
    )
    producer_linger_ms: int = setting(
        "KATO_STREAM_PRODUCER_LINGER_MS",
        0,
        "Milliseconds the producer waits to fill a batch (throughput for latency).",
        check=lambda v: 0 <= v <= 60_000,
    )
    producer_batch_bytes: int = setting(
        "KATO_STREAM_PRODUCER_BATCH_BYTES",
        16_384,
        "Largest producer batch per partition in bytes.",
        check=lambda v: v >= 1024,
    )
    # -- adaptive recall threshold (kato_stream/stream/adaptive.py) ---------------------
    adaptive_recall: bool = setting(
        "KATO_STREAM_ADAPTIVE_RECALL",
        False,
        "Raise the recall threshold while the worker lags (outputs then depend on load).",
    )
    adaptive_recall_min: float = setting(
        "KATO_STREAM_ADAPTIVE_RECALL_MIN",
        0.1,
        "Adaptive level at rest (no floor applied); raising starts from here.",
        check=lambda v: 0.0 <= v <= 1.0,
    )
    adaptive_recall_max: float = setting(
        "KATO_STREAM_ADAPTIVE_RECALL_MAX",
        0.5,
        "Highest threshold floor the adaptive controller applies.",
        check=lambda v: 0.0 <= v <= 1.0,
    )
    adaptive_recall_step: float = setting(
        "KATO_STREAM_ADAPTIVE_RECALL_STEP",
        0.05,
        "Change of the adaptive level per move.",
        check=lambda v: 0.0 < v <= 1.0,
    )
    adaptive_lag_high: int = setting(
        "KATO_STREAM_ADAPTIVE_LAG_HIGH",
        1000,
        "Partition lag (records) above which the threshold is raised.",
        check=lambda v: v >= 0,
    )
    adaptive_lag_low: int = setting(
        "KATO_STREAM_ADAPTIVE_LAG_LOW",
        100,
        "Partition lag below which (with fast processing) the threshold is lowered.",
        check=lambda v: v >= 0,
    )
    adaptive_seconds_high: float = setting(
        "KATO_STREAM_ADAPTIVE_SECONDS_HIGH",
        0.05,
        "Smoothed seconds per command above which the threshold is raised.",
        check=lambda v: v > 0,
    )
    adaptive_seconds_low: float = setting(
        "KATO_STREAM_ADAPTIVE_SECONDS_LOW",
        0.01,
        "Smoothed seconds per command below which (with low lag) the threshold is lowered.",
        check=lambda v: v > 0,
    )
    adaptive_interval: float = setting(
        "KATO_STREAM_ADAPTIVE_INTERVAL",
        1.0,
        "Least seconds between two moves of the adaptive level.",
        check=lambda v: v >= 0,
    )
    # -- stores --------------------------------------------------------------------------
    persist: bool = setting(
        "KATO_STREAM_PERSIST",
        True,
        "Worker persists kato.patterns to ClickHouse/Redis/Qdrant (group <app_id>-persist) and the latest record per session to Redis.",
    )
    session_lists: str = setting(
        "KATO_STREAM_SESSION_LISTS",
        "redis",
        "Where each session's last observe-time predictions and future potentials live: redis = outside the session table (needs KATO_STREAM_PERSIST), table = in its changelog value (~200 KB per command).",
        choices=("redis", "table"),
    )
    ltm_bootstrap: str = setting(
        "KATO_STREAM_LTM_BOOTSTRAP",
        "stream",
        "How a starting worker rebuilds its LTM: stream = fold kato.patterns from offset 0; stores = ClickHouse up to the persister's committed offsets, then the topic tail (falls back to stream).",
        choices=("stream", "stores"),
    )
    clickhouse_url: str = setting(
        "KATO_STREAM_CLICKHOUSE_URL",
        "",
        "ClickHouse URL (http://user:pw@host:8123/db); empty = embedded chdb under data_dir.",
    )
    qdrant_url: str = setting(
        "KATO_STREAM_QDRANT_URL", "", "Qdrant URL; empty = local storage under data_dir."
    )
    redis_url: str = setting(
        "KATO_STREAM_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        "Redis URL (rediss:// = TLS).",
    )
    clickhouse_user: str = setting(
        "KATO_STREAM_CLICKHOUSE_USER", "", "ClickHouse user; empty = the URL's, else default."
    )
    clickhouse_password: str = setting(
        "KATO_STREAM_CLICKHOUSE_PASSWORD",
        "",
        "ClickHouse password; empty = the URL's (secret: never printed).",
        secret=True,
    )
    clickhouse_secure: bool = setting(
        "KATO_STREAM_CLICKHOUSE_SECURE",
        False,
        "Talk to ClickHouse over TLS (as an https:// URL does).",
    )
    redis_password: str = setting(
        "KATO_STREAM_REDIS_PASSWORD",
        "",
        "Redis password (AUTH); empty = the URL's (secret: never printed).",
        secret=True,
    )
    redis_tls: bool = setting(
        "KATO_STREAM_REDIS_TLS", False, "Talk to Redis over TLS (as a rediss:// URL does)."
    )
    redis_ssl_cafile: str = setting(
        "KATO_STREAM_REDIS_SSL_CAFILE",
        "",
        "CA bundle (PEM) for Redis TLS; empty = the system's trust store.",
    )
    qdrant_api_key: str = setting(
        "KATO_STREAM_QDRANT_API_KEY",
        "",
        "Qdrant API key (Qdrant Cloud, secured servers; secret: never printed).",
        secret=True,
    )
    qdrant_https: bool = setting(
        "KATO_STREAM_QDRANT_HTTPS",
        False,
        "Talk to the Qdrant server over TLS (as an https:// URL does).",
    )
    clickhouse_batch_size: int = setting(
        "KATO_STREAM_CLICKHOUSE_BATCH_SIZE",
        500,
        "Learn events buffered before a ClickHouse insert (also flushed on interval and stop).",
        check=lambda v: v >= 1,
    )
    store_flush_seconds: float = setting(
        "KATO_STREAM_STORE_FLUSH_SECONDS",
        0.5,
        "Longest time a buffered learn (ClickHouse) or vector (Qdrant) waits to be written.",
        check=lambda v: v > 0,
    )
    qdrant_hnsw_m: int = setting(
        "KATO_STREAM_QDRANT_HNSW_M",
        16,
        "HNSW m of new vector collections (KATO: 16).",
        check=lambda v: v >= 2,
    )
    qdrant_hnsw_ef_construct: int = setting(
        "KATO_STREAM_QDRANT_HNSW_EF_CONSTRUCT",
        128,
        "HNSW ef_construct of new vector collections (KATO: 128).",
        check=lambda v: v >= 4,
    )
    qdrant_full_scan_threshold: int = setting(
        "KATO_STREAM_QDRANT_FULL_SCAN_THRESHOLD",
        10_000,
        "HNSW full_scan_threshold (KB of vectors) below which Qdrant searches by brute force.",
        check=lambda v: v >= 0,
    )
    qdrant_quantization: str = setting(
        "KATO_STREAM_QDRANT_QUANTIZATION",
        "none",
        "Vector quantization of new collections: none or int8 (scalar, 4x smaller, kept in RAM).",
        choices=("none", "int8"),
    )
    redis_maxmemory: str = setting(
        "KATO_STREAM_REDIS_MAXMEMORY",
        "",
        "If set (e.g. 2gb), CONFIG SET maxmemory at worker start; empty = leave the server's.",
        check=lambda v: re.fullmatch(r"(\d+(b|kb|mb|gb)?)?", v.lower()) is not None,
    )
    redis_maxmemory_policy: str = setting(
        "KATO_STREAM_REDIS_MAXMEMORY_POLICY",
        "",
        "If set, CONFIG SET maxmemory-policy; only TTL-scoped policies (KB keys have no TTL).",
        choices=(
            "",
            "noeviction",
            "volatile-lru",
            "volatile-lfu",
            "volatile-ttl",
            "volatile-random",
        ),
    )
    prediction_cache: bool = setting(
        "KATO_STREAM_PREDICTION_CACHE",
        False,
        "Share computed predictions between workers through Redis (same node, KB, STM, config).",
    )
    prediction_cache_ttl: int = setting(
        "KATO_STREAM_PREDICTION_CACHE_TTL",
        300,
        "Seconds a cached prediction set lives in Redis.",
        check=lambda v: v >= 1,
    )
    prediction_cache_timeout: float = setting(
        "KATO_STREAM_PREDICTION_CACHE_TIMEOUT",
        0.05,
        "Seconds a cache read/write may block the worker before it computes instead.",
        check=lambda v: 0 < v <= 10,
    )
    latest_ttl: int = setting(
        "KATO_STREAM_LATEST_TTL",
        3600,
        "TTL in seconds of the latest-prediction record per session in Redis.",
        check=lambda v: v >= 1,
    )
    store_timeout: float = setting(
        "KATO_STREAM_STORE_TIMEOUT",
        10.0,
        "Seconds to wait for a store (or an embedded component) to answer before failing.",
        check=lambda v: v > 0,
    )
    # -- engine defaults (KATO's own env names) ------------------------------------------
    service_name: str = setting(
        "SERVICE_NAME", "kato", "KATO's service name: the suffix of every kb_id (spec §1.1)."
    )
    recall_threshold: float = setting(
        "RECALL_THRESHOLD",
        _D.recall_threshold,
        "Default minimum similarity for a prediction (full path).",
        check=lambda v: 0.0 <= v <= 1.0,
    )
    max_predictions: int = setting(
        "MAX_PREDICTIONS",
        _D.max_predictions,
        "Default number of predictions returned.",
        check=lambda v: 1 <= v <= 10000,
    )
    max_pattern_length: int = setting(
        "MAX_PATTERN_LENGTH",
        _D.max_pattern_length,
        "Default auto-learn length in events (0 = off).",
        check=lambda v: v >= 0,
    )
    persistence: int = setting(
        "PERSISTENCE",
        _D.persistence,
        "Default emotive window kept per pattern.",
        check=lambda v: 1 <= v <= 100,
    )
    stm_mode: str = setting(
        "STM_MODE", _D.stm_mode, "Default auto-learn mode.", choices=("CLEAR", "ROLLING")
    )
    sort_symbols: bool = setting(
        "SORT_SYMBOLS", _D.sort_symbols, "Default: sort symbols within an event."
    )
    process_predictions: bool = setting(
        "PROCESS_PREDICTIONS", _D.process_predictions, "Default: compute predictions on observe."
    )
    use_token_matching: bool = setting(
        "USE_TOKEN_MATCHING",
        _D.use_token_matching,
        "Default: token-level (true) or character-level similarity.",
    )
    rank_sort_algo: str = setting(
        "RANK_SORT_ALGO", _D.rank_sort_algo, "Default ranking key of predictions."
    )
    session_ttl: int = setting(
        "SESSION_TTL",
        _D.session_ttl,
        "Default session TTL in seconds (sliding; a session's own ttl_seconds wins).",
        check=lambda v: v >= 1,
    )
    session_expiry: bool = setting(
        "KATO_STREAM_SESSION_EXPIRY",
        True,
        "Sessions on the stream path expire after their TTL without a command, by record timestamps (docs/operations.md, 'Session expiry').",
    )
    session_expiry_grace: float = setting(
        "KATO_STREAM_SESSION_EXPIRY_GRACE_SECONDS",
        60.0,
        "How far a command's timestamp may lag its partition's newest and still find its expired-by-then session unremoved (late records; docs/operations.md).",
        check=lambda v: 0 <= v <= 86_400,
    )
    session_sweep_seconds: float = setting(
        "KATO_STREAM_SESSION_SWEEP_SECONDS",
        5.0,
        "How often a worker removes expired sessions of its partitions (table tombstone, Redis lists, latest record).",
        check=lambda v: 0.1 <= v <= 3600,
    )
    # -- matching options (session config defaults; KATO has no env var for these) ------
    filter_pipeline: tuple[str, ...] = setting(
        "KATO_STREAM_FILTER_PIPELINE",
        _D.filter_pipeline,
        "Default candidate filters, comma-separated (minhash,length,jaccard,bloom,rapidfuzz).",
        check=lambda v: set(v) <= _FILTERS,
    )
    length_min_ratio: float = setting(
        "KATO_STREAM_LENGTH_MIN_RATIO",
        _D.length_min_ratio,
        "Default length filter: min pattern/STM length ratio.",
        check=lambda v: 0.0 <= v <= 1.0,
    )
    length_max_ratio: float = setting(
        "KATO_STREAM_LENGTH_MAX_RATIO",
        _D.length_max_ratio,
        "Default length filter: max pattern/STM length ratio.",
        check=lambda v: v >= 1.0,
    )
    jaccard_threshold: float = setting(
        "KATO_STREAM_JACCARD_THRESHOLD",
        _D.jaccard_threshold,
        "Default jaccard filter: least token-set similarity.",
        check=lambda v: 0.0 <= v <= 1.0,
    )
    jaccard_min_overlap: int = setting(
        "KATO_STREAM_JACCARD_MIN_OVERLAP",
        _D.jaccard_min_overlap,
        "Default jaccard filter: least shared tokens.",
        check=lambda v: v >= 1,
    )
    minhash_threshold: float = setting(
        "KATO_STREAM_MINHASH_THRESHOLD",
        _D.minhash_threshold,
        "Default minhash filter: LSH similarity threshold.",
        check=lambda v: 0.0 <= v <= 1.0,
    )
    minhash_bands: int = setting(
        "KATO_STREAM_MINHASH_BANDS",
        _D.minhash_bands,
        "Default minhash filter: LSH bands.",
        check=lambda v: 1 <= v <= 100,
    )
    minhash_rows: int = setting(
        "KATO_STREAM_MINHASH_ROWS",
        _D.minhash_rows,
        "Default minhash filter: rows per band.",
        check=lambda v: 1 <= v <= 20,
    )
    minhash_num_hashes: int = setting(
        "KATO_STREAM_MINHASH_NUM_HASHES",
        _D.minhash_num_hashes,
        "Default minhash filter: permutations.",
        check=lambda v: 10 <= v <= 256,
    )

    def __post_init__(self) -> None:
        """Cross-field rules (single-field ones are checked in ``from_env``)."""
        if self.adaptive_recall_min > self.adaptive_recall_max:
            raise SettingsError("KATO_STREAM_ADAPTIVE_RECALL_MIN must not exceed ..._MAX")
        if self.adaptive_lag_low > self.adaptive_lag_high:
            raise SettingsError("KATO_STREAM_ADAPTIVE_LAG_LOW must not exceed ..._HIGH")
        if self.adaptive_seconds_low > self.adaptive_seconds_high:
            raise SettingsError("KATO_STREAM_ADAPTIVE_SECONDS_LOW must not exceed ..._HIGH")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``env`` (default ``os.environ``), validating each."""
        src = os.environ if env is None else env
        for name, (allowed, why) in REMOVED.items():
            if name in src and src[name].strip() not in allowed:
                raise SettingsError(f"{name}={src[name]!r}: {why}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            value = f.default
            if name in src:
                raw = src[name]
                try:
                    if isinstance(f.default, bool):
                        value = _bool(raw)
                    elif isinstance(f.default, int):
                        value = int(raw)
                    elif isinstance(f.default, float):
                        value = float(raw)
                    elif isinstance(f.default, tuple):
                        value = tuple(x.strip() for x in raw.split(",") if x.strip())
                    else:
                        value = raw
                except ValueError as exc:
                    raise SettingsError(f"{name}={raw!r}: {exc}") from None
            choices = f.metadata["choices"]
            if choices is not None and value not in choices:
                raise SettingsError(f"{name}={value!r}: must be one of {', '.join(choices)}")
            check = f.metadata["check"]
            if check is not None and not check(value):
                raise SettingsError(f"{name}={value!r}: out of range ({f.metadata['doc']})")
            values[f.name] = value
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment variables that make ``from_env`` return these settings
        (how a worker or gateway child process inherits them)."""
        env: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                env[f.metadata["env"]] = "true" if value else "false"
            elif isinstance(value, tuple | list):
                env[f.metadata["env"]] = ",".join(str(v) for v in value)
            else:
                env[f.metadata["env"]] = str(value)
        return env

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("observations") -> "kato.observations"``."""
        return f"{self.topic_prefix}.{name}"


def settings_table() -> str:
    """Markdown table of every setting: env var, default, doc."""
    rows = ["| env var | default | what it does |", "|---|---|---|"]
    for f in fields(Settings):
        rows.append(f"| `{f.metadata['env']}` | `{f.default!r}` | {f.metadata['doc']} |")
    return "\n".join(rows)
