"""Errors raised by the engine core.

Every error carries a stable machine ``code``, a human ``message`` and optional
``details`` (a FastAPI-style list for validation errors, KATO's dict for config
errors), so the stream layer can put them on a rejected record and the gateway can
turn them into KATO's HTTP bodies without string parsing.
"""

from __future__ import annotations

from typing import Any

Details = dict[str, Any] | list[Any] | None


class KatoError(Exception):
    """Base of every engine error; ``status`` is the HTTP status KATO would answer."""

    code: str = "KATO_ERROR"
    status: int = 500

    def __init__(self, message: str, details: Details = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        """The ``error`` member of a rejected output record."""
        return {"code": self.code, "message": self.message, "details": self.details}


class ObservationError(KatoError):
    """The observation payload fails KATO's (pydantic-lax) schema: KATO answers 422."""

    code = "OBSERVATION_INVALID"
    status = 422


class ConfigError(KatoError):
    """A config update fails validation: KATO answers 400 and applies nothing."""

    code = "CONFIG_INVALID"
    status = 400


class EmptySTMError(KatoError):
    """Learn on an empty STM: KATO answers 400 ``Cannot learn from empty STM``."""

    code = "EMPTY_STM"
    status = 400

    def __init__(
        self, message: str = "Cannot learn from empty STM", details: Details = None
    ) -> None:
        super().__init__(message, details)


class CommandError(KatoError):
    """The command envelope itself is unusable (unknown op, node mismatch, bad payload)."""

    code = "COMMAND_INVALID"
    status = 400


class PatternTooLarge(KatoError):
    """A learn whose pattern cannot be stored: the stream layer's limit on a pattern event
    (``Engine(admit=...)``) refused it before the knowledge base changed."""

    code = "PATTERN_TOO_LARGE"
    status = 413
