"""KATO's ``node_id -> kb_id`` rule (spec §1.1): the namespace of a node in every store.

Kept byte-exact so KATO clients and KATO's own test fixtures, which re-derive the kb_id
to read Redis directly, find the keys where KATO would put them.
"""

from __future__ import annotations

import hashlib

_UNSAFE = '/\\."$*<>:|?- '
_TABLE = str.maketrans({c: "_" for c in _UNSAFE})
_MAX = 60


def kb_id(node_id: str, service_name: str = "kato") -> str:
    """The knowledge-base id of ``node_id`` (``a-b``, ``a.b`` and ``a_b`` share one)."""
    safe_node = node_id.translate(_TABLE)
    safe_base = service_name.replace("-", "_")
    full = f"{safe_node}_{safe_base}"
    if len(full) <= _MAX:
        return full
    digest = hashlib.md5(safe_node.encode("utf-8")).hexdigest()[:8]
    max_node = _MAX - len(safe_base) - 10
    return f"{safe_node[:max_node]}_{digest}_{safe_base}"
