-- kato-stream ClickHouse schema.  Applied by kato_stream.stores.clickhouse.ClickHouseStore
-- on start (every statement is idempotent); deploy/clickhouse/schema.sql is a byte-identical
-- copy for the ClickHouse server's /docker-entrypoint-initdb.d (a test keeps them equal).

CREATE DATABASE IF NOT EXISTS kato;

-- KATO's pattern table (spec §7.1): one row per distinct pattern per knowledge base, for
-- KATO clients and tools that read ClickHouse directly.  ReplacingMergeTree instead of
-- KATO's MergeTree so that a replayed insert of the same pattern is harmless.
CREATE TABLE IF NOT EXISTS kato.patterns_data
(
    kb_id String,
    name String,
    pattern_data Array(Array(String)),
    length UInt32,
    token_set Array(String),
    token_count UInt32,
    minhash_sig Array(UInt32),
    lsh_bands Array(UInt64),
    first_token String,
    last_token String,
    created_at DateTime DEFAULT now(),
    updated_at DateTime DEFAULT now(),
    INDEX idx_length length TYPE minmax GRANULARITY 4,
    INDEX idx_token_bloom token_set TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_token_count token_count TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY kb_id
ORDER BY (kb_id, length, name)
SETTINGS index_granularity = 8192;

-- Every learn that stored a pattern (a LearnEvent), keyed by its idempotency key: a
-- redelivered learn is one row after merges and is counted once (queries dedupe by
-- learn_id, so the answer is right before merges too).  seq orders a node's learns and
-- clears (the kato.patterns offset); load_node replays them in that order.  topic_partition
-- is the kato.patterns partition of that offset (-1: not written from the topic, or written
-- before the column existed: ClickHouseStore.start adds it to older tables); the LTM
-- bootstrap (stream/ltm.py) loads the rows below the persister's committed offset of each
-- partition.
CREATE TABLE IF NOT EXISTS kato.pattern_learns
(
    kb_id String,
    node_id String,
    learn_id String,
    name String,
    events Array(Array(String)),
    emotives String,
    metadata String,
    persistence UInt16,
    vectors String,
    seq Int64,
    topic_partition Int32 DEFAULT -1,
    inserted_at DateTime64(3) DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY kb_id
ORDER BY (kb_id, learn_id);

-- Clear-all markers: learns ordered before a node's clear no longer count, but their ids
-- stay known, so an echo of an old learn cannot resurrect a pattern.
CREATE TABLE IF NOT EXISTS kato.node_clears
(
    kb_id String,
    node_id String,
    clear_id String,
    seq Int64,
    topic_partition Int32 DEFAULT -1,
    inserted_at DateTime64(3) DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (kb_id, clear_id);
