"""Observation payloads, accepted and rejected exactly as KATO's pydantic model does.

KATO validates ``POST /observe`` bodies with a pydantic v2 model in lax mode (spec
§2.1).  The engine must accept and reject the same payloads, so the rules are
reproduced here by hand (core may not depend on pydantic): strings must really be
strings, numbers are coerced for vectors and emotives, unknown keys are ignored and
``{}`` is a valid (empty) observation.  Errors come back as FastAPI's ``detail`` list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kato_stream.core.errors import ObservationError

_MSG_STR = "Input should be a valid string"
_MSG_LIST = "Input should be a valid array"
_MSG_DICT = "Input should be an object"
_MSG_NUM = "Input should be a valid number"
_MSG_NUM_PARSE = "Input should be a valid number, unable to parse string as a number"
_MSG_MODEL = "Input should be a valid dictionary or object to extract fields from"


@dataclass
class Observation:
    """One validated observation.  ``unique_id`` is only read for observe-sequence items."""

    strings: list[str] = field(default_factory=list)
    vectors: list[list[float]] = field(default_factory=list)
    emotives: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    unique_id: str | None = None

    @property
    def is_empty(self) -> bool:
        """No strings and no vectors: KATO appends nothing to STM (spec §2.2 step 6)."""
        return not self.strings and not self.vectors


Loc = tuple[str | int, ...]


def _err(errors: list[dict[str, Any]], type_: str, loc: Loc, msg: str, value: Any) -> None:
    errors.append({"type": type_, "loc": ["body", *loc], "msg": msg, "input": value})


def _lax_float(value: Any, loc: Loc, errors: list[dict[str, Any]]) -> float | None:
    """pydantic's lax float: numbers, bools and numeric strings; ``None`` on error."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            _err(errors, "float_parsing", loc, _MSG_NUM_PARSE, value)
            return None
    _err(errors, "float_type", loc, _MSG_NUM, value)
    return None


def _parse_strings(value: Any, errors: list[dict[str, Any]]) -> list[str]:
    if not isinstance(value, list):
        _err(errors, "list_type", ("strings",), _MSG_LIST, value)
        return []
    out: list[str] = []
    for i, s in enumerate(value):
        if isinstance(s, str):
            out.append(s)
        else:
            _err(errors, "string_type", ("strings", i), _MSG_STR, s)
    return out


def _parse_vectors(value: Any, errors: list[dict[str, Any]]) -> list[list[float]]:
    if not isinstance(value, list):
        _err(errors, "list_type", ("vectors",), _MSG_LIST, value)
        return []
    out: list[list[float]] = []
    for i, vec in enumerate(value):
        if not isinstance(vec, list):
            _err(errors, "list_type", ("vectors", i), _MSG_LIST, vec)
            continue
        row: list[float] = []
        for j, x in enumerate(vec):
            f = _lax_float(x, ("vectors", i, j), errors)
            if f is not None:
                row.append(f)
        out.append(row)
    return out


def _parse_emotives(value: Any, errors: list[dict[str, Any]]) -> dict[str, float]:
    if not isinstance(value, Mapping):
        _err(errors, "dict_type", ("emotives",), _MSG_DICT, value)
        return {}
    out: dict[str, float] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            _err(errors, "string_type", ("emotives", str(k), "[key]"), _MSG_STR, k)
            continue
        f = _lax_float(v, ("emotives", k), errors)
        if f is not None:
            out[k] = f
    return out


def parse_observation(obj: Any, *, with_unique_id: bool = False) -> Observation:
    """Validate one observation payload (spec §2.1); raise ``ObservationError`` if invalid.

    ``with_unique_id`` reads the optional ``unique_id`` of observe-sequence items;
    a plain observe ignores any client ``unique_id`` like KATO does.  Vectors of
    different lengths in one observation are rejected here (KATO answers 500).
    """
    errors: list[dict[str, Any]] = []
    if not isinstance(obj, Mapping):
        _err(errors, "model_attributes_type", (), _MSG_MODEL, obj)
        raise ObservationError("Invalid observation: not an object", errors)
    obs = Observation()
    if "strings" in obj:
        obs.strings = _parse_strings(obj["strings"], errors)
    if "vectors" in obj:
        obs.vectors = _parse_vectors(obj["vectors"], errors)
    if "emotives" in obj:
        obs.emotives = _parse_emotives(obj["emotives"], errors)
    if "metadata" in obj:
        md = obj["metadata"]
        if isinstance(md, Mapping):
            obs.metadata = {str(k): v for k, v in md.items()}
        else:
            _err(errors, "dict_type", ("metadata",), _MSG_DICT, md)
    if with_unique_id and obj.get("unique_id") is not None:
        uid = obj["unique_id"]
        if isinstance(uid, str):
            obs.unique_id = uid
        else:
            _err(errors, "string_type", ("unique_id",), _MSG_STR, uid)
    if not errors and obs.vectors:
        lengths = sorted({len(v) for v in obs.vectors})
        if len(lengths) > 1:
            _err(
                errors,
                "vector_length_mismatch",
                ("vectors",),
                f"All vectors of one observation must have the same length (got {lengths})",
                [len(v) for v in obs.vectors],
            )
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "body"
        raise ObservationError(f"Invalid observation: {where}: {first['msg']}", errors)
    return obs
