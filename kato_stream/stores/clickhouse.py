"""ClickHouse: the durable store of a node's learned patterns.

Two views of the same learns, both written from :class:`LearnEvent`:

* ``kato.patterns_data`` - KATO's table (spec §7.1), one row per distinct pattern, for KATO
  clients and tools that read ClickHouse directly;
* ``kato.pattern_learns`` + ``kato.node_clears`` - the log: every learn (keyed by its
  ``learn_id``) and every clear-all, each with ``seq`` (its position in the node's order,
  normally the ``kato.patterns`` offset).  :meth:`ClickHouseStore.load_node` folds that log
  through :class:`KnowledgeBase` in ``seq`` order, so a worker with an empty cache rebuilds
  exactly the knowledge base the learning worker holds, frequencies, emotive windows,
  metadata, symbol statistics and affinities included.  Each row also records
  ``topic_partition`` (the kato.patterns partition of ``seq``), so :meth:`load_log` lets a
  starting worker take every event below the persister's committed offsets from here and
  read only the rest of the topic (``stream/ltm/follower.py``).

Both are ReplacingMergeTree tables and every query dedupes by key, so a replayed or
redelivered insert changes nothing.

Embedded mode uses chdb through clickhouse-connect's own chdb backend (same client API and
SQL).  chdb runs the engine inside the process and locks its data directory: one process
per data directory, and one data directory per process at a time.  In the embedded stack
the worker is the only chdb user; the gateway reads Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from clickhouse_connect.driver.client import Client

from kato_stream.core.knowledge import KnowledgeBase, LearnEvent
from kato_stream.settings import Settings
from kato_stream.stores._util import embedded_path, local_path, redact
from kato_stream.stores.connect import clickhouse_client
from kato_stream.stores.errors import StoreUnavailableError
from kato_stream.stores.kb_id import kb_id
from kato_stream.stores.threaded import ThreadedStore

log = logging.getLogger(__name__)

_LEARN_COLUMNS = [
    "kb_id",
    "node_id",
    "learn_id",
    "name",
    "events",
    "emotives",
    "metadata",
    "persistence",
    "vectors",
    "seq",
    "topic_partition",
]
_PATTERN_COLUMNS = [
    "kb_id",
    "name",
    "pattern_data",
    "length",
    "token_set",
    "token_count",
    "minhash_sig",
    "lsh_bands",
    "first_token",
    "last_token",
]


#: Columns added after the first schema: applied on start to tables created before them
#: (``schema.sql`` creates new tables with them).
MIGRATIONS = (
    "ALTER TABLE kato.pattern_learns ADD COLUMN IF NOT EXISTS topic_partition Int32 DEFAULT -1"
    " AFTER seq",
    "ALTER TABLE kato.node_clears ADD COLUMN IF NOT EXISTS topic_partition Int32 DEFAULT -1"
    " AFTER seq",
)


def schema_sql() -> str:
    """The schema shipped with the package (identical to ``deploy/clickhouse/schema.sql``)."""
    return resources.files("kato_stream.stores").joinpath("schema.sql").read_text("utf-8")


def schema_statements(sql: str) -> list[str]:
    """Split a schema file into statements (``--`` comments dropped)."""
    lines = [ln for ln in sql.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _quote(value: str) -> str:
    """A ClickHouse string literal (for ``DROP PARTITION``, which takes no parameters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pattern_row(kb: str, ev: LearnEvent) -> list[Any]:
    """KATO's ``patterns_data`` row for a learn (minhash columns left empty: unused by default)."""
    flat = [s for e in ev.events for s in e]
    tokens = sorted(set(flat))
    first = ev.events[0][0] if ev.events and ev.events[0] else ""
    last = ev.events[-1][-1] if ev.events and ev.events[-1] else ""
    events = [list(e) for e in ev.events]
    return [kb, ev.name, events, len(flat), tokens, len(tokens), [], [], first, last]


def learn_row(kb: str, ev: LearnEvent, seq: int, partition: int = -1) -> list[Any]:
    d = ev.to_dict()
    return [
        kb,
        ev.node_id,
        ev.learn_id,
        ev.name,
        d["events"],
        json.dumps(d["emotives"]),
        json.dumps(d["metadata"], sort_keys=True),
        ev.persistence,
        json.dumps(d["vectors"]),
        seq,
        partition,
    ]


@dataclass(frozen=True)
class LogEntry:
    """One learn or clear-all of the log, at its first recorded position (see ``load_log``)."""

    partition: int  # kato.patterns partition of ``seq`` (-1: unknown)
    seq: int
    node_id: str
    ident: str  # learn_id or clear_id
    learn: LearnEvent | None  # None: a clear-all


def _learn_from_row(
    lid: Any, nid: Any, name: Any, events: Any, emotives: str, metadata: str, pers: Any, vec: str
) -> LearnEvent:
    return LearnEvent.from_dict(
        {
            "node_id": nid,
            "learn_id": lid,
            "name": name,
            "events": events,
            "emotives": json.loads(emotives),
            "metadata": json.loads(metadata),
            "persistence": pers,
            "vectors": json.loads(vec),
        }
    )


class ClickHouseStore(ThreadedStore[Client]):
    """Batched writer and loader of learned patterns (``async start()``/``stop()``).

    Writes are buffered by :meth:`add_learn` (synchronous, cheap, safe to call from an
    agent) and inserted when the buffer holds ``clickhouse_batch_size`` learns, every
    ``store_flush_seconds``, before every read and on :meth:`stop`.  Reads therefore
    see every learn added through this instance (read-your-writes).

    ``url``: ``http(s)://user:pw@host:8123`` for a server, ``chdb:///abs/dir`` (or a bare
    absolute path) for embedded chdb; empty = chdb under ``<data_dir>/clickhouse``.
    """

    kind = "ClickHouse"

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        raw = settings.clickhouse_url if url is None else url
        self.chdb_path = (
            local_path(raw, "chdb") if raw else embedded_path(settings.data_dir, "clickhouse")
        )
        super().__init__(settings, f"chdb://{self.chdb_path}" if self.chdb_path else raw)
        self._learns: list[list[Any]] = []
        self._patterns: list[list[Any]] = []
        self._last_seq = 0
        self._flush_lock = asyncio.Lock()

    # -- lifecycle (ThreadedStore) -------------------------------------------------------

    async def _setup(self) -> None:
        """Apply the schema and its migrations."""
        assert self._client is not None and self._exec is not None
        for stmt in [*schema_statements(schema_sql()), *MIGRATIONS]:
            await self._exec.run(self._client.command, stmt)
        self._flush_lock = asyncio.Lock()  # bound to this start's event loop

    def _connect(self) -> Client:
        timeout = self.settings.store_timeout
        try:
            return clickhouse_client(
                self.settings,
                self.url,
                chdb_path=self.chdb_path,
                connect_timeout=timeout,
                send_receive_timeout=max(timeout, 30.0),
            )
        except Exception as exc:
            hint = ""
            if self.chdb_path:
                hint = (
                    " (chdb allows one process per data directory and one data directory per"
                    " process: is another kato-stream process using it?)"
                )
            raise StoreUnavailableError(
                f"ClickHouse at {redact(self.url)} unavailable: {exc}{hint}"
            ) from exc

    # -- writes ------------------------------------------------------------------------

    def _seq(self, seq: int | None) -> int:
        if seq is None:
            seq = max(time.time_ns(), self._last_seq + 1)
        self._last_seq = max(self._last_seq, seq)
        return seq

    def add_learn(self, ev: LearnEvent, seq: int | None = None, partition: int = -1) -> None:
        """Buffer one learn.  ``seq``: its position in the node's order (the kato.patterns
        offset); default = a process-monotonic clock.  Use one scheme per node.
        ``partition``: the kato.patterns partition ``seq`` belongs to (-1 = not from it)."""
        kb = kb_id(ev.node_id, self.settings.service_name)
        self._learns.append(learn_row(kb, ev, self._seq(seq), partition))
        self._patterns.append(pattern_row(kb, ev))
        if len(self._learns) >= self.settings.clickhouse_batch_size:
            self._wake.set()

    async def write_learns(self, events: Sequence[LearnEvent], seq: int | None = None) -> None:
        """Add ``events`` (consecutive ``seq`` from ``seq``) and insert them now."""
        for i, ev in enumerate(events):
            self.add_learn(ev, None if seq is None else seq + i)
        await self.flush()

    @property
    def pending(self) -> int:
        """Learns buffered and not yet inserted."""
        return len(self._learns)

    async def flush(self) -> None:
        """Insert the buffer; on failure the rows stay buffered for the next attempt."""
        async with self._flush_lock:
            if not self._learns:
                return
            learns, patterns = list(self._learns), list(self._patterns)  # adds may run meanwhile
            await self._run(self._insert, learns, patterns)
            del self._learns[: len(learns)]
            del self._patterns[: len(patterns)]

    def _insert(self, learns: list[list[Any]], patterns: list[list[Any]]) -> None:
        assert self._client is not None
        # Log first: a learn row without its pattern row is repaired by a replay; the
        # reverse would show a pattern that load_node does not know.
        self._client.insert("kato.pattern_learns", learns, column_names=_LEARN_COLUMNS)
        self._client.insert("kato.patterns_data", patterns, column_names=_PATTERN_COLUMNS)

    async def clear_node(
        self, node_id: str, clear_id: str, seq: int | None = None, partition: int = -1
    ) -> None:
        """Clear-all: record the marker and drop the node's ``patterns_data`` partition.

        Learns ordered before the marker stop counting; their ids stay known so an echo of
        an old learn does not resurrect it (as :meth:`KnowledgeBase.clear`).
        """
        await self.flush()
        kb = kb_id(node_id, self.settings.service_name)
        row = [kb, node_id, clear_id, self._seq(seq), partition]
        columns = ["kb_id", "node_id", "clear_id", "seq", "topic_partition"]
        await self._run(self._client_insert, "kato.node_clears", [row], columns)
        await self._run(
            self._client_command, f"ALTER TABLE kato.patterns_data DROP PARTITION {_quote(kb)}"
        )

    def _client_insert(self, table: str, rows: list[list[Any]], columns: list[str]) -> None:
        assert self._client is not None
        self._client.insert(table, rows, column_names=columns)

    def _client_command(self, sql: str) -> Any:
        assert self._client is not None
        return self._client.command(sql)

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        assert self._client is not None
        return [tuple(r) for r in self._client.query(sql, parameters=params).result_rows]

    # -- reads -------------------------------------------------------------------------

    async def load_node(self, node_id: str) -> KnowledgeBase:
        """The node's knowledge base, rebuilt by re-applying its learns and clears in order.

        Finalize-training metrics are not stored here (they live in Redis) and come back
        empty.  Cost is linear in the node's learns.
        """
        await self.flush()
        kb = kb_id(node_id, self.settings.service_name)
        learns = await self._run(
            self._rows,
            "SELECT learn_id, argMin(node_id, seq), argMin(name, seq), argMin(events, seq),"
            " argMin(emotives, seq), argMin(metadata, seq), argMin(persistence, seq),"
            " argMin(vectors, seq), min(seq) AS s"
            " FROM kato.pattern_learns WHERE kb_id = {kb:String} GROUP BY learn_id",
            {"kb": kb},
        )
        clears = await self._run(
            self._rows,
            "SELECT clear_id, min(seq) FROM kato.node_clears WHERE kb_id = {kb:String}"
            " GROUP BY clear_id",
            {"kb": kb},
        )
        log_: list[tuple[int, int, str, LearnEvent | None]] = []
        for *row, s in learns:
            ev = _learn_from_row(*row)
            log_.append((int(s), 1, ev.learn_id, ev))
        for cid, s in clears:
            log_.append((int(s), 0, str(cid), None))
        log_.sort(key=lambda t: (t[0], t[1], t[2]))
        out = KnowledgeBase(node_id=node_id)
        for _, _, ident, maybe_ev in log_:
            if maybe_ev is None:
                out.clear(ident)
            else:
                out.apply_learn(maybe_ev)
        return out

    async def load_log(self) -> list[LogEntry]:
        """Every learn and clear-all of this service's nodes, each once (its least ``seq``),
        with the kato.patterns partition it was read from; unordered.

        This is what a starting worker folds instead of the topic's head (``stream/ltm/follower.py``):
        the caller keeps the entries below the persister's committed offset of each partition
        and applies them in (partition, seq) order.  Cost is linear in the stored log.
        """
        await self.flush()
        learns = await self._run(
            self._rows,
            "SELECT kb_id, learn_id, argMin(node_id, seq), argMin(name, seq),"
            " argMin(events, seq), argMin(emotives, seq), argMin(metadata, seq),"
            " argMin(persistence, seq), argMin(vectors, seq), argMin(topic_partition, seq),"
            " min(seq) FROM kato.pattern_learns GROUP BY kb_id, learn_id",
            {},
        )
        clears = await self._run(
            self._rows,
            "SELECT kb_id, clear_id, argMin(node_id, seq), argMin(topic_partition, seq),"
            " min(seq) FROM kato.node_clears GROUP BY kb_id, clear_id",
            {},
        )
        service = self.settings.service_name
        out: list[LogEntry] = []
        for kb, lid, nid, *row, part, s in learns:
            if kb != kb_id(str(nid), service):  # another service sharing the database
                continue
            ev = _learn_from_row(lid, nid, *row)
            out.append(LogEntry(int(part), int(s), ev.node_id, ev.learn_id, ev))
        for kb, cid, nid, part, s in clears:
            if kb == kb_id(str(nid), service):
                out.append(LogEntry(int(part), int(s), str(nid), str(cid), None))
        return out

    async def count_patterns(self, node_id: str) -> int:
        """Distinct patterns of the node in ``patterns_data`` (KATO's pattern count)."""
        await self.flush()
        kb = kb_id(node_id, self.settings.service_name)
        rows = await self._run(
            self._rows,
            "SELECT uniqExact(name) FROM kato.patterns_data WHERE kb_id = {kb:String}",
            {"kb": kb},
        )
        return int(rows[0][0])

    async def count_learns(self, node_id: str) -> int:
        """Distinct learns ever recorded for the node (clears do not remove them)."""
        await self.flush()
        kb = kb_id(node_id, self.settings.service_name)
        rows = await self._run(
            self._rows,
            "SELECT uniqExact(learn_id) FROM kato.pattern_learns WHERE kb_id = {kb:String}",
            {"kb": kb},
        )
        return int(rows[0][0])

    async def get_pattern(self, node_id: str, name: str) -> dict[str, Any] | None:
        """The pattern as ``GET /pattern/{id}`` shows it (bare or ``PTRN|`` name), or None."""
        rec = (await self.load_node(node_id)).get(name)
        return None if rec is None else rec.to_api()

    async def ping(self) -> bool:
        """True when the store answers ``SELECT 1``."""
        rows = await self._run(self._rows, "SELECT 1", {})
        return bool(rows and rows[0][0] == 1)
