"""The ``kato.patterns`` values of a learn and of a clear-all (contracts.py's types)."""

from __future__ import annotations

from typing import cast

from kato_stream import contracts
from kato_stream.core.knowledge import LearnEvent

__all__ = ["clear_event_dict", "learn_event_dict"]


def learn_event_dict(ev: LearnEvent) -> contracts.LearnEvent:
    """The ``kato.patterns`` value of a learn (kato_stream/contracts.py)."""
    return cast(contracts.LearnEvent, {"type": "learn", **ev.to_dict()})


def clear_event_dict(node_id: str, clear_id: str) -> contracts.ClearEvent:
    """The ``kato.patterns`` value of a clear-all."""
    return {"type": "clear", "node_id": node_id, "clear_id": clear_id}
