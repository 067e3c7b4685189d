"""Hierarchical node chains (KATO-LM's levels), the pure part: names and the way down.

A session whose config has ``forward_to: M`` sends every pattern it learns up to node ``M``
as an observe of ``PTRN|<name>`` in the level session ``<session_id>/<M>`` (the stream
layer publishes it: kato_stream/stream/processor.py).  Level 1 thus learns sequences of
level-0 pattern names, level 2 sequences of level-1 names, and so on.  :func:`unravel`
goes the other way: a pattern of level k becomes the level-0 events it stands for, by
replacing each pattern name with that pattern's events one level down, recursively.
Deterministic: it reads the knowledge bases only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kato_stream.core.errors import KatoError
from kato_stream.core.knowledge import KnowledgeBase

__all__ = [
    "PATTERN_PREFIX",
    "UnravelError",
    "level_session_id",
    "unravel",
]

PATTERN_PREFIX = "PTRN|"
#: Most symbols an unravelled pattern may expand to (a guard against runaway chains).
MAX_UNRAVEL_SYMBOLS = 1_000_000


class UnravelError(KatoError):
    """A pattern or a level of the chain is missing, or the chain is malformed."""

    code = "UNRAVEL_FAILED"


def level_session_id(session_id: str, node_id: str) -> str:
    """The session of level node ``node_id`` that ``session_id`` forwards to."""
    return f"{session_id}/{node_id}"


def unravel(
    kb_of: Callable[[str], KnowledgeBase], name: str, nodes: Sequence[str]
) -> list[list[str]]:
    """The level-0 events that pattern ``name`` of ``nodes[0]`` stands for.

    ``nodes`` is the chain from the pattern's level down to level 0 (``[L2, L1, L0]``); a
    one-node chain returns the pattern's own events.  Every symbol of a level above 0 must be
    a pattern name (``PTRN|...``) known one level down; events are concatenated in order."""
    if not nodes:
        raise UnravelError("unravel: the chain of nodes is empty", {"nodes": []})
    out: list[list[str]] = []
    _down(kb_of, name, list(nodes), 0, out, [0])
    return out


def _down(
    kb_of: Callable[[str], KnowledgeBase],
    name: str,
    nodes: list[str],
    level: int,
    out: list[list[str]],
    count: list[int],
) -> None:
    node = nodes[level]
    record = kb_of(node).get(name)
    if record is None:
        raise UnravelError(
            f"unravel: pattern {name!r} is not known to node {node!r}",
            {"pattern": name, "node_id": node, "level": len(nodes) - 1 - level},
        )
    if level == len(nodes) - 1:
        for event in record.events:
            count[0] += len(event)
            if count[0] > MAX_UNRAVEL_SYMBOLS:
                raise UnravelError(
                    f"unravel: more than {MAX_UNRAVEL_SYMBOLS} symbols",
                    {"pattern": name, "limit": MAX_UNRAVEL_SYMBOLS},
                )
            out.append(list(event))
        return
    for event in record.events:
        for symbol in event:
            if not symbol.startswith(PATTERN_PREFIX):
                raise UnravelError(
                    f"unravel: symbol {symbol!r} of node {node!r} is not a pattern name, "
                    f"so {node!r} is not a level above {nodes[level + 1]!r}",
                    {"symbol": symbol, "node_id": node},
                )
            _down(kb_of, symbol, nodes, level + 1, out, count)
