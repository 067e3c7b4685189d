"""What a prediction is asked for, what it returns, and how it is computed.

Why a module of its own: every part of the predictor reads these types and
:mod:`kato_stream.core.predictions` re-exports them; they import nothing from the
predictor, so no part depends on another through them.  ``PredictParams`` is *what* is
predicted (every field is part of a prediction cache key); ``MatcherOptions`` is only *how*
(every choice gives the same bytes), so it is kept out of ``PredictParams``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import kernel
from ..config import EngineDefaults

__all__ = ["MatcherOptions", "PredictParams", "PredictionResult"]

_DEFAULTS = EngineDefaults()


@dataclass(frozen=True)
class PredictParams:
    """Effective prediction parameters (the engine resolves session value vs default).

    The defaults are the process defaults (``EngineDefaults``); the two without one are
    session-only settings.  ``fast_path_token_matching`` is the *process* default: KATO's
    single-symbol path ignores the session's ``use_token_matching`` (spec §5.1).
    """

    recall_threshold: float = _DEFAULTS.recall_threshold
    max_predictions: int = _DEFAULTS.max_predictions
    use_token_matching: bool = _DEFAULTS.use_token_matching
    fuzzy_token_threshold: float = 0.0
    rank_sort_algo: str = _DEFAULTS.rank_sort_algo
    affinity_emotive: str | None = None
    filter_pipeline: tuple[str, ...] = _DEFAULTS.filter_pipeline
    length_min_ratio: float = _DEFAULTS.length_min_ratio
    length_max_ratio: float = _DEFAULTS.length_max_ratio
    jaccard_threshold: float = _DEFAULTS.jaccard_threshold
    jaccard_min_overlap: int = _DEFAULTS.jaccard_min_overlap
    minhash_threshold: float = _DEFAULTS.minhash_threshold
    minhash_bands: int = _DEFAULTS.minhash_bands
    minhash_rows: int = _DEFAULTS.minhash_rows
    minhash_num_hashes: int = _DEFAULTS.minhash_num_hashes
    fast_path_token_matching: bool = _DEFAULTS.use_token_matching


@dataclass
class PredictionResult:
    predictions: Sequence[dict[str, Any]]
    future_potentials: Sequence[dict[str, Any]] = field(default_factory=list)
    fast_path: bool = False


@dataclass(frozen=True)
class MatcherOptions:
    """How the multi-symbol path computes; every choice returns the same predictions.

    ``c_kernel``: ``None`` runs the process's matcher (:func:`kernel.enabled`: the C kernel
    unless it is not built or ``KATO_STREAM_PURE_PYTHON=1``), ``False`` the pure-Python
    path, ``True`` the C kernel when it is built (else the pure-Python path).
    ``exhaustive``: score every pattern as KATO does (no inverted index, no LCS-bound
    pruning, no kernel): the reference the faster paths are tested against.
    """

    c_kernel: bool | None = None
    exhaustive: bool = False
    encoded: bool = False
    """Where the C kernel computes, return the predictions as their JSON bytes
    (:class:`~.encoded.EncodedPredictions`, the same bytes once encoded): the stream path."""

    def runs_kernel(self) -> bool:
        """Whether the C kernel computes (never when ``exhaustive``)."""
        if self.exhaustive:
            return False
        if self.c_kernel is None:
            return kernel.enabled()
        return self.c_kernel and kernel.AVAILABLE
