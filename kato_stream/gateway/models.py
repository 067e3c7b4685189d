"""Request bodies, typed as KATO's pydantic models so validation errors match byte for byte.

Pydantic v2 lax mode gives KATO's coercions (spec §2.1): ints rejected as strings, ints and
numeric strings accepted as floats, booleans as emotive floats; unknown keys ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ObservationData(BaseModel):
    """One observation (KATO's ``ObservationData``); other keys are silently ignored."""

    strings: list[str] = Field(default_factory=list)
    vectors: list[list[float]] = Field(default_factory=list)
    emotives: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The normalised observation sent in the command envelope."""
        return self.model_dump()


class SequenceItem(ObservationData):
    """An observe-sequence item: an observation with an optional client ``unique_id``."""

    unique_id: str | None = None

    def payload(self) -> dict[str, Any]:
        d = self.model_dump()
        if d["unique_id"] is None:
            del d["unique_id"]
        return d


class ObserveSequenceRequest(BaseModel):
    observations: list[SequenceItem]
    learn_after_each: bool = False
    learn_at_end: bool = False
    clear_stm_between: bool = False


class CreateSessionRequest(BaseModel):
    """``POST /sessions``: ``ttl_seconds`` 0/None = default; invalid config rolls back."""

    node_id: str
    metadata: dict[str, Any] | None = Field(default_factory=dict)
    ttl_seconds: int | None = None
    config: dict[str, Any] | None = None
