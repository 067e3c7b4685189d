"""Store errors: one type the stream layer can catch, with the store and target named."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A store operation failed (bad response, schema problem, misuse)."""


class StoreUnavailableError(StoreError):
    """A store could not be reached or opened; the message names the store and address."""
