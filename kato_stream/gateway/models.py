"""Request bodies, typed as KATO's pydantic models so validation errors match byte for byte.

Pydantic v2 lax mode gives KATO's coercions (spec §2.1): ints rejected as strings, ints and
numeric strings accepted as floats, booleans as emotive floats; unknown keys ignored.

Beyond KATO, input the stream could not carry is refused here with the same 422 shape
instead of failing later with a 500: ids longer than the worker's ``MAX_ID``, an empty
``node_id``, TTLs Redis cannot set, free-form values (metadata, config) that JSON cannot
encode (integers beyond 64 bits, nesting deeper than the encoder allows), and sequences
longer than the worker can apply within the gateway's timeout.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, Field

from kato_stream.stream.envelope import MAX_ID

#: Longest TTL (seconds) a session can be given or extended by: the largest 32-bit signed
#: integer (68 years), far below what Redis and the registry's datetimes can hold.
MAX_TTL = 2**31 - 1


def _encodable(value: Any) -> Any:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot be sent to the stream processor: {exc}") from None
    return value


#: Most observations in one ``observe-sequence`` (beyond KATO, which has no limit).  The
#: worker applies a sequence as one command while the session's partition waits: 33,000
#: observations (well under the body limit) took over 150 s, past the gateway's timeout,
#: and 10,000 learned one by one took 23 s with an answer (about 250 bytes an observation)
#: too large to publish.  2,000 take about 2 s and their answer fits; send longer runs in
#: several requests.
MAX_SEQUENCE = 2000

#: A free-form object that must survive the trip to the worker as JSON.
JsonObject = Annotated[dict[str, Any], AfterValidator(_encodable)]
#: An id copied into every record of the stream (the worker refuses longer ones).
StreamId = Annotated[str, Field(max_length=MAX_ID)]


class ObservationData(BaseModel):
    """One observation (KATO's ``ObservationData``); other keys are silently ignored."""

    strings: list[str] = Field(default_factory=list)
    vectors: list[list[float]] = Field(default_factory=list)
    emotives: dict[str, float] = Field(default_factory=dict)
    metadata: JsonObject = Field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The normalised observation sent in the command envelope."""
        return self.model_dump()


class SequenceItem(ObservationData):
    """An observe-sequence item: an observation with an optional client ``unique_id``."""

    unique_id: StreamId | None = None

    def payload(self) -> dict[str, Any]:
        d = self.model_dump()
        if d["unique_id"] is None:
            del d["unique_id"]
        return d


class ObserveSequenceRequest(BaseModel):
    observations: Annotated[list[SequenceItem], Field(max_length=MAX_SEQUENCE)]
    learn_after_each: bool = False
    learn_at_end: bool = False
    clear_stm_between: bool = False


class CreateSessionRequest(BaseModel):
    """``POST /sessions``: ``ttl_seconds`` 0/None = default; invalid config rolls back."""

    node_id: Annotated[str, Field(min_length=1, max_length=MAX_ID)]
    metadata: JsonObject | None = Field(default_factory=dict)
    ttl_seconds: Annotated[int, Field(ge=0, le=MAX_TTL)] | None = None
    config: JsonObject | None = None
