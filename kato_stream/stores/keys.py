"""Every Redis key kato-stream reads or writes, in one place.

Two roots:

* ``kato:...`` and ``{kb}:...`` are KATO's own layout, kept so KATO clients and KATO's test
  fixtures that read Redis directly find what KATO writes: the session registry
  (:data:`SESSION_PREFIX`, :data:`ACTIVE_INDEX`) and the knowledge base of each node under
  its kb_id (``{kb}:frequency:{hash}``, ``{kb}:emotives:{hash}``, ``{kb}:metadata:{hash}``,
  ``{kb}:symbols:freq``, ``{kb}:symbols:pmf``, ``{kb}:symbol_to_patterns:{symbol}``,
  ``{kb}:affinity:{symbol}``, ``{kb}:global:*``, ``{kb}:prediction:{unique_id}``; written by
  stores/redis_store.py exactly as KATO's learn writes them, spec §7.2).
* ``kato-stream:...`` is ours, outside every ``{kb}:*`` (a clear-all of a node deletes
  ``{kb}:*`` and must not delete these).
"""

from __future__ import annotations

__all__ = [
    "ACTIVE_INDEX",
    "APPLIED_KEY",
    "LATEST_KEY",
    "LIST_KEY",
    "MARK_KEY",
    "PREDICTION_CACHE_PREFIX",
    "SESSION_PREFIX",
]

# -- KATO's ---------------------------------------------------------------------------------
#: KATO's session registry: ``kato:session:{sid}`` (JSON, with the session's TTL).
SESSION_PREFIX = "kato:session:"
#: KATO's set of live session ids.
ACTIVE_INDEX = "kato:session:_active_index"

# -- kato-stream's -----------------------------------------------------------------------------
#: The latest output record of a session (the hot read path; TTL ``KATO_STREAM_LATEST_TTL``).
LATEST_KEY = "kato-stream:session:{sid}:latest"
#: The learn and clear ids applied to a node's KATO keys (a replayed learn changes nothing).
APPLIED_KEY = "kato-stream:kb:{kb}:applied"
#: A session's bulky lists kept outside its table value, a hash of id -> JSON per field
#: (stream/session_lists.py).
LIST_KEY = "kato-stream:{app}:session:{sid}:{field}"
#: How far the persister has written a kato.patterns partition into every store
#: (stream/persisted.py: the gateway's read-your-writes waits on it).
MARK_KEY = "kato-stream:{app}:persisted:{topic}:{partition}"
#: Cached prediction sets (stores/prediction_cache.py).
PREDICTION_CACHE_PREFIX = "kato-stream:pcache:"
