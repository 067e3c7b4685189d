"""External stores: ClickHouse (durable patterns), Qdrant (vectors), Redis (hot reads).

Every store is a small service built from :class:`~kato_stream.settings.Settings` with
``async start()`` / ``async stop()`` (stop flushes).  The engine core never imports this
package; the stream layer feeds it :class:`~kato_stream.core.knowledge.LearnEvent` s.
"""

from kato_stream.stores.clickhouse import ClickHouseStore
from kato_stream.stores.errors import StoreError, StoreUnavailableError
from kato_stream.stores.kb_id import kb_id
from kato_stream.stores.qdrant import QdrantStore, QdrantVectorIndex
from kato_stream.stores.redis_store import RedisStore

__all__ = [
    "ClickHouseStore",
    "QdrantStore",
    "QdrantVectorIndex",
    "RedisStore",
    "StoreError",
    "StoreUnavailableError",
    "kb_id",
]
